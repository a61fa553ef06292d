"""The streaming contract engine: every kind of bad file gives a specific, sampled violation."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from examples.generate_data import generate, write_csv
from mlops.config import DatasetContract
from mlops.core.contract import ValidationResult, Violation, validate_file
from mlops.settings import model_config

HEADER = "id,x,n,color,flag,y"
GOOD_ROWS = ["1,0.5,3,red,true,0", "2,9.5,,green,0,1", "3,4.25,7,blue,FALSE,1", "4,1,1,red,1,0"]


def _contract(**overrides: Any) -> DatasetContract:
    data: dict[str, Any] = {
        "target": "y",
        "min_rows": 1,
        "columns": [
            {"name": "id", "type": "int", "unique": True, "feature": False},
            {"name": "x", "type": "float", "min": 0, "max": 10},
            {"name": "n", "type": "int", "nullable": True},
            {"name": "color", "type": "string", "allowed": ["red", "green", "blue"]},
            {"name": "flag", "type": "bool"},
            {"name": "y", "type": "int", "allowed": [0, 1]},
        ],
    }
    return DatasetContract.model_validate(data | overrides)


def _write(tmp_path: Path, text: str | bytes, name: str = "data.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


def _csv(rows: list[str], header: str = HEADER) -> str:
    return "\n".join([header, *rows]) + "\n"


def _only(result: ValidationResult, rule: str, column: str | None = None) -> Violation:
    found = [v for v in result.violations if v.rule == rule and v.column == column]
    assert len(found) == 1, result.summary()
    return found[0]


def _rules(result: ValidationResult) -> set[tuple[str, str | None]]:
    return {(v.rule, v.column) for v in result.violations}


# -- good data ---------------------------------------------------------------------------------
@pytest.mark.parametrize("model", ["tumor-classifier", "diabetes-progression"])
def test_generated_good_data_passes_with_profile(tmp_path: Path, model: str) -> None:
    contract = model_config(model).dataset
    path = write_csv(generate(model, "good", 3000, seed=5), tmp_path / "good.csv")
    result = validate_file(path, contract)
    assert result.passed, result.summary()
    assert result.violations == []
    assert result.rows == 3000
    assert result.columns == contract.column_names
    assert result.bytes == path.stat().st_size
    assert result.profile is not None and result.profile["rows"] == 3000
    assert set(result.profile["features"]) == {c.name for c in contract.features}
    assert result.profile["target"]["name"] == contract.target
    assert result.summary().startswith("PASSED: 3,000 rows")
    json.dumps(result.to_dict())  # the report is JSON as it is


def test_small_good_file_parses_bools_nulls_and_reordered_columns(tmp_path: Path) -> None:
    reordered = "y,flag,color,n,x,id"
    rows = [",".join(reversed(r.split(","))) for r in GOOD_ROWS]
    result = validate_file(_write(tmp_path, _csv(rows, reordered)), _contract())
    assert result.passed, result.summary()
    assert result.columns == reordered.split(",")
    flag = result.profile["features"]["flag"]  # type: ignore[index]
    assert flag["frequencies"] == {"true": 0.5, "false": 0.5}
    assert result.profile["features"]["n"]["null_rate"] == 0.25  # type: ignore[index]


def test_bom_and_crlf_are_accepted(tmp_path: Path) -> None:
    body = b"\xef\xbb\xbf" + _csv(GOOD_ROWS).replace("\n", "\r\n").encode()
    result = validate_file(_write(tmp_path, body), _contract())
    assert result.passed, result.summary()
    assert result.columns[0] == "id" and result.rows == 4


def test_generated_bad_data_reports_each_injected_problem(tmp_path: Path) -> None:
    contract = model_config("tumor-classifier").dataset
    frame = generate("tumor-classifier", "bad", 2000, seed=2)
    path = write_csv(frame, tmp_path / "bad.csv")
    result = validate_file(path, contract)
    assert not result.passed
    assert result.profile is None
    assert result.rows == 2003
    below = _only(result, "min", "mean_radius")
    expected_lines = [i + 2 for i in np.flatnonzero(frame["mean_radius"].astype(float) < 0)]
    assert below.count == len(expected_lines) == 10
    assert [s["line"] for s in below.samples] == expected_lines[:5]
    assert below.samples[0]["value"] == "-5.0"
    assert f"column 'mean_radius': 10 values below min 0 (e.g. '-5.0' on line {expected_lines[0]})" == below.message
    assert _only(result, "allowed", "clinic").count == 10
    assert _only(result, "allowed", "clinic").samples[0]["value"] == "central"
    assert _only(result, "null", "mean_area").count == 10
    text = _only(result, "type", "mean_texture")
    assert text.count == 10 and text.samples[0]["value"] == "n/a"
    assert ("null", "mean_texture") not in _rules(result)  # a wrong value is a type error, not a missing one
    dupes = _only(result, "duplicate_rows")
    assert dupes.count == 3
    assert [(s["line"], s["first_line"]) for s in dupes.samples] == [(2002, 2), (2003, 3), (2004, 4)]


# -- file-level problems -----------------------------------------------------------------------
def test_file_over_max_bytes_is_rejected_before_reading(tmp_path: Path) -> None:
    path = _write(tmp_path, _csv(GOOD_ROWS))
    result = validate_file(path, _contract(max_bytes=20))
    v = _only(result, "size")
    assert v.count == 1 and "over the contract's max_bytes of 20" in v.message
    assert result.rows == 0 and result.columns == []


def test_empty_file(tmp_path: Path) -> None:
    result = validate_file(_write(tmp_path, b""), _contract())
    assert not result.passed
    assert _only(result, "empty_file").message.startswith("the file is empty (0 bytes)")
    assert result.rows == 0 and result.bytes == 0


def test_header_only_file_fails_the_row_count(tmp_path: Path) -> None:
    result = validate_file(_write(tmp_path, HEADER + "\n"), _contract(min_rows=10))
    assert not result.passed and result.rows == 0
    assert result.columns == HEADER.split(",")
    v = _only(result, "row_count")
    assert v.count == 0 and v.message == "0 data rows, fewer than min_rows 10"


def test_too_many_rows(tmp_path: Path) -> None:
    result = validate_file(_write(tmp_path, _csv(GOOD_ROWS)), _contract(max_rows=3))
    assert _only(result, "row_count").message == "4 data rows, more than max_rows 3"


def test_wrong_delimiter_is_named(tmp_path: Path) -> None:
    body = _csv([r.replace(",", ";") for r in GOOD_ROWS], HEADER.replace(",", ";"))
    result = validate_file(_write(tmp_path, body), _contract())
    v = _only(result, "parse")
    assert v.message == (
        "the header has 1 column 'id;x;n;color;flag;y'; the file looks ';'-delimited but the contract says ','"
    )
    assert v.samples == [{"line": 1, "value": "id;x;n;color;flag;y"}]
    assert len(result.violations) == 1  # nothing else is meaningful after that


def test_non_utf8_bytes_name_line_and_offset(tmp_path: Path) -> None:
    lines = [HEADER, *GOOD_ROWS]
    lines[3] = "3,4.25,7,bl\xe9u,FALSE,1"  # latin-1 "é" on line 4
    body = ("\n".join(lines) + "\n").encode("latin-1")
    result = validate_file(_write(tmp_path, body), _contract())
    v = _only(result, "encoding")
    offset = body.index(b"\xe9")
    assert v.count == 1
    assert v.samples == [{"line": 4, "byte_offset": offset}]
    assert f"first bad byte at offset {offset}" in v.message and "requires utf-8" in v.message
    # the rest of the file is still checked: the mangled value is not an allowed colour
    assert _only(result, "allowed", "color").samples[0]["line"] == 4


def test_non_utf8_header(tmp_path: Path) -> None:
    result = validate_file(_write(tmp_path, b"id,x\xff\n1,2\n"), _contract())
    v = _only(result, "encoding")
    assert v.samples == [{"line": 1, "byte_offset": 4}] and "requires utf-8" in v.message


def test_ragged_rows_report_line_numbers(tmp_path: Path) -> None:
    rows = [*GOOD_ROWS, "5,1.0,2,red,true", "6,1.0,2,red,true,1,extra", *GOOD_ROWS[:1]]
    rows[-1] = "7" + rows[-1][1:]
    result = validate_file(_write(tmp_path, _csv(rows)), _contract())
    v = _only(result, "parse")
    assert v.count == 2
    assert v.samples == [{"line": 6, "fields": 5}, {"line": 7, "fields": 7}]
    assert "fields other than the header's 6" in v.message


def test_missing_and_unexpected_columns(tmp_path: Path) -> None:
    header = "id,x,n,colour,y,extra"
    rows = ["1,0.5,3,red,0,a", "2,0.7,3,red,1,b"]
    result = validate_file(_write(tmp_path, _csv(rows, header)), _contract())
    v = _only(result, "schema")
    assert v.message == "missing column(s): color, flag; unexpected column(s): colour, extra"
    assert v.samples == [{"line": 1, "missing": ["color", "flag"], "unexpected": ["colour", "extra"]}]
    assert v.count == 4
    assert result.profile is None


def test_duplicate_header_names(tmp_path: Path) -> None:
    result = validate_file(_write(tmp_path, "id,x,x,color,flag,y\n1,2,3,red,true,0\n"), _contract())
    assert "repeats column names: x" in _only(result, "schema").message


# -- column rules -------------------------------------------------------------------------------
def test_type_errors_in_int_float_and_bool_columns(tmp_path: Path) -> None:
    rows = [*GOOD_ROWS, "5,abc,2.5,red,oui,1", "6,inf,2,red,true,1", "7,1,1e30,red,maybe,0"]
    result = validate_file(_write(tmp_path, _csv(rows)), _contract())
    x = _only(result, "type", "x")
    assert x.count == 2 and x.samples == [{"line": 6, "value": "abc"}, {"line": 7, "value": "inf"}]
    assert "values are not finite numbers (type float)" in x.message
    n = _only(result, "type", "n")
    assert n.count == 2 and [s["value"] for s in n.samples] == ["2.5", "1e30"]
    assert "not integers" in n.message
    flag = _only(result, "type", "flag")
    assert flag.count == 2 and [s["line"] for s in flag.samples] == [6, 8]
    assert "booleans (true/false, yes/no, 1/0)" in flag.message
    assert ("null", "x") not in _rules(result)


def test_nulls_only_where_not_nullable(tmp_path: Path) -> None:
    rows = [*GOOD_ROWS, "5,,,red,true,1", '6,1,,"",true,1']
    result = validate_file(_write(tmp_path, _csv(rows)), _contract())
    assert _rules(result) == {("null", "x"), ("null", "color")}
    assert _only(result, "null", "x").samples == [{"line": 6, "value": ""}]
    assert _only(result, "null", "color").message == (
        "column 'color': 1 row is empty but the column is not nullable (e.g. line 7)"
    )


def test_min_max_and_allowed(tmp_path: Path) -> None:
    rows = [*GOOD_ROWS, "5,-0.5,1,red,true,1", "6,10.5,1,pink,true,2", "7,11,1,Red,true,0"]
    result = validate_file(_write(tmp_path, _csv(rows)), _contract())
    assert _only(result, "min", "x").samples == [{"line": 6, "value": "-0.5"}]
    high = _only(result, "max", "x")
    assert high.count == 2 and [s["line"] for s in high.samples] == [7, 8]
    assert high.message == "column 'x': 2 values above max 10 (e.g. '10.5' on line 7)"
    colour = _only(result, "allowed", "color")
    assert colour.count == 2 and [s["value"] for s in colour.samples] == ["pink", "Red"]
    assert _only(result, "allowed", "y").samples == [{"line": 7, "value": "2"}]


def test_unique_column(tmp_path: Path) -> None:
    rows = [*GOOD_ROWS, "2,1.5,1,red,true,1", "9,2.5,1,red,true,1", "2,3.5,1,red,true,1"]
    result = validate_file(_write(tmp_path, _csv(rows)), _contract())
    v = _only(result, "unique", "id")
    assert v.count == 2
    assert v.samples == [{"line": 6, "value": "2", "first_line": 3}, {"line": 8, "value": "2", "first_line": 3}]
    assert ("duplicate_rows", None) not in _rules(result)


def test_unique_string_column(tmp_path: Path) -> None:
    contract = _contract(
        columns=[
            {"name": "id", "type": "string", "unique": True, "feature": False},
            {"name": "x", "type": "float"},
            {"name": "y", "type": "int"},
        ]
    )
    result = validate_file(_write(tmp_path, _csv(["a,1,0", "b,2,0", ",3,1", "a,4,1"], "id,x,y")), contract)
    assert _rules(result) == {("unique", "id"), ("null", "id")}
    assert _only(result, "unique", "id").samples == [{"line": 5, "first_line": 2}]


def test_duplicate_rows_with_a_unique_column(tmp_path: Path) -> None:
    # distinct ids (in any order) prove the rows distinct; a repeated or missing id does not, and then
    # every row is compared as without a unique column
    shuffled = ["4,1,1,red,1,0", "1,0.5,3,red,true,0", "3,4.25,7,blue,FALSE,1", "2,9.5,,green,0,1"]
    assert validate_file(_write(tmp_path, _csv(shuffled)), _contract()).passed
    rows = [*GOOD_ROWS, "2,9.5,,green,0,1", ",1.5,1,red,true,1", ",1.5,1,red,true,1"]
    result = validate_file(_write(tmp_path, _csv(rows)), _contract())
    assert _rules(result) == {("unique", "id"), ("null", "id"), ("duplicate_rows", None)}
    v = _only(result, "duplicate_rows")
    assert v.count == 2
    assert [(s["line"], s["first_line"]) for s in v.samples] == [(6, 3), (8, 7)]
    dropped = _contract(missing_target="drop")  # rows left out hold no id to compare: still proven distinct
    result = validate_file(_write(tmp_path, _csv([*GOOD_ROWS, "5,1,1,red,true,", "6,1,1,red,true,"])), dropped)
    assert result.passed and result.rows == 4 and result.rows_dropped == {"missing_target": 2}


def test_duplicate_rows_unless_allowed(tmp_path: Path) -> None:
    contract = _contract(
        columns=[{"name": "x", "type": "float"}, {"name": "c", "type": "string"}, {"name": "y", "type": "int"}]
    )
    body = _csv(["1.0,a,0", "2.0,b,1", "1.0,a,0", "1.00,a,0", "1.0,a,1", "2.0,b,1"], "x,c,y")
    result = validate_file(_write(tmp_path, body), contract)
    v = _only(result, "duplicate_rows")
    assert v.count == 3  # "1.00" is the same number as "1.0"
    assert [(s["line"], s["first_line"]) for s in v.samples] == [(4, 2), (5, 2), (7, 3)]
    assert v.message.startswith("3 rows duplicate an earlier row")
    allowed = contract.model_copy(update={"allow_duplicate_rows": True})
    assert validate_file(tmp_path / "data.csv", allowed).passed


def test_violations_never_raise_on_garbage(tmp_path: Path) -> None:
    body = HEADER + '\n1,"unterminated,2\n\x00\x01,,,\n' + "x" * 1000 + "\n"
    result = validate_file(_write(tmp_path, body), _contract())
    assert not result.passed and result.violations


def test_missing_file_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        validate_file(tmp_path / "nope.csv", _contract())


# -- streaming ----------------------------------------------------------------------------------
def test_quoted_newlines_keep_line_numbers(tmp_path: Path) -> None:
    rows = ["1,0.5,3,red,true,0", '2,0.5,3,"gr\neen",true,0', "3,0.5,3,red,true,0", "4,-1,3,red,true,0"]
    result = validate_file(_write(tmp_path, _csv(rows)), _contract())
    assert _only(result, "allowed", "color").samples == [{"line": 3, "value": "gr\neen"}]
    assert _only(result, "min", "x").samples == [{"line": 6, "value": "-1.0"}]
    assert result.rows == 4


def test_small_blocks_give_the_same_answer(tmp_path: Path) -> None:
    frame = generate("tumor-classifier", "bad", 3000, seed=4)
    path = write_csv(frame, tmp_path / "bad.csv")
    contract = model_config("tumor-classifier").dataset
    whole = validate_file(path, contract)
    pieces = validate_file(path, contract, block_bytes=4096)  # ~40 blocks
    assert [v.to_dict() for v in pieces.violations] == [v.to_dict() for v in whole.violations]
    good = write_csv(generate("tumor-classifier", "good", 3000, seed=4), tmp_path / "good.csv")
    small, big = validate_file(good, contract, block_bytes=4096).profile, validate_file(good, contract).profile
    assert small is not None and big is not None
    for name, entry in big["features"].items():
        other = small["features"][name]
        for key, value in entry.items():  # sums merged per block may differ in the last bits only
            assert other[key] == (pytest.approx(value) if key in ("mean", "std") else value), (name, key)


def test_a_late_block_that_is_not_canonical_gets_the_copy_written(tmp_path: Path) -> None:
    # the first pass reads the file in batches without byte offsets: a block that needs rewriting ("yes")
    # after canonical ones sends it to the block reader, which copies what came before as it was
    rows = [f"{i},1.5,{i % 7},red,{'true' if i % 2 else 'false'},{i % 2}" for i in range(1, 3001)]
    rows[2900] = rows[2900].replace(",true,", ",yes,")
    path = _write(tmp_path, _csv(rows))
    out = tmp_path / "out.csv"
    result = validate_file(path, _contract(), output=out, block_bytes=16 * 1024)
    assert result.passed and result.canonical == "written", result.summary()
    assert out.read_text() == _csv([r.replace(",yes,", ",true,") for r in rows])
    assert validate_file(path, _contract(), output=out).canonical == "written"  # one block: the same copy
    assert out.read_text() == _csv([r.replace(",yes,", ",true,") for r in rows])


def test_sample_limit(tmp_path: Path) -> None:
    rows = [f"{i},-1,1,red,true,0" for i in range(1, 30)]
    result = validate_file(_write(tmp_path, _csv(rows)), _contract(), sample_limit=2)
    v = _only(result, "min", "x")
    assert v.count == 29 and [s["line"] for s in v.samples] == [2, 3]


@pytest.mark.slow
def test_million_rows_stream_and_pass(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    n = 1_000_000
    frame = pl.DataFrame(
        {
            "id": np.arange(n),
            "x": np.round(rng.uniform(0, 10, n), 3),
            "n": rng.integers(0, 100, n),
            "color": np.array(["red", "green", "blue"])[rng.integers(0, 3, n)],
            "flag": rng.integers(0, 2, n).astype(bool),
            "y": rng.integers(0, 2, n),
        }
    )
    path = tmp_path / "big.csv"
    frame.write_csv(path)
    result = validate_file(path, _contract(), block_bytes=8 * 1024 * 1024)
    assert result.passed, result.summary()
    assert result.rows == n
    x = result.profile["features"]["x"]  # type: ignore[index]
    assert x["count"] == n and abs(x["mean"] - frame["x"].mean()) < 1e-9
    assert sum(x["bin_fractions"]) == pytest.approx(1.0)
