"""Data landing in S3 is validated by the synthesized app running on the twin."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from examples.generate_data import generate, write_csv
from mlops.synth import synthesize
from mlops.twin import control
from mlops.twin.daemon import outputs
from mlops.twin.runtime import Twin
from mlops.twin.stepfunctions.asl.history import entered_states

from .conftest import TIME_SCALE, copy_app

pytestmark = pytest.mark.e2e
MODEL = "tumor-classifier"


def _keys(handle: control.TwinHandle, role: str) -> list[str]:
    s3 = handle.client()
    return sorted(o["Key"] for o in s3.list_objects_v2(Bucket=handle.bucket(role)).get("Contents", []))


def _upload(handle: control.TwinHandle, path: Path, name: str) -> str:
    key = f"incoming/{MODEL}/{name}"
    handle.client().upload_file(str(path), handle.bucket("incoming"), key)
    return key


def _validation(handle: control.TwinHandle, key: str) -> dict[str, Any]:
    executions = control.wait_for_executions(handle.workdir, key, timeout_s=180)
    machines = {e["state_machine_arn"].rsplit(":", 1)[-1] for e in executions}
    assert len(executions) == 1, f"expected one validation execution for {key}, got {machines}"
    return executions[0]


def test_good_and_bad_uploads_with_boto3(twin: control.TwinHandle, tmp_path: Path) -> None:
    good = write_csv(generate(MODEL, "good", 2000, seed=4), tmp_path / "good.csv")
    bad = write_csv(generate(MODEL, "bad", 2000, seed=4), tmp_path / "bad.csv")
    good_key, bad_key = _upload(twin, good, "good.csv"), _upload(twin, bad, "bad.csv")

    passed = _validation(twin, good_key)
    assert passed["status"] == "SUCCEEDED"
    assert entered_states(passed["history"]) == [
        "ValidateDataset",
        "DatasetPassed?",
        "PublishDatasetValidated",
        "ValidationPassed",
    ]
    assert passed["output"]["status"] == "passed"
    version = passed["output"]["dataset_version"]
    assert f"validated/{MODEL}/{version}/data.csv" in _keys(twin, "validated")
    assert f"validated/{MODEL}/{version}/profile.json" in _keys(twin, "validated")

    failed = _validation(twin, bad_key)
    assert failed["status"] == "FAILED"
    assert failed["error"] == "DatasetRejected"
    assert "mean_radius" in failed["cause"] and "s3://" in failed["cause"]
    assert entered_states(failed["history"]) == ["ValidateDataset", "DatasetPassed?", "ValidationFailed"]
    quarantined = _keys(twin, "quarantine")
    assert any(k.endswith("/bad.csv") for k in quarantined) and any(k.endswith("/report.json") for k in quarantined)
    assert bad_key not in _keys(twin, "incoming")  # moved, and the version is kept in the bucket
    report_key = next(k for k in _keys(twin, "artifacts") if k.endswith("validation.json") and version not in k)
    report = json.loads(twin.client().get_object(Bucket=twin.bucket("artifacts"), Key=report_key)["Body"].read())
    assert {v["rule"] for v in report["violations"]} >= {"min", "allowed", "null", "type", "duplicate_rows"}


def test_upload_with_the_aws_cli(twin: control.TwinHandle, tmp_path: Path) -> None:
    good = write_csv(generate(MODEL, "good", 500, seed=6), tmp_path / "cli.csv")
    dest = f"s3://{twin.bucket('incoming')}/incoming/{MODEL}/cli.csv"
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": "twin",
        "AWS_SECRET_ACCESS_KEY": "twin",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    aws = Path(sys.executable).with_name("aws")
    subprocess.run([str(aws), "--endpoint-url", twin.endpoint, "s3", "cp", str(good), dest], check=True, env=env)
    execution = _validation(twin, f"incoming/{MODEL}/cli.csv")
    assert execution["status"] == "SUCCEEDED"


def test_duplicate_event_validates_once(cdk_out: Path, tmp_path: Path) -> None:
    """EventBridge delivers at least once: the same S3 event twice does one validation."""
    twin = Twin(cdk_out, tmp_path / "twin", time_scale=TIME_SCALE)
    twin.start()
    try:
        good = write_csv(generate(MODEL, "good", 300, seed=8), tmp_path / "dup.csv")
        bucket = outputs(twin)["MlopsData.IncomingBucketName"]
        twin.client("s3").upload_file(str(good), bucket, f"incoming/{MODEL}/dup.csv")
        assert twin.wait_idle(600)  # the upload trains and deploys too: jobs in the image environments
        (first,) = [
            e
            for e in twin.engine.list_executions()
            if "Validation" in e.state_machine_arn and "dup.csv" in json.dumps(e.input)
        ]
        twin.emit(first.input)  # the very same event, redelivered
        assert twin.wait_idle(600)  # the upload trains and deploys too: jobs in the image environments
        runs = [e for e in twin.engine.list_executions() if "dup.csv" in json.dumps(e.input)]
        validations = [e for e in runs if "Validation" in e.state_machine_arn]
        assert len(validations) == 2
        assert all(e.status == "SUCCEEDED" for e in validations)
        states = sorted(tuple(entered_states(e.history)) for e in validations)
        assert states[0][-1] == "AlreadyValidated" or states[1][-1] == "AlreadyValidated"
        assert sum(s[-1] == "ValidationPassed" for s in states) == 1
        listing = twin.client("s3").list_objects_v2(Bucket=outputs(twin)["MlopsData.ValidatedBucketName"])
        promoted = [o["Key"] for o in listing.get("Contents", []) if o["Key"].endswith("data.csv")]
        assert len(promoted) == 1
    finally:
        twin.stop()


def test_changing_the_stack_code_changes_what_the_twin_runs(tmp_path: Path) -> None:
    app = copy_app(tmp_path / "app")
    stack = app / "stacks" / "validation_stack.py"
    source = stack.read_text()
    chain = "start=validate.next(routed)"
    assert chain in source, "the validation stack chains its Lambda task into the routing Choice"
    # a Pass state between the Lambda task and the Choice, in the (copied) stack code only
    stack.write_text(source.replace(chain, 'start=validate.next(sfn.Pass(self, "AuditTrail")).next(routed)'))
    out = tmp_path / "cdk.out"
    synthesize(app, out)
    workdir = tmp_path / "twin"
    handle = control.start(out, workdir, port=0, time_scale=TIME_SCALE)
    try:
        good = write_csv(generate(MODEL, "good", 300, seed=9), tmp_path / "audit.csv")
        key = _upload(handle, good, "audit.csv")
        execution = _validation(handle, key)
        assert execution["status"] == "SUCCEEDED"
        assert entered_states(execution["history"]) == [
            "ValidateDataset",
            "AuditTrail",
            "DatasetPassed?",
            "PublishDatasetValidated",
            "ValidationPassed",
        ]
    finally:
        control.stop(workdir)
