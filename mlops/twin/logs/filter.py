"""CloudWatch Logs filter patterns (FilterLogEvents, ``aws logs tail --filter-pattern``).

Served: the empty pattern; terms (case-sensitive, all must appear), ``"quoted terms"``,
``?term`` (any of them), ``-term`` (none of them), ``%regex%``; and JSON patterns
``{ $.field = "value" && ($.n > 5 || $.flag IS TRUE) }`` with ``= != < <= > >=``
(``*`` wildcards in strings), ``IS NULL``, ``NOT EXISTS``, ``IS TRUE``/``IS FALSE``.
Space-delimited patterns (``[ip, user, ...]``) are refused by name, never guessed.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from typing import Any

Matcher = Callable[[str], bool]


class FilterPatternError(ValueError):
    """A pattern CloudWatch Logs would reject, or one the twin does not evaluate."""


_PLAIN_TERM = re.compile(r"^[A-Za-z0-9_.:/@\-]+$")


def compile_pattern(pattern: str | None) -> Matcher:
    text = (pattern or "").strip()
    if not text:
        return lambda _message: True
    if text.startswith("{"):
        return _JsonParser(text).parse()
    if text.startswith("["):
        raise FilterPatternError(
            "space-delimited filter patterns ([field, ...]) are not implemented by the local twin; "
            "use terms, %regex% or a JSON pattern"
        )
    if len(text) >= 2 and text.startswith("%") and text.endswith("%"):
        try:
            regex = re.compile(text[1:-1])
        except re.error as exc:
            raise FilterPatternError(f"Invalid regular expression in filter pattern: {exc}") from None
        return lambda message: regex.search(message) is not None
    return _terms(text)


def _terms(text: str) -> Matcher:
    required: list[str] = []
    optional: list[str] = []
    excluded: list[str] = []
    for token in re.findall(r'[?-]?"(?:[^"\\]|\\.)*"|\S+', text):
        kind = token[0] if token[0] in "?-" and len(token) > 1 else ""
        term = token[len(kind) :]
        if term.startswith('"'):
            if len(term) < 2 or not term.endswith('"'):
                raise FilterPatternError(f"Invalid filter pattern: unterminated quote in {token!r}")
            term = term[1:-1].replace('\\"', '"')
        elif not _PLAIN_TERM.match(term):
            raise FilterPatternError(
                f"Invalid filter pattern: the term {term!r} has characters that must be in double quotes"
            )
        {"": required, "?": optional, "-": excluded}[kind].append(term)

    def match(message: str) -> bool:
        return (
            all(t in message for t in required)
            and not any(t in message for t in excluded)
            and (not optional or any(t in message for t in optional))
        )

    return match


# -- JSON patterns -------------------------------------------------------------------------
_TOKEN = re.compile(
    r"""\s*(?:
        (?P<sel>\$(?:\.[A-Za-z0-9_\-@]+|\[\d+\])*)
      | (?P<op>&&|\|\||!=|<=|>=|=|<|>|\(|\)|\{|\})
      | (?P<str>"(?:[^"\\]|\\.)*")
      | (?P<num>-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)
      | (?P<word>[A-Za-z]+)
    )""",
    re.VERBOSE,
)
_MISSING = object()


class _JsonParser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens: list[tuple[str, str]] = []
        pos = 0
        while pos < len(text):
            if text[pos:].strip() == "":
                break
            found = _TOKEN.match(text, pos)
            if found is None or found.end() == pos:
                raise FilterPatternError(f"Invalid filter pattern at {text[pos : pos + 20]!r}")
            kind = found.lastgroup or ""
            self.tokens.append((kind, found.group(kind)))
            pos = found.end()
        self.at = 0

    def _peek(self) -> tuple[str, str]:
        return self.tokens[self.at] if self.at < len(self.tokens) else ("end", "")

    def _take(self, value: str | None = None) -> tuple[str, str]:
        token = self._peek()
        if value is not None and token[1].upper() != value:
            raise FilterPatternError(f"Invalid filter pattern: expected {value!r}, found {token[1] or 'the end'!r}")
        self.at += 1
        return token

    def parse(self) -> Matcher:
        self._take("{")
        matcher = self._or()
        self._take("}")
        if self._peek()[0] != "end":
            raise FilterPatternError(f"Invalid filter pattern: unexpected {self._peek()[1]!r} after '}}'")

        def match(message: str) -> bool:
            try:
                doc = json.loads(message)
            except ValueError:
                return False
            return matcher(doc)

        return match

    def _or(self) -> Callable[[Any], bool]:
        parts = [self._and()]
        while self._peek()[1] == "||":
            self._take()
            parts.append(self._and())
        return parts[0] if len(parts) == 1 else (lambda doc: any(p(doc) for p in parts))

    def _and(self) -> Callable[[Any], bool]:
        parts = [self._term()]
        while self._peek()[1] == "&&":
            self._take()
            parts.append(self._term())
        return parts[0] if len(parts) == 1 else (lambda doc: all(p(doc) for p in parts))

    def _term(self) -> Callable[[Any], bool]:
        if self._peek()[1] == "(":
            self._take()
            inner = self._or()
            self._take(")")
            return inner
        kind, selector = self._take()
        if kind != "sel":
            raise FilterPatternError(f"Invalid filter pattern: expected a $.selector, found {selector!r}")
        path = re.findall(r"\.([A-Za-z0-9_\-@]+)|\[(\d+)\]", selector)
        keys: list[str | int] = [name if name else int(index) for name, index in path]
        kind, op = self._take()
        if kind == "word":
            return self._keyword(keys, op.upper())
        if kind != "op" or op not in ("=", "!=", "<", "<=", ">", ">="):
            raise FilterPatternError(f"Invalid filter pattern: expected a comparison after {selector}")
        kind, raw = self._take()
        if kind == "str":
            return self._string(keys, op, json.loads(raw))
        if kind == "num":
            return self._number(keys, op, float(raw))
        if kind == "word" and raw.lower() in ("true", "false", "null"):
            constant = json.loads(raw.lower())
            if op not in ("=", "!="):
                raise FilterPatternError(f"Invalid filter pattern: {op} cannot compare with {raw}")
            return lambda doc: (_select(doc, keys) == constant) == (op == "=") and _select(doc, keys) is not _MISSING
        if kind == "word":  # an unquoted string value
            return self._string(keys, op, raw)
        raise FilterPatternError(f"Invalid filter pattern: bad value {raw!r} for {selector}")

    def _keyword(self, keys: list[str | int], word: str) -> Callable[[Any], bool]:
        if word == "NOT":
            self._take("EXISTS")
            return lambda doc: _select(doc, keys) is _MISSING
        if word == "IS":
            _, what = self._take()
            what = what.upper()
            if what == "NULL":
                return lambda doc: _select(doc, keys) is None
            if what in ("TRUE", "FALSE"):
                expected = what == "TRUE"
                return lambda doc: _select(doc, keys) is expected
        raise FilterPatternError(f"Invalid filter pattern: unknown keyword {word}")

    @staticmethod
    def _string(keys: list[str | int], op: str, value: str) -> Callable[[Any], bool]:
        if op not in ("=", "!="):
            raise FilterPatternError(f"Invalid filter pattern: {op} cannot compare strings")
        regex = re.compile("^" + ".*".join(re.escape(p) for p in value.split("*")) + "$", re.DOTALL)

        def match(doc: Any) -> bool:
            found = _select(doc, keys)
            if found is _MISSING or isinstance(found, dict | list):
                return False
            text = found if isinstance(found, str) else json.dumps(found)
            return (regex.match(text) is not None) == (op == "=")

        return match

    @staticmethod
    def _number(keys: list[str | int], op: str, value: float) -> Callable[[Any], bool]:
        compare = {
            "=": lambda a: math.isclose(a, value),
            "!=": lambda a: not math.isclose(a, value),
            "<": lambda a: a < value,
            "<=": lambda a: a <= value,
            ">": lambda a: a > value,
            ">=": lambda a: a >= value,
        }[op]

        def match(doc: Any) -> bool:
            found = _select(doc, keys)
            return isinstance(found, int | float) and not isinstance(found, bool) and compare(float(found))

        return match


def _select(doc: Any, keys: list[str | int]) -> Any:
    for key in keys:
        if isinstance(key, int):
            if not isinstance(doc, list) or key >= len(doc):
                return _MISSING
            doc = doc[key]
        else:
            if not isinstance(doc, dict) or key not in doc:
                return _MISSING
            doc = doc[key]
    return doc
