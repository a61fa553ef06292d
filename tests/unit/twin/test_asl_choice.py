"""Choice rules: every comparison operator, type tests, combinators and validation."""

import pytest

from mlops.twin.stepfunctions.asl import StatesError, choice

DATA = {
    "s": "banana",
    "n": 10,
    "f": 2.5,
    "b": True,
    "t": "2024-01-02T03:04:05Z",
    "z": None,
    "other": {"s": "apple", "n": 10, "b": True, "t": "2024-01-02T04:04:05+01:00"},
}


@pytest.mark.parametrize(
    ("operator", "variable", "value", "expected"),
    [
        ("StringEquals", "$.s", "banana", True),
        ("StringEquals", "$.n", "10", False),  # type mismatch is no match
        ("StringLessThan", "$.s", "cherry", True),
        ("StringGreaterThan", "$.s", "cherry", False),
        ("StringLessThanEquals", "$.s", "banana", True),
        ("StringGreaterThanEquals", "$.s", "apple", True),
        ("NumericEquals", "$.n", 10, True),
        ("NumericEquals", "$.s", 10, False),
        ("NumericLessThan", "$.f", 3, True),
        ("NumericGreaterThan", "$.f", 3, False),
        ("NumericLessThanEquals", "$.n", 10, True),
        ("NumericGreaterThanEquals", "$.n", 10.5, False),
        ("BooleanEquals", "$.b", True, True),
        ("BooleanEquals", "$.n", True, False),
        ("TimestampEquals", "$.t", "2024-01-02T04:04:05+01:00", True),
        ("TimestampLessThan", "$.t", "2024-01-02T03:04:06Z", True),
        ("TimestampGreaterThan", "$.t", "2024-01-02T03:04:06Z", False),
        ("TimestampLessThanEquals", "$.t", "2024-01-02T03:04:05Z", True),
        ("TimestampGreaterThanEquals", "$.t", "2025-01-01T00:00:00Z", False),
        ("TimestampEquals", "$.s", "2024-01-02T03:04:05Z", False),
        ("IsNull", "$.z", True, True),
        ("IsNull", "$.s", True, False),
        ("IsPresent", "$.z", True, True),
        ("IsPresent", "$.missing", False, True),
        ("IsNumeric", "$.f", True, True),
        ("IsNumeric", "$.b", True, False),  # booleans are not numbers
        ("IsString", "$.s", True, True),
        ("IsBoolean", "$.b", True, True),
        ("IsTimestamp", "$.t", True, True),
        ("IsTimestamp", "$.s", False, True),
    ],
)
def test_operator(operator, variable, value, expected):
    assert choice.evaluate({"Variable": variable, operator: value}, DATA) is expected


@pytest.mark.parametrize(
    ("operator", "path", "expected"),
    [
        ("StringEqualsPath", "$.other.s", False),
        ("StringGreaterThanPath", "$.other.s", True),
        ("StringLessThanPath", "$.other.s", False),
        ("StringLessThanEqualsPath", "$.s", True),
        ("StringGreaterThanEqualsPath", "$.other.s", True),
    ],
)
def test_string_path_operators(operator, path, expected):
    assert choice.evaluate({"Variable": "$.s", operator: path}, DATA) is expected


@pytest.mark.parametrize(
    ("operator", "expected"),
    [
        ("NumericEqualsPath", True),
        ("NumericLessThanPath", False),
        ("NumericGreaterThanPath", False),
        ("NumericLessThanEqualsPath", True),
        ("NumericGreaterThanEqualsPath", True),
    ],
)
def test_numeric_path_operators(operator, expected):
    assert choice.evaluate({"Variable": "$.n", operator: "$.other.n"}, DATA) is expected


@pytest.mark.parametrize(
    ("operator", "expected"),
    [
        ("TimestampEqualsPath", True),
        ("TimestampLessThanPath", False),
        ("TimestampGreaterThanPath", False),
        ("TimestampLessThanEqualsPath", True),
        ("TimestampGreaterThanEqualsPath", True),
    ],
)
def test_timestamp_path_operators(operator, expected):
    assert choice.evaluate({"Variable": "$.t", operator: "$.other.t"}, DATA) is expected


def test_boolean_equals_path():
    assert choice.evaluate({"Variable": "$.b", "BooleanEqualsPath": "$.other.b"}, DATA) is True


@pytest.mark.parametrize(
    ("value", "pattern", "expected"),
    [
        ("log-2024.txt", "log-*.txt", True),
        ("log-2024.csv", "log-*.txt", False),
        ("a*b", r"a\*b", True),
        ("axb", r"a\*b", False),
        ("a\\b", r"a\\b", True),
        ("anything", "*", True),
        ("x.y", "x.y", True),
        ("xzy", "x.y", False),  # regex characters are literal
    ],
)
def test_string_matches(value, pattern, expected):
    assert choice.evaluate({"Variable": "$.v", "StringMatches": pattern}, {"v": value}) is expected


def test_and_or_not():
    rule = {
        "And": [
            {"Variable": "$.n", "NumericGreaterThan": 5},
            {"Or": [{"Variable": "$.s", "StringEquals": "x"}, {"Not": {"Variable": "$.b", "BooleanEquals": False}}]},
        ]
    }
    assert choice.evaluate(rule, DATA) is True
    assert choice.evaluate({"Not": rule}, DATA) is False


def test_context_variable():
    assert choice.evaluate({"Variable": "$$.State.Name", "StringEquals": "C"}, {}, {"State": {"Name": "C"}})


def test_missing_variable_is_runtime_error():
    with pytest.raises(StatesError) as info:
        choice.evaluate({"Variable": "$.missing", "StringEquals": "x"}, DATA)
    assert info.value.error == "States.Runtime"


def test_rule_problems():
    assert choice.problems({"Variable": "$.a", "StringEquals": "x", "Next": "N"}, "/c", top=True) == []
    assert choice.problems({"Variable": "$.a", "StringEquals": "x"}, "/c", top=True)  # no Next
    assert choice.problems({"Variable": "$.a", "StringEqual": "x", "Next": "N"}, "/c", top=True)  # typo
    assert choice.problems({"Variable": "$.a", "NumericEquals": "1", "Next": "N"}, "/c", top=True)
    assert choice.problems({"Variable": "$.a", "TimestampEquals": "yesterday", "Next": "N"}, "/c", top=True)
    assert choice.problems({"And": [], "Next": "N"}, "/c", top=True)
