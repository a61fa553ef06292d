"""Training steps on moto: lock, queue, deterministic split, champion lookup, registration, finish."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from examples.generate_data import generate
from mlops.s3io import S3Location, S3StreamWriter, put_json
from mlops.services.fates import Fate
from mlops.services.training import (
    TrainingSettings,
    TrainingSteps,
    follow_up_name,
    split_file,
    split_to_s3,
    stopping_condition,
)
from mlops.settings import model_config

from .training_support import MODEL, Machine, evaluation, training_world, validated


@pytest.fixture
def world(s3: Any) -> tuple[TrainingSteps, Machine]:
    return training_world(s3)


def test_split_is_deterministic_and_complete(tmp_path: Path) -> None:
    src = tmp_path / "d.csv"
    generate(MODEL, "good", 2000, seed=1).to_csv(src, index=False)
    first = split_file(src, tmp_path / "a", 0.15, 0.15, seed=7)
    second = split_file(src, tmp_path / "b", 0.15, 0.15, seed=7)
    assert first == second
    assert sum(first["rows"].values()) == 2000
    assert 200 < first["rows"]["test"] < 400 and 200 < first["rows"]["validation"] < 400
    for name in ("train", "validation", "test"):
        assert (tmp_path / "a" / name / "data.csv").read_bytes() == (tmp_path / "b" / name / "data.csv").read_bytes()
        assert (tmp_path / "a" / name / "data.csv").read_text().splitlines()[0].startswith("record_id,")
    other = split_file(src, tmp_path / "c", 0.15, 0.15, seed=8)
    assert (
        other["rows"] != first["rows"]
        or (tmp_path / "c" / "test" / "data.csv").read_bytes() != (tmp_path / "a" / "test" / "data.csv").read_bytes()
    )


def test_split_streamed_to_s3_is_the_local_split(tmp_path: Path, s3: Any) -> None:
    """Issue 8.13: the split goes straight to S3, byte for byte what the local split gives."""
    s3.create_bucket(Bucket="artifacts-bkt")
    src = tmp_path / "d.csv"
    src.write_bytes(b"\xef\xbb\xbf" + generate(MODEL, "good", 1500, seed=3).to_csv(index=False).encode() + b"\n\n")
    local = split_file(src, tmp_path / "local", 0.2, 0.1, seed=5)
    streamed = split_to_s3(s3, src, S3Location("artifacts-bkt", "run"), 0.2, 0.1, seed=5)
    assert streamed == local and sum(local["rows"].values()) == 1500  # blank lines dropped
    for name in ("train", "validation", "test"):
        body = s3.get_object(Bucket="artifacts-bkt", Key=f"run/{name}/data.csv")["Body"].read()
        assert body == (tmp_path / "local" / name / "data.csv").read_bytes()
        assert body.startswith(b"record_id,")  # no byte order mark


def test_stream_writer_uploads_in_parts_past_the_part_size(s3: Any) -> None:
    s3.create_bucket(Bucket="stream-bkt")
    line = b"x" * 1023 + b"\n"
    with S3StreamWriter(s3, S3Location("stream-bkt", "big.csv"), part_size=5 * 1024 * 1024) as out:
        for _ in range(11 * 1024):  # 11 MiB: two full parts and a last one
            out.write(line)
        assert out._upload_id is not None and len(out._parts) == 2
    body = s3.get_object(Bucket="stream-bkt", Key="big.csv")["Body"].read()
    assert body == line * 11 * 1024
    broken = S3Location("stream-bkt", "broken.csv")
    with pytest.raises(RuntimeError), S3StreamWriter(s3, broken, 5 * 1024 * 1024) as out:
        out.write(b"y" * 6 * 1024 * 1024)
        raise RuntimeError("the source broke")
    assert "Contents" not in s3.list_objects_v2(Bucket="stream-bkt", Prefix="broken")  # aborted, nothing half-written
    assert not s3.list_multipart_uploads(Bucket="stream-bkt").get("Uploads")


def test_prepare_writes_channels_and_holds_the_lock(world: tuple[TrainingSteps, Machine], s3: Any) -> None:
    steps, machine = world
    one, two = machine.run("one"), machine.run("two")
    event = validated(s3, "20261124T100000Z-aaaa")
    run = steps.prepare(event, model_config(MODEL), one, machine.arn)
    assert run["status"] == "ready" and run["champion"] is None and run["trigger"] == "dataset"
    assert run["hyperparameters"]["sagemaker_program"] == "train.py"
    assert run["hyperparameters"]["n_estimators"] == "150"
    assert all(isinstance(v, str) for v in run["hyperparameters"].values())
    assert run["resources"]["stopping_condition"] == {"MaxRuntimeInSeconds": 3600}
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket="artifacts-bkt")["Contents"]}
    base = f"training/{MODEL}/{run['run_id']}"
    assert {f"{base}/{n}/data.csv" for n in ("train", "validation", "test")} <= keys
    assert f"{base}/champion/NO_CHAMPION" in keys and f"{base}/config/model-config.json" in keys
    assert len(run["training_job_name"]) <= 63
    lock = steps.lock.holder(MODEL)
    assert lock["execution_id"] == one and lock["run_id"] == run["run_id"]
    assert lock["dataset_version"] == "20261124T100000Z-aaaa"
    assert steps.fates.get(MODEL, "20261124T100000Z-aaaa")["state"] == Fate.TRAINING

    busy = steps.prepare({"model": MODEL}, model_config(MODEL), two, machine.arn)
    assert busy["status"] == "busy" and one in busy["reason"]
    assert steps.release(MODEL, two) is False  # not the holder
    assert steps.release(MODEL, one) is True
    assert steps.prepare({"model": MODEL}, model_config(MODEL), two, machine.arn)["status"] == "ready"


@pytest.mark.parametrize("end", ["stopped", "unknown execution", "not an ARN"])
def test_a_lock_whose_owner_is_not_running_is_free_at_once(
    world: tuple[TrainingSteps, Machine], s3: Any, end: str
) -> None:
    """Issue 9.1: no waiting 2 x max runtime + 1 h; the owner's status decides."""
    steps, machine = world
    config = model_config(MODEL)
    owner = machine.run("owner") if end != "not an ARN" else "exec-1"
    first = steps.prepare(validated(s3, "20261124T100000Z-aaaa"), config, owner, machine.arn)
    assert first["status"] == "ready"
    if end == "stopped":
        machine.end(owner)
    elif end == "unknown execution":
        lock = steps.lock.location(MODEL)
        put_json(s3, lock, {**steps.lock.holder(MODEL), "execution_id": owner.replace(":owner", ":gone")})
    successor = machine.run("successor")
    second = steps.prepare(validated(s3, "20261124T110000Z-bbbb"), config, successor, machine.arn)
    assert second["status"] == "ready", second
    assert steps.lock.holder(MODEL)["execution_id"] == successor
    # the dead run's dataset is recorded as failed, with why
    fate = steps.fates.get(MODEL, "20261124T100000Z-aaaa")
    assert fate["state"] == Fate.FAILED and f"run {first['run_id']} did not finish" in fate["detail"]


def test_a_running_owner_keeps_its_lock_however_old(world: tuple[TrainingSteps, Machine], s3: Any) -> None:
    steps, machine = world
    owner = machine.run("owner")
    steps.prepare(validated(s3, "20261124T100000Z-aaaa"), model_config(MODEL), owner, machine.arn)
    steps.lock.annotate(MODEL, owner, started_at=0)  # "started" in 1970
    late = steps.prepare({"model": MODEL}, model_config(MODEL), machine.run("late"), machine.arn)
    assert late["status"] == "busy" and owner in late["reason"]


def test_a_burst_trains_the_first_and_then_only_the_newest(world: tuple[TrainingSteps, Machine], s3: Any) -> None:
    """Issue 9.5: six uploads for one model; one trains, five queue, one follow-up trains the newest."""
    steps, machine = world
    config = model_config(MODEL)
    versions = [f"20261124T10000{i}Z-{i:04d}" for i in range(6)]
    events = [validated(s3, v, seed=i) for i, v in enumerate(versions)]
    events[-1]["source_parts"] = [{"key": "incoming/part-0.csv", "sha256": "ab"}]  # lineage the queue must keep
    executions = [machine.run(f"upload-{i}") for i in range(6)]
    first = steps.prepare(events[0], config, executions[0], machine.arn)
    assert first["status"] == "ready" and first["dataset"]["dataset_version"] == versions[0]
    for event, execution in zip(events[1:], executions[1:], strict=True):
        queued = steps.prepare(event, config, execution, machine.arn)
        assert queued["status"] == "queued" and executions[0] in queued["reason"]
    assert [f["dataset_version"] for f in steps.fates.pending(MODEL)] == versions[:0:-1]

    evaluation(s3, first, {"roc_auc": 0.97, "f1": 0.93}, None)
    done = steps.finish(first, executions[0], {"status": "failed", "error": {"Error": "X", "Cause": "y"}}, machine.arn)
    assert done["lock_released"] is True
    assert done["follow_up"] == follow_up_name(MODEL, executions[0])
    (follow_up,) = machine.started()
    assert follow_up["name"] == done["follow_up"]
    assert follow_up["input"] == {"model": MODEL, "trigger": "follow-up", "after": executions[0]}
    # the same end seen twice (RecordFailure, then the status-change event) starts nothing more
    assert steps.follow_up(MODEL, executions[0], machine.arn) == done["follow_up"]
    assert len(machine.started()) == 1

    run = steps.prepare(follow_up["input"], config, follow_up["executionArn"], machine.arn)
    assert run["status"] == "ready" and run["trigger"] == "follow-up"
    assert run["dataset"]["dataset_version"] == versions[-1]  # the newest wins
    assert run["dataset"]["source_parts"] == events[-1]["source_parts"]
    assert run["dataset"]["validated_uri"] == events[-1]["validated_uri"]
    fates = {f["dataset_version"]: f for f in steps.fates.list_fates(MODEL)}
    assert fates[versions[0]]["state"] == Fate.FAILED
    assert fates[versions[-1]]["state"] == Fate.TRAINING and fates[versions[-1]]["run_id"] == run["run_id"]
    for version in versions[1:-1]:
        assert fates[version]["state"] == Fate.SUPERSEDED and fates[version]["superseded_by"] == versions[-1]
        assert run["run_id"] in fates[version]["detail"]
    assert steps.fates.pending(MODEL) == []

    ended = steps.finish(run, follow_up["executionArn"], {"status": "registered", "registration": {}}, machine.arn)
    assert ended["follow_up"] is None  # nothing queued any more
    assert steps.fates.get(MODEL, versions[-1])["state"] == Fate.TRAINED
    assert [h["state"] for h in steps.fates.get(MODEL, versions[-1])["history"]] == ["queued", "training", "trained"]


def test_a_redelivered_dataset_event_trains_nothing_twice(world: tuple[TrainingSteps, Machine], s3: Any) -> None:
    steps, machine = world
    event, config = validated(s3, "20261124T100000Z-aaaa"), model_config(MODEL)
    first = machine.run("first")
    run = steps.prepare(event, config, first, machine.arn)
    again = steps.prepare(event, config, machine.run("again"), machine.arn)  # while it trains
    assert again["status"] == "skipped" and "training in run" in again["reason"]
    steps.finish(run, first, {"status": "registered", "registration": {}}, machine.arn)
    later = steps.prepare(event, config, machine.run("later"), machine.arn)  # after it trained
    assert later["status"] == "skipped" and "trained in run" in later["reason"]
    assert steps.fates.pending(MODEL) == [] and machine.started() == []


def test_a_follow_up_with_nothing_queued_lets_go_at_once(world: tuple[TrainingSteps, Machine], s3: Any) -> None:
    steps, machine = world
    follow = machine.run("follow")
    done = steps.prepare({"model": MODEL, "trigger": "follow-up"}, model_config(MODEL), follow, machine.arn)
    assert done["status"] == "skipped" and "no dataset is queued" in done["reason"]
    assert done["lock_released"] is True and steps.lock.holder(MODEL) is None


def test_retrain_uses_the_newest_validated_dataset(world: tuple[TrainingSteps, Machine], s3: Any) -> None:
    steps, machine = world
    validated(s3, "20261101T000000Z-old0", rows=100)
    newest = validated(s3, "20261120T000000Z-new0")
    run = steps.prepare({"model": MODEL, "trigger": "retrain"}, model_config(MODEL), machine.run("r"))
    assert run["dataset"]["dataset_version"] == "20261120T000000Z-new0" and run["trigger"] == "manual"
    assert run["dataset"]["sha256"] == newest["sha256"] == run["split"]["data_sha256"]


def test_retrain_without_any_dataset_fails_clearly_and_frees_the_lock(
    world: tuple[TrainingSteps, Machine], s3: Any
) -> None:
    steps, machine = world
    with pytest.raises(LookupError, match="no validated dataset for model 'tumor-classifier'"):
        steps.prepare({"model": MODEL}, model_config(MODEL), machine.run("x"), machine.arn)
    event = validated(s3, "20261124T1-x")
    assert steps.prepare(event, model_config(MODEL), machine.run("y"), machine.arn)["status"] == "ready"


def test_finish_after_prepare_failed_writes_a_report(world: tuple[TrainingSteps, Machine], s3: Any) -> None:
    """Issue 8.8: RecordFailure with no run (prepare failed) still writes the report and frees the lock."""
    steps, machine = world
    execution = machine.run("broken")
    with pytest.raises(LookupError):
        steps.prepare({"model": MODEL}, model_config(MODEL), execution, machine.arn)
    error = {"Error": "LookupError", "Cause": "no validated dataset"}
    done = steps.finish({"model": MODEL}, execution, {"status": "failed", "error": error}, machine.arn)
    assert done["report_uri"] == f"s3://artifacts-bkt/training/{MODEL}/failed-broken/report.json"
    report = json.loads(
        s3.get_object(Bucket="artifacts-bkt", Key=f"training/{MODEL}/failed-broken/report.json")["Body"].read()
    )
    assert report["status"] == "failed" and report["error"] == error and report["execution_id"] == execution
    assert steps.lock.holder(MODEL) is None


def test_register_records_metrics_lineage_and_status(world: tuple[TrainingSteps, Machine], s3: Any) -> None:
    steps, machine = world
    event = validated(s3, "20261124T100000Z-bbbb")
    first = machine.run("first")
    run = steps.prepare(event, model_config(MODEL), first)
    evaluation(s3, run, {"roc_auc": 0.97, "f1": 0.93, "accuracy": 0.92}, None)
    gate = steps.evaluate_gate(run, model_config(MODEL))
    assert gate["approval_status"] == "Approved"
    job = {
        "TrainingJobName": run["training_job_name"],
        "ModelArtifacts": {"S3ModelArtifacts": "s3://artifacts-bkt/m.tar.gz"},
    }
    s3.put_object(Bucket="artifacts-bkt", Key="m.tar.gz", Body=b"model")
    reg = steps.register(run, job, gate)
    assert reg["approval_status"] == "Approved"
    assert steps.register(run, job, gate) == reg  # a retried step registers nothing new
    package = steps.sm.describe_model_package(ModelPackageName=reg["model_package_arn"])
    props = package["CustomerMetadataProperties"]
    assert props["metric_roc_auc"] == "0.97" and props["code_hash"] == "abc123"
    lineage = json.loads(s3.get_object(Bucket="artifacts-bkt", Key=props["lineage"].split("/", 3)[3])["Body"].read())
    assert lineage["data_sha256"] == event["sha256"] and lineage["training_job"] == run["training_job_name"]
    assert lineage["hyperparameters"]["max_depth"] == "3" and "sagemaker_program" not in lineage["hyperparameters"]
    assert lineage["image_uri"] == run["image_uri"] and lineage["code_uri"] == run["code_uri"]
    champion = steps.champion(MODEL)
    assert champion["model_data_url"] == "s3://artifacts-bkt/m.tar.gz"
    assert champion["dataset_version"] == "20261124T100000Z-bbbb" and champion["lineage"] == props["lineage"]

    done = steps.finish(run, first, {"status": "registered", "registration": reg})
    assert done["lock_released"] is True
    assert steps.fates.get(MODEL, "20261124T100000Z-bbbb")["detail"].startswith(f"trained in run {run['run_id']}")

    # the next run copies the champion for a like-for-like evaluation and is rejected when worse
    run2 = steps.prepare(validated(s3, "20261124T110000Z-cccc"), model_config(MODEL), machine.run("second"))
    assert run2["champion"]["model_package_arn"] == reg["model_package_arn"]
    champion_copy = s3.get_object(
        Bucket="artifacts-bkt", Key=f"training/{MODEL}/{run2['run_id']}/champion/model.tar.gz"
    )
    assert champion_copy["Body"].read() == b"model"
    evaluation(s3, run2, {"roc_auc": 0.93, "f1": 0.9}, {"roc_auc": 0.97, "f1": 0.93})
    gate2 = steps.evaluate_gate(run2, model_config(MODEL))
    assert gate2["approval_status"] == "Rejected" and "champion" in gate2["reasons"][0]
    reg2 = steps.register(run2, {**job, "TrainingJobName": run2["training_job_name"]}, gate2)
    rejected = steps.sm.describe_model_package(ModelPackageName=reg2["model_package_arn"])
    assert rejected["ModelApprovalStatus"] == "Rejected"
    assert "worse than the champion" in rejected["ApprovalDescription"]
    assert steps.champion(MODEL)["model_package_arn"] == reg["model_package_arn"]  # champion unchanged


def test_spot_training_waits_at_least_its_runtime() -> None:
    """Issue 8.10: EnableManagedSpotTraining needs StoppingCondition.MaxWaitTimeInSeconds >= MaxRuntimeInSeconds."""
    assert stopping_condition(3600, use_spot=False) == {"MaxRuntimeInSeconds": 3600}
    spot = stopping_condition(3600, use_spot=True)
    assert spot["MaxWaitTimeInSeconds"] >= spot["MaxRuntimeInSeconds"] == 3600


def test_prepare_passes_the_spot_stopping_condition(world: tuple[TrainingSteps, Machine], s3: Any) -> None:
    steps, machine = world
    base = model_config(MODEL)
    spot = base.model_copy(update={"training": base.training.model_copy(update={"use_spot": True})})
    run = steps.prepare(validated(s3, "20261124T100000Z-spot"), spot, machine.run("spot"))
    assert run["resources"]["use_spot"] is True
    assert run["resources"]["stopping_condition"] == {"MaxRuntimeInSeconds": 3600, "MaxWaitTimeInSeconds": 7200}


def test_reap_records_a_run_that_ended_without_its_last_step(world: tuple[TrainingSteps, Machine], s3: Any) -> None:
    steps, machine = world
    config = model_config(MODEL)
    holder, waiting = machine.run("holder"), machine.run("waiting")
    run = steps.prepare(validated(s3, "20261124T100000Z-aaaa"), config, holder, machine.arn)
    assert steps.prepare(validated(s3, "20261124T110000Z-bbbb"), config, waiting, machine.arn)["status"] == "queued"
    machine.end(holder)  # aborted: its RecordFailure never runs
    reaped = steps.reap(holder, "ABORTED", machine.arn, MODEL)
    assert reaped["dead_run_recorded"] is True and reaped["follow_up"] == follow_up_name(MODEL, holder)
    fate = steps.fates.get(MODEL, "20261124T100000Z-aaaa")
    assert fate["state"] == Fate.FAILED and "its execution ended ABORTED" in fate["detail"]
    assert fate["run_id"] == run["run_id"]
    # reaping again (a redelivered event) changes nothing and starts nothing new
    again = steps.reap(holder, "ABORTED", machine.arn, MODEL)
    assert again["follow_up"] == reaped["follow_up"] and len(machine.started()) == 1


def test_settings_from_env_names_what_is_missing() -> None:
    with pytest.raises(RuntimeError, match="CODE_URI"):
        TrainingSettings.from_env({"VALIDATED_BUCKET": "a", "ARTIFACTS_BUCKET": "b"})


def test_a_dataset_that_breaks_its_run_fails_once_and_is_not_retried(
    world: tuple[TrainingSteps, Machine], s3: Any
) -> None:
    """A follow-up whose prepare fails takes the dataset down with it: no follow-up of follow-ups."""
    steps, machine = world
    config = model_config(MODEL)
    holder = machine.run("holder")
    run = steps.prepare(validated(s3, "20261124T100000Z-aaaa"), config, holder, machine.arn)
    broken = validated(s3, "20261124T110000Z-bbbb")
    assert steps.prepare(broken, config, machine.run("queued"), machine.arn)["status"] == "queued"
    s3.delete_object(Bucket="validated-bkt", Key=broken["validated_uri"].split("/", 3)[3])  # gone before it trains
    follow_up = steps.finish(run, holder, {"status": "registered", "registration": {}}, machine.arn)["follow_up"]
    (started,) = machine.started()
    with pytest.raises(ClientError, match="NoSuchKey"):
        steps.prepare(started["input"], config, started["executionArn"], machine.arn)
    assert started["name"] == follow_up
    fate = steps.fates.get(MODEL, "20261124T110000Z-bbbb")
    assert fate["state"] == Fate.FAILED and "prepare failed" in fate["detail"]
    assert steps.fates.pending(MODEL) == [] and len(machine.started()) == 1
