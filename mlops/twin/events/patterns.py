"""EventBridge event-pattern matching and target input transformation.

Semantics follow the Amazon EventBridge documentation (event patterns, content filtering, input transformation)
and the behaviour of the open-source matcher EventBridge uses (aws/event-ruler):

* fields in a pattern are AND-ed, values in a pattern array are OR-ed;
* an array in the event matches when any of its elements matches (array-consistent: sibling fields of a nested
  pattern object must match inside the same array element);
* only leaf values (strings, numbers, booleans, null) are matched; objects are never leaves, so
  ``{"exists": false}`` matches a field whose value is an object and ``{"exists": true}`` does not;
* ``null`` and ``""`` are distinct values; numbers compare numerically, never against strings or booleans.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

__all__ = [
    "PatternError",
    "apply_input_path",
    "apply_input_transformer",
    "matches",
    "validate_pattern",
]

_REASON = "Event pattern is not valid. Reason: "
_NUMERIC_LOW = (">", ">=")
_NUMERIC_HIGH = ("<", "<=")
_OR_KEY = "$or"
_OPERATORS = frozenset(
    {"prefix", "suffix", "anything-but", "numeric", "exists", "equals-ignore-case", "wildcard", "cidr"}
)


class PatternError(ValueError):
    """An event pattern EventBridge would reject (InvalidEventPatternException)."""

    def __init__(self, reason: str) -> None:
        super().__init__(_REASON + reason)
        self.reason = reason


# --------------------------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------------------------


def _load(pattern: dict | str) -> dict:
    if isinstance(pattern, str):
        try:
            pattern = json.loads(pattern)
        except json.JSONDecodeError as exc:
            raise PatternError(f"Filter is not valid JSON: {exc.msg} at char {exc.pos}") from None
    if not isinstance(pattern, dict):
        raise PatternError("Filter is not an object")
    return pattern


def validate_pattern(pattern: dict | str) -> None:
    """Raise PatternError if EventBridge would reject ``pattern``."""
    _validate_object(_load(pattern), path="")


def _is_or(value: Any) -> bool:
    # event-ruler only treats "$or" as the OR primitive when it holds 2+ objects free of operator keys;
    # otherwise "$or" is an ordinary field name.
    return (
        isinstance(value, list)
        and len(value) >= 2
        and all(isinstance(alt, dict) and not (_OPERATORS & alt.keys()) for alt in value)
    )


def _validate_object(obj: dict, path: str) -> None:
    if not obj:
        raise PatternError(f"Empty objects are not allowed{_at(path)}")
    for key, value in obj.items():
        field = f"{path}.{key}" if path else key
        if key == _OR_KEY and _is_or(value):
            for alt in value:
                _validate_object(alt, path)
        elif isinstance(value, dict):
            if _OPERATORS & value.keys():
                raise PatternError(f"Match value for {field} must be inside an array, e.g. [{json.dumps(value)}]")
            _validate_object(value, field)
        elif isinstance(value, list):
            if not value:
                raise PatternError(f"Empty arrays are not allowed (field {field})")
            for item in value:
                _validate_match(item, field)
        else:
            raise PatternError(f"Match value for {field} must be an array or an object, got {json.dumps(value)}")


def _at(path: str) -> str:
    return f" (field {path})" if path else ""


def _validate_match(item: Any, field: str) -> None:
    if item is None or isinstance(item, str | bool | int | float):
        return
    if isinstance(item, list):
        raise PatternError(f"Match value must be String, number, true, false, or null (field {field})")
    if not isinstance(item, dict) or len(item) != 1:
        raise PatternError(f"Only one key allowed in match expression (field {field}): {json.dumps(item)}")
    ((op, arg),) = item.items()
    if op in ("prefix", "suffix"):
        _validate_prefix_like(op, arg, field)
    elif op == "equals-ignore-case":
        _require_str(op, arg, field)
    elif op == "wildcard":
        _require_str(op, arg, field)
        _compile_wildcard(arg, field)
    elif op == "exists":
        if not isinstance(arg, bool):
            raise PatternError(f"exists match pattern must be either true or false (field {field})")
    elif op == "numeric":
        _parse_numeric(arg, field)
    elif op == "cidr":
        _parse_cidr(arg, field)
    elif op == "anything-but":
        _validate_anything_but(arg, field)
    else:
        raise PatternError(f"Unrecognized match type {op} (field {field})")


def _require_str(op: str, arg: Any, field: str) -> None:
    if not isinstance(arg, str):
        raise PatternError(f"{op} match pattern must be a string (field {field})")


def _validate_prefix_like(op: str, arg: Any, field: str) -> None:
    if isinstance(arg, dict):
        if list(arg) != ["equals-ignore-case"]:
            raise PatternError(f"Unsupported {op} pattern {json.dumps(arg)} (field {field})")
        _require_str(f"{op} equals-ignore-case", arg["equals-ignore-case"], field)
    else:
        _require_str(op, arg, field)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _validate_anything_but(arg: Any, field: str) -> None:
    if isinstance(arg, str) or _is_number(arg):
        return
    if isinstance(arg, list):
        if not arg:
            raise PatternError(f"Empty arrays are not allowed in anything-but (field {field})")
        if not (all(isinstance(v, str) for v in arg) or all(_is_number(v) for v in arg)):
            raise PatternError(f"Inside anything-but list, all values must be strings or all numbers (field {field})")
        return
    if isinstance(arg, dict):
        if len(arg) != 1:
            raise PatternError(f"Only one key allowed in anything-but expression (field {field})")
        ((op, inner),) = arg.items()
        if op in ("prefix", "suffix"):
            _require_str(f"anything-but {op}", inner, field)  # a single value only, never a list
        elif op in ("equals-ignore-case", "wildcard"):
            values = inner if isinstance(inner, list) else [inner]
            if not values:
                raise PatternError(f"Empty arrays are not allowed in anything-but {op} (field {field})")
            for v in values:
                _require_str(f"anything-but {op}", v, field)
                if op == "wildcard":
                    _compile_wildcard(v, field)
        else:
            raise PatternError(f"Unsupported anything-but pattern: {op} (field {field})")
        return
    raise PatternError(f"Value of anything-but must be a string, number, array or object (field {field})")


_Bound = tuple[str, float]


def _parse_numeric(spec: Any, field: str) -> list[_Bound]:
    """Return the (operator, number) bounds of a numeric spec, enforcing EventBridge's grammar:
    ``["=", n]``, ``[op, n]`` or a range ``[">"|">=", low, "<"|"<=", high]`` with ``low < high``."""
    if not isinstance(spec, list) or not spec or len(spec) % 2:
        raise PatternError(f"Value of numeric must be an array of operator/number pairs (field {field})")
    bounds: list[_Bound] = []
    for i in range(0, len(spec), 2):
        op, num = spec[i], spec[i + 1]
        if op not in ("=", *_NUMERIC_LOW, *_NUMERIC_HIGH):
            raise PatternError(f"Unrecognized numeric range operator: {json.dumps(op)} (field {field})")
        if not _is_number(num):
            raise PatternError(f"Value of {op} must be numeric (field {field})")
        bounds.append((op, float(num)))
    if len(bounds) > 2:
        raise PatternError(f"Too many terms in numeric range expression (field {field})")
    if len(bounds) == 2:
        (op1, low), (op2, high) = bounds
        if op1 not in _NUMERIC_LOW or op2 not in _NUMERIC_HIGH:
            raise PatternError(
                f"Numeric range must be a lower bound (> or >=) followed by an upper bound (< or <=) (field {field})"
            )
        if low >= high:
            raise PatternError(f"Bottom must be less than top in numeric range (field {field})")
    return bounds


def _parse_cidr(arg: Any, field: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    if not isinstance(arg, str):
        raise PatternError(f"cidr match pattern must be a string (field {field})")
    try:
        return ipaddress.ip_network(arg, strict=False)
    except ValueError:
        raise PatternError(f"Nonstandard IP address: {arg} (field {field})") from None


def _compile_wildcard(text: str, field: str = "") -> re.Pattern[str]:
    """``*`` matches any run of characters; ``\\*`` is a literal asterisk and ``\\\\`` a literal backslash."""
    parts: list[str] = []
    i = 0
    prev_star = False
    while i < len(text):
        ch = text[i]
        if ch == "\\":
            nxt = text[i + 1] if i + 1 < len(text) else ""
            if nxt not in ("*", "\\"):
                raise PatternError(f"Invalid escape sequence in wildcard pattern {text!r} (field {field})")
            parts.append(re.escape(nxt))
            i += 2
            prev_star = False
            continue
        if ch == "*":
            if prev_star:
                raise PatternError(f"Consecutive wildcard characters are not allowed: {text!r} (field {field})")
            parts.append(".*")
            prev_star = True
        else:
            parts.append(re.escape(ch))
            prev_star = False
        i += 1
    return re.compile("".join(parts), re.DOTALL)


# --------------------------------------------------------------------------------------------------------------
# Matching
# --------------------------------------------------------------------------------------------------------------

_MISSING = object()


def matches(pattern: dict | str, event: dict) -> bool:
    """True if ``event`` matches ``pattern`` (validated first; PatternError if invalid)."""
    pat = _load(pattern)
    _validate_object(pat, path="")
    return _match_object(pat, event)


def _flatten(values: list) -> Iterator[Any]:
    for v in values:
        if isinstance(v, list):
            yield from _flatten(v)
        else:
            yield v


def _match_object(pat: dict, node: Any) -> bool:
    # A nested pattern against an array matches if one element matches it as a whole (array consistency).
    if isinstance(node, list):
        candidates = [el for el in _flatten(node) if isinstance(el, dict)] or [{}]
        return any(_match_object(pat, el) for el in candidates)
    if not isinstance(node, dict):
        node = {}  # a leaf has no sub-fields: only "exists": false style conditions can hold
    for key, sub in pat.items():
        if key == _OR_KEY and _is_or(sub):
            if not any(_match_object(alt, node) for alt in sub):
                return False
        elif isinstance(sub, dict):
            if not _match_object(sub, node.get(key, {})):
                return False
        elif not _match_field(sub, node.get(key, _MISSING)):
            return False
    return True


def _leaves(value: Any) -> list[Any]:
    if value is _MISSING or isinstance(value, dict):
        return []
    if isinstance(value, list):
        return [v for v in _flatten(value) if not isinstance(v, dict)]
    return [value]


def _match_field(matchers: list, value: Any) -> bool:
    leaves = _leaves(value)
    for m in matchers:
        if isinstance(m, dict) and "exists" in m:
            if bool(leaves) == m["exists"]:
                return True
        elif any(_match_leaf(m, leaf) for leaf in leaves):
            return True
    return False


def _equal(expected: Any, actual: Any) -> bool:
    if expected is None or actual is None:
        return expected is actual
    if isinstance(expected, bool) or isinstance(actual, bool):
        return isinstance(expected, bool) and isinstance(actual, bool) and expected is actual
    if _is_number(expected) or _is_number(actual):
        return _is_number(expected) and _is_number(actual) and float(expected) == float(actual)
    return isinstance(actual, str) and expected == actual


def _match_leaf(m: Any, leaf: Any) -> bool:
    if not isinstance(m, dict):
        return _equal(m, leaf)
    ((op, arg),) = m.items()
    if op == "numeric":
        return _is_number(leaf) and _numeric_ok(_parse_numeric(arg, ""), float(leaf))
    if op == "anything-but":
        return not _excluded(arg, leaf)
    if op == "cidr":
        return _in_cidr(_parse_cidr(arg, ""), leaf)
    if not isinstance(leaf, str):
        return False  # the remaining operators only apply to strings
    return _string_op(op, arg, leaf)


def _string_op(op: str, arg: Any, leaf: str) -> bool:
    if op in ("prefix", "suffix"):
        if isinstance(arg, dict):
            arg, leaf = arg["equals-ignore-case"].lower(), leaf.lower()
        return leaf.startswith(arg) if op == "prefix" else leaf.endswith(arg)
    if op == "equals-ignore-case":
        return leaf.lower() == arg.lower()
    if op == "wildcard":
        return _compile_wildcard(arg).fullmatch(leaf) is not None
    raise PatternError(f"Unrecognized match type {op}")


def _excluded(arg: Any, leaf: Any) -> bool:
    if isinstance(arg, dict):
        ((op, inner),) = arg.items()
        if not isinstance(leaf, str):
            return False  # string-only exclusions never exclude numbers, booleans or null
        values = inner if isinstance(inner, list) else [inner]
        return any(_string_op(op, v, leaf) for v in values)
    values = arg if isinstance(arg, list) else [arg]
    return any(_equal(v, leaf) for v in values)


def _numeric_ok(bounds: list[_Bound], x: float) -> bool:
    for op, n in bounds:
        ok = {
            "=": x == n,
            "<": x < n,
            "<=": x <= n,
            ">": x > n,
            ">=": x >= n,
        }[op]
        if not ok:
            return False
    return True


def _in_cidr(network: ipaddress.IPv4Network | ipaddress.IPv6Network, leaf: Any) -> bool:
    if not isinstance(leaf, str):
        return False
    try:
        address = ipaddress.ip_address(leaf)
    except ValueError:
        return False
    return address.version == network.version and address in network


# --------------------------------------------------------------------------------------------------------------
# Input path and input transformer
# --------------------------------------------------------------------------------------------------------------

_PATH_TOKEN = re.compile(r"\.([^.\[\]]+)|\[(\d+|\*)\]|\['([^']*)'\]")


def _json_path(path: str, event: Any) -> tuple[bool, Any]:
    """Resolve an EventBridge JSON path (dot notation, array indices, ``*`` wildcards). Returns (found, value)."""
    path = path.strip()
    if not path.startswith("$"):
        raise ValueError(f"JSON path must start with '$': {path!r}")
    tokens: list[str | int] = []
    pos = 1
    while pos < len(path):
        m = _PATH_TOKEN.match(path, pos)
        if not m:
            raise ValueError(f"Unsupported JSON path syntax at {path[pos:]!r} in {path!r}")
        name, index, quoted = m.groups()
        if index is not None:
            tokens.append("*" if index == "*" else int(index))
        else:
            tokens.append(name if name is not None else quoted)
        pos = m.end()
    return _walk(tokens, event)


def _walk(tokens: list[str | int], node: Any) -> tuple[bool, Any]:
    if not tokens:
        return True, node
    head, rest = tokens[0], tokens[1:]
    if head == "*":
        children = node if isinstance(node, list) else list(node.values()) if isinstance(node, dict) else None
        if children is None:
            return False, None
        found = [v for ok, v in (_walk(rest, c) for c in children) if ok]
        return True, found
    if isinstance(head, int):
        if isinstance(node, list) and -len(node) <= head < len(node):
            return _walk(rest, node[head])
        return False, None
    if isinstance(node, dict) and head in node:
        return _walk(rest, node[head])
    return False, None


def apply_input_path(input_path: str, event: dict) -> Any:
    """The value a target with ``InputPath`` receives (None when the path matches nothing)."""
    found, value = _json_path(input_path, event)
    return value if found else None


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


_PLACEHOLDER = re.compile(r"<([A-Za-z0-9_.\-]+)>")


def apply_input_transformer(
    input_paths_map: dict[str, str] | None,
    input_template: str,
    event: dict,
    *,
    rule_name: str = "",
    rule_arn: str = "",
    ingestion_time: float | str | None = None,
) -> str:
    """Render an InputTemplate for ``event`` the way EventBridge does.

    Placement rules: a placeholder inside a JSON string literal is replaced by the value's text (strings unquoted,
    objects/arrays as JSON with their inner quotes removed, a missing path as empty text); outside quotes it is
    replaced by the value as JSON (a missing path as ``null``). A template that does not start with ``{``, ``[``
    or ``"`` is plain text and every placeholder is replaced by the value's text. As documented, extracted values
    are not escaped. JSON output is minified. Predefined variables: ``aws.events.rule-name``,
    ``aws.events.rule-arn``, ``aws.events.event`` (event without ``detail``), ``aws.events.event.json``
    (whole event) and ``aws.events.event.ingestion-time`` (ISO 8601).
    """
    values: dict[str, tuple[bool, Any]] = {}
    for name, path in (input_paths_map or {}).items():
        if name.lower().startswith("aws."):
            raise ValueError(f"InputPathsMap variable names cannot start with 'aws.': {name}")
        values[name] = _json_path(path, event)
    if ingestion_time is None:
        ingestion = _iso(datetime.now(tz=UTC).timestamp())
    elif isinstance(ingestion_time, str):
        ingestion = ingestion_time
    else:
        ingestion = _iso(ingestion_time)
    values.update(
        {
            "aws.events.rule-name": (True, rule_name),
            "aws.events.rule-arn": (True, rule_arn),
            "aws.events.event": (True, {k: v for k, v in event.items() if k != "detail"}),
            "aws.events.event.json": (True, event),
            "aws.events.event.ingestion-time": (True, ingestion),
        }
    )

    json_mode = input_template.lstrip()[:1] in ("{", "[", '"')
    out: list[str] = []
    in_string = False
    i = 0
    while i < len(input_template):
        ch = input_template[i]
        if ch == "<":
            m = _PLACEHOLDER.match(input_template, i)
            if m and m.group(1) in values:
                found, value = values[m.group(1)]
                as_text = in_string or not json_mode
                out.append(_as_text(found, value) if as_text else _as_json(found, value))
                i = m.end()
                continue
        if json_mode and ch == "\\" and in_string and i + 1 < len(input_template):
            out.append(input_template[i : i + 2])
            i += 2
            continue
        if json_mode and ch == '"':
            in_string = not in_string
        out.append(ch)
        i += 1
    rendered = "".join(out)
    if json_mode:
        try:
            return json.dumps(json.loads(rendered), separators=(",", ":"), ensure_ascii=False)
        except json.JSONDecodeError:
            return rendered  # e.g. an unescaped quote in an extracted value, as EventBridge would send it
    return rendered


def _as_json(found: bool, value: Any) -> str:
    if not found:
        return "null"
    if isinstance(value, str):
        return f'"{value}"'  # not escaped, per the EventBridge documentation
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _as_text(found: bool, value: Any) -> str:
    if not found:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, dict | list):
        # EventBridge strips the inner quotes so the surrounding string stays valid
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False).replace('"', "")
    return json.dumps(value)
