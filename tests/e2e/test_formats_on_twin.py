"""Datasets as data teams land them, from upload to a registered model on the twin: Parquet, gzip'd CSV,
JSON Lines, a three-part Parquet folder with its _SUCCESS marker, an R export with NA; and precise reports
for an unsupported format and a part folder whose marker never comes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from examples.generate_data import generate, write_as, write_parts
from mlops.twin import control

from .conftest import TIME_SCALE

pytestmark = pytest.mark.e2e
MODEL = "tumor-classifier"


@pytest.fixture(scope="module")
def twin(cdk_out: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[control.TwinHandle]:
    workdir = tmp_path_factory.mktemp("formats") / "twin"
    handle = control.start(cdk_out, workdir, port=0, time_scale=TIME_SCALE)
    try:
        yield handle
    finally:
        control.stop(workdir)


def entered_states(history: list[dict[str, Any]]) -> list[str]:
    """State names in the order an execution entered them (from its history events)."""
    return [e["stateEnteredEventDetails"]["name"] for e in history if e["type"].endswith("StateEntered")]


def _upload(handle: control.TwinHandle, path: Path, key: str) -> str:
    handle.client().upload_file(str(path), handle.bucket("incoming"), key)
    return key


def _json(handle: control.TwinHandle, uri: str) -> Any:
    bucket, key = uri.removeprefix("s3://").split("/", 1)
    return json.loads(handle.client().get_object(Bucket=bucket, Key=key)["Body"].read())


def _registered(handle: control.TwinHandle, key: str, model: str = MODEL) -> tuple[dict[str, Any], dict[str, Any]]:
    """Wait for the validation of ``key`` and the training of its dataset version; the lineage and result."""
    (validation,) = control.wait_for_executions(handle.workdir, key, machine="Validation", timeout_s=300)
    assert validation["status"] == "SUCCEEDED", validation.get("cause")
    result = validation["output"]
    assert result["status"] == "passed", result["summary"]
    (training,) = control.wait_for_executions(
        handle.workdir, result["dataset_version"], machine="Training", timeout_s=600
    )
    assert training["status"] == "SUCCEEDED", training.get("cause")
    assert entered_states(training["history"])[-1] == "ModelRegistered"
    sm = handle.client("sagemaker")
    found = sm.list_model_packages(ModelPackageGroupName=model, SortBy="CreationTime", SortOrder="Descending")
    package = sm.describe_model_package(ModelPackageName=found["ModelPackageSummaryList"][0]["ModelPackageArn"])
    assert package["CustomerMetadataProperties"]["dataset_version"] == result["dataset_version"]
    return _json(handle, package["CustomerMetadataProperties"]["lineage"]), result


@pytest.mark.parametrize("fmt", ["parquet", "csv.gz", "jsonl"])
def test_single_object_formats_reach_a_registered_model(twin: control.TwinHandle, tmp_path: Path, fmt: str) -> None:
    path = write_as(generate(MODEL, "good", 2000, seed=11), tmp_path / "upload", fmt)
    key = _upload(twin, path, f"incoming/{MODEL}/export-{fmt.replace('.', '-')}")  # no extension: content decides
    lineage, result = _registered(twin, key)
    assert result["format"] == {"parquet": "parquet", "csv.gz": "csv+gzip", "jsonl": "jsonl"}[fmt]
    assert lineage["data_uri"] == f"s3://{twin.bucket('incoming')}/{key}" and lineage["data_version_id"]
    assert lineage["data_format"] == result["format"] and len(lineage["validated_sha256"]) == 64


def test_three_part_parquet_folder_with_success_marker(twin: control.TwinHandle, tmp_path: Path) -> None:
    files = write_parts(generate(MODEL, "good", 3000, seed=12), tmp_path / "daily", 3)
    prefix = f"incoming/{MODEL}/daily-2026-12-01/"
    for path in files:  # the parts first, the marker last, as Spark commits
        _upload(twin, path, prefix + path.name)
    lineage, result = _registered(twin, prefix + "_SUCCESS")
    assert result["rows"] == 3000 and result["parts"] == 3
    parts = lineage["data_parts"]
    assert [p["key"] for p in parts] == [prefix + p.name for p in files[:3]]
    assert all(p["version_id"] and len(p["sha256"]) == 64 for p in parts)
    assert lineage["data_uri"] == f"s3://{twin.bucket('incoming')}/{prefix}"
    # the parts' own executions: one watched the folder until the marker came, the others did not wait
    runs = control.wait_for_executions(twin.workdir, "part-0000", machine="Validation", count=3, timeout_s=300)
    ends = sorted(entered_states(r["history"])[-1] for r in runs)
    assert ends == ["AwaitingCommitMarker", "AwaitingCommitMarker", "DatasetCommitted"], ends


def test_r_export_with_na_passes_when_the_config_declares_it(twin: control.TwinHandle, tmp_path: Path) -> None:
    frame = generate("diabetes-progression", "good", 1500, seed=13)
    frame.loc[np.random.default_rng(0).random(len(frame)) < 0.05, "s6"] = np.nan  # s6 is nullable
    path = write_as(frame, tmp_path / "export.csv", "r-csv")
    assert b",NA," in path.read_bytes() or b",NA\n" in path.read_bytes()
    key = _upload(twin, path, "incoming/diabetes-progression/r-export.csv")
    lineage, result = _registered(twin, key, "diabetes-progression")  # manual approval: registered, pending
    assert result["rows"] == 1500 and lineage["data_format"] == "csv"


def test_unsupported_format_and_missing_marker_get_precise_reports(twin: control.TwinHandle, tmp_path: Path) -> None:
    xlsx = tmp_path / "book.xlsx"
    xlsx.write_bytes(b"PK\x03\x04" + b"\x00" * 200)
    key = _upload(twin, xlsx, f"incoming/{MODEL}/book.xlsx")
    (failed,) = control.wait_for_executions(twin.workdir, key, machine="Validation", timeout_s=120)
    assert failed["status"] == "FAILED" and failed["error"] == "DatasetRejected"
    assert (
        "unsupported format: detected a zip archive (an Excel .xlsx workbook is one too); accepted: CSV"
        in (failed["cause"])
    )
    files = write_parts(generate(MODEL, "good", 600, seed=14), tmp_path / "lost", 2)
    prefix = f"incoming/{MODEL}/no-marker/"
    for path in files[:2]:  # the marker never comes
        _upload(twin, path, prefix + path.name)
    runs = control.wait_for_executions(twin.workdir, prefix, machine="Validation", count=2, timeout_s=300)
    incomplete = [r for r in runs if r["status"] == "FAILED"]
    assert len(incomplete) == 1 and incomplete[0]["error"] == "DatasetIncomplete"
    cause = incomplete[0]["cause"]
    assert f"{prefix} has 2 part file(s) (part-00000.snappy.parquet, part-00001.snappy.parquet)" in cause
    assert "but no _SUCCESS marker or _manifest.json after 30 min" in cause and "left in place" in cause
    states = ["WaitForCommitMarker", "CheckCommit", "CommitArrived?", "DatasetIncomplete"]
    assert entered_states(incomplete[0]["history"])[-4:] == states
