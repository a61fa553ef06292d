"""Dataset fates on moto: the record every upload gets, and the queue of datasets waiting to train."""

from __future__ import annotations

from typing import Any

import pytest

from mlops.services.fates import Fate, FateStore, record_validation

MODEL = "tumor-classifier"


@pytest.fixture
def fates(s3: Any) -> FateStore:
    s3.create_bucket(Bucket="artifacts-bkt")
    return FateStore(s3, "artifacts-bkt")


def _result(version: str, status: str = "passed") -> dict[str, Any]:
    return {
        "status": status,
        "model": MODEL,
        "dataset_version": version,
        "summary": f"{status}: {version}",
        "validated_uri": f"s3://v/validated/{MODEL}/{version}/data.csv" if status == "passed" else None,
        "quarantine_uri": None if status == "passed" else f"s3://q/quarantine/{MODEL}/{version}/d.csv",
        "source_uri": f"s3://in/incoming/{MODEL}/{version}.csv",
        "rows": 10,
    }


def test_every_upload_gets_a_fate_and_they_list_oldest_first(fates: FateStore, s3: Any) -> None:
    assert record_validation(s3, "artifacts-bkt", _result("20261124T110000Z-b", "failed"))["state"] == Fate.QUARANTINED
    assert record_validation(s3, "artifacts-bkt", _result("20261124T100000Z-a"))["state"] == Fate.VALIDATED
    assert record_validation(s3, "artifacts-bkt", _result("20261124T100000Z-a")) is None  # a duplicate changes nothing
    listed = fates.list_fates(MODEL)
    assert [(f["dataset_version"], f["state"]) for f in listed] == [
        ("20261124T100000Z-a", "validated"),
        ("20261124T110000Z-b", "quarantined"),
    ]
    assert listed[0]["dataset"]["validated_uri"].endswith("/data.csv") and listed[0]["detail"].startswith("passed")
    assert listed[1]["dataset"]["quarantine_uri"].startswith("s3://q/")


def test_queue_claim_supersede_and_end(fates: FateStore) -> None:
    for version in ("v1", "v2", "v3"):
        assert fates.enqueue({"model": MODEL, "dataset_version": version}, "waiting")["state"] == Fate.QUEUED
    assert fates.enqueue({"model": MODEL, "dataset_version": "v2"}, "again") is None  # already queued
    assert [f["dataset_version"] for f in fates.pending(MODEL)] == ["v3", "v2", "v1"]
    assert fates.claim(MODEL, "v3", "run-9", "arn:exec", "follow-up")["detail"] == "training in run run-9"
    assert fates.supersede(MODEL, "v1", "v3", "run-9")["superseded_by"] == "v3"
    assert fates.supersede(MODEL, "v3", "v4", "run-9") is None  # not queued any more
    assert [f["dataset_version"] for f in fates.pending(MODEL)] == ["v2"]
    assert fates.end_run(MODEL, "v3", "run-other", failed=False, detail="x") is None  # only its own run ends it
    ended = fates.end_run(MODEL, "v3", "run-9", failed=False, detail="trained in run run-9: registered")
    assert ended["state"] == Fate.TRAINED and ended["runs"] == [
        {"run_id": "run-9", "execution": "arn:exec", "trigger": "follow-up"}
    ]
    assert [h["state"] for h in ended["history"]] == ["queued", "training", "trained"]
    assert fates.enqueue({"model": MODEL, "dataset_version": "v3"}, "redelivered") is None  # trained: not again


def test_a_stale_marker_is_dropped(fates: FateStore, s3: Any) -> None:
    fates.enqueue({"model": MODEL, "dataset_version": "v1"}, "waiting")
    fates.claim(MODEL, "v1", "run-1", "arn:exec", "dataset")
    s3.put_object(Bucket="artifacts-bkt", Key=f"fates/{MODEL}/pending/v1", Body=b"")  # left behind
    assert fates.pending(MODEL) == []
    assert "Contents" not in s3.list_objects_v2(Bucket="artifacts-bkt", Prefix=f"fates/{MODEL}/pending/")
