"""Batch scoring's checks against the feature columns, the transform input, and the join back."""

from __future__ import annotations

import gzip
import io
import json
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest

from mlops.config import load_config
from mlops.core import batch
from mlops.core.capture import parse_lines

ROOT = Path(__file__).resolve().parents[2]
CONFIG = load_config(ROOT / "configs" / "tumor-classifier.yaml")
FEATURES = [c.name for c in CONFIG.dataset.features]


def _rows(n: int) -> list[dict[str, object]]:
    rows = []
    for i in range(n):
        row: dict[str, object] = {"record_id": 1000 + i, "clinic": ["north", "south"][i % 2]}
        for j, name in enumerate(FEATURES[1:]):
            row[name] = round(0.1 + (i * 7 + j) % 13 / 50, 4)
        rows.append(row)
    return rows


def _prepare(path: Path, **kwargs: int) -> tuple[batch.Prepared, str, str]:
    features, passthrough = io.BytesIO(), io.BytesIO()
    prepared = batch.prepare_batch(path, CONFIG.dataset, features, passthrough, **kwargs)
    return prepared, features.getvalue().decode(), passthrough.getvalue().decode()


@pytest.mark.parametrize("kind", ["csv", "csv.gz", "parquet", "jsonl"])
def test_every_format_gives_the_features_in_model_order_and_the_ids_beside_them(tmp_path: Path, kind: str) -> None:
    frame = pl.DataFrame(_rows(250)).select(["record_id", *reversed(FEATURES)])  # any column order
    path = tmp_path / f"batch.{kind}"
    if kind == "parquet":
        frame.write_parquet(path)
    elif kind == "jsonl":
        frame.write_ndjson(path)
    elif kind == "csv.gz":
        path.write_bytes(gzip.compress(frame.write_csv().encode()))
    else:
        frame.write_csv(path)
    prepared, features, passthrough = _prepare(path, block_bytes=2048)  # many blocks
    assert prepared.accepted, prepared.summary()
    assert prepared.rows == 250 and prepared.passthrough == ["record_id"]
    lines = features.splitlines()
    assert len(lines) == 250
    first = lines[0].split(",")
    assert first[0] == "north" and len(first) == len(FEATURES)
    assert float(first[FEATURES.index("mean_radius")]) == _rows(1)[0]["mean_radius"]
    ids = passthrough.splitlines()
    assert ids[0] == "record_id" and ids[1:] == [str(1000 + i) for i in range(250)]


def test_a_missing_feature_column_is_named(tmp_path: Path) -> None:
    path = tmp_path / "batch.csv"
    pl.DataFrame(_rows(10)).drop("mean_texture").write_csv(path)
    prepared, features, _ = _prepare(path)
    assert not prepared.accepted and features == ""
    [problem] = prepared.problems
    assert (problem.column, problem.rule) == ("mean_texture", "missing")
    assert "feature column 'mean_texture' is missing" in prepared.summary()


def test_a_header_only_file_missing_a_feature_is_named_too(tmp_path: Path) -> None:
    path = tmp_path / "batch.csv"
    path.write_text("record_id,clinic\n")
    prepared, _, _ = _prepare(path)
    assert {p.column for p in prepared.problems} == set(FEATURES) - {"clinic"}


def test_mistyped_values_are_counted_with_their_rows(tmp_path: Path) -> None:
    rows = _rows(300)
    rows[5]["mean_area"] = "big"
    rows[250]["mean_area"] = "huge"
    path = tmp_path / "batch.csv"
    pl.DataFrame(rows, schema_overrides={"mean_area": pl.String}, strict=False).write_csv(path)
    prepared, _, _ = _prepare(path, block_bytes=4096)
    [problem] = prepared.problems
    assert (problem.column, problem.rule, problem.count) == ("mean_area", "type", 2)
    assert problem.samples == [{"row": 6, "value": "big"}, {"row": 251, "value": "huge"}]
    assert "'mean_area' must hold float values: 2 row(s)" in problem.message


def test_the_target_and_ids_pass_through_and_missing_values_stay_empty(tmp_path: Path) -> None:
    path = tmp_path / "batch.csv"
    path.write_text(
        "record_id,diagnosis,"
        + ",".join(FEATURES)
        + "\n7,1,east,"
        + ",".join([""] + ["0.5"] * (len(FEATURES) - 2))
        + "\n"
    )
    prepared, features, passthrough = _prepare(path)
    assert prepared.passthrough == ["record_id", "diagnosis"]
    assert features == "east,," + ",".join(["0.5"] * (len(FEATURES) - 2)) + "\n"
    assert passthrough.splitlines() == ["record_id,diagnosis", "7,1"]


def test_an_unsupported_file_is_refused_by_what_it_is(tmp_path: Path) -> None:
    path = tmp_path / "batch.xlsx"
    path.write_bytes(b"PK\x03\x04" + b"\x00" * 100)
    with pytest.raises(batch.Unsupported, match="zip archive"):
        _prepare(path)


def test_join_puts_each_prediction_beside_its_ids() -> None:
    out = io.StringIO()
    rows = batch.join_predictions(["record_id\n", "7\n", "8\n"], ["1,0.1,0.9\n", "0,0.8,0.2\n"], out, classes=[0, 1])
    assert rows == 2
    assert out.getvalue().splitlines() == [
        "record_id,prediction,probability_0,probability_1",
        "7,1,0.1,0.9",
        "8,0,0.8,0.2",
    ]


def test_join_without_ids_and_regression_values() -> None:
    out = io.StringIO()
    assert batch.join_predictions([], ["151.2\n", "99.0\n"], out) == 2
    assert out.getvalue().splitlines() == ["prediction", "151.2", "99.0"]


@pytest.mark.parametrize(("ids", "outputs"), [(["id\n", "1\n"], ["1\n", "0\n"]), (["id\n", "1\n", "2\n"], ["1\n"])])
def test_join_refuses_a_count_that_differs(ids: list[str], outputs: list[str]) -> None:
    with pytest.raises(batch.CountMismatch):
        batch.join_predictions(ids, outputs, io.StringIO())


def test_capture_records_read_back_as_the_monitor_reads_captured_requests() -> None:
    line = batch.capture_record(["a", "b"], ["1,2\n", "3,4\n"], ["1\n", "0\n"], datetime(2026, 1, 1, tzinfo=UTC))
    [request], unreadable = parse_lines([line], ["a", "b"])
    assert unreadable == 0
    assert request.rows == [{"a": "1", "b": "2"}, {"a": "3", "b": "4"}]
    assert request.predictions == ["1", "0"]
    assert json.loads(line)["eventMetadata"]["inferenceTime"] == "2026-01-01T00:00:00Z"


def test_json_lines_objects_may_leave_out_a_column_in_some_blocks(tmp_path: Path) -> None:
    rows = _rows(200)
    for row in rows[150:]:
        del row["record_id"]  # the later objects carry no id
        row["mean_concavity"] = None
    path = tmp_path / "batch.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    prepared, features, passthrough = _prepare(path, block_bytes=4096)
    assert prepared.accepted and prepared.rows == 200
    assert passthrough.splitlines()[-1] == "" and len(passthrough.splitlines()) == 201
    assert len(features.splitlines()) == 200
