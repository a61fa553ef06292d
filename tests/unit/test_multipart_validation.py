"""Multi-part datasets on moto S3: parts wait for their marker, the marker validates them as one version,
a folder without a marker is reported, and any accepted format is promoted as canonical CSV."""

from __future__ import annotations

import dataclasses
import io
import json
from typing import Any

import pandas as pd
import polars as pl
import pytest

from examples.generate_data import generate
from mlops.services.parts import dataset_sha256, is_part
from mlops.services.validation import DatasetValidator, ValidationRequest
from mlops.settings import model_config

from .test_validation_handler import BUCKETS, MODEL, _json, buckets  # noqa: F401  (fixture)

PREFIX = f"incoming/{MODEL}/daily-2026-12-01/"
TIMEOUT = model_config(MODEL).dataset.commit_timeout_minutes


def _put(s3: Any, key: str, body: bytes) -> ValidationRequest:
    put = s3.put_object(Bucket=BUCKETS.incoming, Key=key, Body=body)
    return ValidationRequest(BUCKETS.incoming, key, put.get("VersionId"), put["ETag"].strip('"'), len(body),
                             "evt", f"exec-{key}")  # fmt: skip


def _parquet(frame: pd.DataFrame) -> bytes:
    out = io.BytesIO()
    pl.from_pandas(frame).write_parquet(out)
    return out.getvalue()


def _parts(s3: Any, frame: pd.DataFrame, n: int = 3) -> list[ValidationRequest]:
    size = len(frame) // n
    return [_put(s3, f"{PREFIX}part-0000{i}.snappy.parquet", _parquet(frame.iloc[i * size : (i + 1) * size]))
            for i in range(n)]  # fmt: skip


def test_part_keys() -> None:
    assert is_part(f"{PREFIX}part-0.parquet") and is_part(f"{PREFIX}year=2026/part-0.parquet")
    assert not is_part(f"{PREFIX}_SUCCESS") and not is_part(f"{PREFIX}.part-0.parquet.crc")
    assert not is_part(f"{PREFIX}_temporary/0/part-0.parquet") and not is_part(PREFIX)


def test_parts_wait_and_the_marker_validates_them_once(buckets: Any) -> None:  # noqa: F811
    validator = DatasetValidator(buckets, BUCKETS, model_config)
    frame = generate(MODEL, "good", 900, seed=5)
    parts = _parts(buckets, frame)
    first = validator.validate(parts[0])
    assert first["status"] == "waiting" and first["watch"] is True and first["wait_seconds"] == TIMEOUT * 60
    assert first["dataset_prefix"] == PREFIX
    second = validator.validate(parts[1])
    assert second["status"] == "waiting" and second["watch"] is False  # one watch per folder
    marker = _put(buckets, f"{PREFIX}_SUCCESS", b"")
    out = validator.validate(marker)
    assert out["status"] == "passed", out["summary"]
    assert out["rows"] == 900 and out["parts"] == 3 and out["format"] == "parquet"
    report = _json(buckets, out["report_uri"])
    recorded = report["source"]["parts"]
    assert [p["key"] for p in recorded] == [p.key for p in parts]
    assert [p["version_id"] for p in recorded] == [p.version_id for p in parts]
    assert all(len(p["sha256"]) == 64 for p in recorded)
    assert out["source_parts"] == recorded and out["source_version_id"] is None
    assert out["sha256"] == report["source"]["sha256"] != recorded[0]["sha256"]
    validated = pd.read_csv(
        io.BytesIO(
            buckets.get_object(Bucket=BUCKETS.validated, Key=out["validated_uri"].split("/", 3)[3])["Body"].read()
        )
    )
    assert len(validated) == 900 and list(validated.columns) == model_config(MODEL).dataset.column_names
    # the same marker again, and a manifest naming the same parts: the same dataset version, validated once
    assert validator.validate(dataclasses.replace(marker, execution_id="exec-redelivered"))["duplicate"] is True
    manifest = {"files": [p.key[len(PREFIX) :] for p in parts]}
    again = validator.validate(_put(buckets, f"{PREFIX}_manifest.json", json.dumps(manifest).encode()))
    assert again["duplicate"] is True and again["dataset_version"] == out["dataset_version"]
    # a part event after the marker: nothing to wait for
    late = validator.validate(parts[2])
    assert late["status"] == "waiting" and late["watch"] is False and "_SUCCESS" in late["summary"]


def test_a_folder_without_its_marker_is_reported_after_the_wait(buckets: Any) -> None:  # noqa: F811
    validator = DatasetValidator(buckets, BUCKETS, model_config)
    parts = _parts(buckets, generate(MODEL, "good", 300, seed=6))
    watch = validator.validate(parts[0])
    out = validator.check_commit(watch["bucket"], watch["dataset_prefix"], watch["model"])
    assert out["status"] == "incomplete"
    assert f"dataset s3://{BUCKETS.incoming}/{PREFIX} has 3 part file(s)" in out["summary"]
    assert "part-00000.snappy.parquet, part-00001.snappy.parquet, part-00002.snappy.parquet" in out["summary"]
    assert f"but no _SUCCESS marker or _manifest.json after {TIMEOUT} min" in out["summary"]
    report = _json(buckets, out["report_uri"])
    assert report["violations"][0]["rule"] == "commit_marker"
    listed = buckets.list_objects_v2(Bucket=BUCKETS.incoming, Prefix=PREFIX)["Contents"]
    assert len(listed) == 3  # left in place
    # a later part starts a new watch; once the marker is there, the check says so
    assert validator.validate(parts[1])["watch"] is True
    _put(buckets, f"{PREFIX}_SUCCESS", b"")
    assert validator.check_commit(watch["bucket"], PREFIX, MODEL)["status"] == "committed"


def test_manifest_naming_a_missing_part(buckets: Any) -> None:  # noqa: F811
    validator = DatasetValidator(buckets, BUCKETS, model_config)
    _parts(buckets, generate(MODEL, "good", 300, seed=7), n=2)
    body = json.dumps({"files": ["part-00000.snappy.parquet", "part-00009.snappy.parquet"]}).encode()
    out = validator.validate(_put(buckets, f"{PREFIX}_manifest.json", body))
    assert out["status"] == "failed"
    assert "names 1 part file(s) that do not exist under" in out["summary"]
    assert "part-00009.snappy.parquet" in out["summary"]


@pytest.mark.parametrize("kind", ["parquet", "gzip", "jsonl"])
def test_single_objects_of_any_format_are_promoted_as_canonical_csv(buckets: Any, kind: str) -> None:  # noqa: F811
    import gzip

    frame = generate(MODEL, "good", 400, seed=8)
    body = {
        "parquet": lambda: _parquet(frame),
        "gzip": lambda: gzip.compress(frame.to_csv(index=False).encode()),
        "jsonl": lambda: frame.to_json(orient="records", lines=True).encode(),
    }[kind]()
    out = DatasetValidator(buckets, BUCKETS, model_config).validate(_put(buckets, f"incoming/{MODEL}/upload", body))
    assert out["status"] == "passed", out["summary"]
    key = out["validated_uri"].split("/", 3)[3]
    validated = pd.read_csv(io.BytesIO(buckets.get_object(Bucket=BUCKETS.validated, Key=key)["Body"].read()))
    assert len(validated) == 400
    assert out["format"] == {"parquet": "parquet", "gzip": "csv+gzip", "jsonl": "jsonl"}[kind]


def test_dataset_hash_depends_on_every_part() -> None:
    from mlops.services.parts import PartObject

    a, b = PartObject("k/a", "v1", "e", 1), PartObject("k/b", "v1", "e", 1)
    assert dataset_sha256([(a, "1" * 64), (b, "2" * 64)]) == dataset_sha256([(b, "2" * 64), (a, "1" * 64)])
    assert dataset_sha256([(a, "1" * 64), (b, "2" * 64)]) != dataset_sha256([(a, "1" * 64), (b, "3" * 64)])
