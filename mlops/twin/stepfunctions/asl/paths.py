"""JSONPath as ASL uses it: reference paths (``$.a.b[0]``, ``$$.Execution.Id``) with the
JSONPath extras Step Functions accepts in Paths such as InputPath/OutputPath and ``.$``
fields (``[*]``, ``.*``, ``..name``, slices, unions ``[0,1]`` / ``['a','b']``, simple
``[?(@.x <op> literal)]`` filters), plus ResultPath assignment. Reference paths (ResultPath,
ItemsPath, ``*Path`` settings) allow none of the extras: the spec excludes "@", ",", ":"
and "?" from them."""

from __future__ import annotations

import copy
import json
import operator
import re
from dataclasses import dataclass
from typing import Any

from mlops.twin.stepfunctions.asl.errors import RESULT_PATH_MATCH_FAILURE, StatesError


class PathSyntaxError(ValueError):
    """The string is not a valid path."""


class PathNotFound(LookupError):
    """A definite path does not resolve against the data."""


@dataclass(frozen=True)
class Token:
    kind: str  # key | index | wild | slice | filter | deep | union
    value: Any = None


_NAME = re.compile(r"[^.\[\]]+")
_INDEX = re.compile(r"\s*(-?\d*)\s*(?::\s*(-?\d*)\s*)?(?::\s*(-?\d*)\s*)?\]")
_FILTER = re.compile(r"\?\(\s*@(?P<path>[^=!<>]*?)\s*(?:(?P<op>==|!=|<=|>=|<|>)\s*(?P<lit>.+?))?\s*\)\]")
_OPS = {"==": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}
_CACHE: dict[str, tuple[bool, tuple[Token, ...]]] = {}


def parse(path: str) -> tuple[bool, tuple[Token, ...]]:
    """Returns (is_context_path, tokens); raises PathSyntaxError."""
    cached = _CACHE.get(path)
    if cached is not None:
        return cached
    if not isinstance(path, str) or not path.startswith("$"):
        raise PathSyntaxError(f"path must start with '$': {path!r}")
    context = path.startswith("$$")
    i, n, tokens = (2 if context else 1), len(path), []
    while i < n:
        if path.startswith("..", i):
            match = _NAME.match(path, i + 2)
            if not match:
                raise PathSyntaxError(f"bad recursive descent at {i} in {path!r}")
            tokens.append(Token("deep", match.group()))
            i = match.end()
        elif path[i] == ".":
            match = _NAME.match(path, i + 1)
            if not match:
                raise PathSyntaxError(f"empty name at {i} in {path!r}")
            name = match.group()
            tokens.append(Token("wild") if name == "*" else Token("key", name))
            i = match.end()
        elif path[i] == "[":
            i = _parse_bracket(path, i + 1, tokens)
        else:
            raise PathSyntaxError(f"unexpected {path[i]!r} at {i} in {path!r}")
    result = (context, tuple(tokens))
    _CACHE[path] = result
    return result


def _parse_bracket(path: str, i: int, tokens: list[Token]) -> int:
    if i >= len(path):
        raise PathSyntaxError(f"unclosed '[' in {path!r}")
    if path[i] != "?":
        union = _union(path, i)
        if union is not None:
            members, end = union
            tokens.append(Token("union", members))
            return end
    quote = path[i]
    if quote in "'\"":
        j, name = i + 1, []
        while j < len(path) and path[j] != quote:
            if path[j] == "\\" and j + 1 < len(path):
                j += 1
            name.append(path[j])
            j += 1
        if not path.startswith(quote + "]", j):
            raise PathSyntaxError(f"unclosed quoted name in {path!r}")
        tokens.append(Token("key", "".join(name)))
        return j + 2
    if path.startswith("*]", i):
        tokens.append(Token("wild"))
        return i + 2
    if path[i] == "?":
        match = _FILTER.match(path, i)
        if not match:
            raise PathSyntaxError(f"unsupported filter in {path!r}")
        sub = parse("$" + match["path"])[1] if match["path"] else ()
        literal = _filter_literal(match["lit"], path) if match["op"] else None
        tokens.append(Token("filter", (sub, match["op"], literal)))
        return match.end()
    match = _INDEX.match(path, i)
    if not match or match.group(0).strip() == "]":
        raise PathSyntaxError(f"bad index in {path!r}")
    start, stop, step = match.groups()
    if stop is None and step is None and ":" not in match.group(0):
        tokens.append(Token("index", int(start)))
    else:
        tokens.append(Token("slice", tuple(int(x) if x else None for x in (start, stop, step))))
    return match.end()


def _union(path: str, i: int) -> tuple[tuple[Token, ...], int] | None:
    """``[m1,m2,...]`` (quoted names or integer indices) starting after ``[``; None when the
    bracket holds one member (the single-member forms are parsed by the caller)."""
    items, start, quote, j = [], i, "", i
    while j < len(path):
        char = path[j]
        if quote:
            if char == "\\":
                j += 1
            elif char == quote:
                quote = ""
        elif char in "'\"":
            quote = char
        elif char == ",":
            items.append(path[start:j])
            start = j + 1
        elif char == "]":
            break
        j += 1
    if j >= len(path) or not items:
        return None
    items.append(path[start:j])
    return tuple(_union_member(item.strip(), path) for item in items), j + 1


def _union_member(text: str, path: str) -> Token:
    if re.fullmatch(r"-?\d+", text):
        return Token("index", int(text))
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return Token("key", re.sub(r"\\(.)", r"\1", text[1:-1]))
    raise PathSyntaxError(f"bad union member {text!r} in {path!r}")


def _filter_literal(text: str, path: str) -> Any:
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] == "'":
        return text[1:-1]
    try:
        return json.loads(text)
    except ValueError as exc:
        raise PathSyntaxError(f"bad filter literal {text!r} in {path!r}") from exc


def is_definite(path: str) -> bool:
    return all(t.kind in ("key", "index") for t in parse(path)[1])


def validate(path: str, *, reference: bool = False) -> str | None:
    """A problem description, or None when the path is usable (reference = definite only)."""
    try:
        parse(path)
    except PathSyntaxError as exc:
        return str(exc)
    if reference and not is_definite(path):
        return f"{path!r} must be a reference path (no wildcards, slices, unions or filters)"
    return None


def get(data: Any, path: str, context: Any = None) -> Any:
    """Resolves ``path`` ($ against data, $$ against context); raises PathNotFound."""
    is_context, tokens = parse(path)
    root = context if is_context else data
    definite = all(t.kind in ("key", "index") for t in tokens)
    values = [root]
    for token in tokens:
        values = [v for value in values for v in _step(value, token)]
        if definite and not values:
            raise PathNotFound(path)
    return values[0] if definite else values


def exists(data: Any, path: str, context: Any = None) -> bool:
    try:
        get(data, path, context)
    except PathNotFound:
        return False
    return True


def _step(value: Any, token: Token) -> list[Any]:
    kind = token.kind
    if kind == "key":
        return [value[token.value]] if isinstance(value, dict) and token.value in value else []
    if kind == "index":
        if isinstance(value, list) and -len(value) <= token.value < len(value):
            return [value[token.value]]
        return []
    if kind == "wild":
        return list(value.values()) if isinstance(value, dict) else list(value) if isinstance(value, list) else []
    if kind == "slice":
        return value[slice(*token.value)] if isinstance(value, list) else []
    if kind == "deep":
        return _deep(value, token.value)
    if kind == "union":
        return [v for member in token.value for v in _step(value, member)]
    sub, op, literal = token.value
    items = value if isinstance(value, list) else list(value.values()) if isinstance(value, dict) else []
    return [item for item in items if _filter_matches(item, sub, op, literal)]


def _deep(value: Any, name: str) -> list[Any]:
    found: list[Any] = []
    if isinstance(value, dict):
        if name in value:
            found.append(value[name])
        children = list(value.values())
    elif isinstance(value, list):
        children = value
    else:
        return found
    for child in children:
        found.extend(_deep(child, name))
    return found


def _filter_matches(item: Any, sub: tuple[Token, ...], op: str | None, literal: Any) -> bool:
    values = [item]
    for token in sub:
        values = [v for value in values for v in _step(value, token)]
    if not values:
        return False
    if op is None:
        return True
    try:
        return bool(_OPS[op](values[0], literal))
    except TypeError:
        return False


def assign(data: Any, path: str, value: Any) -> Any:
    """ResultPath semantics: a copy of ``data`` with ``value`` placed at ``path`` (missing
    objects are created); States.ResultPathMatchFailure when the path cannot be placed."""
    tokens = parse(path)[1]
    if not tokens:
        return value
    result = copy.deepcopy(data)
    target = result
    for position, token in enumerate(tokens):
        last = position == len(tokens) - 1
        if token.kind == "key" and isinstance(target, dict):
            if last:
                target[token.value] = value
            else:
                target = target.setdefault(token.value, {})
        elif token.kind == "index" and isinstance(target, list) and -len(target) <= token.value < len(target):
            if last:
                target[token.value] = value
            else:
                target = target[token.value]
        else:
            raise StatesError(
                RESULT_PATH_MATCH_FAILURE,
                f"Unable to apply ResultPath {path!r} to input {json.dumps(data)[:200]}",
            )
    return result
