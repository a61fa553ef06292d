"""Training steps on moto: lock, deterministic split, champion lookup, registration, finish."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import boto3
import pytest

from examples.generate_data import generate
from mlops.services.training import TrainingSettings, TrainingSteps, split_file
from mlops.settings import model_config

MODEL = "tumor-classifier"
SETTINGS = TrainingSettings("validated-bkt", "artifacts-bkt", "s3://assets-bkt/code.tar.gz", "abc123", "img:1")


@pytest.fixture
def steps(s3: Any) -> TrainingSteps:
    for bucket in ("validated-bkt", "artifacts-bkt", "assets-bkt"):
        s3.create_bucket(Bucket=bucket)
    sm = boto3.client("sagemaker", region_name="us-east-1")
    sm.create_model_package_group(ModelPackageGroupName=MODEL)
    return TrainingSteps(s3, sm, SETTINGS)


def _validated(s3: Any, version: str, rows: int = 300) -> dict[str, Any]:
    body = generate(MODEL, "good", rows, seed=2).to_csv(index=False).encode()
    prefix = f"validated/{MODEL}/{version}"
    s3.put_object(Bucket="validated-bkt", Key=f"{prefix}/data.csv", Body=body)
    sha = hashlib.sha256(body).hexdigest()
    manifest = {
        "report_uri": f"s3://artifacts-bkt/reports/{MODEL}/{version}/validation.json",
        "source": {"sha256": sha},
    }
    s3.put_object(Bucket="validated-bkt", Key=f"{prefix}/manifest.json", Body=json.dumps(manifest).encode())
    return {
        "model": MODEL,
        "dataset_version": version,
        "validated_uri": f"s3://validated-bkt/{prefix}/data.csv",
        "_sha": sha,
    }


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


def test_prepare_writes_channels_and_holds_the_lock(steps: TrainingSteps, s3: Any) -> None:
    event = _validated(s3, "20261124T100000Z-aaaa")
    run = steps.prepare(event, model_config(MODEL), "arn:exec:one")
    assert run["status"] == "ready" and run["champion"] is None
    assert run["hyperparameters"]["sagemaker_program"] == "train.py"
    assert run["hyperparameters"]["n_estimators"] == "150"
    assert all(isinstance(v, str) for v in run["hyperparameters"].values())
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket="artifacts-bkt")["Contents"]}
    base = f"training/{MODEL}/{run['run_id']}"
    assert {f"{base}/{n}/data.csv" for n in ("train", "validation", "test")} <= keys
    assert f"{base}/champion/NO_CHAMPION" in keys and f"{base}/config/model-config.json" in keys
    assert len(run["training_job_name"]) <= 63

    busy = steps.prepare(event, model_config(MODEL), "arn:exec:two")
    assert busy["status"] == "busy" and "arn:exec:one" in busy["reason"]
    assert steps.release(MODEL, "arn:exec:two") is False  # not the holder
    assert steps.release(MODEL, "arn:exec:one") is True
    assert steps.prepare(event, model_config(MODEL), "arn:exec:two")["status"] == "ready"


def test_retrain_uses_the_newest_validated_dataset(steps: TrainingSteps, s3: Any) -> None:
    _validated(s3, "20261101T000000Z-old0", rows=100)
    newest = _validated(s3, "20261120T000000Z-new0")
    run = steps.prepare({"model": MODEL, "trigger": "retrain"}, model_config(MODEL), "arn:exec:r")
    assert run["dataset"]["dataset_version"] == "20261120T000000Z-new0"
    assert run["dataset"]["sha256"] == newest["_sha"] == run["split"]["data_sha256"]


def test_retrain_without_any_dataset_fails_clearly_and_frees_the_lock(steps: TrainingSteps) -> None:
    with pytest.raises(LookupError, match="no validated dataset for model 'tumor-classifier'"):
        steps.prepare({"model": MODEL}, model_config(MODEL), "arn:exec:x")
    assert (
        steps.prepare({"model": MODEL, **_validated(steps.s3, "20261124T1-x")}, model_config(MODEL), "y")["status"]
        == "ready"
    )


def _evaluation(s3: Any, run: dict[str, Any], candidate: dict[str, float], champion: dict[str, float] | None) -> None:
    key = run["evaluation_uri"].split("/", 3)[3] + "/evaluation.json"
    s3.put_object(Bucket="artifacts-bkt", Key=key, Body=json.dumps({"candidate": candidate, "champion": champion}))


def test_register_records_metrics_lineage_and_status(steps: TrainingSteps, s3: Any) -> None:
    event = _validated(s3, "20261124T100000Z-bbbb")
    run = steps.prepare(event, model_config(MODEL), "arn:exec:1")
    _evaluation(s3, run, {"roc_auc": 0.97, "f1": 0.93, "accuracy": 0.92}, None)
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
    assert lineage["data_sha256"] == event["_sha"] and lineage["training_job"] == run["training_job_name"]
    assert lineage["hyperparameters"]["max_depth"] == "3" and "sagemaker_program" not in lineage["hyperparameters"]
    assert steps.champion(MODEL)["model_data_url"] == "s3://artifacts-bkt/m.tar.gz"

    done = steps.finish(run, "arn:exec:1", {"status": "registered", "registration": reg})
    assert done["lock_released"] is True

    # the next run copies the champion for a like-for-like evaluation and is rejected when worse
    run2 = steps.prepare(_validated(s3, "20261124T110000Z-cccc"), model_config(MODEL), "arn:exec:2")
    assert run2["champion"]["model_package_arn"] == reg["model_package_arn"]
    champion_copy = s3.get_object(
        Bucket="artifacts-bkt", Key=f"training/{MODEL}/{run2['run_id']}/champion/model.tar.gz"
    )
    assert champion_copy["Body"].read() == b"model"
    _evaluation(s3, run2, {"roc_auc": 0.93, "f1": 0.9}, {"roc_auc": 0.97, "f1": 0.93})
    gate2 = steps.evaluate_gate(run2, model_config(MODEL))
    assert gate2["approval_status"] == "Rejected" and "champion" in gate2["reasons"][0]
    reg2 = steps.register(run2, {**job, "TrainingJobName": run2["training_job_name"]}, gate2)
    rejected = steps.sm.describe_model_package(ModelPackageName=reg2["model_package_arn"])
    assert rejected["ModelApprovalStatus"] == "Rejected"
    assert "worse than the champion" in rejected["ApprovalDescription"]
    assert steps.champion(MODEL)["model_package_arn"] == reg["model_package_arn"]  # champion unchanged


def test_settings_from_env_names_what_is_missing() -> None:
    with pytest.raises(RuntimeError, match="CODE_URI"):
        TrainingSettings.from_env({"VALIDATED_BUCKET": "a", "ARTIFACTS_BUCKET": "b"})


def test_alarm_retrains_are_debounced_by_the_cooldown(steps: TrainingSteps, s3: Any) -> None:
    _validated(s3, "20261124T120000Z-dddd")
    alarm = {"model": MODEL, "trigger": "alarm", "alarm": "tumor-classifier-drift"}
    first = steps.prepare(alarm, model_config(MODEL), "arn:exec:a1")
    assert first["status"] == "ready"
    steps.release(MODEL, "arn:exec:a1")
    duplicate = steps.prepare(alarm, model_config(MODEL), "arn:exec:a2")  # same alarm event delivered again
    assert duplicate["status"] == "busy" and "retrain cooldown" in duplicate["reason"]
    retry = steps.prepare(alarm, model_config(MODEL), "arn:exec:a1")  # a retry of the first execution proceeds
    assert retry["status"] == "ready"
    steps.release(MODEL, "arn:exec:a1")
    plain = steps.prepare({"model": MODEL}, model_config(MODEL), "arn:exec:manual")  # uploads are not debounced
    assert plain["status"] == "ready"
