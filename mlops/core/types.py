"""Column types: what a value of each contract type is, defined once.

Validation (vectorised in polars by ``mlops.core.contract``), training's coercion
(``mlops.core.features``, ``mlops.services.training``) and serving's typed rows all
follow the rules here; ``tests/unit/test_types.py`` holds the one table they are
checked against. Standard library and numpy only: SageMaker scripts and Lambdas
import it without polars or pydantic.

The rules, per cell (text from CSV/JSON, or a typed value from Parquet/JSON):

- **missing**: ``None``, a NaN, or text equal to one of the contract's
  ``na_values`` (exact match; default ``[""]``). In ``int``, ``float`` and ``bool``
  columns surrounding spaces are ignored, so a blank cell is missing too, and so is
  ``NaN``/``nan`` (any case) in ``int`` and ``float`` columns: it is how pandas,
  numpy and polars write a missing number.
- **int**: an integer (``181``, ``-3``, ``+7``), or a number with an integral value
  below 2**53 (``181.0``, ``1e3``: what pandas writes for an int column
  after NaN upcasting); ``181.5``, ``inf``, booleans and values beyond ±2**53 (for
  floats) or the 64-bit range are not ints.
- **float**: a finite number (``1.5``, ``-2e-3``, ``7``); ``inf`` is not.
- **bool**: ``true/false``, ``t/f``, ``yes/no``, ``y/n``, ``1/0`` in any case, or the
  numbers 1 and 0 (``1.0`` too, by the int rule).
- **string**: any text, kept verbatim (spaces included); numbers and booleans from
  typed sources become their text (``3``, ``2.5``, ``true``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from enum import StrEnum
from typing import Any

import numpy as np


class ColumnType(StrEnum):
    INT = "int"
    FLOAT = "float"
    STRING = "string"
    BOOL = "bool"

    @property
    def is_numeric(self) -> bool:
        return self in (ColumnType.INT, ColumnType.FLOAT)


DEFAULT_NA_VALUES: tuple[str, ...] = ("",)
NAN_TEXT = "nan"  # compared case-insensitively: NaN, nan, NAN
TRUE_WORDS = ("true", "t", "yes", "y", "1")
FALSE_WORDS = ("false", "f", "no", "n", "0")
MAX_EXACT_FLOAT_INT = 2**53  # from it on, a float no longer holds every integer
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
_INT_TEXT = re.compile(r"^[+-]?\d+$")
_FLOAT_TEXT = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$|^[+-]?(inf|infinity|nan)$", re.IGNORECASE)

# How each type is named in messages and in the config reference.
DESCRIPTIONS = {
    ColumnType.INT: "integers",
    ColumnType.FLOAT: "finite numbers",
    ColumnType.BOOL: "booleans (true/false, yes/no, 1/0)",
    ColumnType.STRING: "text",
}


class TypeMismatch(ValueError):
    """A value that is not of its column's type; ``str()`` says which and why."""

    def __init__(self, column_type: ColumnType, value: Any) -> None:
        self.column_type = column_type
        self.value = value
        super().__init__(f"{value!r} is not {'an' if column_type is ColumnType.INT else 'a'} {column_type.value}")


def _is_nan(value: Any) -> bool:
    return isinstance(value, float | np.floating) and math.isnan(value)


def is_missing(column_type: ColumnType, value: Any, na_values: Iterable[str] = DEFAULT_NA_VALUES) -> bool:
    """Whether a raw cell is a missing value for a column of ``column_type``."""
    if value is None or _is_nan(value):
        return True
    if not isinstance(value, str):
        return False
    if value in na_values:
        return True
    if column_type is ColumnType.STRING:
        return False
    text = value.strip()
    return text in na_values or text == "" or (column_type.is_numeric and text.lower() == NAN_TEXT)


def _integral(column_type: ColumnType, number: float, raw: Any) -> int:
    if not math.isfinite(number) or not number.is_integer() or abs(number) >= MAX_EXACT_FLOAT_INT:
        raise TypeMismatch(column_type, raw)
    return int(number)


def _number(column_type: ColumnType, value: Any) -> float | int:
    """A number from a non-missing cell: int for integer text and ints, float otherwise."""
    if isinstance(value, bool | np.bool_):
        raise TypeMismatch(column_type, value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return float(value)
    if not isinstance(value, str):
        raise TypeMismatch(column_type, value)
    text = value.strip()
    if _INT_TEXT.match(text):
        return int(text)
    if not _FLOAT_TEXT.match(text):
        raise TypeMismatch(column_type, value)
    return float(text)


def parse_value(column_type: ColumnType, value: Any, na_values: Iterable[str] = DEFAULT_NA_VALUES) -> Any:
    """The cell as a Python value of ``column_type`` (int, float, str or bool), or None when missing.

    Raises ``TypeMismatch`` when the cell is not a value of that type.
    """
    if is_missing(column_type, value, na_values):
        return None
    if column_type is ColumnType.STRING:
        if isinstance(value, str):
            return value
        if isinstance(value, bool | np.bool_):
            return "true" if value else "false"
        if isinstance(value, int | np.integer):
            return str(int(value))
        if isinstance(value, float | np.floating):
            return str(int(value)) if float(value).is_integer() else repr(float(value))
        raise TypeMismatch(column_type, value)
    if column_type is ColumnType.BOOL:
        if isinstance(value, bool | np.bool_):
            return bool(value)
        if isinstance(value, str):
            word = value.strip().lower()
            if word in TRUE_WORDS:
                return True
            if word in FALSE_WORDS:
                return False
        try:
            number = _integral(column_type, float(_number(column_type, value)), value)
        except (TypeMismatch, OverflowError):
            raise TypeMismatch(column_type, value) from None
        if number in (0, 1):
            return number == 1
        raise TypeMismatch(column_type, value)
    number = _number(column_type, value)
    if isinstance(number, float) and math.isnan(number):
        return None  # "-nan" and typed NaN: a missing number, as "nan" is
    if column_type is ColumnType.INT:
        out = number if isinstance(number, int) else _integral(column_type, number, value)
        if not INT64_MIN <= out <= INT64_MAX:
            raise TypeMismatch(column_type, value)
        return out
    number = float(number)
    if not math.isfinite(number):
        raise TypeMismatch(column_type, value)
    return number


def category_text(column_type: ColumnType, value: Any) -> str:
    """How a parsed (non-missing) value is named as a category: ``1`` and ``1.0`` are ``"1"``, bools ``true``."""
    if isinstance(value, bool | np.bool_):
        return "true" if value else "false"
    if column_type is ColumnType.INT or (isinstance(value, float) and value.is_integer()):
        return str(int(value))
    return str(value)


def allowed_values(column_type: ColumnType, allowed: Iterable[Any]) -> list[Any]:
    """A contract's ``allowed`` list as typed values (raises TypeMismatch for one that is not of the type)."""
    out = []
    for value in allowed:
        typed = parse_value(column_type, value, ())
        if typed is None:
            raise TypeMismatch(column_type, value)
        out.append(typed)
    return out


def describe(column_type: ColumnType) -> str:
    return DESCRIPTIONS[column_type]
