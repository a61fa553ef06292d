"""The steps of the training state machine that are not SageMaker jobs.

- ``prepare``: one training at a time per model (an S3 conditional-write lock), pick
  the dataset (the one just validated, or the newest for a retrain), for an
  alarm-triggered retrain append the labelled captured requests (endpoint data capture
  joined with uploaded ground truth by inference id), split it deterministically into
  train/validation/test, find the current champion, and return everything the
  SageMaker tasks need.
- ``register``: record the candidate in the model's Model Package Group with its
  metrics, gate decision and full lineage; Approved, PendingManualApproval or Rejected.
- ``finish``: release the lock and write the run's report (also on failure).
"""

from __future__ import annotations

import csv
import json
import logging
import math
import random
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from mlops.config import Column, ColumnType, ModelConfig
from mlops.core import capture as cap
from mlops.core.gate import decide
from mlops.core.types import DEFAULT_NA_VALUES, TypeMismatch, allowed_values, parse_value
from mlops.naming import CAPTURE_PREFIX, endpoint_name
from mlops.s3io import (
    S3Location,
    download_with_sha256,
    get_json,
    put_json,
    put_json_if_absent,
    replace_json_if_unchanged,
    sha256_file,
)

SPLITS = ("train", "validation", "test")
CANONICAL_DELIMITER = ","  # validated data is canonical CSV (mlops.core.canonical), whatever the upload was

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainingSettings:
    """What the stack tells the training Lambdas (environment variables)."""

    validated_bucket: str
    artifacts_bucket: str
    code_uri: str  # the sourcedir.tar.gz asset holding pipelines/ and mlops/
    code_hash: str
    image_uri: str
    region: str = "us-east-1"
    # optional: where alarm-triggered retrains find labelled captured requests (unset: not used)
    capture_bucket: str | None = None
    incoming_bucket: str | None = None
    capture_prefix: str = CAPTURE_PREFIX

    @classmethod
    def from_env(cls, env: dict[str, str]) -> TrainingSettings:
        keys = {
            "validated_bucket": "VALIDATED_BUCKET",
            "artifacts_bucket": "ARTIFACTS_BUCKET",
            "code_uri": "CODE_URI",
            "code_hash": "CODE_HASH",
            "image_uri": "TRAINING_IMAGE_URI",
        }
        missing = [v for v in keys.values() if not env.get(v)]
        if missing:
            raise RuntimeError(f"missing environment variables: {', '.join(missing)}")
        return cls(
            **{k: env[v] for k, v in keys.items()},
            region=env.get("AWS_REGION", "us-east-1"),
            capture_bucket=env.get("CAPTURE_BUCKET") or None,
            incoming_bucket=env.get("INCOMING_BUCKET") or None,
            capture_prefix=env.get("CAPTURE_PREFIX") or CAPTURE_PREFIX,
        )


def split_file(source: Path, out_dir: Path, validation: float, test: float, seed: int) -> dict[str, Any]:
    """Assign each data row to train/validation/test with a seeded RNG, streaming line by line.

    Same file + same seed = same split, so a run can be reproduced from its data version.
    """
    rng = random.Random(seed)
    counts = dict.fromkeys(SPLITS, 0)
    files = {}
    for name in SPLITS:
        (out_dir / name).mkdir(parents=True, exist_ok=True)
        files[name] = (out_dir / name / "data.csv").open("w", encoding="utf-8", newline="")
    try:
        with source.open("r", encoding="utf-8-sig", newline="") as src:
            header = src.readline()
            for f in files.values():
                f.write(header)
            for line in src:
                if not line.strip():
                    continue
                draw = rng.random()
                name = "test" if draw < test else "validation" if draw < test + validation else "train"
                files[name].write(line)
                counts[name] += 1
    finally:
        for f in files.values():
            f.close()
    return {"method": "seeded-random-per-row", "seed": seed, "validation": validation, "test": test, "rows": counts}


class _Unfit(ValueError):
    """A captured value that does not fit its contract column; ``args[0]`` names the drop reason."""


def coerce_value(column: Column, value: Any, na_values: tuple[str, ...] = DEFAULT_NA_VALUES) -> Any:
    """One raw captured value as the column's type (``mlops.core.types``), checked against its rules; raises _Unfit."""
    try:
        out = parse_value(column.type, value, na_values)
    except TypeMismatch:
        raise _Unfit("type") from None
    if out is None:
        if column.nullable:
            return None
        raise _Unfit("null")
    if column.min is not None and out < column.min:
        raise _Unfit("range")
    if column.max is not None and out > column.max:
        raise _Unfit("range")
    if column.allowed is not None and out not in allowed_values(column.type, column.allowed):
        raise _Unfit("allowed")
    return out


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class TrainingSteps:
    def __init__(self, s3: Any, sagemaker: Any, settings: TrainingSettings) -> None:
        self.s3 = s3
        self.sm = sagemaker
        self.settings = settings

    # -- lock --------------------------------------------------------------------------
    def _lock(self, model: str) -> S3Location:
        return S3Location(self.settings.artifacts_bucket, f"locks/training/{model}.json")

    def _take_lock(self, config: ModelConfig, execution_id: str) -> dict[str, Any] | None:
        """None when taken; else the holder's claim."""
        claim = {"execution_id": execution_id, "started_at": time.time()}
        lock = self._lock(config.name)
        if put_json_if_absent(self.s3, lock, claim):
            return None
        found = get_json(self.s3, lock)
        if found is None:
            return None if put_json_if_absent(self.s3, lock, claim) else {"execution_id": "unknown"}
        held, etag = found
        if held.get("execution_id") == execution_id:
            return None  # our own retry
        # A holder older than the longest possible run (training + evaluation + margin) is dead.
        stale_after = 2 * config.training.max_runtime_seconds + 3600
        if time.time() - float(held.get("started_at", 0)) > stale_after and replace_json_if_unchanged(
            self.s3, lock, claim, etag
        ):
            return None
        return held

    def release(self, model: str, execution_id: str) -> bool:
        found = get_json(self.s3, self._lock(model))
        if found is None or found[0].get("execution_id") != execution_id:
            return False  # not ours (or already released): never free someone else's lock
        self.s3.delete_object(Bucket=self.settings.artifacts_bucket, Key=self._lock(model).key)
        return True

    # -- dataset -------------------------------------------------------------------------
    def newest_dataset(self, model: str) -> dict[str, Any]:
        prefix = f"validated/{model}/"
        paginator = self.s3.get_paginator("list_objects_v2")
        versions = []
        for page in paginator.paginate(Bucket=self.settings.validated_bucket, Prefix=prefix, Delimiter="/"):
            versions += [p["Prefix"][len(prefix) : -1] for p in page.get("CommonPrefixes", [])]
        if not versions:
            raise LookupError(
                f"no validated dataset for model {model!r} under s3://{self.settings.validated_bucket}/{prefix}"
            )
        version = max(versions)  # versions start with a UTC timestamp: the max is the newest
        manifest, _ = get_json(self.s3, S3Location(self.settings.validated_bucket, f"{prefix}{version}/manifest.json"))
        return {
            "model": model,
            "dataset_version": version,
            "validated_uri": f"s3://{self.settings.validated_bucket}/{prefix}{version}/data.csv",
            "profile_uri": f"s3://{self.settings.validated_bucket}/{prefix}{version}/profile.json",
            "report_uri": manifest.get("report_uri"),
            "sha256": manifest.get("source", {}).get("sha256"),
            "source_uri": manifest.get("source", {}).get("uri"),
            "source_version_id": manifest.get("source", {}).get("version_id"),
            "source_parts": manifest.get("source", {}).get("parts"),
        }

    def champion(self, model: str) -> dict[str, Any] | None:
        found = self.sm.list_model_packages(
            ModelPackageGroupName=model,
            ModelApprovalStatus="Approved",
            SortBy="CreationTime",
            SortOrder="Descending",
            MaxResults=1,
        )["ModelPackageSummaryList"]
        if not found:
            return None
        package = self.sm.describe_model_package(ModelPackageName=found[0]["ModelPackageArn"])
        return {
            "model_package_arn": package["ModelPackageArn"],
            "version": package.get("ModelPackageVersion"),
            "model_data_url": package["InferenceSpecification"]["Containers"][0]["ModelDataUrl"],
        }

    # -- labelled capture (alarm-triggered retrains) -----------------------------------------
    def _append_labelled_capture(self, config: ModelConfig, data: Path, added: Path) -> dict[str, Any]:
        """Append the endpoint's captured requests that have a ground-truth label to ``data``.

        Captured features + the label become one row in the contract's columns (unique id
        columns get fresh ids above the dataset's largest). Requests without a label, with
        several rows (one label cannot name them all), repeated inference ids, unreadable
        capture lines and values that do not fit the contract are skipped and counted.
        The added rows are also written to ``added`` (with the header). Returns the summary.
        """
        s = self.settings
        info: dict[str, Any] = {"rows_added": 0}
        if not config.monitoring.retrain_with_labelled_capture:
            info["skipped"] = "monitoring.retrain_with_labelled_capture is false"
            return info
        if not (s.capture_bucket and s.incoming_bucket):
            info["skipped"] = "CAPTURE_BUCKET and INCOMING_BUCKET are not both set for the training functions"
            logger.info("labelled capture not used for %s: %s", config.name, info["skipped"])
            return info
        contract = config.dataset
        capture_prefix = f"{s.capture_prefix.strip('/')}/{endpoint_name(config.name)}/"
        info["capture_prefix"] = f"s3://{s.capture_bucket}/{capture_prefix}"
        info["ground_truth_prefix"] = f"s3://{s.incoming_bucket}/{cap.GROUND_TRUTH_PREFIX}/{config.name}/"
        features = [c.name for c in contract.features]
        candidates: list[tuple[str, dict[str, Any], str]] = []  # inference id, captured row, label
        seen: set[str] = set()
        counts = dict.fromkeys(("capture_objects", "capture_objects_used", "captured_requests", "unlabelled"), 0)
        dropped = dict.fromkeys(("unreadable_lines", "multi_row_requests", "repeated_inference_id"), 0)
        try:
            labels, problems, truth_keys = cap.read_ground_truth(
                self.s3, s.incoming_bucket, config.name, contract.target
            )
            info.update(ground_truth_objects=len(truth_keys), ground_truth_labels=len(labels))
            if problems:
                info["ground_truth_problems"] = problems[:20]
            objects = cap.list_objects(self.s3, s.capture_bucket, capture_prefix) if labels else []
            counts["capture_objects"] = len(objects)
            for obj in objects:
                requests, unreadable = cap.parse_lines(cap.read_lines(self.s3, s.capture_bucket, obj["Key"]), features)
                dropped["unreadable_lines"] += unreadable
                counts["captured_requests"] += len(requests)
                used = False
                for req in requests:
                    if req.inference_id is None or req.inference_id not in labels:
                        counts["unlabelled"] += 1
                    elif req.inference_id in seen:
                        dropped["repeated_inference_id"] += 1
                    elif len(req.rows) != 1:
                        dropped["multi_row_requests"] += 1
                    else:
                        seen.add(req.inference_id)
                        candidates.append((req.inference_id, req.rows[0], labels[req.inference_id]))
                        used = True
                counts["capture_objects_used"] += used
        except ClientError as exc:
            info["skipped"] = f"could not read capture or ground truth: {exc}"
            logger.warning("labelled capture not used for %s: %s", config.name, info["skipped"])
            return info
        with data.open("r", encoding="utf-8-sig", newline="") as f:
            header = next(csv.reader(f, delimiter=CANONICAL_DELIMITER), [])
        specs = {c.name: c for c in contract.columns}
        na_values = tuple(contract.na_values)
        ids = [
            specs[n] for n in header if n in specs and specs[n].unique and not specs[n].feature and n != contract.target
        ]
        next_id = self._next_ids(data, header, ids, CANONICAL_DELIMITER) if candidates else {}
        rows: list[list[str]] = []
        for inference_id, raw, label in candidates:
            values: dict[str, Any] = {}
            try:
                for name in header:
                    column = specs.get(name)
                    if column is None:
                        values[name] = None
                    elif name == contract.target:
                        values[name] = coerce_value(column, label, na_values)
                    elif column in ids:
                        values[name] = next_id.get(name, f"capture-{inference_id}")
                    else:
                        values[name] = coerce_value(column, raw.get(name), na_values)
            except _Unfit as why:
                key = f"{why.args[0]}_errors"
                dropped[key] = dropped.get(key, 0) + 1
                continue
            for name in next_id:
                next_id[name] += 1
            rows.append([_cell(values[n]) for n in header])
        if rows:
            with data.open("rb") as f:
                ends_open = f.seek(0, 2) > 0 and f.seek(-1, 2) >= 0 and f.read(1) != b"\n"
            with data.open("a", encoding="utf-8", newline="") as f:
                if ends_open:
                    f.write("\n")
                csv.writer(f, delimiter=CANONICAL_DELIMITER, lineterminator="\n").writerows(rows)
            with added.open("w", encoding="utf-8", newline="") as f:
                writer = csv.writer(f, delimiter=CANONICAL_DELIMITER, lineterminator="\n")
                writer.writerow(header)
                writer.writerows(rows)
        info.update(rows_added=len(rows), labelled_requests=len(candidates), **counts, dropped=dropped)
        logger.info(
            "labelled capture for %s: %d rows added from %d of %d capture objects; dropped %s",
            config.name,
            len(rows),
            counts["capture_objects_used"],
            counts["capture_objects"],
            dropped,
        )
        return info

    @staticmethod
    def _next_ids(data: Path, header: list[str], ids: list[Column], delimiter: str) -> dict[str, int]:
        """For numeric unique id columns: the first id above every id in the data (and >= the column's min)."""
        numeric = {c.name: header.index(c.name) for c in ids if c.type in (ColumnType.INT, ColumnType.FLOAT)}
        if not numeric:
            return {}
        top: dict[str, float] = {}
        with data.open("r", encoding="utf-8-sig", newline="") as f:
            reader = csv.reader(f, delimiter=delimiter)
            next(reader, None)
            for row in reader:
                for name, i in numeric.items():
                    try:
                        value = float(row[i])
                    except (IndexError, ValueError):
                        continue
                    if math.isfinite(value) and value > top.get(name, -math.inf):
                        top[name] = value
        out = {}
        for column in ids:
            if column.name in numeric:
                floor = math.ceil(column.min) if column.min is not None else 0
                out[column.name] = max(floor, math.floor(top[column.name]) + 1 if column.name in top else floor)
        return out

    # -- steps ---------------------------------------------------------------------------
    def _cooldown(self, event: dict[str, Any], config: ModelConfig, execution_id: str) -> str | None:
        """For alarm-triggered retrains: one per cooldown window. The reason to skip, if any.

        A conditional write on the marker makes duplicate alarm events (or two alarms of one
        drift episode) start a single retrain.
        """
        if event.get("trigger") != "alarm":
            return None
        loc = S3Location(self.settings.artifacts_bucket, f"monitoring/{config.name}/retrain.json")
        cooldown = config.monitoring.retrain_cooldown_minutes * 60
        claim = {"started_at": time.time(), "execution_id": execution_id, "alarm": event.get("alarm")}
        found = get_json(self.s3, loc)
        if found is None:
            return None if put_json_if_absent(self.s3, loc, claim) else "another alarm started this retrain"
        last, etag = found
        if last.get("execution_id") == execution_id:
            return None  # our own retry
        age = time.time() - float(last.get("started_at", 0))
        if age < cooldown:
            return (
                f"retrain cooldown: the last one started {age / 60:.0f} min ago by {last.get('alarm')}; "
                f"cooldown is {config.monitoring.retrain_cooldown_minutes} min"
            )
        return None if replace_json_if_unchanged(self.s3, loc, claim, etag) else "another alarm started this retrain"

    def prepare(self, event: dict[str, Any], config: ModelConfig, execution_id: str) -> dict[str, Any]:
        cooldown = self._cooldown(event, config, execution_id)
        if cooldown is not None:
            return {"status": "busy", "model": config.name, "reason": cooldown}
        holder = self._take_lock(config, execution_id)
        if holder is not None:
            return {
                "status": "busy",
                "model": config.name,
                "reason": f"training for {config.name} already running in {holder.get('execution_id')}",
            }
        try:
            return self._prepare_locked(event, config, execution_id)
        except Exception:
            self.release(config.name, execution_id)
            raise

    def _prepare_locked(self, event: dict[str, Any], config: ModelConfig, execution_id: str) -> dict[str, Any]:
        dataset = dict(event) if event.get("validated_uri") else self.newest_dataset(config.name)
        now = datetime.now(UTC)
        run_id = f"{config.name}-{now.strftime('%Y%m%d-%H%M%S')}-{execution_id[-4:] if execution_id else '0000'}"
        run_id = run_id.replace(":", "-")
        base = S3Location(self.settings.artifacts_bucket, f"training/{config.name}/{run_id}")
        split = config.training.split
        src = S3Location.parse(dataset["validated_uri"])
        with tempfile.TemporaryDirectory() as tmp:
            local = Path(tmp) / "data.csv"
            sha = validated_sha = download_with_sha256(self.s3, src.bucket, src.key, None, local)
            capture = None
            if event.get("trigger") == "alarm":
                added = Path(tmp) / "labelled-capture.csv"
                capture = self._append_labelled_capture(config, local, added)
                if capture["rows_added"]:
                    sha = sha256_file(local)  # what is split is the validated data plus the added rows
                    key = f"{base.key}/labelled-capture/data.csv"
                    self.s3.upload_file(str(added), base.bucket, key)
                    capture["rows_uri"] = f"s3://{base.bucket}/{key}"
            summary = split_file(local, Path(tmp) / "split", split.validation, split.test, split.seed)
            for name in SPLITS:
                self.s3.upload_file(
                    str(Path(tmp) / "split" / name / "data.csv"), base.bucket, f"{base.key}/{name}/data.csv"
                )
        summary["data_sha256"] = sha
        if capture is not None:
            summary["validated_sha256"] = validated_sha
            summary["labelled_capture"] = capture
        if not dataset.get("sha256"):
            dataset["sha256"] = validated_sha  # no source hash recorded: the validated copy's
        dataset["validated_sha256"] = validated_sha  # canonical CSV: the upload's bytes, or its rewrite
        put_json(
            self.s3, S3Location(base.bucket, f"{base.key}/config/model-config.json"), config.model_dump(mode="json")
        )
        champion = self.champion(config.name)
        champion_prefix = f"{base.key}/champion"
        if champion:
            model_src = S3Location.parse(champion["model_data_url"])
            self.s3.copy(
                {"Bucket": model_src.bucket, "Key": model_src.key}, base.bucket, f"{champion_prefix}/model.tar.gz"
            )
        else:  # processing inputs must not be empty: a marker says "no champion yet"
            self.s3.put_object(Bucket=base.bucket, Key=f"{champion_prefix}/NO_CHAMPION", Body=b"")
        put_json(self.s3, S3Location(base.bucket, f"{base.key}/split.json"), summary)
        training = config.training
        hyperparameters = {
            k: json.dumps(v) if isinstance(v, bool) else str(v) for k, v in training.hyperparameters.items()
        }
        hyperparameters.update(
            sagemaker_program="train.py",
            sagemaker_submit_directory=self.settings.code_uri,
            sagemaker_region=self.settings.region,
        )
        return {
            "status": "ready",
            "model": config.name,
            "run_id": run_id,
            "training_job_name": run_id[:63],
            "processing_job_name": f"{run_id[:58]}-eval",
            "dataset": dataset,
            "split": summary,
            "channels": {name: f"s3://{base.bucket}/{base.key}/{name}/" for name in (*SPLITS, "config", "champion")},
            "hyperparameters": hyperparameters,
            "resources": {
                "instance_type": training.instance_type,
                "instance_count": training.instance_count,
                "volume_size_gb": training.volume_size_gb,
                "max_runtime_seconds": training.max_runtime_seconds,
                "use_spot": training.use_spot,
                "max_wait_seconds": training.max_runtime_seconds * 2,
            },
            "output_uri": f"s3://{base.bucket}/{base.key}/output",
            "evaluation_uri": f"s3://{base.bucket}/{base.key}/evaluation",
            "code_uri": self.settings.code_uri,
            "image_uri": self.settings.image_uri,
            "champion": champion,
        }

    def evaluate_gate(self, run: dict[str, Any], config: ModelConfig) -> dict[str, Any]:
        loc = S3Location.parse(run["evaluation_uri"].rstrip("/") + "/evaluation.json")
        found = get_json(self.s3, loc)
        if found is None:
            raise FileNotFoundError(f"evaluation output missing: {loc.uri}")
        evaluation = found[0]
        decision = decide(config.gate, config.approval, evaluation["candidate"], evaluation.get("champion"))
        return {**decision.to_dict(), "evaluation_json": loc.uri, "metrics": evaluation["candidate"]}

    def register(self, run: dict[str, Any], training_job: dict[str, Any], gate: dict[str, Any]) -> dict[str, Any]:
        model = run["model"]
        existing = self._package_for_run(model, run["run_id"])
        if existing:
            return existing  # a retried step: registered already
        model_data = training_job["ModelArtifacts"]["S3ModelArtifacts"]
        dataset = run["dataset"]
        lineage = {
            "run_id": run["run_id"],
            "data_uri": dataset.get("source_uri") or dataset.get("validated_uri"),
            "data_version_id": dataset.get("source_version_id"),
            "data_sha256": dataset.get("sha256"),
            # multi-part datasets: every part's key, version id, ETag, size and SHA-256 (data_sha256 covers them all)
            "data_parts": dataset.get("source_parts"),
            "data_format": dataset.get("format"),
            "rows_dropped": dataset.get("rows_dropped"),
            "validated_sha256": dataset.get("validated_sha256"),
            "dataset_version": dataset.get("dataset_version"),
            "validated_uri": dataset.get("validated_uri"),
            "profile_uri": dataset.get("profile_uri"),
            "validation_report": dataset.get("report_uri"),
            "training_job": training_job.get("TrainingJobName"),
            "code_uri": run["code_uri"],
            "code_hash": self.settings.code_hash,
            "hyperparameters": {k: v for k, v in run["hyperparameters"].items() if not k.startswith("sagemaker_")},
            "split": run["split"],
            "labelled_capture": run["split"].get("labelled_capture"),
            "champion": run.get("champion"),
            "gate": {k: gate[k] for k in ("passed", "approval_status", "reasons", "checks")},
            "evaluation": gate["evaluation_json"],
        }
        lineage_loc = S3Location(self.settings.artifacts_bucket, f"training/{model}/{run['run_id']}/lineage.json")
        put_json(self.s3, lineage_loc, lineage)
        properties = {
            "run_id": run["run_id"],
            "lineage": lineage_loc.uri,
            "dataset_version": str(dataset.get("dataset_version")),
            "data_sha256": str(dataset.get("sha256")),
            "training_job": str(training_job.get("TrainingJobName")),
            "code_hash": self.settings.code_hash,
            **{f"metric_{k}": f"{v:.6g}" for k, v in gate["metrics"].items()},
        }
        description = gate["summary"][:1024]
        response = self.sm.create_model_package(
            ModelPackageGroupName=model,
            ModelPackageDescription=f"{model} trained on {dataset.get('dataset_version')} ({run['run_id']})",
            InferenceSpecification={
                "Containers": [
                    {
                        "Image": run["image_uri"],
                        "ModelDataUrl": model_data,
                        "Environment": {
                            "SAGEMAKER_PROGRAM": "inference.py",
                            "SAGEMAKER_SUBMIT_DIRECTORY": run["code_uri"],
                        },
                    }
                ],
                "SupportedContentTypes": ["text/csv", "application/json"],
                "SupportedResponseMIMETypes": ["application/json", "text/csv"],
            },
            ModelMetrics={
                "ModelQuality": {"Statistics": {"ContentType": "application/json", "S3Uri": gate["evaluation_json"]}}
            },
            ModelApprovalStatus=gate["approval_status"],
            CustomerMetadataProperties=properties,
            ClientToken=run["run_id"][:36],
        )
        arn = response["ModelPackageArn"]
        if gate["approval_status"] == "Rejected":
            self.sm.update_model_package(
                ModelPackageArn=arn, ModelApprovalStatus="Rejected", ApprovalDescription=description
            )
        return {"model_package_arn": arn, "approval_status": gate["approval_status"], "lineage": lineage_loc.uri}

    def _package_for_run(self, model: str, run_id: str) -> dict[str, Any] | None:
        paginator = self.sm.get_paginator("list_model_packages")
        for page in paginator.paginate(ModelPackageGroupName=model, SortBy="CreationTime", SortOrder="Descending"):
            for summary in page["ModelPackageSummaryList"][:20]:
                package = self.sm.describe_model_package(ModelPackageName=summary["ModelPackageArn"])
                if (package.get("CustomerMetadataProperties") or {}).get("run_id") == run_id:
                    return {
                        "model_package_arn": package["ModelPackageArn"],
                        "approval_status": package["ModelApprovalStatus"],
                        "lineage": package["CustomerMetadataProperties"].get("lineage"),
                    }
            break  # only the newest page can hold a run that is still in flight
        return None

    def finish(self, run: dict[str, Any], execution_id: str, outcome: dict[str, Any]) -> dict[str, Any]:
        """Release the lock and write the run report (success, rejection or failure)."""
        model = run.get("model", "unknown")
        report = {
            "model": model,
            "run_id": run.get("run_id"),
            "execution_id": execution_id,
            "finished_at": datetime.now(UTC).isoformat(),
            **outcome,
        }
        key = f"training/{model}/{run.get('run_id') or 'unknown-' + str(int(time.time()))}/report.json"
        put_json(self.s3, S3Location(self.settings.artifacts_bucket, key), report)
        released = self.release(model, execution_id)
        return {**report, "report_uri": f"s3://{self.settings.artifacts_bucket}/{key}", "lock_released": released}
