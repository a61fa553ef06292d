"""The steps of the training state machine that are not SageMaker jobs.

- ``prepare``: one training at a time per model (``execution_lock``: an S3 conditional-write
  lock naming its owner execution, free as soon as that execution is not RUNNING). A
  validated dataset is queued first (``fates``) and the run that holds the lock trains the
  newest queued dataset; a retrain takes the newest validated dataset and, when an alarm
  started it, appends the labelled captured requests (endpoint data capture joined with
  uploaded ground truth by inference id) and runs only if that teaches the champion
  something new (``retrain_policy``: cooldown and new information). The data is split
  deterministically into train/validation/test, streamed to S3, the champion is found,
  and everything the SageMaker tasks need is returned.
- ``register``: record the candidate in the model's Model Package Group with its
  metrics, gate decision and full lineage; Approved, PendingManualApproval or Rejected.
- ``finish``: write the run's report (also on failure), end the dataset's training,
  release the lock and start one follow-up run when datasets were queued meanwhile.
- ``reap``: the same ending for an execution that stopped without its last step.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import logging
import math
import random
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from mlops import env_names as E
from mlops.config import Column, ColumnType, ModelConfig
from mlops.core import capture as cap
from mlops.core.gate import decide
from mlops.core.types import DEFAULT_NA_VALUES, TypeMismatch, allowed_values, parse_value
from mlops.naming import CAPTURE_PREFIX, TRAINING_LOCKS, endpoint_name
from mlops.s3io import (
    S3Location,
    S3StreamWriter,
    download_with_sha256,
    error_code,
    get_json,
    put_json,
    sha256_file,
)
from mlops.services.execution_lock import ExecutionLock
from mlops.services.fates import FateStore
from mlops.services.registry import approval_description
from mlops.services.retrain_policy import RetrainCooldown, new_information

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
            "validated_bucket": E.VALIDATED_BUCKET,
            "artifacts_bucket": E.ARTIFACTS_BUCKET,
            "code_uri": E.CODE_URI,
            "code_hash": E.CODE_HASH,
            "image_uri": E.TRAINING_IMAGE_URI,
        }
        missing = [v for v in keys.values() if not env.get(v)]
        if missing:
            raise RuntimeError(f"missing environment variables: {', '.join(missing)}")
        return cls(
            **{k: env[v] for k, v in keys.items()},
            region=env.get(E.AWS_REGION, "us-east-1"),
            capture_bucket=env.get(E.CAPTURE_BUCKET) or None,
            incoming_bucket=env.get(E.INCOMING_BUCKET) or None,
        )


def _split(
    source: Path, sinks: dict[str, Callable[[bytes], Any]], validation: float, test: float, seed: int
) -> dict[str, Any]:
    """Assign each data row of ``source`` to train/validation/test with a seeded RNG, line by line.

    Same file + same seed = same split, so a run can be reproduced from its data version.
    Each split gets the header; blank lines are dropped; a UTF-8 byte order mark is not copied.
    """
    rng = random.Random(seed)
    counts = dict.fromkeys(SPLITS, 0)
    with source.open("rb") as src:
        header = src.readline().removeprefix(b"\xef\xbb\xbf")
        for sink in sinks.values():
            sink(header)
        for line in src:
            if not line.strip():
                continue
            draw = rng.random()
            name = "test" if draw < test else "validation" if draw < test + validation else "train"
            sinks[name](line)
            counts[name] += 1
    return {"method": "seeded-random-per-row", "seed": seed, "validation": validation, "test": test, "rows": counts}


def split_file(source: Path, out_dir: Path, validation: float, test: float, seed: int) -> dict[str, Any]:
    """The split as local files ``<out_dir>/<split>/data.csv``."""
    with contextlib.ExitStack() as stack:
        sinks = {}
        for name in SPLITS:
            (out_dir / name).mkdir(parents=True, exist_ok=True)
            sinks[name] = stack.enter_context((out_dir / name / "data.csv").open("wb")).write
        return _split(source, sinks, validation, test, seed)


def split_to_s3(s3: Any, source: Path, base: S3Location, validation: float, test: float, seed: int) -> dict[str, Any]:
    """The split streamed to ``<base>/<split>/data.csv``: no split file touches the local disk.

    The Lambda's ephemeral storage then holds the dataset once, not twice (issue 8.13).
    """
    with contextlib.ExitStack() as stack:
        writers = {
            name: stack.enter_context(S3StreamWriter(s3, S3Location(base.bucket, f"{base.key}/{name}/data.csv")))
            for name in SPLITS
        }
        return _split(source, {name: w.write for name, w in writers.items()}, validation, test, seed)


class Trigger(StrEnum):
    """What started a training execution (from its input)."""

    DATASET = "dataset"  # a "Dataset Validated" event: the validation result
    ALARM = "alarm"  # a drift or quality alarm (the serving stack's retrain rule)
    FOLLOW_UP = "follow-up"  # a run that ended while datasets were queued
    MANUAL = "manual"  # {"model": ...}: retrain on the newest validated dataset


def trigger_of(event: dict[str, Any]) -> Trigger:
    if event.get("validated_uri"):
        return Trigger.DATASET
    if event.get("trigger") in (Trigger.ALARM, Trigger.FOLLOW_UP):
        return Trigger(event["trigger"])
    return Trigger.MANUAL


def _not_started(status: str, model: str, trigger: Trigger, reason: str) -> dict[str, Any]:
    return {"status": status, "model": model, "trigger": str(trigger), "reason": reason}


def stopping_condition(max_runtime_seconds: int, use_spot: bool) -> dict[str, int]:
    """CreateTrainingJob's StoppingCondition: managed spot training needs MaxWaitTimeInSeconds
    (at least MaxRuntimeInSeconds; here twice, time to wait for spot capacity)."""
    condition = {"MaxRuntimeInSeconds": max_runtime_seconds}
    if use_spot:
        condition["MaxWaitTimeInSeconds"] = 2 * max_runtime_seconds
    return condition


def follow_up_name(model: str, after: str) -> str:
    """The follow-up execution's name: one per ended run (Step Functions names: 80 characters)."""
    return f"{model[:40]}-follow-up-{hashlib.sha256(after.encode()).hexdigest()[:16]}"


def _outcome_sentence(run_id: str | None, outcome: dict[str, Any]) -> str:
    if outcome.get("status") == "failed":
        error = outcome.get("error") or {}
        return f"run {run_id} failed: {error.get('Error')}: {str(error.get('Cause'))[:300]}"
    registration = outcome.get("registration") or {}
    return (
        f"trained in run {run_id}: registered as {registration.get('model_package_arn')} "
        f"({registration.get('approval_status')})"
    )


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
    def __init__(self, s3: Any, sagemaker: Any, settings: TrainingSettings, stepfunctions: Any) -> None:
        self.s3 = s3
        self.sm = sagemaker
        self.sfn = stepfunctions
        self.settings = settings
        self.lock = ExecutionLock(s3, stepfunctions, settings.artifacts_bucket, TRAINING_LOCKS)
        self.fates = FateStore(s3, settings.artifacts_bucket)
        self.cooldown = RetrainCooldown(s3, settings.artifacts_bucket)

    def release(self, model: str, execution_id: str) -> bool:
        return self.lock.release(model, execution_id)

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
        properties = package.get("CustomerMetadataProperties") or {}
        return {
            "model_package_arn": package["ModelPackageArn"],
            "version": package.get("ModelPackageVersion"),
            "model_data_url": package["InferenceSpecification"]["Containers"][0]["ModelDataUrl"],
            "dataset_version": properties.get("dataset_version"),
            "lineage": properties.get("lineage"),
        }

    # -- labelled capture (alarm-triggered retrains) -----------------------------------------
    def _append_labelled_capture(
        self, config: ModelConfig, data: Path, added: Path, added_ids: list[str] | None = None
    ) -> dict[str, Any]:
        """Append the endpoint's captured requests that have a ground-truth label to ``data``.

        Captured features + the label become one row in the contract's columns (unique id
        columns get fresh ids above the dataset's largest). Requests without a label, with
        several rows (one label cannot name them all), repeated inference ids, unreadable
        capture lines and values that do not fit the contract are skipped and counted.
        The added rows are also written to ``added`` (with the header), their inference ids
        to ``added_ids``. Returns the summary.
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
            if added_ids is not None:
                added_ids.append(inference_id)
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
    def prepare(
        self, event: dict[str, Any], config: ModelConfig, execution_id: str, state_machine_arn: str | None = None
    ) -> dict[str, Any]:
        """Take the model's lock and prepare a run, or say why not (status queued, busy, skipped, no_new_data).

        A validated dataset is queued first and trained only once it holds the lock, as the
        newest queued dataset; so a burst of uploads during a training gives one follow-up
        run on the newest of them (see :meth:`follow_up`).
        """
        model = config.name
        trigger = trigger_of(event)
        if trigger == Trigger.DATASET:
            version = str(event["dataset_version"])
            if self.fates.enqueue({**event, "model": model}, "waiting for the model's training lock") is None:
                fate = self.fates.get(model, version) or {}
                return _not_started("skipped", model, trigger, f"dataset {version} is already {fate.get('detail')}")
        acquired = self.lock.acquire(model, execution_id)
        if not acquired.taken:
            holder = (acquired.holder or {}).get("execution_id")
            if trigger == Trigger.DATASET:
                reason = (
                    f"dataset {event['dataset_version']} queued: {model} is training in {holder}; when that run "
                    "ends, one follow-up run trains the newest queued dataset"
                )
                return _not_started("queued", model, trigger, reason)
            return _not_started("busy", model, trigger, f"training for {model} already running in {holder}")
        if acquired.stale is not None:
            self._fail_dead_run(model, acquired.stale, f"its execution is {acquired.stale_status}")
        try:
            run = self._prepare_locked(event, trigger, config, execution_id)
        except Exception as exc:
            self._end(model, execution_id, state_machine_arn, failed=True, detail=f"prepare failed: {exc}"[:500])
            raise
        if run["status"] != "ready":
            run.update(self._end(model, execution_id, state_machine_arn, failed=False, detail=run["reason"]))
        return run

    def _run_id(self, model: str, execution_id: str) -> str:
        now = datetime.now(UTC)
        suffix = execution_id.rsplit(":", 1)[-1][-4:] or "0000"  # the end of the execution's name
        return f"{model}-{now.strftime('%Y%m%d-%H%M%S')}-{suffix}"

    def _choose_dataset(self, trigger: Trigger, model: str) -> dict[str, Any] | None:
        """Queued and follow-up runs train the newest queued dataset; retrains the newest validated one."""
        if trigger in (Trigger.DATASET, Trigger.FOLLOW_UP):
            queued = self.fates.pending(model)
            return {**queued[0]["dataset"], "model": model} if queued else None
        return self.newest_dataset(model)

    def _claim_dataset(self, model: str, dataset: dict[str, Any], run_id: str, execution_id: str, trigger: str) -> None:
        """Mark the dataset as training in this run and every older queued one as superseded by it."""
        version = str(dataset["dataset_version"])
        if self.fates.claim(model, version, run_id, execution_id, trigger) is None:
            raise RuntimeError(f"dataset {version} of {model} could not be claimed for run {run_id}")
        for older in self.fates.pending(model):
            if str(older["dataset_version"]) < version:
                self.fates.supersede(model, str(older["dataset_version"]), version, run_id)

    def _prepare_locked(
        self, event: dict[str, Any], trigger: Trigger, config: ModelConfig, execution_id: str
    ) -> dict[str, Any]:
        model = config.name
        dataset = self._choose_dataset(trigger, model)
        if dataset is None:
            return _not_started("skipped", model, trigger, "no dataset is queued: an earlier run already took it")
        run_id = self._run_id(model, execution_id)
        self.lock.annotate(model, execution_id, run_id=run_id, dataset_version=dataset["dataset_version"])
        if trigger != Trigger.ALARM:
            # claimed before any work: should this run fail, the dataset fails with it (no retry loop)
            self._claim_dataset(model, dataset, run_id, execution_id, str(trigger))
        minutes = config.monitoring.retrain_cooldown_minutes
        if trigger == Trigger.ALARM:
            blocked = self.cooldown.check(model, minutes, execution_id)
            if blocked is not None:
                return _not_started("skipped", model, trigger, blocked)
        base = S3Location(self.settings.artifacts_bucket, f"training/{model}/{run_id}")
        split = config.training.split
        src = S3Location.parse(dataset["validated_uri"])
        champion = self.champion(model)
        with tempfile.TemporaryDirectory() as tmp:
            local = Path(tmp) / "data.csv"
            sha = validated_sha = download_with_sha256(self.s3, src.bucket, src.key, None, local)
            capture = None
            if trigger == Trigger.ALARM:
                added, added_ids = Path(tmp) / "labelled-capture.csv", []
                capture = self._append_labelled_capture(config, local, added, added_ids)
                learns = new_information(
                    champion, str(dataset["dataset_version"]), set(added_ids), self._champion_capture_ids(champion)
                )
                if learns is None:
                    return self._no_new_data(event, model, run_id, dataset, champion)
                blocked = self.cooldown.claim(model, minutes, execution_id, event.get("alarm"))
                if blocked is not None:
                    return _not_started("skipped", model, trigger, blocked)
                capture["new_information"] = learns
                if capture["rows_added"]:
                    sha = sha256_file(local)  # what is split is the validated data plus the added rows
                    key = f"{base.key}/labelled-capture/data.csv"
                    self.s3.upload_file(str(added), base.bucket, key)
                    capture["rows_uri"] = f"s3://{base.bucket}/{key}"
                ids = S3Location(base.bucket, f"{base.key}/labelled-capture/inference-ids.json")
                put_json(self.s3, ids, sorted(added_ids))
                capture["inference_ids_uri"] = ids.uri
                self._claim_dataset(model, dataset, run_id, execution_id, str(trigger))
            summary = split_to_s3(self.s3, local, base, split.validation, split.test, split.seed)
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
            "model": model,
            "trigger": str(trigger),
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
                "stopping_condition": stopping_condition(training.max_runtime_seconds, training.use_spot),
            },
            "output_uri": f"s3://{base.bucket}/{base.key}/output",
            "evaluation_uri": f"s3://{base.bucket}/{base.key}/evaluation",
            "code_uri": self.settings.code_uri,
            "image_uri": self.settings.image_uri,
            "champion": champion,
        }

    def _champion_capture_ids(self, champion: dict[str, Any] | None) -> set[str] | None:
        """The labelled captured requests the champion was trained with (None: its lineage does not say)."""
        if not champion or not champion.get("lineage"):
            return None
        found = get_json(self.s3, S3Location.parse(champion["lineage"]))
        capture = (found[0] if found else {}).get("labelled_capture") or {}
        if not capture.get("inference_ids_uri"):
            return set() if found and not capture.get("rows_added") else None
        ids = get_json(self.s3, S3Location.parse(capture["inference_ids_uri"]))
        return set(ids[0]) if ids else None

    def _no_new_data(
        self,
        event: dict[str, Any],
        model: str,
        run_id: str,
        dataset: dict[str, Any],
        champion: dict[str, Any] | None,
    ) -> dict[str, Any]:
        """An alarm with nothing new to learn: recorded (a run report) and returned for the notification."""
        version = (champion or {}).get("version")
        reason = (
            f"drift detected, no new labelled data: alarm {event.get('alarm')} fired for {model}, but the champion "
            f"(version {version}) was trained on dataset {dataset['dataset_version']} with every labelled captured "
            "request there is; retraining would reproduce it. Upload new data or ground truth for the captured "
            "traffic to retrain."
        )
        report = {
            "model": model,
            "run_id": run_id,
            "status": "no_new_data",
            "trigger": str(Trigger.ALARM),
            "alarm": event.get("alarm"),
            "alarm_time": event.get("alarm_time"),
            "dataset_version": dataset["dataset_version"],
            "champion": champion,
            "reason": reason,
            "finished_at": datetime.now(UTC).isoformat(),
        }
        key = f"training/{model}/{run_id}/report.json"
        put_json(self.s3, S3Location(self.settings.artifacts_bucket, key), report)
        return {
            **_not_started("no_new_data", model, Trigger.ALARM, reason),
            "report_uri": f"s3://{self.settings.artifacts_bucket}/{key}",
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
        description = approval_description(gate["summary"])
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

    def finish(
        self,
        run: dict[str, Any],
        execution_id: str,
        outcome: dict[str, Any],
        state_machine_arn: str | None = None,
    ) -> dict[str, Any]:
        """Write the run report, end the dataset's training, release the lock, start the follow-up run.

        ``run`` is the prepare step's output, or only ``{"model": ...}`` when prepare itself failed.
        """
        model = run.get("model", "unknown")
        held = self.lock.holder(model) or {}
        run_id = run.get("run_id") or (held.get("run_id") if held.get("execution_id") == execution_id else None)
        failed = outcome.get("status") == "failed"
        report = {
            "model": model,
            "run_id": run_id,
            "execution_id": execution_id,
            "trigger": run.get("trigger"),
            "dataset_version": (run.get("dataset") or {}).get("dataset_version"),
            "finished_at": datetime.now(UTC).isoformat(),
            **outcome,
        }
        folder = run_id or f"failed-{execution_id.rsplit(':', 1)[-1] or int(time.time())}"
        key = f"training/{model}/{folder}/report.json"
        put_json(self.s3, S3Location(self.settings.artifacts_bucket, key), report)
        ended = self._end(
            model,
            execution_id,
            state_machine_arn,
            failed=failed,
            detail=_outcome_sentence(run_id, outcome),
            run_id=run_id,
            version=report["dataset_version"],
        )
        return {**report, "report_uri": f"s3://{self.settings.artifacts_bucket}/{key}", **ended}

    def _end(
        self,
        model: str,
        execution_id: str,
        state_machine_arn: str | None,
        *,
        failed: bool,
        detail: str,
        run_id: str | None = None,
        version: str | None = None,
    ) -> dict[str, Any]:
        """This execution lets go of the model: its dataset's fate, the lock, then the queued data's follow-up.

        The order matters: the lock is released before the queue is read, and a run that
        queues a dataset reads the lock after queueing it, so between the two of them a
        queued dataset is always seen (no upload waits for a run that will not come).
        """
        held = self.lock.holder(model) or {}
        if held.get("execution_id") == execution_id:
            run_id, version = run_id or held.get("run_id"), version or held.get("dataset_version")
        if run_id and version:
            self.fates.end_run(model, str(version), run_id, failed=failed, detail=detail)
        released = self.lock.release(model, execution_id)
        return {"lock_released": released, "follow_up": self.follow_up(model, execution_id, state_machine_arn)}

    def follow_up(self, model: str, after: str, state_machine_arn: str | None) -> str | None:
        """Start one run on the newest queued dataset, unless a live run holds the lock (it will).

        The execution is named after the run that ended, so the same end seen twice (the
        run's own last step and its status-change event) starts it once. Returns its name.
        """
        if not state_machine_arn or not self.lock.free_for(model) or not self.fates.pending(model):
            return None
        name = follow_up_name(model, after)
        payload = {"model": model, "trigger": str(Trigger.FOLLOW_UP), "after": after}
        try:
            self.sfn.start_execution(stateMachineArn=state_machine_arn, name=name, input=json.dumps(payload))
        except ClientError as exc:
            if error_code(exc) != "ExecutionAlreadyExists":
                raise
        logger.info("follow-up run %s started for the queued datasets of %s", name, model)
        return name

    def _fail_dead_run(self, model: str, claim: dict[str, Any], why: str) -> None:
        """A run whose execution ended without ending its own training: its dataset's training failed."""
        if claim.get("run_id") and claim.get("dataset_version"):
            detail = f"run {claim['run_id']} did not finish: {why}"
            self.fates.end_run(model, str(claim["dataset_version"]), str(claim["run_id"]), failed=True, detail=detail)

    def reap(self, execution_arn: str, status: str, state_machine_arn: str, model: str) -> dict[str, Any]:
        """An execution of the training machine ended FAILED, TIMED_OUT or ABORTED (its status-change event).

        Usually its RecordFailure step has done everything already. When it could not (the
        execution was stopped, timed out, or its worker died), this ends its dataset's
        training with the cause and starts the follow-up for queued datasets. The lock needs
        no release: an owner that is not RUNNING does not hold it.
        """
        held = self.lock.holder(model) or {}
        recorded = False
        if held.get("execution_id") == execution_arn:
            described = self.sfn.describe_execution(executionArn=execution_arn)
            why = f"its execution ended {status}: {described.get('error') or ''} {described.get('cause') or ''}"
            self._fail_dead_run(model, held, why.strip()[:500])
            recorded = True
        return {
            "model": model,
            "execution": execution_arn,
            "status": status,
            "dead_run_recorded": recorded,
            "follow_up": self.follow_up(model, execution_arn, state_machine_arn),
        }
