"""The ``Condition`` element of a policy statement, evaluated as IAM evaluates it.

Every operator of the IAM policy grammar the app can use: ``String*``, ``Numeric*``,
``Date*``, ``Bool``, ``Arn*``, ``IpAddress``, ``BinaryEquals``, ``Null``, each with the
``...IfExists`` suffix and the ``ForAnyValue:`` / ``ForAllValues:`` set qualifiers.

Rules (IAM User Guide, "Condition element" and "Condition operators"):

- several operators in one block, and several keys under one operator, must all match;
- several values for one key match if any of them does (for negated operators: if none does);
- a key absent from the request context makes a positive operator false and a negated one
  (``StringNotEquals``, ``ArnNotLike``, ...) true; ``...IfExists`` makes an absent key true;
- ``ForAllValues`` is true for an absent or empty key, ``ForAnyValue`` false.

An operator the twin does not know is an error, never a silent pass.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from functools import cache
from typing import Any

Context = Mapping[str, Any]  # condition key (case-insensitive) -> value or list of values


class UnknownConditionOperator(ValueError):
    """A policy uses a condition operator the evaluator does not implement."""


@cache
def _glob(pattern: str, ignore_case: bool = False) -> re.Pattern[str]:
    """IAM wildcards: ``*`` any run of characters, ``?`` exactly one; everything else literal."""
    body = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile(f"^{body}$", re.DOTALL | (re.IGNORECASE if ignore_case else 0))


def glob_match(pattern: str, value: str, *, ignore_case: bool = False) -> bool:
    return _glob(pattern, ignore_case).match(value) is not None


def _number(value: Any) -> float:
    return float(value)


def _date(value: Any) -> datetime:
    if isinstance(value, int | float) or (isinstance(value, str) and value.isdigit()):
        return datetime.fromtimestamp(float(value), UTC)
    parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _arn_like(pattern: str, value: str) -> bool:
    # ARNs are compared part by part (the resource part may itself contain colons)
    p_parts, v_parts = pattern.split(":", 5), value.split(":", 5)
    if len(p_parts) != 6 or len(v_parts) != 6:
        return glob_match(pattern, value)
    return all(glob_match(p, v) for p, v in zip(p_parts, v_parts, strict=True))


def _bool(expected: str, actual: Any) -> bool:
    return str(expected).lower() == str(actual).lower()


def _ip(expected: str, actual: Any) -> bool:
    return ipaddress.ip_address(str(actual)) in ipaddress.ip_network(str(expected), strict=False)


# base operator -> (compare(expected, actual), negated)
_OPERATORS: dict[str, tuple[Callable[[Any, Any], bool], bool]] = {
    "StringEquals": (lambda e, a: str(e) == str(a), False),
    "StringNotEquals": (lambda e, a: str(e) == str(a), True),
    "StringEqualsIgnoreCase": (lambda e, a: str(e).lower() == str(a).lower(), False),
    "StringNotEqualsIgnoreCase": (lambda e, a: str(e).lower() == str(a).lower(), True),
    "StringLike": (lambda e, a: glob_match(str(e), str(a)), False),
    "StringNotLike": (lambda e, a: glob_match(str(e), str(a)), True),
    "NumericEquals": (lambda e, a: _number(a) == _number(e), False),
    "NumericNotEquals": (lambda e, a: _number(a) == _number(e), True),
    "NumericLessThan": (lambda e, a: _number(a) < _number(e), False),
    "NumericLessThanEquals": (lambda e, a: _number(a) <= _number(e), False),
    "NumericGreaterThan": (lambda e, a: _number(a) > _number(e), False),
    "NumericGreaterThanEquals": (lambda e, a: _number(a) >= _number(e), False),
    "DateEquals": (lambda e, a: _date(a) == _date(e), False),
    "DateNotEquals": (lambda e, a: _date(a) == _date(e), True),
    "DateLessThan": (lambda e, a: _date(a) < _date(e), False),
    "DateLessThanEquals": (lambda e, a: _date(a) <= _date(e), False),
    "DateGreaterThan": (lambda e, a: _date(a) > _date(e), False),
    "DateGreaterThanEquals": (lambda e, a: _date(a) >= _date(e), False),
    "Bool": (_bool, False),
    "BinaryEquals": (lambda e, a: str(e) == str(a), False),
    "IpAddress": (_ip, False),
    "NotIpAddress": (_ip, True),
    "ArnEquals": (lambda e, a: str(e) == str(a), False),
    "ArnNotEquals": (lambda e, a: str(e) == str(a), True),
    "ArnLike": (lambda e, a: _arn_like(str(e), str(a)), False),
    "ArnNotLike": (lambda e, a: _arn_like(str(e), str(a)), True),
}


def _values(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple | set) else [value]


def _lookup(context: Context, key: str) -> tuple[bool, list[Any]]:
    lowered = key.lower()
    for name, value in context.items():
        if name.lower() == lowered:
            return True, _values(value)
    return False, []


def _null(key_values: dict[str, Any], context: Context) -> bool:
    for key, expected in key_values.items():
        present, actual = _lookup(context, key)
        absent = not present or not actual
        if any(_bool(e, "true") != absent for e in _values(expected)):
            return False
    return True


def evaluate(block: Mapping[str, Any], context: Context) -> bool:
    """True when every operator of a statement's Condition block matches the request context."""
    return all(_operator_matches(op, key_values, context) for op, key_values in block.items())


def _operator_matches(raw_operator: str, key_values: Mapping[str, Any], context: Context) -> bool:
    qualifier, _, operator = raw_operator.rpartition(":")
    if_exists = operator.endswith("IfExists")
    base = operator.removesuffix("IfExists")
    if base == "Null":
        return _null(dict(key_values), context)
    if base not in _OPERATORS or qualifier not in ("", "ForAnyValue", "ForAllValues"):
        raise UnknownConditionOperator(f"condition operator {raw_operator!r} is not supported by the twin")
    compare, negated = _OPERATORS[base]
    for key, expected in key_values.items():
        present, actual = _lookup(context, key)
        expected_values = _values(expected)
        if qualifier == "ForAllValues":
            ok = all(any(compare(e, a) for e in expected_values) != negated for a in actual)
        elif qualifier == "ForAnyValue":
            ok = any(any(compare(e, a) for e in expected_values) != negated for a in actual)
        elif not present:
            ok = if_exists or negated
        else:
            matched = any(compare(e, a) for e in expected_values for a in actual)
            ok = not matched if negated else matched
        if not ok:
            return False
    return True
