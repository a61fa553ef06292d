"""Choice rules: comparison operators, And/Or/Not, and their validation."""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from datetime import datetime
from typing import Any

from mlops.twin.stepfunctions.asl import diagnostics, paths
from mlops.twin.stepfunctions.asl.diagnostics import Diagnostic
from mlops.twin.stepfunctions.asl.errors import RUNTIME, StatesError

_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "Equals": operator.eq,
    "LessThan": operator.lt,
    "GreaterThan": operator.gt,
    "LessThanEquals": operator.le,
    "GreaterThanEquals": operator.ge,
}
_KINDS = ("String", "Numeric", "Timestamp")
TYPE_TESTS = ("IsNull", "IsPresent", "IsNumeric", "IsString", "IsBoolean", "IsTimestamp")
COMPARISONS = frozenset(
    [f"{kind}{cmp}{suffix}" for kind in _KINDS for cmp in _COMPARE for suffix in ("", "Path")]
    + ["BooleanEquals", "BooleanEqualsPath", "StringMatches", *TYPE_TESTS]
)
_TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")


def parse_timestamp(value: Any) -> datetime | None:
    """An RFC 3339 timestamp (with 'T' and a zone), or None."""
    if not isinstance(value, str) or not _TIMESTAMP.match(value):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def string_matches(value: str, pattern: str) -> bool:
    """``*`` matches any run of characters; ``\\*`` and ``\\\\`` are literal."""
    regex, i = [], 0
    while i < len(pattern):
        char = pattern[i]
        if char == "\\" and i + 1 < len(pattern) and pattern[i + 1] in "*\\":
            regex.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        regex.append(".*" if char == "*" else re.escape(char))
        i += 1
    return re.fullmatch("".join(regex), value, flags=re.DOTALL) is not None


def evaluate(rule: dict[str, Any], data: Any, context: Any = None) -> bool:
    if "And" in rule:
        return all(evaluate(r, data, context) for r in rule["And"])
    if "Or" in rule:
        return any(evaluate(r, data, context) for r in rule["Or"])
    if "Not" in rule:
        return not evaluate(rule["Not"], data, context)
    variable = rule.get("Variable")
    operator_name = next(k for k in rule if k in COMPARISONS)
    expected = rule[operator_name]
    if operator_name == "IsPresent":
        return paths.exists(data, variable, context) == expected
    value = _resolve(data, variable, context, "Variable")
    if operator_name in TYPE_TESTS:
        return _type_test(operator_name, value) == expected
    if operator_name.endswith("Path"):
        expected = _resolve(data, expected, context, operator_name)
        operator_name = operator_name[: -len("Path")]
    return _compare(operator_name, value, expected)


def _resolve(data: Any, path: str, context: Any, field: str) -> Any:
    try:
        return paths.get(data, path, context)
    except (paths.PathNotFound, paths.PathSyntaxError) as exc:
        raise StatesError(RUNTIME, f"Invalid path {path!r} in Choice {field}: the path could not be found") from exc


def _type_test(name: str, value: Any) -> bool:
    if name == "IsNull":
        return value is None
    if name == "IsNumeric":
        return _is_number(value)
    if name == "IsString":
        return isinstance(value, str)
    if name == "IsBoolean":
        return isinstance(value, bool)
    return parse_timestamp(value) is not None  # IsTimestamp


def _compare(name: str, value: Any, expected: Any) -> bool:
    # A type mismatch is simply "no match", as in AWS.
    if name == "StringMatches":
        return isinstance(value, str) and isinstance(expected, str) and string_matches(value, expected)
    if name == "BooleanEquals":
        return isinstance(value, bool) and isinstance(expected, bool) and value == expected
    kind = next(k for k in _KINDS if name.startswith(k))
    compare = _COMPARE[name[len(kind) :]]
    if kind == "String":
        return isinstance(value, str) and isinstance(expected, str) and compare(value, expected)
    if kind == "Numeric":
        return _is_number(value) and _is_number(expected) and compare(value, expected)
    left, right = parse_timestamp(value), parse_timestamp(expected)
    return left is not None and right is not None and compare(left, right)


# Fields a choice rule may carry besides its operator (Assign: variables, top-level rules only).
_RULE_FIELDS = frozenset({"And", "Or", "Not", "Next", "Variable", "Comment", "Assign"})


def problems(rule: Any, where: str, *, top: bool) -> list[Diagnostic]:
    """Why CreateStateMachine would refuse this choice rule (``where`` = its location)."""
    if not isinstance(rule, dict):
        return [diagnostics.invalid_value(where.rsplit("/", 1)[-1], "a JSON object", where)]
    found: list[Diagnostic] = []
    if top and "Next" not in rule:
        found.append(diagnostics.required(["Next"], where))
    for name in rule:
        if name in COMPARISONS or (name in _RULE_FIELDS and (top or name not in ("Next", "Assign"))):
            continue
        if name == "Condition":
            found.append(diagnostics.jsonata_only(name, where))
        else:
            found.append(diagnostics.not_supported(name, where))
    combinators = [k for k in ("And", "Or", "Not") if k in rule]
    operators = [k for k in rule if k in COMPARISONS]
    if len(combinators) + len(operators) != 1:
        found.append(
            diagnostics.schema("A choice rule must have exactly one comparison operator, And, Or or Not", where)
        )
        return found
    if combinators:
        name = combinators[0]
        children = [rule[name]] if name == "Not" else rule[name]
        if name != "Not" and (not isinstance(children, list) or not children):
            return [*found, diagnostics.invalid_value(name, "a non-empty array", f"{where}/{name}")]
        for index, child in enumerate(children):
            at = f"{where}/{name}" if name == "Not" else f"{where}/{name}[{index}]"
            found.extend(problems(child, at, top=False))
        return found
    name = operators[0]
    variable = rule.get("Variable")
    if variable is None:
        found.append(diagnostics.required(["Variable"], where))
    elif not isinstance(variable, str) or paths.validate(variable):
        found.append(diagnostics.invalid_path("Variable", f"{where}/Variable"))
    expected = _expected(name, rule[name])
    if expected:
        found.append(diagnostics.invalid_value(name, expected, f"{where}/{name}"))
    return found


def _expected(name: str, value: Any) -> str | None:
    """What the operator's value must be, when it is not that."""
    if name.endswith("Path"):
        return "a valid JSONPath" if not isinstance(value, str) or paths.validate(value) else None
    if name in TYPE_TESTS or name == "BooleanEquals":
        return None if isinstance(value, bool) else "a boolean"
    if name.startswith("Numeric"):
        return None if _is_number(value) else "a number"
    if name.startswith("Timestamp"):
        return None if parse_timestamp(value) is not None else "an RFC 3339 timestamp"
    return None if isinstance(value, str) else "a string"
