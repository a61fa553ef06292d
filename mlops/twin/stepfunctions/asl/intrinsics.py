"""Intrinsic functions (``States.Format(...)`` etc.) with a real argument parser.

Arguments are string literals in single quotes (escapes ``\\'`` ``\\{`` ``\\}`` ``\\\\``),
numbers, ``true``/``false``/``null``, paths (``$.x``, ``$$.Execution.Id``) and nested calls.
Every evaluation problem raises States.IntrinsicFailure."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
import random
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mlops.twin.stepfunctions.asl import paths
from mlops.twin.stepfunctions.asl.errors import INTRINSIC_FAILURE, StatesError

PLACEHOLDER = None  # marks an unescaped "{}" inside a string literal


class IntrinsicSyntaxError(ValueError):
    """The expression cannot be parsed (reported by validate())."""


@dataclass(frozen=True)
class Literal:
    value: Any


@dataclass(frozen=True)
class StringLiteral:
    parts: tuple[str | None, ...]  # text segments and PLACEHOLDERs

    @property
    def text(self) -> str:
        return "".join("{}" if p is PLACEHOLDER else p for p in self.parts)


@dataclass(frozen=True)
class PathArg:
    path: str


@dataclass(frozen=True)
class Call:
    name: str
    args: tuple[Any, ...]


_NAME = re.compile(r"States\.[A-Za-z0-9]+")
_NUMBER = re.compile(r"-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?")
_KEYWORDS = {"true": True, "false": False, "null": None}


def is_intrinsic(expression: str) -> bool:
    return isinstance(expression, str) and expression.startswith("States.")


def parse(expression: str) -> Call:
    parser = _Parser(expression)
    call = parser.call()
    parser.skip_ws()
    if parser.i != len(expression):
        raise IntrinsicSyntaxError(f"unexpected text after call at {parser.i}: {expression!r}")
    return call


class _Parser:
    def __init__(self, text: str) -> None:
        self.s, self.i = text, 0

    def skip_ws(self) -> None:
        while self.i < len(self.s) and self.s[self.i].isspace():
            self.i += 1

    def expect(self, char: str) -> None:
        self.skip_ws()
        if not self.s.startswith(char, self.i):
            raise IntrinsicSyntaxError(f"expected {char!r} at {self.i} in {self.s!r}")
        self.i += 1

    def call(self) -> Call:
        self.skip_ws()
        match = _NAME.match(self.s, self.i)
        if not match:
            raise IntrinsicSyntaxError(f"expected an intrinsic function at {self.i} in {self.s!r}")
        name = match.group()
        if name not in FUNCTIONS:
            raise IntrinsicSyntaxError(f"unknown intrinsic function {name}")
        self.i = match.end()
        self.expect("(")
        args: list[Any] = []
        self.skip_ws()
        if self.s.startswith(")", self.i):
            self.i += 1
        else:
            while True:
                args.append(self.argument())
                self.skip_ws()
                if self.s.startswith(",", self.i):
                    self.i += 1
                    continue
                self.expect(")")
                break
        low, high = FUNCTIONS[name][1:]
        if not low <= len(args) <= high:
            raise IntrinsicSyntaxError(f"{name} takes {low}..{high} arguments, got {len(args)}")
        return Call(name, tuple(args))

    def argument(self) -> Any:
        self.skip_ws()
        if self.i >= len(self.s):
            raise IntrinsicSyntaxError(f"missing argument in {self.s!r}")
        char = self.s[self.i]
        if char == "'":
            return self.string()
        if char == "$":
            return self.path()
        if self.s.startswith("States.", self.i):
            return self.call()
        for word, value in _KEYWORDS.items():
            if self.s.startswith(word, self.i):
                self.i += len(word)
                return Literal(value)
        match = _NUMBER.match(self.s, self.i)
        if match:
            self.i = match.end()
            text = match.group()
            return Literal(float(text) if any(c in text for c in ".eE") else int(text))
        raise IntrinsicSyntaxError(f"bad argument at {self.i} in {self.s!r}")

    def string(self) -> StringLiteral:
        self.i += 1
        parts: list[str | None] = []
        buf: list[str] = []
        while True:
            if self.i >= len(self.s):
                raise IntrinsicSyntaxError(f"unterminated string in {self.s!r}")
            char = self.s[self.i]
            if char == "\\":
                nxt = self.s[self.i + 1 : self.i + 2]
                if nxt not in ("'", "{", "}", "\\"):
                    raise IntrinsicSyntaxError(f"bad escape \\{nxt} in {self.s!r}")
                buf.append(nxt)
                self.i += 2
            elif char == "'":
                self.i += 1
                break
            elif self.s.startswith("{}", self.i):
                parts.extend(["".join(buf), PLACEHOLDER])
                buf = []
                self.i += 2
            elif char in "{}":
                raise IntrinsicSyntaxError(f"unescaped {char!r} in string literal of {self.s!r}")
            else:
                buf.append(char)
                self.i += 1
        parts.append("".join(buf))
        return StringLiteral(tuple(parts))

    def path(self) -> PathArg:
        # A path runs to the next "," or ")" outside brackets and quotes.
        start, depth, quote = self.i, 0, ""
        while self.i < len(self.s):
            char = self.s[self.i]
            if quote:
                quote = "" if char == quote else quote
            elif char in "'\"":
                quote = char
            elif char == "[":
                depth += 1
            elif char == "]":
                depth -= 1
            elif char in ",)" and depth == 0:
                break
            self.i += 1
        text = self.s[start : self.i].strip()
        problem = paths.validate(text)
        if problem:
            raise IntrinsicSyntaxError(problem)
        return PathArg(text)


def evaluate(expression: str | Call, data: Any, context: Any = None) -> Any:
    try:
        call = parse(expression) if isinstance(expression, str) else expression
    except IntrinsicSyntaxError as exc:
        raise StatesError(INTRINSIC_FAILURE, str(exc)) from exc
    return _call(call, data, context)


def _call(call: Call, data: Any, context: Any) -> Any:
    args = [_value(arg, data, context) for arg in call.args]
    template = call.args[0] if call.name == "States.Format" and call.args else None
    try:
        if isinstance(template, StringLiteral):
            return _format(template.parts, args[1:])
        return FUNCTIONS[call.name][0](*args)
    except StatesError:
        raise
    except (TypeError, ValueError, KeyError, IndexError, OverflowError) as exc:
        raise StatesError(INTRINSIC_FAILURE, f"{call.name}: {exc}") from exc


def _value(arg: Any, data: Any, context: Any) -> Any:
    if isinstance(arg, Literal):
        return arg.value
    if isinstance(arg, StringLiteral):
        return arg.text
    if isinstance(arg, Call):
        return _call(arg, data, context)
    try:
        return paths.get(data, arg.path, context)
    except paths.PathNotFound as exc:
        raise StatesError(INTRINSIC_FAILURE, f"The JSONPath {arg.path!r} could not be found in the input") from exc


def _fail(message: str) -> StatesError:
    return StatesError(INTRINSIC_FAILURE, message)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _render(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, dict | list):
        raise _fail("States.Format arguments must be strings, numbers, booleans or null")
    return json.dumps(value)


def _format(parts: tuple[str | None, ...], args: list[Any]) -> str:
    holes = sum(1 for p in parts if p is PLACEHOLDER)
    if holes != len(args):
        raise _fail(f"States.Format template has {holes} placeholders but {len(args)} arguments")
    values = iter(args)
    return "".join(_render(next(values)) if p is PLACEHOLDER else p for p in parts)


def _format_dynamic(template: Any, *args: Any) -> str:
    if not isinstance(template, str):
        raise _fail("States.Format template must be a string")
    pieces = template.split("{}")
    parts: list[str | None] = []
    for index, piece in enumerate(pieces):
        parts.extend([piece] if index == len(pieces) - 1 else [piece, PLACEHOLDER])
    return _format(tuple(parts), list(args))


def _string_to_json(text: Any) -> Any:
    if not isinstance(text, str):
        raise _fail("States.StringToJson argument must be a string")
    return json.loads(text)


def _json_to_string(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _rounded(value: Any) -> Any:
    """A non-integer number rounded to the nearest integer, half up (Java's Math.round), where
    the AWS page says "Step Functions will round it off to the nearest integer" (ArrayPartition's
    chunk size, every ArrayRange argument, MathRandom's bounds, MathAdd's operands). Anything
    else is returned as is, for the caller's type check."""
    if isinstance(value, float) and math.isfinite(value):
        return math.floor(value + 0.5)
    return value


def _array_partition(array: Any, size: Any) -> list[list[Any]]:
    size = _rounded(size)
    if not isinstance(array, list) or not _is_int(size) or size <= 0:
        raise _fail("States.ArrayPartition needs an array and a positive integer chunk size")
    return [array[i : i + size] for i in range(0, len(array), size)]


def _array_contains(array: Any, value: Any) -> bool:
    if not isinstance(array, list):
        raise _fail("States.ArrayContains needs an array")
    return any(_same(item, value) for item in array)


def _same(a: Any, b: Any) -> bool:
    return (type(a) is type(b) and a == b) or (_is_number(a) and _is_number(b) and a == b)


def _array_range(start: Any, end: Any, step: Any) -> list[int]:
    start, end, step = _rounded(start), _rounded(end), _rounded(step)
    if not all(_is_int(x) for x in (start, end, step)) or step == 0:
        raise _fail("States.ArrayRange needs integer start, end and a non-zero step")
    values = list(range(start, end + (1 if step > 0 else -1), step))
    if len(values) > 1000:
        raise _fail("States.ArrayRange cannot produce more than 1000 items")
    return values


def _array_get_item(array: Any, index: Any) -> Any:
    if not isinstance(array, list) or not _is_int(index) or not 0 <= index < len(array):
        raise _fail("States.ArrayGetItem needs an array and an index within it")
    return array[index]


def _array_length(array: Any) -> int:
    if not isinstance(array, list):
        raise _fail("States.ArrayLength needs an array")
    return len(array)


def _array_unique(array: Any) -> list[Any]:
    if not isinstance(array, list):
        raise _fail("States.ArrayUnique needs an array")
    unique: list[Any] = []
    for item in array:
        if not any(_same(item, seen) for seen in unique):
            unique.append(item)
    return unique


def _base64_encode(text: Any) -> str:
    if not isinstance(text, str):
        raise _fail("States.Base64Encode needs a string")
    return base64.b64encode(text.encode()).decode()


def _base64_decode(text: Any) -> str:
    if not isinstance(text, str):
        raise _fail("States.Base64Decode needs a string")
    try:
        return base64.b64decode(text.encode(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise _fail(f"States.Base64Decode: {exc}") from exc


_HASHES = {"MD5": "md5", "SHA-1": "sha1", "SHA-256": "sha256", "SHA-384": "sha384", "SHA-512": "sha512"}


def _hash(data: Any, algorithm: Any) -> str:
    if algorithm not in _HASHES:
        raise _fail(f"States.Hash algorithm must be one of {', '.join(_HASHES)}")
    text = data if isinstance(data, str) else _json_to_string(data)
    return hashlib.new(_HASHES[algorithm], text.encode()).hexdigest()


def _json_merge(left: Any, right: Any, deep: Any) -> dict[str, Any]:
    if not isinstance(left, dict) or not isinstance(right, dict):
        raise _fail("States.JsonMerge needs two objects")
    if deep is not False:
        raise _fail("States.JsonMerge supports only shallow mode (false)")
    return {**left, **right}


def _math_random(start: Any, end: Any, seed: Any = None) -> int:
    start, end = _rounded(start), _rounded(end)
    if not _is_int(start) or not _is_int(end) or start >= end:
        raise _fail("States.MathRandom needs integers start < end")
    rng = random.Random(seed) if seed is not None else random
    return rng.randrange(start, end)


_INT32 = (-(2**31), 2**31 - 1)  # the documented range of MathAdd's arguments


def _math_add(a: Any, b: Any) -> int:
    a, b = _rounded(a), _rounded(b)
    if not _is_int(a) or not _is_int(b):
        raise _fail("States.MathAdd needs two numbers")
    if not all(_INT32[0] <= x <= _INT32[1] for x in (a, b)):
        raise _fail("States.MathAdd arguments must be between -2147483648 and 2147483647")
    return a + b


def _string_split(text: Any, delimiters: Any) -> list[str]:
    if not isinstance(text, str) or not isinstance(delimiters, str) or not delimiters:
        raise _fail("States.StringSplit needs a string and a non-empty delimiter string")
    return [part for part in re.split("[" + re.escape(delimiters) + "]", text) if part]


# name -> (implementation, min args, max args)
FUNCTIONS: dict[str, tuple[Callable[..., Any], int, int]] = {
    "States.Format": (_format_dynamic, 1, 1000),
    "States.StringToJson": (_string_to_json, 1, 1),
    "States.JsonToString": (_json_to_string, 1, 1),
    "States.Array": (lambda *items: list(items), 0, 1000),
    "States.ArrayPartition": (_array_partition, 2, 2),
    "States.ArrayContains": (_array_contains, 2, 2),
    "States.ArrayRange": (_array_range, 3, 3),
    "States.ArrayGetItem": (_array_get_item, 2, 2),
    "States.ArrayLength": (_array_length, 1, 1),
    "States.ArrayUnique": (_array_unique, 1, 1),
    "States.Base64Encode": (_base64_encode, 1, 1),
    "States.Base64Decode": (_base64_decode, 1, 1),
    "States.Hash": (_hash, 2, 2),
    "States.JsonMerge": (_json_merge, 3, 3),
    "States.MathRandom": (_math_random, 2, 3),
    "States.MathAdd": (_math_add, 2, 2),
    "States.StringSplit": (_string_split, 2, 2),
    "States.UUID": (lambda: str(uuid.uuid4()), 0, 0),
}
