"""One table of cells and what they are, per column type, checked against every path that reads values:
the rules themselves (``types.parse_value``), validation (the polars conversion and ``validate_file``),
training's coercion (``features``, ``training.coerce_value``) and serving's typed rows."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import polars as pl
import pytest

from mlops.config import Column, DatasetContract
from mlops.core import features as F
from mlops.core.contract import validate_file
from mlops.core.convert import convert
from mlops.core.types import ColumnType, TypeMismatch, parse_value
from mlops.services.training import _Unfit, coerce_value

WRONG = TypeMismatch
NA = ("", "NA")  # the table's na_values: an R export
# (type, cell, expected value | None for missing | WRONG)
TABLE: list[tuple[str, str, Any]] = [
    ("int", "181", 181),
    ("int", " 42 ", 42),
    ("int", "+7", 7),
    ("int", "-3", -3),
    ("int", "181.0", 181),
    ("int", "1e3", 1000),
    ("int", "181.5", WRONG),
    ("int", "9007199254740992.0", WRONG),  # 2**53: from there on a float no longer holds every integer
    ("int", "abc", WRONG),
    ("int", "true", WRONG),
    ("int", "inf", WRONG),
    ("int", "1_000", WRONG),
    ("int", "", None),
    ("int", "  ", None),
    ("int", "NA", None),
    ("int", "nan", None),
    ("int", "NaN", None),
    ("float", "1.5", 1.5),
    ("float", "-2e-3", -0.002),
    ("float", "7", 7.0),
    ("float", ".5", 0.5),
    ("float", "NaN", None),
    ("float", "nan", None),
    ("float", "NA", None),
    ("float", "", None),
    ("float", "inf", WRONG),
    ("float", "-inf", WRONG),
    ("float", "1,5", WRONG),
    ("float", "n/a", WRONG),
    ("bool", "true", True),
    ("bool", "FALSE", False),
    ("bool", "True", True),
    ("bool", "yes", True),
    ("bool", "No", False),
    ("bool", "y", True),
    ("bool", "f", False),
    ("bool", "1", True),
    ("bool", "0", False),
    ("bool", "1.0", True),
    ("bool", "NA", None),
    ("bool", "", None),
    ("bool", "maybe", WRONG),
    ("bool", "2", WRONG),
    ("string", "red", "red"),
    ("string", " red ", " red "),
    ("string", "nan", "nan"),
    ("string", "NA", None),
    ("string", "", None),
]
IDS = [f"{t}:{c!r}" for t, c, _ in TABLE]


def _same(got: Any, expected: Any) -> bool:
    if isinstance(expected, float) and isinstance(got, float):
        return math.isclose(got, expected)
    return got == expected and type(got) is type(expected)


@pytest.mark.parametrize(("kind", "cell", "expected"), TABLE, ids=IDS)
def test_rules(kind: str, cell: str, expected: Any) -> None:
    if expected is WRONG:
        with pytest.raises(TypeMismatch):
            parse_value(ColumnType(kind), cell, NA)
    else:
        assert _same(parse_value(ColumnType(kind), cell, NA), expected)


@pytest.mark.parametrize(("kind", "cell", "expected"), TABLE, ids=IDS)
def test_validation_conversion(kind: str, cell: str, expected: Any) -> None:
    done = convert(ColumnType(kind), pl.Series("c", [cell], dtype=pl.String), list(NA))
    wrong = bool(done.wrong[0]) if done.wrong is not None else False
    assert wrong == (expected is WRONG)
    value = done.values[0]
    if expected is WRONG or expected is None:
        assert value is None
    else:
        assert _same(value, expected)


def test_validate_file_agrees_on_the_whole_table(tmp_path: Path) -> None:
    """The same cells through the file engine (typed fast path and text path alike)."""
    for kind in ("int", "float", "bool", "string"):
        rows = [(c, e) for t, c, e in TABLE if t == kind]
        body = "v,y\n" + "".join(f'"{c}",0\n' for c, _ in rows)
        path = tmp_path / f"{kind}.csv"
        path.write_text(body)
        contract = DatasetContract(
            target="y",
            na_values=list(NA),
            allow_duplicate_rows=True,
            columns=[Column(name="v", type=kind, nullable=True), Column(name="y", type="int")],
        )
        result = validate_file(path, contract)
        wrong_lines = {s["line"] for v in result.violations if v.rule == "type" for s in v.samples}
        count = sum(v.count for v in result.violations if v.rule == "type")
        expected = {i + 2 for i, (_, e) in enumerate(rows) if e is WRONG}
        assert count == len(expected), (kind, result.summary())
        assert wrong_lines <= expected, kind


@pytest.mark.parametrize(("kind", "cell", "expected"), TABLE, ids=IDS)
def test_training_and_capture_coercion(kind: str, cell: str, expected: Any) -> None:
    column = Column(name="c", type=kind, nullable=True)
    if expected is WRONG:
        with pytest.raises(_Unfit):
            coerce_value(column, cell, NA)
    else:
        assert _same(coerce_value(column, cell, NA), expected)


@pytest.mark.parametrize(("kind", "cell", "expected"), TABLE, ids=IDS)
def test_serving_typed_rows_and_training_features(kind: str, cell: str, expected: Any) -> None:
    numeric = kind in ("int", "float")
    feature = F.Feature("c", kind, F.NUMERIC if numeric else F.CATEGORICAL, NA)
    served = F.typed_rows([[cell]], [feature])
    frame = pd.DataFrame({"c": pd.Series([cell], dtype=object)})
    if expected is WRONG:
        if numeric:
            assert served is None
            with pytest.raises(F.DataError):
                F.prepare_features(frame, [feature])
        return  # a categorical value outside its type is an unknown category, ignored by the encoder
    prepared = F.prepare_features(frame, [feature])
    assert served is not None
    for got in (served["c"].iloc[0], prepared["c"].iloc[0]):
        if expected is None:
            assert got is None or (isinstance(got, float) and np.isnan(got))
        elif numeric:
            assert got == float(expected)
        else:
            assert got == ("true" if expected is True else "false" if expected is False else expected)
