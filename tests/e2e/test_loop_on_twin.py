"""The whole loop on the twin, in order: upload → validate → train → evaluate → register →
deploy → predictions → a rejected candidate → a rolled-back deployment → drifted traffic →
drift alarm → retrain → the new version deployed by canary.

One twin serves the module (tests run in file order on one worker); its clock runs 200x
faster so that the hourly monitor schedule and the alarm periods pass in seconds.
"""

from __future__ import annotations

import gzip
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from examples.generate_data import generate, write_csv
from mlops.cli import app
from mlops.demo import feature_frame, runtime_client, serving_version, wait_until
from mlops.platform import Platform
from mlops.settings import model_config
from mlops.twin import control
from mlops.twin.stepfunctions.asl.history import entered_states

pytestmark = pytest.mark.e2e
MODEL = "tumor-classifier"
LOOP_TIME_SCALE = 0.005
CONFIG = model_config(MODEL)


@pytest.fixture(scope="module")
def loop(cdk_out: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[control.TwinHandle]:
    workdir = tmp_path_factory.mktemp("loop") / "twin"
    handle = control.start(cdk_out, workdir, port=0, time_scale=LOOP_TIME_SCALE)
    try:
        yield handle
    finally:
        control.stop(workdir)


def _packages(handle: control.TwinHandle) -> list[dict[str, Any]]:
    sm = handle.client("sagemaker")
    found = sm.list_model_packages(ModelPackageGroupName=MODEL, SortBy="CreationTime", SortOrder="Ascending")
    return [sm.describe_model_package(ModelPackageName=p["ModelPackageArn"]) for p in found["ModelPackageSummaryList"]]


def _deployments(handle: control.TwinHandle) -> list[dict[str, Any]]:
    return control.load_executions(handle.workdir, "Deploy")


def _upload(handle: control.TwinHandle, frame: pd.DataFrame, tmp_path: Path, name: str) -> str:
    path = write_csv(frame, tmp_path / name)
    key = f"incoming/{MODEL}/{name}"
    handle.client().upload_file(str(path), handle.bucket("incoming"), key)
    return key


def test_upload_is_validated_trained_registered_and_deployed(loop: control.TwinHandle, tmp_path: Path) -> None:
    key = _upload(loop, generate(MODEL, "good", 3000, seed=1), tmp_path, "good.csv")
    (validation,) = control.wait_for_executions(loop.workdir, key, machine="Validation", timeout_s=120)
    assert validation["status"] == "SUCCEEDED"
    version = validation["output"]["dataset_version"]
    (training,) = control.wait_for_executions(loop.workdir, version, machine="Training", timeout_s=300)
    assert training["status"] == "SUCCEEDED", training.get("cause")
    assert entered_states(training["history"])[-1] == "ModelRegistered"

    (package,) = _packages(loop)
    assert package["ModelApprovalStatus"] == "Approved"  # auto approval: the gate passed
    meta = package["CustomerMetadataProperties"]
    assert meta["dataset_version"] == version and float(meta["metric_accuracy"]) >= 0.9
    bucket, key_ = meta["lineage"].removeprefix("s3://").split("/", 1)
    lineage = json.loads(loop.client().get_object(Bucket=bucket, Key=key_)["Body"].read())
    assert lineage["data_uri"] == f"s3://{loop.bucket('incoming')}/{key}"
    assert lineage["data_version_id"] and len(lineage["data_sha256"]) == 64
    assert lineage["validation_report"].startswith("s3://") and lineage["training_job"]
    assert lineage["code_hash"] and lineage["hyperparameters"] and lineage["gate"]["passed"]

    deploy = wait_until(
        lambda: [e for e in _deployments(loop) if e["status"] != "RUNNING"],
        120,
        "the first deployment",
    )
    assert deploy[0]["status"] == "SUCCEEDED", deploy[0].get("cause")
    assert serving_version(Platform.twin(loop.endpoint), MODEL) == "1"

    rows = feature_frame(generate(MODEL, "good", 5, seed=11), CONFIG)
    answer = runtime_client(loop).invoke_endpoint(
        EndpointName=MODEL,
        ContentType="text/csv",
        Accept="application/json",
        Body=rows.to_csv(header=False, index=False),
    )
    predictions = json.loads(answer["Body"].read())["predictions"]
    assert len(predictions) == 5 and all(set(p["probabilities"]) == {"0", "1"} for p in predictions)
    assert answer["ResponseMetadata"]["HTTPHeaders"]["x-amzn-invoked-production-variant"]
    as_json = runtime_client(loop).invoke_endpoint(
        EndpointName=MODEL, ContentType="application/json", Body=json.dumps({"instances": rows.to_dict("records")})
    )
    assert len(json.loads(as_json["Body"].read())["predictions"]) == 5

    # the same through the CLI: a file with a header row, and one row
    rows_file = tmp_path / "rows.csv"
    rows.to_csv(rows_file, index=False)
    cli = CliRunner()
    by_file = cli.invoke(app, ["predict", MODEL, "--file", str(rows_file), "--workdir", str(loop.workdir)])
    assert by_file.exit_code == 0, by_file.output
    assert by_file.output.count('"label"') == 5
    one_row = rows.head(1).to_csv(header=False, index=False).strip()
    by_row = cli.invoke(app, ["predict", MODEL, "--row", one_row, "--workdir", str(loop.workdir)])
    assert by_row.exit_code == 0 and by_row.output.count('"label"') == 1, by_row.output
    unknown = cli.invoke(app, ["predict", "no-such-model", "--row", one_row, "--workdir", str(loop.workdir)])
    assert unknown.exit_code == 1 and "no-such-model" in unknown.output
    # each upload's fate: this dataset was trained
    fates = cli.invoke(app, ["datasets", MODEL, "--workdir", str(loop.workdir)], env={"COLUMNS": "250"})
    assert fates.exit_code == 0 and "trained" in fates.output and MODEL in fates.output, fates.output

    def captured() -> list[str]:
        listing = loop.client().list_objects_v2(Bucket=loop.bucket("capture"), Prefix=f"datacapture/{MODEL}/")
        return [o["Key"] for o in listing.get("Contents", [])]

    keys = wait_until(captured, 30, "data capture files")
    line = loop.client().get_object(Bucket=loop.bucket("capture"), Key=keys[0])["Body"].read().splitlines()[0]
    record = json.loads(line)
    assert record["captureData"]["endpointInput"]["mode"] == "INPUT"
    assert record["eventMetadata"]["eventId"] and record["eventVersion"] == "0"


def _send_labelled(loop: control.TwinHandle, frame: pd.DataFrame, tag: str) -> None:
    """Each row as its own request with an InferenceId, then its ground truth uploaded: new labelled data."""
    runtime = runtime_client(loop)
    features = feature_frame(frame, CONFIG)
    for i in range(len(frame)):
        runtime.invoke_endpoint(
            EndpointName=MODEL,
            ContentType="text/csv",
            InferenceId=f"{tag}-{i}",
            Body=features.iloc[i : i + 1].to_csv(header=False, index=False),
        )
    target = CONFIG.dataset.target
    truth = pd.DataFrame({"inference_id": [f"{tag}-{i}" for i in range(len(frame))], target: frame[target]})
    loop.client().put_object(
        Bucket=loop.bucket("incoming"),
        Key=f"ground-truth/{MODEL}/{tag}.csv",
        Body=truth.to_csv(index=False).encode(),
    )


def test_drifted_traffic_raises_the_alarm_and_the_retrained_model_is_deployed(loop: control.TwinHandle) -> None:
    runtime = runtime_client(loop)
    drifted_rows = generate(MODEL, "drifted", 2000, seed=5)
    drifted = feature_frame(drifted_rows, CONFIG)
    deployed_before = len([e for e in _deployments(loop) if e["status"] == "SUCCEEDED"])
    # the retrain needs something new to learn: ground truth for part of the drifted traffic
    _send_labelled(loop, drifted_rows.iloc[:300], "drifted")
    deadline = time.monotonic() + 300
    sent = 0
    while time.monotonic() < deadline:
        chunk = drifted.iloc[(sent * 40) % 1960 : (sent * 40) % 1960 + 40]
        runtime.invoke_endpoint(
            EndpointName=MODEL, ContentType="text/csv", Body=chunk.to_csv(header=False, index=False)
        )
        sent += 1
        if len([e for e in _deployments(loop) if e["status"] == "SUCCEEDED"]) > deployed_before:
            break
        time.sleep(0.1)
    else:
        raise AssertionError("no new deployment within 300 s of drifted traffic")

    retrains = [
        e
        for e in control.load_executions(loop.workdir)
        if "Training" in e["state_machine_arn"] and (e["input"] or {}).get("trigger") == "alarm"
    ]
    trained = [e for e in retrains if "TrainModel" in entered_states(e["history"])]
    assert len(trained) == 1, "one drift episode starts one retrain"
    assert all(entered_states(e["history"])[-1] == "TrainingSkipped" for e in retrains if e not in trained)
    assert trained[0]["input"]["alarm"] in (f"mlops-{MODEL}-drift", f"mlops-{MODEL}-quality")
    first, newest = _packages(loop)[0], _packages(loop)[-1]
    assert newest["ModelApprovalStatus"] == "Approved"
    # it learnt from the labelled drifted traffic, so it is not the first model again
    lineage_bucket, lineage_key = newest["CustomerMetadataProperties"]["lineage"].removeprefix("s3://").split("/", 1)
    lineage = json.loads(loop.client().get_object(Bucket=lineage_bucket, Key=lineage_key)["Body"].read())
    assert 0 < lineage["labelled_capture"]["rows_added"] <= 300
    assert "newly labelled captured requests" in lineage["labelled_capture"]["new_information"]
    metrics = {k: v for k, v in newest["CustomerMetadataProperties"].items() if k.startswith("metric_")}
    assert metrics != {k: v for k, v in first["CustomerMetadataProperties"].items() if k.startswith("metric_")}
    assert serving_version(Platform.twin(loop.endpoint), MODEL) == str(newest["ModelPackageVersion"])
    notes = [json.loads(line) for line in (loop.workdir / "notifications.jsonl").read_text().splitlines()]
    assert any("retraining" in n["message"] for n in notes)
    assert any(f"v{newest['ModelPackageVersion']}" in n["message"] and "deployed" in n["message"] for n in notes)
    events = [json.loads(line) for line in (loop.workdir / "events.jsonl").read_text().splitlines()]
    alarm_changes = [
        e["event"]["detail"]
        for e in events
        if e["kind"] == "event" and e["event"]["detail-type"] == "CloudWatch Alarm State Change"
    ]
    assert any(d["alarmName"] == f"mlops-{MODEL}-drift" and d["state"]["value"] == "ALARM" for d in alarm_changes)


def test_worse_candidate_is_rejected_and_the_champion_keeps_serving(loop: control.TwinHandle, tmp_path: Path) -> None:
    frame = generate(MODEL, "good", 3000, seed=3)
    target = CONFIG.dataset.target
    frame[target] = np.random.default_rng(3).permutation(frame[target].to_numpy())  # labels carry no signal
    key = _upload(loop, frame, tmp_path, "shuffled-labels.csv")
    (validation,) = control.wait_for_executions(loop.workdir, key, machine="Validation", timeout_s=120)
    assert validation["status"] == "SUCCEEDED"  # the data is valid; the model trained on it is not good
    version = validation["output"]["dataset_version"]
    (training,) = control.wait_for_executions(loop.workdir, version, machine="Training", timeout_s=300)
    assert entered_states(training["history"])[-1] == "CandidateRejected"
    packages = _packages(loop)
    assert [p["ModelApprovalStatus"] for p in packages] == ["Approved", "Approved", "Rejected"]
    reason = packages[-1].get("ApprovalDescription", "")
    assert reason.startswith("gate failed") and "roc_auc" in reason, reason
    time.sleep(2)
    assert [e["status"] for e in _deployments(loop)] == ["SUCCEEDED", "SUCCEEDED"]
    assert serving_version(Platform.twin(loop.endpoint), MODEL) == "2"


def test_deployment_that_fails_health_checks_rolls_back(loop: control.TwinHandle) -> None:
    sm, s3 = loop.client("sagemaker"), loop.client()
    champion = _packages(loop)[1]
    broken = "training/broken/model.tar.gz"
    s3.put_object(Bucket=loop.bucket("artifacts"), Key=broken, Body=gzip.compress(b"not a tar archive"))
    container = dict(champion["InferenceSpecification"]["Containers"][0])
    container["ModelDataUrl"] = f"s3://{loop.bucket('artifacts')}/{broken}"
    sm.create_model_package(
        ModelPackageGroupName=MODEL,
        InferenceSpecification={**champion["InferenceSpecification"], "Containers": [container]},
        ModelApprovalStatus="Approved",
        CustomerMetadataProperties=champion["CustomerMetadataProperties"],
    )
    rolled_back = wait_until(
        lambda: [e for e in _deployments(loop) if e["status"] == "FAILED"],
        120,
        "the failed deployment",
    )
    assert rolled_back[0]["error"] == "DeploymentRolledBack", rolled_back[0].get("cause")
    assert "failed to start" in rolled_back[0]["cause"]
    assert serving_version(Platform.twin(loop.endpoint), MODEL) == "2"
    broken_package = _packages(loop)[-1]
    assert broken_package["ModelApprovalStatus"] == "Rejected"
    assert "rolled_back" in broken_package["ApprovalDescription"]
    rows = feature_frame(generate(MODEL, "good", 2, seed=12), CONFIG).to_csv(header=False, index=False)
    assert runtime_client(loop).invoke_endpoint(EndpointName=MODEL, ContentType="text/csv", Body=rows)["Body"].read()
    notes = (loop.workdir / "notifications.jsonl").read_text()
    assert "rolled back" in notes


def test_a_failed_endpoint_is_deleted_and_created_again(loop: control.TwinHandle) -> None:
    """Defect 7: SageMaker allows only DeleteEndpoint on a Failed endpoint; the next deployment deletes it first."""
    sm, s3, other = loop.client("sagemaker"), loop.client(), "diabetes-progression"  # no endpoint yet
    champion = _packages(loop)[1]["InferenceSpecification"]
    broken = "training/broken/model.tar.gz"
    s3.put_object(Bucket=loop.bucket("artifacts"), Key=broken, Body=gzip.compress(b"not a tar archive"))
    container = {**champion["Containers"][0], "ModelDataUrl": f"s3://{loop.bucket('artifacts')}/{broken}"}
    sm.create_model_package(
        ModelPackageGroupName=other,
        InferenceSpecification={**champion, "Containers": [container]},
        ModelApprovalStatus="Approved",
    )

    def deployments() -> list[dict[str, Any]]:
        return [e for e in _deployments(loop) if e["input"]["detail"]["ModelPackageGroupName"] == other]

    (failed,) = wait_until(lambda: [e for e in deployments() if e["status"] == "FAILED"], 120, "the failed creation")
    assert sm.describe_endpoint(EndpointName=other)["EndpointStatus"] == "Failed", failed.get("cause")
    sm.create_model_package(
        ModelPackageGroupName=other, InferenceSpecification=champion, ModelApprovalStatus="Approved"
    )
    done = wait_until(lambda: [e for e in deployments() if e["status"] == "SUCCEEDED"], 180, "the second deployment")
    assert "CreateEndpoint" in entered_states(done[0]["history"])
    assert sm.describe_endpoint(EndpointName=other)["EndpointStatus"] == "InService"
