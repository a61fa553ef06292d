"""Alarm-triggered retrains add labelled captured requests to the newest validated data (moto)."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import time
from dataclasses import replace
from typing import Any

import pytest

from examples.generate_data import generate
from mlops.config import ModelConfig
from mlops.services.training import TrainingSettings, TrainingSteps, coerce_value
from mlops.settings import model_config

from .training_support import MODEL, SETTINGS, Machine, register_approved, training_world, validated

CONFIG = model_config(MODEL)
FEATURES = [f.name for f in CONFIG.dataset.features]
ALARM = {"model": MODEL, "trigger": "alarm", "alarm": f"mlops-{MODEL}-drift"}
VALIDATED_ROWS = 300


@pytest.fixture
def world(s3: Any) -> tuple[TrainingSteps, Machine]:
    return training_world(s3)


@pytest.fixture
def steps(world: tuple[TrainingSteps, Machine]) -> TrainingSteps:
    return world[0]


def _validated(s3: Any, version: str = "20261124T100000Z-aaaa") -> dict[str, Any]:
    return validated(s3, version, rows=VALIDATED_ROWS)


def _record(inference_id: str, content_type: str, data: str) -> str:
    return json.dumps(
        {
            "captureData": {
                "endpointInput": {"observedContentType": content_type, "mode": "INPUT", "data": data},
                "endpointOutput": {
                    "observedContentType": "application/json",
                    "mode": "OUTPUT",
                    "data": json.dumps({"predictions": [{"label": 1}]}),
                },
            },
            "eventMetadata": {"eventId": inference_id, "inferenceId": inference_id},
            "eventVersion": "0",
        }
    )


def _csv_line(row: dict[str, Any], inference_id: str) -> str:
    return _record(inference_id, "text/csv", ",".join("" if row[f] is None else str(row[f]) for f in FEATURES))


def _captured(s3: Any) -> dict[str, dict[str, Any]]:
    """Capture + ground truth; returns the rows that must be added, by inference id."""
    frame = generate(MODEL, "good", 40, seed=9)
    rows = frame.astype(object).where(frame.notna(), None).to_dict("records")
    labelled, unlabelled = rows[:30], rows[30:]
    expected = {f"ok-{i}": r for i, r in enumerate(labelled)}
    lines = [_csv_line(r, f"ok-{i}") for i, r in enumerate(labelled[:29])]
    # one labelled request arrives as JSON
    lines.append(
        _record("ok-29", "application/json", json.dumps({"instances": [{f: labelled[29][f] for f in FEATURES}]}))
    )
    lines += [_csv_line(r, f"nolabel-{i}") for i, r in enumerate(unlabelled)]
    lines += ["this is not json", json.dumps({"captureData": 5})]  # malformed: counted, skipped
    bad_type = {**labelled[0], "mean_radius": "abc"}
    bad_allowed = {**labelled[1], "clinic": "mars"}
    lines += [_csv_line(bad_type, "bad-type"), _csv_line(bad_allowed, "bad-allowed")]
    two_rows = "\n".join(",".join(str(r[f] or "") for f in FEATURES) for r in labelled[2:4])
    lines.append(_record("two-rows", "text/csv", two_rows))
    lines.append(_csv_line(labelled[5], "ok-5"))  # a retried request: the same inference id again
    half = len(lines) // 2
    for n, chunk in enumerate((lines[:half], lines[half:])):
        s3.put_object(
            Bucket="capture-bkt",
            Key=f"datacapture/{MODEL}/AllTraffic/2026/11/24/1{n}/capture-{n}.jsonl",
            Body="\n".join(chunk).encode(),
        )
    truth = io.StringIO()
    writer = csv.writer(truth, lineterminator="\n")
    writer.writerow(["inference_id", "diagnosis"])
    writer.writerows((i, int(r["diagnosis"])) for i, r in expected.items())
    writer.writerows([("bad-type", 1), ("bad-allowed", 0), ("two-rows", 1), ("never-captured", 1)])
    s3.put_object(Bucket="incoming-bkt", Key=f"ground-truth/{MODEL}/labels.csv", Body=truth.getvalue().encode())
    s3.put_object(Bucket="incoming-bkt", Key=f"ground-truth/{MODEL}/wrong.csv", Body=b"id,label\n1,0\n")
    return expected


def _split_rows(s3: Any, run: dict[str, Any]) -> list[dict[str, str]]:
    rows = []
    for name in ("train", "validation", "test"):
        key = run["channels"][name].split("/", 3)[3] + "data.csv"
        text = s3.get_object(Bucket="artifacts-bkt", Key=key)["Body"].read().decode()
        rows += list(csv.DictReader(io.StringIO(text)))
    return rows


def _with_capture(enabled: bool) -> ModelConfig:
    return CONFIG.model_copy(
        update={"monitoring": CONFIG.monitoring.model_copy(update={"retrain_with_labelled_capture": enabled})}
    )


def test_alarm_retrain_adds_exactly_the_labelled_captured_rows(steps: TrainingSteps, s3: Any) -> None:
    _validated(s3)
    expected = _captured(s3)
    run = steps.prepare(ALARM, CONFIG, "arn:exec:alarm")
    assert run["status"] == "ready"
    added = run["split"]["labelled_capture"]
    assert added["rows_added"] == len(expected) == 30
    assert sum(run["split"]["rows"].values()) == VALIDATED_ROWS + 30

    rows = _split_rows(s3, run)
    assert len(rows) == VALIDATED_ROWS + 30
    original_ids = [int(r["record_id"]) for r in generate(MODEL, "good", VALIDATED_ROWS, seed=2).to_dict("records")]
    new = [r for r in rows if int(r["record_id"]) > max(original_ids)]
    assert len(new) == 30
    assert len({r["record_id"] for r in rows}) == len(rows)  # generated ids stay unique
    got = sorted((float(r["mean_radius"]), r["clinic"], int(r["diagnosis"])) for r in new)
    want = sorted((float(r["mean_radius"]), r["clinic"], int(r["diagnosis"])) for r in expected.values())
    assert got == want  # features from the captured request, target from the ground truth

    # the added rows are kept beside the run, and the split data is validated data + those rows
    rows_key = added["rows_uri"].split("/", 3)[3]
    kept = s3.get_object(Bucket="artifacts-bkt", Key=rows_key)["Body"].read().decode().splitlines()
    assert len(kept) == 31 and kept[0].startswith("record_id,")
    validated = s3.get_object(Bucket="validated-bkt", Key=run["dataset"]["validated_uri"].split("/", 3)[3])
    body = validated["Body"].read()
    assert run["split"]["validated_sha256"] == hashlib.sha256(body).hexdigest() == run["dataset"]["sha256"]
    combined = body + ("\n".join(kept[1:]) + "\n").encode()
    assert run["split"]["data_sha256"] == hashlib.sha256(combined).hexdigest()


def test_alarm_retrain_records_counts_and_prefixes_and_skips_bad_lines(steps: TrainingSteps, s3: Any) -> None:
    _validated(s3)
    _captured(s3)
    run = steps.prepare(ALARM, CONFIG, "arn:exec:alarm")
    info = run["split"]["labelled_capture"]
    assert info["capture_prefix"] == f"s3://capture-bkt/datacapture/{MODEL}/"
    assert info["ground_truth_prefix"] == f"s3://incoming-bkt/ground-truth/{MODEL}/"
    assert info["capture_objects"] == 2 and info["capture_objects_used"] == 2
    assert info["ground_truth_objects"] == 1 and "wrong.csv" in info["ground_truth_problems"][0]
    assert info["ground_truth_labels"] == 34
    assert info["unlabelled"] == 10
    assert info["dropped"] == {
        "unreadable_lines": 2,
        "type_errors": 1,
        "allowed_errors": 1,
        "multi_row_requests": 1,
        "repeated_inference_id": 1,
    }

    # the registered lineage carries the same record, for `mlops lineage`
    key = run["evaluation_uri"].split("/", 3)[3] + "/evaluation.json"
    s3.put_object(Bucket="artifacts-bkt", Key=key, Body=json.dumps({"candidate": {"roc_auc": 0.97, "f1": 0.93}}))
    gate = steps.evaluate_gate(run, CONFIG)
    job = {"TrainingJobName": run["training_job_name"], "ModelArtifacts": {"S3ModelArtifacts": "s3://a/m.tar.gz"}}
    reg = steps.register(run, job, gate)
    lineage = json.loads(s3.get_object(Bucket="artifacts-bkt", Key=reg["lineage"].split("/", 3)[3])["Body"].read())
    assert lineage["labelled_capture"]["rows_added"] == 30
    assert lineage["split"]["labelled_capture"] == lineage["labelled_capture"]


def test_upload_triggered_prepare_adds_no_capture(steps: TrainingSteps, s3: Any) -> None:
    event = _validated(s3)
    _captured(s3)
    run = steps.prepare(event, CONFIG, "arn:exec:upload")
    assert "labelled_capture" not in run["split"] and "validated_sha256" not in run["split"]
    assert sum(run["split"]["rows"].values()) == VALIDATED_ROWS
    assert len(_split_rows(s3, run)) == VALIDATED_ROWS
    steps.release(MODEL, "arn:exec:upload")
    manual = steps.prepare({"model": MODEL, "trigger": "retrain"}, CONFIG, "arn:exec:manual")
    assert "labelled_capture" not in manual["split"]


def test_config_switch_off_adds_no_capture(steps: TrainingSteps, s3: Any) -> None:
    _validated(s3)
    _captured(s3)
    run = steps.prepare(ALARM, _with_capture(False), "arn:exec:off")
    info = run["split"]["labelled_capture"]
    assert info["rows_added"] == 0 and "retrain_with_labelled_capture is false" in info["skipped"]
    assert sum(run["split"]["rows"].values()) == VALIDATED_ROWS
    assert run["split"]["data_sha256"] == run["split"]["validated_sha256"]


def test_without_capture_buckets_the_step_is_skipped(steps: TrainingSteps, s3: Any) -> None:
    _validated(s3)
    _captured(s3)
    plain = TrainingSteps(s3, steps.sm, replace(SETTINGS, capture_bucket=None, incoming_bucket=None), steps.sfn)
    run = plain.prepare(ALARM, CONFIG, "arn:exec:plain")
    assert run["split"]["labelled_capture"]["rows_added"] == 0
    assert "CAPTURE_BUCKET" in run["split"]["labelled_capture"]["skipped"]
    assert sum(run["split"]["rows"].values()) == VALIDATED_ROWS


def test_no_labels_means_no_capture_rows(steps: TrainingSteps, s3: Any) -> None:
    _validated(s3)
    run = steps.prepare(ALARM, CONFIG, "arn:exec:none")
    info = run["split"]["labelled_capture"]
    assert info["rows_added"] == 0 and info["ground_truth_labels"] == 0 and info["capture_objects"] == 0


def test_settings_read_the_optional_capture_buckets() -> None:
    env = {
        "VALIDATED_BUCKET": "v",
        "ARTIFACTS_BUCKET": "a",
        "CODE_URI": "s3://c/code.tar.gz",
        "CODE_HASH": "h",
        "TRAINING_IMAGE_URI": "img",
    }
    bare = TrainingSettings.from_env(env)
    assert bare.capture_bucket is None and bare.incoming_bucket is None and bare.capture_prefix == "datacapture"
    full = TrainingSettings.from_env({**env, "CAPTURE_BUCKET": "cap", "INCOMING_BUCKET": "in"})
    assert (full.capture_bucket, full.incoming_bucket) == ("cap", "in")


def test_coercion_follows_the_contract() -> None:
    columns = {c.name: c for c in CONFIG.dataset.columns}
    assert coerce_value(columns["diagnosis"], "1.0") == 1 and coerce_value(columns["diagnosis"], 0) == 0
    assert coerce_value(columns["mean_concavity"], "") is None  # nullable
    assert coerce_value(columns["mean_radius"], " 12.5 ") == 12.5
    for column, value in [
        ("diagnosis", "1.5"),
        ("diagnosis", 2),
        ("mean_radius", "abc"),
        ("mean_radius", "nan"),
        ("mean_radius", -1),
        ("mean_radius", None),
        ("clinic", "mars"),
        ("mean_radius", [1]),
    ]:
        with pytest.raises(ValueError):
            coerce_value(columns[column], value)


def _labelled_traffic(s3: Any, tag: str, n: int, seed: int) -> None:
    """``n`` captured single-row requests with their ground truth, under keys of their own."""
    frame = generate(MODEL, "good", n, seed=seed)
    rows = frame.astype(object).where(frame.notna(), None).to_dict("records")
    lines = [_csv_line(r, f"{tag}-{i}") for i, r in enumerate(rows)]
    s3.put_object(
        Bucket="capture-bkt",
        Key=f"datacapture/{MODEL}/AllTraffic/2026/11/25/{tag}.jsonl",
        Body="\n".join(lines).encode(),
    )
    truth = "inference_id,diagnosis\n" + "".join(f"{tag}-{i},{int(r['diagnosis'])}\n" for i, r in enumerate(rows))
    s3.put_object(Bucket="incoming-bkt", Key=f"ground-truth/{MODEL}/{tag}.csv", Body=truth.encode())


def test_an_alarm_with_nothing_new_to_learn_does_not_retrain(world: tuple[TrainingSteps, Machine], s3: Any) -> None:
    """Issue 9.7: same data, same seed, byte-identical model: not trained, recorded instead."""
    steps, machine = world
    first = machine.run("upload")
    run = steps.prepare(_validated(s3), CONFIG, first, machine.arn)
    register_approved(steps, s3, run, first)

    alarm = machine.run("alarm-1")
    skipped = steps.prepare({**ALARM, "alarm_time": "2026-11-25T10:00:00Z"}, CONFIG, alarm, machine.arn)
    assert skipped["status"] == "no_new_data"
    assert skipped["reason"].startswith("drift detected, no new labelled data")
    assert skipped["lock_released"] is True and steps.lock.holder(MODEL) is None
    report = json.loads(
        s3.get_object(Bucket="artifacts-bkt", Key=skipped["report_uri"].split("/", 3)[3])["Body"].read()
    )
    assert report["status"] == "no_new_data" and report["alarm"] == ALARM["alarm"]
    assert report["dataset_version"] == "20261124T100000Z-aaaa"
    # nothing was trained, and the cooldown is not used up by a retrain that did not happen
    assert "Contents" not in s3.list_objects_v2(
        Bucket="artifacts-bkt", Prefix=f"training/{MODEL}/{skipped_run(skipped)}"
    )
    assert s3.list_objects_v2(Bucket="artifacts-bkt", Prefix=f"monitoring/{MODEL}/retrain.json")["KeyCount"] == 0

    # ground truth for the drifted traffic is new information: the retrain runs, on it
    _labelled_traffic(s3, "drifted", 25, seed=31)
    alarm2 = machine.run("alarm-2")
    retrain = steps.prepare(ALARM, CONFIG, alarm2, machine.arn)
    assert retrain["status"] == "ready"
    capture = retrain["split"]["labelled_capture"]
    assert capture["rows_added"] == 25 and capture["new_information"] == "25 newly labelled captured requests"
    ids = json.loads(
        s3.get_object(Bucket="artifacts-bkt", Key=capture["inference_ids_uri"].split("/", 3)[3])["Body"].read()
    )
    assert ids == sorted(f"drifted-{i}" for i in range(25))
    register_approved(steps, s3, retrain, alarm2)

    # the new champion learnt those labels: the same labels again teach nothing (after the cooldown)
    s3.delete_object(Bucket="artifacts-bkt", Key=f"monitoring/{MODEL}/retrain.json")
    again = steps.prepare(ALARM, CONFIG, machine.run("alarm-3"), machine.arn)
    assert again["status"] == "no_new_data" and "version 2" in again["reason"]
    # more labelled traffic, or a newer validated dataset, is new again
    _labelled_traffic(s3, "more", 3, seed=32)
    more = steps.prepare(ALARM, CONFIG, machine.run("alarm-4"), machine.arn)
    assert more["status"] == "ready" and more["split"]["labelled_capture"]["new_information"].startswith("3 newly")


def skipped_run(result: dict[str, Any]) -> str:
    """The run folder a skipped alarm reserved: only its report is there."""
    return result["report_uri"].split("/")[-2] + "/split"


def test_a_newer_validated_dataset_is_new_information(world: tuple[TrainingSteps, Machine], s3: Any) -> None:
    steps, machine = world
    first = machine.run("upload")
    register_approved(steps, s3, steps.prepare(_validated(s3), CONFIG, first, machine.arn), first)
    _validated(s3, "20261125T100000Z-bbbb")  # validated, not trained yet
    run = steps.prepare(ALARM, CONFIG, machine.run("alarm"), machine.arn)
    assert run["status"] == "ready" and run["dataset"]["dataset_version"] == "20261125T100000Z-bbbb"
    assert "newer than the champion's 20261124T100000Z-aaaa" in run["split"]["labelled_capture"]["new_information"]


def test_alarm_retrains_are_debounced_by_the_cooldown(world: tuple[TrainingSteps, Machine], s3: Any) -> None:
    steps, machine = world
    _validated(s3, "20261124T120000Z-dddd")
    first = machine.run("a1")
    assert steps.prepare(ALARM, CONFIG, first, machine.arn)["status"] == "ready"  # no champion yet: retrain
    steps.release(MODEL, first)
    duplicate = steps.prepare(ALARM, CONFIG, machine.run("a2"), machine.arn)  # the same alarm event again
    assert duplicate["status"] == "skipped" and "retrain cooldown" in duplicate["reason"]
    retry = steps.prepare(ALARM, CONFIG, first, machine.arn)  # a retry of the first execution proceeds
    assert retry["status"] == "ready"
    steps.release(MODEL, first)
    plain = steps.prepare({"model": MODEL}, CONFIG, machine.run("manual"), machine.arn)  # not debounced
    assert plain["status"] == "ready"


def test_the_cooldown_keeps_its_age_on_the_functions_clock(
    world: tuple[TrainingSteps, Machine], s3: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 14: the marker is stamped and aged on one clock (on the twin, its timeline, which a
    restart continues at any time scale; see mlops/twin/timeshim.py)."""
    steps, machine = world
    twin_time = [1_900_000_000.0]
    monkeypatch.setattr(time, "time", lambda: twin_time[0])
    _validated(s3)
    first = machine.run("a1")
    assert steps.prepare(ALARM, CONFIG, first, machine.arn)["status"] == "ready"
    marker = json.loads(s3.get_object(Bucket="artifacts-bkt", Key=f"monitoring/{MODEL}/retrain.json")["Body"].read())
    assert marker["started_at"] == 1_900_000_000.0
    steps.release(MODEL, first)
    twin_time[0] += 5 * 3600  # five hours later on that timeline: still inside the 6 h cooldown
    blocked = steps.prepare(ALARM, CONFIG, machine.run("a2"), machine.arn)
    assert blocked["status"] == "skipped"
    assert "started 300 min ago" in blocked["reason"] and "cooldown is 360 min" in blocked["reason"]
    twin_time[0] += 2 * 3600
    assert steps.prepare(ALARM, CONFIG, machine.run("a3"), machine.arn)["status"] == "ready"
