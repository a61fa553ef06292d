"""Shared set-up of the training-step tests (moto): buckets, registry, and real executions as lock owners."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

import boto3

from examples.generate_data import generate
from mlops.services.training import TrainingSettings, TrainingSteps

MODEL = "tumor-classifier"
BUCKETS = ("validated-bkt", "artifacts-bkt", "assets-bkt", "capture-bkt", "incoming-bkt")
SETTINGS = TrainingSettings(
    "validated-bkt",
    "artifacts-bkt",
    "s3://assets-bkt/code.tar.gz",
    "abc123",
    "img:1",
    capture_bucket="capture-bkt",
    incoming_bucket="incoming-bkt",
)


@dataclass
class Machine:
    """The training state machine on moto: its executions own the lock while they are RUNNING."""

    sfn: Any
    arn: str

    def run(self, name: str) -> str:
        return str(self.sfn.start_execution(stateMachineArn=self.arn, name=name, input="{}")["executionArn"])

    def end(self, execution_arn: str) -> None:
        self.sfn.stop_execution(executionArn=execution_arn, error="Test", cause="stopped by the test")

    def started(self) -> list[dict[str, Any]]:
        """Executions other than the test's own, with their input (follow-up runs)."""
        found = self.sfn.list_executions(stateMachineArn=self.arn)["executions"]
        described = [self.sfn.describe_execution(executionArn=e["executionArn"]) for e in found]
        return [{**d, "input": json.loads(d["input"])} for d in described if d["input"] != "{}"]


def training_world(s3: Any, settings: TrainingSettings = SETTINGS) -> tuple[TrainingSteps, Machine]:
    for bucket in BUCKETS:
        s3.create_bucket(Bucket=bucket)
    sm = boto3.client("sagemaker", region_name="us-east-1")
    sm.create_model_package_group(ModelPackageGroupName=MODEL)
    sfn = boto3.client("stepfunctions", region_name="us-east-1")
    arn = sfn.create_state_machine(
        name="TrainingStateMachine",
        definition=json.dumps({"StartAt": "A", "States": {"A": {"Type": "Pass", "End": True}}}),
        roleArn="arn:aws:iam::123456789012:role/training",
    )["stateMachineArn"]
    return TrainingSteps(s3, sm, settings, sfn), Machine(sfn, arn)


def validated(s3: Any, version: str, rows: int = 300, seed: int = 2) -> dict[str, Any]:
    """A validated dataset in the bucket; returns the "Dataset Validated" event for it (plus its hash)."""
    body = generate(MODEL, "good", rows, seed=seed).to_csv(index=False, lineterminator="\n").encode()
    prefix = f"validated/{MODEL}/{version}"
    s3.put_object(Bucket="validated-bkt", Key=f"{prefix}/data.csv", Body=body)
    sha = hashlib.sha256(body).hexdigest()
    manifest = {
        "report_uri": f"s3://artifacts-bkt/reports/{MODEL}/{version}/validation.json",
        "source": {"sha256": sha},
    }
    s3.put_object(Bucket="validated-bkt", Key=f"{prefix}/manifest.json", Body=json.dumps(manifest).encode())
    return {
        "status": "passed",
        "model": MODEL,
        "dataset_version": version,
        "validated_uri": f"s3://validated-bkt/{prefix}/data.csv",
        "sha256": sha,
    }


def evaluation(s3: Any, run: dict[str, Any], candidate: dict[str, float], champion: dict[str, float] | None) -> None:
    key = run["evaluation_uri"].split("/", 3)[3] + "/evaluation.json"
    s3.put_object(Bucket="artifacts-bkt", Key=key, Body=json.dumps({"candidate": candidate, "champion": champion}))


def register_approved(steps: TrainingSteps, s3: Any, run: dict[str, Any], execution: str) -> dict[str, Any]:
    """Evaluate (a passing candidate), register and finish ``run``: it becomes the champion."""
    from mlops.settings import model_config

    evaluation(s3, run, {"roc_auc": 0.97, "f1": 0.93, "accuracy": 0.92}, None)
    gate = steps.evaluate_gate(run, model_config(MODEL))
    artifact = f"training/{MODEL}/{run['run_id']}/output/model.tar.gz"
    s3.put_object(Bucket="artifacts-bkt", Key=artifact, Body=b"model " + run["run_id"].encode())
    job = {
        "TrainingJobName": run["training_job_name"],
        "ModelArtifacts": {"S3ModelArtifacts": f"s3://artifacts-bkt/{artifact}"},
    }
    registration = steps.register(run, job, gate)
    steps.finish(run, execution, {"status": "registered", "gate": gate, "registration": registration})
    return registration
