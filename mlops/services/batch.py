"""Batch scoring of a file uploaded under ``batch/<model>/``: the steps around the batch transform.

``prepare`` (before the transform): reads the uploaded object version, checks it against the
model's feature columns (:mod:`mlops.core.batch`), and either refuses it with a report naming
the column, or writes the transform input and the passthrough columns under the run's prefix and
returns the complete CreateTransformJob request for the champion: the model the endpoint serves
(the deploy machine's SageMaker model), else one created for the latest Approved package.
``finish`` (after it): joins the transform's output with the passthrough columns into
``predictions.csv``, writes the scored rows as data capture (so the drift monitor reads them as it
reads captured requests) and the run's ``report.json``; or, when the transform failed, a report
saying so. Every run's files are under ``s3://<artifacts>/batch/<model>/<run>/``.

A run is named after the uploaded object version, so the same S3 event delivered twice scores once.
"""

from __future__ import annotations

import hashlib
import json
import re
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from mlops import env_names as E
from mlops.config import ModelConfig
from mlops.core import batch as core
from mlops.naming import CAPTURE_PREFIX, batch_run_prefix, endpoint_name
from mlops.s3io import S3Location, S3StreamWriter, download_with_sha256, error_code, get_json, put_json
from mlops.services.monitoring import PACKAGE_TAG, tagged_package

# The environment the batch Lambdas read, by setting (names from mlops.env_names, which the stack sets).
ENV = {
    "incoming_bucket": E.INCOMING_BUCKET,
    "artifacts_bucket": E.ARTIFACTS_BUCKET,
    "capture_bucket": E.CAPTURE_BUCKET,
    "kms_key_arn": E.KMS_KEY_ARN,
    "execution_role_arn": E.SAGEMAKER_ROLE_ARN,
}
FEATURES_FILE = "input/features.csv"  # the transform's input object, under the run's prefix
OUTPUT_FILE = "output/features.csv.out"  # what the transform writes for it (S3OutputPath + name + .out)
PASSTHROUGH_FILE = "passthrough.csv"
PREDICTIONS_FILE = "predictions.csv"
REPORT_FILE = "report.json"
CAPTURE_ROWS = 1000  # scored rows per data-capture record
PAYLOAD_MB = 6  # MaxPayloadInMB: a mini-batch of lines, as an InvokeEndpoint request may carry


@dataclass(frozen=True)
class BatchSettings:
    incoming_bucket: str
    artifacts_bucket: str
    capture_bucket: str
    kms_key_arn: str
    execution_role_arn: str

    @classmethod
    def from_env(cls, env: dict[str, str]) -> BatchSettings:
        missing = [v for v in ENV.values() if not env.get(v)]
        if missing:
            raise RuntimeError(f"missing environment variables: {', '.join(missing)}")
        return cls(**{k: env[v] for k, v in ENV.items()})


class NoChampion(LookupError):
    """The model has no approved version to score with."""


def run_name(key: str, version_id: str | None) -> str:
    """A run per uploaded object version: a readable stem and a hash of key and version."""
    stem = re.sub(r"[^a-zA-Z0-9-]", "-", key.rsplit("/", 1)[-1].split(".", 1)[0])[:24].strip("-") or "file"
    digest = hashlib.sha256(f"{key}\0{version_id or ''}".encode()).hexdigest()[:10]
    return f"{stem}-{digest}"


def transform_job_name(model: str, run: str) -> str:
    return re.sub(r"[^a-zA-Z0-9-]", "-", f"{model}-{run}")[:63]


def report_location(artifacts_bucket: str, model: str, run: str) -> S3Location:
    return S3Location(artifacts_bucket, batch_run_prefix(model, run) + REPORT_FILE)


class BatchScorer:
    def __init__(self, s3: Any, sagemaker: Any, settings: BatchSettings) -> None:
        self.s3 = s3
        self.sm = sagemaker
        self.settings = settings

    def _loc(self, model: str, run: str, name: str) -> S3Location:
        if name == REPORT_FILE:
            return report_location(self.settings.artifacts_bucket, model, run)
        return S3Location(self.settings.artifacts_bucket, batch_run_prefix(model, run) + name)

    # -- before the transform ---------------------------------------------------------------
    def prepare(self, key: str, version_id: str | None, config: ModelConfig) -> dict[str, Any]:
        """``action``: ``score`` (with ``transform_request``), ``refuse`` (a report says why) or ``skip``."""
        run = run_name(key, version_id)
        source = {"bucket": self.settings.incoming_bucket, "key": key, "version_id": version_id}
        base = {"model": config.name, "run": run, "source": source, "started_at": time.time()}
        report_loc = self._loc(config.name, run, REPORT_FILE)
        if get_json(self.s3, report_loc) is not None:  # this object version was scored (or refused) already
            return {**base, "action": "skip", "report_uri": report_loc.uri, "summary": f"{key}: already scored"}
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "upload"
            sha = download_with_sha256(self.s3, self.settings.incoming_bucket, key, version_id, path)
            source["sha256"] = sha
            features_path, passthrough_path = Path(tmp) / "features.csv", Path(tmp) / "passthrough.csv"
            try:
                with features_path.open("wb") as feats, passthrough_path.open("wb") as ids:
                    prepared = core.prepare_batch(path, config.dataset, feats, ids)
            except core.Unsupported as exc:
                return self._refuse(base, [core.Problem("", "format", str(exc))], None)
            if not prepared.accepted:
                return self._refuse(base, prepared.problems, prepared)
            try:
                model_name, package_arn = self.champion(config)
            except NoChampion as exc:
                return self._refuse(base, [core.Problem("", "model", str(exc))], prepared)
            input_loc = self._loc(config.name, run, FEATURES_FILE)
            self.s3.upload_file(str(features_path), input_loc.bucket, input_loc.key)
            if prepared.passthrough:
                ids_loc = self._loc(config.name, run, PASSTHROUGH_FILE)
                self.s3.upload_file(str(passthrough_path), ids_loc.bucket, ids_loc.key)
        job = transform_job_name(config.name, run)
        prefix = f"s3://{self.settings.artifacts_bucket}/{batch_run_prefix(config.name, run)}"
        return {
            **base,
            "action": "score",
            "rows": prepared.rows,
            "format": prepared.format,
            "features": prepared.features,
            "passthrough": prepared.passthrough,
            "model_name": model_name,
            "package_arn": package_arn,
            "transform_job_name": job,
            "transform_request": {
                "TransformJobName": job,
                "ModelName": model_name,
                "BatchStrategy": "MultiRecord",
                "MaxPayloadInMB": PAYLOAD_MB,
                "TransformInput": {
                    "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": prefix + FEATURES_FILE}},
                    "ContentType": "text/csv",
                    "SplitType": "Line",
                    "CompressionType": "None",
                },
                "TransformOutput": {
                    "S3OutputPath": prefix + "output/",
                    "Accept": "text/csv",
                    "AssembleWith": "Line",
                    "KmsKeyId": self.settings.kms_key_arn,
                },
                "TransformResources": {
                    "InstanceType": config.endpoint.instance_type,
                    "InstanceCount": 1,
                    "VolumeKmsKeyId": self.settings.kms_key_arn,
                },
                "Tags": [{"Key": "mlops:model", "Value": config.name}],
            },
        }

    def _refuse(
        self, base: dict[str, Any], problems: list[core.Problem], prepared: core.Prepared | None
    ) -> dict[str, Any]:
        summary = f"batch file {base['source']['key']} refused: " + "; ".join(p.message for p in problems)
        report = {
            **base,
            "status": "refused",
            "problems": [p.to_dict() for p in problems],
            "rows": None if prepared is None else prepared.rows,
            "format": None if prepared is None else prepared.format,
            "summary": summary,
            "finished_at": time.time(),
        }
        loc = self._loc(base["model"], base["run"], REPORT_FILE)
        put_json(self.s3, loc, report)
        return {**base, "action": "refuse", "report_uri": loc.uri, "summary": summary}

    def champion(self, config: ModelConfig) -> tuple[str, str | None]:
        """(SageMaker model, package): what the endpoint serves, else the latest Approved package's model."""
        served = self._served_model(config)
        if served is not None:
            return served
        listed = self.sm.list_model_packages(
            ModelPackageGroupName=config.name,
            ModelApprovalStatus="Approved",
            SortBy="CreationTime",
            SortOrder="Descending",
            MaxResults=1,
        ).get("ModelPackageSummaryList", [])
        if not listed:
            raise NoChampion(f"model {config.name} has no Approved version to score with")
        package = self.sm.describe_model_package(ModelPackageName=listed[0]["ModelPackageArn"])
        arn = str(package["ModelPackageArn"])
        name = f"{config.name}-batch-v{package.get('ModelPackageVersion', 0)}"
        try:
            self.sm.describe_model(ModelName=name)
        except ClientError as exc:
            if error_code(exc) != "ValidationException":
                raise
            container = package["InferenceSpecification"]["Containers"][0]
            self.sm.create_model(
                ModelName=name,
                ExecutionRoleArn=self.settings.execution_role_arn,
                PrimaryContainer={
                    "Image": container["Image"],
                    "ModelDataUrl": container["ModelDataUrl"],
                    "Environment": container.get("Environment", {}),
                },
                Tags=[{"Key": PACKAGE_TAG, "Value": arn}, {"Key": "mlops:model", "Value": config.name}],
            )
        return name, arn

    def _served_model(self, config: ModelConfig) -> tuple[str, str | None] | None:
        try:
            endpoint = self.sm.describe_endpoint(EndpointName=endpoint_name(config.name))
        except ClientError as exc:
            if error_code(exc) == "ValidationException":  # no endpoint
                return None
            raise
        if endpoint.get("EndpointStatus") not in ("InService", "Updating", "SystemUpdating"):
            return None
        serving = self.sm.describe_endpoint_config(EndpointConfigName=endpoint["EndpointConfigName"])
        variants = serving.get("ProductionVariants", [])
        if not variants:
            return None
        variant = max(variants, key=lambda v: float(v.get("InitialVariantWeight", 1.0)))
        return str(variant["ModelName"]), tagged_package(self.sm, endpoint["EndpointArn"])

    # -- after the transform ------------------------------------------------------------------
    def finish(self, plan: dict[str, Any], config: ModelConfig, error: dict[str, Any] | None = None) -> dict[str, Any]:
        """The run's report (and, when the transform completed, its predictions and capture)."""
        model, run = plan["model"], plan["run"]
        report: dict[str, Any] = {
            key: plan.get(key)
            for key in ("model", "run", "source", "rows", "format", "features", "passthrough", "model_name")
        }
        report.update(package_arn=plan.get("package_arn"), transform_job_name=plan.get("transform_job_name"))
        loc = self._loc(model, run, REPORT_FILE)
        if error is not None:
            cause = _cause(error)
            summary = f"batch scoring of {plan['source']['key']} failed: {cause}"
            report.update(status="failed", error=error.get("Error"), cause=cause, summary=summary)
        else:
            predictions = self._loc(model, run, PREDICTIONS_FILE)
            rows = self._join(plan, config, predictions)
            captured = self._capture(plan, config)
            seconds = round(time.time() - float(plan.get("started_at", time.time())), 1)
            summary = f"batch {plan['source']['key']}: {rows:,} rows scored by {plan['model_name']} in {seconds} s"
            report.update(
                status="scored",
                predictions_uri=predictions.uri,
                predicted_rows=rows,
                capture_uri=captured,
                seconds=seconds,
                summary=summary + f"; predictions at {predictions.uri}",
            )
        report["finished_at"] = time.time()
        put_json(self.s3, loc, report)
        keys = ("status", "summary", "predictions_uri", "model", "run")
        return {"report_uri": loc.uri, **{k: report.get(k) for k in keys}}

    def _lines(self, loc: S3Location) -> Iterator[str]:
        """The object's lines, split at newlines only (``iter_lines`` also splits at \\r and other breaks)."""
        body = self.s3.get_object(Bucket=loc.bucket, Key=loc.key)["Body"]
        pending = b""
        for chunk in body.iter_chunks(1 << 20):
            *lines, pending = (pending + chunk).split(b"\n")
            for line in lines:
                yield line.decode("utf-8") + "\n"
        if pending:
            yield pending.decode("utf-8") + "\n"

    def _join(self, plan: dict[str, Any], config: ModelConfig, out: S3Location) -> int:
        model, run = plan["model"], plan["run"]
        outputs = self._lines(self._loc(model, run, OUTPUT_FILE))
        ids = self._lines(self._loc(model, run, PASSTHROUGH_FILE)) if plan.get("passthrough") else iter(())
        target = config.dataset.target_column
        classes = list(target.allowed) if getattr(target, "allowed", None) else None
        with tempfile.NamedTemporaryFile("w+", suffix=".csv", encoding="utf-8") as tmp:
            rows = core.join_predictions(ids, outputs, tmp, classes=classes)
            if rows != plan.get("rows"):
                raise core.CountMismatch(f"the transform returned {rows:,} predictions for {plan.get('rows'):,} rows")
            tmp.flush()
            self.s3.upload_file(tmp.name, out.bucket, out.key)
        return rows

    def _capture(self, plan: dict[str, Any], config: ModelConfig) -> str:
        """The scored rows as data capture under the model's endpoint, where the monitor reads requests."""
        model, run = plan["model"], plan["run"]
        now = datetime.now(UTC)
        key = f"{CAPTURE_PREFIX}/{endpoint_name(model)}/batch/{now:%Y/%m/%d/%H}/{run}.jsonl"
        loc = S3Location(self.settings.capture_bucket, key)
        inputs = self._lines(self._loc(model, run, FEATURES_FILE))
        outputs = self._lines(self._loc(model, run, OUTPUT_FILE))
        features = list(plan["features"])
        with S3StreamWriter(self.s3, loc) as writer:
            rows: list[str] = []
            preds: list[str] = []
            for row, pred in zip(inputs, outputs, strict=False):
                rows.append(row)
                preds.append(pred)
                if len(rows) == CAPTURE_ROWS:
                    writer.write((core.capture_record(features, rows, preds, now) + "\n").encode())
                    rows, preds = [], []
            if rows:
                writer.write((core.capture_record(features, rows, preds, now) + "\n").encode())
        return loc.uri


def _cause(error: dict[str, Any]) -> str:
    """The readable part of a Catch's error: a failed job's FailureReason, else the error and its cause."""
    name, cause = str(error.get("Error", "unknown error")), str(error.get("Cause", ""))
    try:
        described = json.loads(cause)
    except ValueError:
        return f"{name}: {cause}" if cause else name
    if isinstance(described, dict) and (described.get("FailureReason") or described.get("errorMessage")):
        return str(described.get("FailureReason") or described.get("errorMessage"))
    return f"{name}: {cause}"
