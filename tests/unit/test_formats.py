"""Formats detected by content, multi-part datasets, missing values as data teams write them,
and the canonical CSV copy that training reads."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pandas as pd
import polars as pl
import pytest

from examples.generate_data import generate
from mlops.config import DatasetContract
from mlops.core import formats
from mlops.core.contract import Part, ValidationResult, validate_dataset, validate_file
from mlops.settings import model_config

MODEL = "tumor-classifier"


def _contract(**overrides: Any) -> DatasetContract:
    data: dict[str, Any] = {
        "target": "y",
        "columns": [
            {"name": "id", "type": "int", "unique": True, "feature": False},
            {"name": "x", "type": "float", "nullable": True, "min": 0},
            {"name": "n", "type": "int"},
            {"name": "flag", "type": "bool"},
            {"name": "color", "type": "string", "allowed": ["red", "blue"]},
            {"name": "y", "type": "int", "allowed": [0, 1]},
        ],
    }
    return DatasetContract.model_validate(data | overrides)


def _rules(result: ValidationResult) -> set[tuple[str, str | None]]:
    return {(v.rule, v.column) for v in result.violations}


def _frame(rows: int = 3000, seed: int = 3) -> pd.DataFrame:
    return generate(MODEL, "good", rows, seed=seed)


def _zstd(data: bytes) -> bytes:
    return formats._zstd_module().compress(data)


# -- formats -----------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["csv", "csv.gz", "csv.zst", "jsonl", "jsonl.gz", "parquet"])
def test_every_accepted_format_passes_with_the_same_profile(tmp_path: Path, kind: str) -> None:
    frame = _frame()
    contract = model_config(MODEL).dataset
    text = frame.to_csv(index=False, lineterminator="\n").encode()
    lines = frame.to_json(orient="records", lines=True).encode()
    path = tmp_path / "upload.bin"  # names never decide the format
    if kind == "parquet":
        pl.from_pandas(frame).write_parquet(path, row_group_size=700)
    else:
        body = text if kind.startswith("csv") else lines
        if kind.endswith(".gz"):
            body = gzip.compress(body)
        if kind.endswith(".zst"):
            body = _zstd(body)
        path.write_bytes(body)
    result = validate_file(path, contract, output=tmp_path / "out.csv", block_bytes=64 * 1024)
    assert result.passed, result.summary()
    assert result.rows == 3000
    assert result.format == {"csv": "csv", "csv.gz": "csv+gzip", "csv.zst": "csv+zstd", "jsonl": "jsonl",
                             "jsonl.gz": "jsonl+gzip", "parquet": "parquet"}[kind]  # fmt: skip
    reference = validate_file(_write_csv(tmp_path, frame), contract).profile
    assert result.profile is not None and reference is not None
    for name, entry in reference["features"].items():
        assert result.profile["features"][name]["count"] == entry["count"], name
        assert result.profile["features"][name].get("bin_fractions") == entry.get("bin_fractions"), name
    if kind == "csv":
        assert result.canonical == "source" and not (tmp_path / "out.csv").exists()
    else:
        assert result.canonical == "written"
        back = pd.read_csv(tmp_path / "out.csv", keep_default_na=False, na_values=[""])
        assert list(back.columns) == contract.column_names and len(back) == 3000
        pd.testing.assert_series_equal(back["mean_radius"], frame["mean_radius"], check_names=False)
        assert back["clinic"].tolist() == frame["clinic"].tolist()


def _write_csv(tmp_path: Path, frame: pd.DataFrame) -> Path:
    path = tmp_path / "reference.csv"
    frame.to_csv(path, index=False, lineterminator="\n")
    return path


@pytest.mark.parametrize(
    ("body", "detected"),
    [
        (b"PK\x03\x04" + b"\x00" * 40, "a zip archive (an Excel .xlsx workbook is one too)"),
        (b'[{"a": 1}, {"a": 2}]\n', "a JSON array (not JSON Lines: one object per line)"),
        (b"BZh91AY&SY" + b"\x00" * 20, "bzip2-compressed data"),
        (gzip.compress(b"PAR1" + b"\x00" * 50), "gzip-compressed Parquet (Parquet compresses internally)"),
        (b"\x00\x01\x02\x03binary", "binary data (NUL bytes)"),
    ],
    ids=["zip", "json-array", "bzip2", "gzip-parquet", "binary"],  # gzip headers hold a time: no byte ids
)
def test_unsupported_formats_are_named_with_the_accepted_list(tmp_path: Path, body: bytes, detected: str) -> None:
    path = tmp_path / "data.csv"
    path.write_bytes(body)
    result = validate_file(path, _contract())
    assert [v.rule for v in result.violations] == ["format"]
    assert result.violations[0].message == (
        f"unsupported format: detected {detected}; accepted: CSV (plain, gzip or zstd), "
        "JSON Lines (plain, gzip or zstd), Parquet"
    )


def test_parquet_type_problems_name_rows(tmp_path: Path) -> None:
    frame = pl.DataFrame(
        {
            "id": [1, 2, 3, 4],
            "x": [0.5, None, -1.0, float("nan")],
            "n": [1.0, 2.0, 3.5, 4.0],  # float column in an int contract column: 3.5 is not an int
            "flag": [True, False, None, True],
            "color": ["red", "blue", "green", "red"],
            "y": [0, 1, 1, 0],
        }
    )
    path = tmp_path / "data.parquet"
    frame.write_parquet(path)
    result = validate_file(path, _contract())
    assert _rules(result) == {("type", "n"), ("min", "x"), ("null", "flag"), ("allowed", "color")}
    n = next(v for v in result.violations if v.column == "n")
    assert n.samples == [{"row": 3, "value": "3.5"}] and "on row 3" in n.message


def test_jsonl_bad_lines_and_types(tmp_path: Path) -> None:
    lines = [
        {"id": 1, "x": 0.5, "n": 3, "flag": True, "color": "red", "y": 0},
        {"id": 2, "x": None, "n": "4", "flag": "yes", "color": "blue", "y": 1},
        "not json",
        {"id": 3, "x": 1.5, "n": 2.5, "flag": False, "color": "red", "y": 1},
    ]
    body = "\n".join(json.dumps(x) if isinstance(x, dict) else x for x in lines) + "\n"
    path = tmp_path / "data.jsonl"
    path.write_text(body)
    result = validate_file(path, _contract())
    assert _rules(result) == {("parse", None), ("type", "n")}
    assert next(v for v in result.violations if v.rule == "parse").samples == [{"line": 3}]
    assert next(v for v in result.violations if v.rule == "type").samples == [{"line": 4, "value": "2.5"}]


# -- missing values, integral floats, dropped targets ----------------------------------------
R_STYLE = 'id,x,n,flag,color,y\n1,NA,3,TRUE,"red",0\n2,0.5,NA,FALSE,"blue",1\n3,NaN,4,T,"red",NA\n'


def test_r_style_na_fails_by_default_with_a_hint(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    path.write_text(R_STYLE)
    result = validate_file(path, _contract())
    x = next(v for v in result.violations if v.column == "x")
    assert x.rule == "type" and x.count == 1
    assert "if 'NA' marks a missing value, add it to dataset.na_values" in x.message


def test_r_style_na_passes_when_declared_and_the_target_rows_are_dropped(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    path.write_text(R_STYLE.replace("2,0.5,NA", "2,0.5,7"))
    contract = _contract(na_values=["", "NA"], missing_target="drop")
    result = validate_file(path, contract, output=tmp_path / "out.csv")
    assert result.passed, result.summary()
    assert result.rows == 2 and result.rows_dropped == {"missing_target": 1}
    assert "1 rows dropped (missing target)" in result.summary()
    assert result.canonical == "written"
    assert (tmp_path / "out.csv").read_text() == "id,x,n,flag,color,y\n1,,3,true,red,0\n2,0.5,7,false,blue,1\n"
    assert result.profile is not None and result.profile["rows"] == 2


def test_missing_target_fails_unless_dropped(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("id,x,n,flag,color,y\n1,1,3,true,red,0\n2,1,3,true,red,\n")
    assert ("null", "y") in _rules(validate_file(path, _contract()))
    assert validate_file(path, _contract(missing_target="drop")).passed


def test_pandas_upcast_ints_and_nan_are_accepted(tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    path.write_text("id,x,n,flag,color,y\n1.0,nan,181.0,1,red,0.0\n2.0,2.5,1e3,0,blue,1.0\n")
    result = validate_file(path, _contract(), output=tmp_path / "out.csv")
    assert result.passed, result.summary()
    assert (tmp_path / "out.csv").read_text() == "id,x,n,flag,color,y\n1,,181,true,red,0\n2,2.5,1000,false,blue,1\n"


def test_canonical_upload_is_not_rewritten_until_a_block_needs_it(tmp_path: Path) -> None:
    frame = _frame(4000)
    path = _write_csv(tmp_path, frame)
    text = path.read_text().splitlines()
    text[3600] += ".0"  # the target, written as pandas writes an upcast int, in a late block
    path.write_text("\n".join(text) + "\n")
    out = tmp_path / "out.csv"
    result = validate_file(path, model_config(MODEL).dataset, output=out, block_bytes=32 * 1024)
    assert result.passed, result.summary()
    assert result.canonical == "written"
    assert out.read_bytes()[:300_000] == path.read_bytes()[:300_000]  # the early blocks, copied as they were
    written = pd.read_csv(tmp_path / "out.csv", keep_default_na=False, na_values=[""])
    pd.testing.assert_frame_equal(written, frame, check_dtype=False)


# -- multi-part datasets -------------------------------------------------------------------------
def test_three_parquet_parts_are_one_dataset(tmp_path: Path) -> None:
    frame = pl.from_pandas(_frame(3000))
    parts = []
    for i in range(3):
        path = tmp_path / f"part-0000{i}.parquet"
        frame.slice(i * 1000, 1000).write_parquet(path)
        parts.append(Part(path, f"part-0000{i}.parquet"))
    result = validate_dataset(parts, model_config(MODEL).dataset, output=tmp_path / "out.csv")
    assert result.passed and result.rows == 3000 and result.parts == 3 and result.format == "parquet"
    assert pl.read_csv(tmp_path / "out.csv").height == 3000


def test_duplicates_across_parts_name_the_part(tmp_path: Path) -> None:
    frame = pl.from_pandas(_frame(200))
    parts = []
    for i in range(2):
        path = tmp_path / f"p{i}.csv"
        frame.slice(i * 100, 100).write_csv(path)
        parts.append(Part(path, f"incoming/m/d/p{i}.csv"))
    frame.slice(0, 1).write_csv(tmp_path / "p2.csv")
    parts.append(Part(tmp_path / "p2.csv", "incoming/m/d/p2.csv"))
    result = validate_dataset(parts, model_config(MODEL).dataset)
    unique = next(v for v in result.violations if v.rule == "unique")
    assert unique.samples[0] == {
        "line": 2, "part": "incoming/m/d/p2.csv", "value": str(frame["record_id"][0]),
        "first_line": 2, "first_part": "incoming/m/d/p0.csv",
    }  # fmt: skip
    assert "line 2 of incoming/m/d/p2.csv, first seen on line 2 of incoming/m/d/p0.csv" in unique.message


def test_parts_of_different_formats_are_refused(tmp_path: Path) -> None:
    frame = pl.from_pandas(_frame(100))
    frame.write_csv(tmp_path / "a")
    frame.write_parquet(tmp_path / "b")
    result = validate_dataset([Part(tmp_path / "a", "a"), Part(tmp_path / "b", "b")], model_config(MODEL).dataset)
    assert [v.rule for v in result.violations] == ["format"]
    assert result.violations[0].message == "the parts of a dataset must have one format: a is CSV; b is Parquet"
