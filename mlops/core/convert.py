"""The rules of ``mlops.core.types``, vectorised in polars for the validation engine.

``convert(column, series, na_values)`` turns one parsed column (text from CSV or JSON,
or typed values from a typed parse or Parquet) into the contract type, with nulls for
missing values, and says which values were wrong and whether any value had to be
rewritten (a ``NaN``, ``181.0`` in an int column, ``yes`` in a bool column, an
``na_values`` text): a block with rewritten values is not byte-for-byte canonical CSV.
``tests/unit/test_types.py`` checks these against ``types.parse_value`` on one table.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from mlops.core.types import (
    FALSE_WORDS,
    MAX_EXACT_FLOAT_INT,
    NAN_TEXT,
    TRUE_WORDS,
    ColumnType,
)

POLARS_TYPES = {ColumnType.INT: pl.Int64, ColumnType.FLOAT: pl.Float64, ColumnType.BOOL: pl.Boolean}


@dataclass
class Converted:
    values: pl.Series  # in the contract type (Int64, Float64, Boolean, String), null where missing or wrong
    wrong: pl.Series | None  # True where a present value is not of the type; None when none can be
    rewritten: bool  # some value is not in canonical form (see module doc)


def dtype_of(column_type: ColumnType) -> pl.DataType:
    return POLARS_TYPES.get(column_type, pl.String)  # type: ignore[return-value]


def _nulls(series: pl.Series, dtype: pl.DataType) -> pl.Series:
    return pl.Series(series.name, [None] * len(series), dtype=dtype)


def _select(expr: pl.Expr, name: str) -> pl.Series:
    return pl.select(expr.alias(name)).to_series()


def convert(column_type: ColumnType, series: pl.Series, na_values: list[str]) -> Converted:
    dtype = series.dtype
    name = series.name
    if dtype == pl.Null:
        return Converted(_nulls(series, dtype_of(column_type)), None, False)
    if dtype == pl.String:
        return _from_text(column_type, series, na_values)
    if dtype in (pl.Categorical,) or isinstance(dtype, pl.Enum):
        return _from_text(column_type, series.cast(pl.String), na_values)
    if column_type is ColumnType.STRING:
        return _to_string(series, na_values)
    if column_type is ColumnType.BOOL:
        if dtype == pl.Boolean:
            return Converted(series, None, False)
        if dtype.is_numeric():
            values = series.cast(pl.Float64)
            ok = values.is_in([0.0, 1.0]) | values.is_nan()
            typed = _select(pl.when(ok & ~values.is_nan()).then(values == 1.0), name)
            return Converted(typed, series.is_not_null() & ~ok, True)
        return Converted(_nulls(series, pl.Boolean), series.is_not_null(), True)
    if not dtype.is_numeric():  # booleans, dates, lists... in a number column
        return Converted(_nulls(series, dtype_of(column_type)), series.is_not_null(), True)
    if column_type is ColumnType.INT:
        if dtype.is_integer():
            typed = series.cast(pl.Int64, strict=False)
            wrong = series.is_not_null() & typed.is_null()
            return Converted(typed, wrong if wrong.any() else None, dtype != pl.Int64)
        return _int_from_float(series.cast(pl.Float64), name)
    values = series.cast(pl.Float64)  # FLOAT
    if dtype.is_integer():
        return Converted(values, None, False)
    return _finite(values, name)


def _finite(values: pl.Series, name: str, rewritten: bool = False) -> Converted:
    """NaN is missing; ±inf is not a usable number (wrong)."""
    nan = values.is_nan().fill_null(False)
    inf = values.is_infinite().fill_null(False)
    if not nan.any() and not inf.any():
        return Converted(values, None, rewritten)
    typed = _select(pl.when(~nan & ~inf).then(values), name)
    return Converted(typed, inf if inf.any() else None, True)


def _int_from_float(values: pl.Series, name: str) -> Converted:
    nan = values.is_nan().fill_null(False)
    exact = (values.round(0) == values) & (values.abs() < MAX_EXACT_FLOAT_INT)
    exact = exact.fill_null(False) & ~nan
    typed = _select(pl.when(exact).then(values.cast(pl.Int64, strict=False)), name)
    wrong = values.is_not_null() & ~nan & ~exact
    return Converted(typed, wrong if wrong.any() else None, True)


def _to_string(series: pl.Series, na_values: list[str]) -> Converted:
    dtype = series.dtype
    name = series.name
    if dtype == pl.Boolean:
        text = _select(pl.when(series).then(pl.lit("true")).when(~series).then(pl.lit("false")), name)
    elif dtype.is_integer():
        text = series.cast(pl.String)
    elif dtype.is_float():
        values = series.cast(pl.Float64)
        integral = (values.round(0) == values) & (values.abs() < 2**63)
        text = _select(
            pl.when(values.is_nan())
            .then(None)
            .when(integral)
            .then(values.cast(pl.Int64, strict=False).cast(pl.String))
            .otherwise(values.cast(pl.String)),
            name,
        )
    elif dtype.is_numeric():
        text = series.cast(pl.String)
    else:
        return Converted(_nulls(series, pl.String), series.is_not_null(), True)
    extra = [v for v in na_values if v != ""]
    if extra:
        text = _select(pl.when(~text.is_in(extra)).then(text), name)
    return Converted(text, None, True)


def _from_text(column_type: ColumnType, text: pl.Series, na_values: list[str]) -> Converted:
    name = text.name
    extra = [v for v in na_values if v != ""]
    if column_type is ColumnType.STRING:
        missing = text.is_in(na_values) if na_values else None
        if missing is not None and missing.any():
            hit_extra = bool(extra) and bool(text.is_in(extra).any())
            return Converted(_select(pl.when(~missing).then(text), name), None, hit_extra)
        return Converted(text, None, False)
    stripped = text.str.strip_chars()
    missing = stripped.is_in(["", *na_values]) | text.is_in(na_values)
    if column_type.is_numeric:
        missing = missing | (stripped.str.to_lowercase() == NAN_TEXT)
    missing = missing.fill_null(True)
    present = ~missing
    rewritten = bool(extra) and bool(text.is_in(extra).any())
    if column_type is ColumnType.BOOL:
        lowered = stripped.str.to_lowercase()
        word = pl.when(lowered.is_in(TRUE_WORDS)).then(True).when(lowered.is_in(FALSE_WORDS)).then(False)
        typed = _select(word, name)
        unknown = present & typed.is_null()
        if unknown.any():  # numbers: 1.0 and 0.0 count, by the int rule
            number = stripped.cast(pl.Float64, strict=False)
            numeric = pl.when(number == 1.0).then(True).when(number == 0.0).then(False)
            typed = _select(pl.coalesce(pl.lit(typed), numeric), name)
        wrong = present & typed.is_null()
        words = (lowered.is_in(["true", "false"]) | missing).all()
        canonical = bool(words) and bool((lowered == text).fill_null(True).all())  # "true", not " True"
        return Converted(typed, wrong if wrong.any() else None, rewritten or not canonical)
    masked = _select(pl.when(present).then(stripped), name)
    if column_type is ColumnType.INT:
        direct = masked.cast(pl.Int64, strict=False)
        unparsed = present & direct.is_null()
        if not unparsed.any():
            return Converted(direct, None, rewritten)
        # 181.0, 1e3: integral numbers a float holds exactly; NaN spelled otherwise ("-nan") is missing
        as_float = masked.cast(pl.Float64, strict=False)
        fallback = _int_from_float(as_float, name)
        typed = _select(pl.coalesce(direct, fallback.values), name)
        nan = as_float.is_nan().fill_null(False)
        typed_ok = typed.is_not_null() | nan
        wrong = present & ~typed_ok  # also beyond the 64-bit range: neither cast holds it exactly
        return Converted(typed, wrong if wrong.any() else None, True)
    values = masked.cast(pl.Float64, strict=False)  # FLOAT
    nan = values.is_nan().fill_null(False)
    inf = values.is_infinite().fill_null(False)
    wrong = (present & values.is_null()) | inf
    typed = _select(pl.when(~nan & ~inf).then(values), name) if (nan.any() or inf.any()) else values
    return Converted(typed, wrong if wrong.any() else None, rewritten or bool(nan.any()))
