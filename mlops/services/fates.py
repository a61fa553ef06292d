"""What became of each uploaded dataset, and the queue of datasets waiting to train.

One record per dataset version, ``s3://<artifacts>/fates/<model>/<dataset_version>.json``:
its current ``state``, a sentence saying it (``detail``), the runs that trained on it and
the history of every change. States:

    validated ──▶ queued ──▶ training ──▶ trained | failed
    quarantined      └──▶ superseded (a newer dataset trained instead)
    errored (validation could not complete: see its report)

A dataset validated while its model trains is *queued*, never dropped; when the running
training ends, one follow-up run trains on the newest queued dataset and the older queued
ones become *superseded*. Every change is a conditional write on the record (S3 ETag), so
two steps racing on one dataset cannot both win: a duplicate "Dataset Validated" delivery
finds the dataset already training or trained and queues nothing.

Queued datasets also get an empty marker ``fates/<model>/pending/<dataset_version>``, so
finding the queue lists a handful of keys instead of every dataset ever seen. The record
is the truth: a marker whose record is no longer queued is stale and removed.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from mlops.s3io import S3Location, get_json, put_json_if_absent, replace_json_if_unchanged

FATES_PREFIX = "fates"
PENDING = "pending"
_CONTENDED_TRIES = 8


class Fate(StrEnum):
    VALIDATED = "validated"
    QUARANTINED = "quarantined"
    ERRORED = "errored"
    QUEUED = "queued"
    TRAINING = "training"
    TRAINED = "trained"
    FAILED = "failed"
    SUPERSEDED = "superseded"


# Which states a change may start from (None: no record yet). A retrain may train a dataset
# again after it was trained or its run failed; a run holding the lock may take over the
# dataset of a run that let go of the lock without ending its training.
ALLOWED_FROM: dict[Fate, set[Fate | None]] = {
    Fate.VALIDATED: {None},
    Fate.QUARANTINED: {None},
    Fate.ERRORED: {None},
    Fate.QUEUED: {None, Fate.VALIDATED},
    Fate.TRAINING: {None, Fate.VALIDATED, Fate.QUEUED, Fate.TRAINING, Fate.TRAINED, Fate.FAILED, Fate.SUPERSEDED},
    Fate.TRAINED: {Fate.TRAINING},
    Fate.FAILED: {Fate.TRAINING},
    Fate.SUPERSEDED: {Fate.QUEUED},
}
# Bookkeeping of the validation run, not facts about the dataset: a fate does not keep them.
NOT_KEPT = ("duplicate", "summary")


def _dataset(result: dict[str, Any]) -> dict[str, Any]:
    """What a fate keeps of a validation result: everything a run later trains from (lineage included)."""
    return {k: v for k, v in result.items() if k not in NOT_KEPT and v is not None}


class FateConflict(RuntimeError):
    """A record kept changing under us (more writers than conditional retries)."""


class FateStore:
    def __init__(self, s3: Any, bucket: str) -> None:
        self.s3 = s3
        self.bucket = bucket

    # -- locations -------------------------------------------------------------------------
    def location(self, model: str, version: str) -> S3Location:
        return S3Location(self.bucket, f"{FATES_PREFIX}/{model}/{version}.json")

    def _marker(self, model: str, version: str) -> str:
        return f"{FATES_PREFIX}/{model}/{PENDING}/{version}"

    # -- reading ---------------------------------------------------------------------------
    def get(self, model: str, version: str) -> dict[str, Any] | None:
        found = get_json(self.s3, self.location(model, version))
        return None if found is None else found[0]

    def list_fates(self, model: str) -> list[dict[str, Any]]:
        """Every dataset's fate for ``model``, oldest first (versions sort by validation time)."""
        prefix = f"{FATES_PREFIX}/{model}/"
        keys = [k for k in self._keys(prefix, delimiter="/") if k.endswith(".json")]
        records = (get_json(self.s3, S3Location(self.bucket, key)) for key in sorted(keys))
        return [found[0] for found in records if found is not None]

    def pending(self, model: str) -> list[dict[str, Any]]:
        """The queued datasets of ``model``, newest first; stale markers are removed on the way."""
        prefix = f"{FATES_PREFIX}/{model}/{PENDING}/"
        queued = []
        for key in sorted(self._keys(prefix), reverse=True):
            record = self.get(model, key[len(prefix) :])
            if record is not None and record.get("state") == Fate.QUEUED:
                queued.append(record)
            else:
                self.s3.delete_object(Bucket=self.bucket, Key=key)
        return queued

    def _keys(self, prefix: str, delimiter: str | None = None) -> Iterable[str]:
        paginator = self.s3.get_paginator("list_objects_v2")
        extra = {"Delimiter": delimiter} if delimiter else {}
        for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix, **extra):
            for obj in page.get("Contents", []):
                yield obj["Key"]

    # -- changing ----------------------------------------------------------------------------
    def change(
        self,
        model: str,
        version: str,
        to: Fate,
        detail: str,
        *,
        expect_run: str | None = None,
        **fields: Any,
    ) -> dict[str, Any] | None:
        """Move the dataset's fate to ``to`` if its current state allows it; the new record, or None.

        ``expect_run``: only if the record's current run is this one (a run ends its own
        dataset's training, never another run's).
        """
        loc = self.location(model, version)
        for _ in range(_CONTENDED_TRIES):
            found = get_json(self.s3, loc)
            current, etag = found if found is not None else (None, None)
            state = Fate(current["state"]) if current else None
            if state not in ALLOWED_FROM[to]:
                return None
            if expect_run is not None and (current or {}).get("run_id") != expect_run:
                return None
            at = datetime.now(UTC).isoformat()
            record = dict(current or {"model": model, "dataset_version": version, "history": [], "runs": []})
            record.update(fields, state=str(to), detail=detail, updated_at=at)
            record["history"] = [*record.get("history", []), {"state": str(to), "at": at, "detail": detail}]
            written = (
                put_json_if_absent(self.s3, loc, record)
                if etag is None
                else replace_json_if_unchanged(self.s3, loc, record, etag)
            )
            if written:
                return record
        raise FateConflict(f"fate of {model} dataset {version} kept changing: gave up after {_CONTENDED_TRIES} tries")

    def enqueue(self, dataset: dict[str, Any], behind: str) -> dict[str, Any] | None:
        """Queue a validated dataset to train; None if it is already queued, training or done."""
        model, version = str(dataset["model"]), str(dataset["dataset_version"])
        record = self.change(
            model,
            version,
            Fate.QUEUED,
            f"queued ({behind})",
            dataset=_dataset(dataset),
        )
        if record is not None:
            self.s3.put_object(Bucket=self.bucket, Key=self._marker(model, version), Body=b"")
        return record

    def claim(self, model: str, version: str, run_id: str, execution: str, trigger: str) -> dict[str, Any] | None:
        """The run takes this dataset to train on."""
        found = self.get(model, version) or {}
        runs = [*found.get("runs", []), {"run_id": run_id, "execution": execution, "trigger": trigger}]
        record = self.change(
            model,
            version,
            Fate.TRAINING,
            f"training in run {run_id}",
            run_id=run_id,
            execution=execution,
            runs=runs,
        )
        self._unmark(model, version)
        return record

    def supersede(self, model: str, version: str, by_version: str, run_id: str) -> dict[str, Any] | None:
        record = self.change(
            model,
            version,
            Fate.SUPERSEDED,
            f"superseded by the newer dataset {by_version}, trained in run {run_id}",
            superseded_by=by_version,
            run_id=run_id,
        )
        self._unmark(model, version)
        return record

    def end_run(self, model: str, version: str, run_id: str, *, failed: bool, detail: str) -> dict[str, Any] | None:
        """The run that trains this dataset ended (only that run can end it)."""
        return self.change(
            model, version, Fate.FAILED if failed else Fate.TRAINED, detail, expect_run=run_id, outcome=detail
        )

    def _unmark(self, model: str, version: str) -> None:
        self.s3.delete_object(Bucket=self.bucket, Key=self._marker(model, version))


def record_validation(s3: Any, bucket: str, result: dict[str, Any]) -> dict[str, Any] | None:
    """The validation's verdict as the dataset's first fate: validated or quarantined (for the validate step).

    ``result`` is the validation result (``mlops.services.validation``); a duplicate
    delivery changes nothing.
    """
    passed = result.get("status") == "passed"
    return FateStore(s3, bucket).change(
        str(result["model"]),
        str(result["dataset_version"]),
        Fate.VALIDATED if passed else Fate.QUARANTINED,
        str(result.get("summary") or ("validated" if passed else "quarantined")),
        dataset=_dataset(result),
    )
