"""Streaming validation of a dataset (one file or several part files) against a contract.

Formats are detected by content (``mlops.core.formats``): CSV and JSON Lines, plain,
gzip or zstd, and Parquet. Every part is read in bounded blocks (``mlops.core.readers``:
~32 MB of records, or 250k-row Parquet batches), so memory does not grow with the file
size, only with the row count for the two global rules (the values of unique columns,
8 bytes a row; an 8-byte hash per row for duplicate rows when no unique column proves
the rows distinct).

Two passes at most. The first is optimistic: a plain CSV file is parsed by polars'
streaming reader straight from the file (250k-row batches), and row hashes are skipped
when the contract has a unique column (non-null, distinct values on every kept row prove
that no two rows are equal). Whenever that pass cannot give the exact report (a value that
does not parse, a possibly short row, any violation, whose samples need exact lines; a
unique column that proves nothing), the dataset is validated again by the exact pass
described below. Only data that fails, or whose unique column is nullable and holds
nulls, pays for the second pass.

Per block, the engine parses with the contract's types (polars, all cores), turns each
column into its contract type by the rules of ``mlops.core.types`` (``convert``), then
counts every rule at once in one multi-threaded ``select`` together with the profile's
moments, takes sample rows (with their line, or Parquet row, and part) only for rules
that fired, updates the statistical profile and the canonical copy while the data is
still clean, and keeps what the global rules need.

A CSV or JSON Lines block that polars cannot parse with the contract's types (text in
a number column, ``181.0`` in an int column, a row with too many fields, invalid
UTF-8) is re-read as text and converted or diagnosed column by column: that slower
path runs only on blocks that need it.

File-level problems (size, empty file, unsupported format, undecodable or
mis-delimited header, duplicate header names) stop the validation early; column-level
ones are all counted. Bad data never raises: it comes back as violations. Only a
missing file or a programming error raises.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from mlops.config import Column, ColumnType, DatasetContract
from mlops.core import formats, readers
from mlops.core.canonical import CanonicalWriter
from mlops.core.convert import Converted, convert, dtype_of
from mlops.core.profile import ProfileBuilder
from mlops.core.readers import Block
from mlops.core.types import allowed_values, describe

BLOCK_BYTES = 32 * 1024 * 1024
FAST_BATCH_ROWS = 250_000  # rows per batch of the optimistic CSV pass: about a block's worth
# bytes polars' streaming CSV reader reads at a time; its default (with its read-ahead) held ~400 MB at 5M rows
FAST_READ_BYTES = 4 * 1024 * 1024
BOM = b"\xef\xbb\xbf"
DELIMITERS = [",", ";", "\t", "|"]
RULES = ["size", "empty_file", "format", "encoding", "parse", "schema", "type", "null", "min", "max", "allowed"]
RULES += ["unique", "duplicate_rows", "row_count"]
# texts that often mean "missing": named in a type error's hint when na_values does not list them
COMMON_NA = {"NA", "N/A", "n/a", "NULL", "null", "None", "none", "#N/A", "-", "?", "<NA>", "nil"}


@dataclass(frozen=True)
class Violation:
    rule: str
    column: str | None
    count: int
    message: str
    samples: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ValidationResult:
    passed: bool
    rows: int  # data rows kept (rows whose target is missing are not counted when they are dropped)
    columns: list[str]
    bytes: int
    violations: list[Violation]
    profile: dict[str, Any] | None
    duration_s: float
    format: str | None = None  # csv, csv+gzip, jsonl+zstd, parquet...
    parts: int = 1
    rows_dropped: dict[str, int] = field(default_factory=dict)  # reason -> rows, e.g. {"missing_target": 3}
    canonical: str | None = None  # "source": the upload is canonical CSV as it is; "written": at ``output``

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["violations"] = [v.to_dict() for v in self.violations]
        return out

    def summary(self) -> str:
        head = "PASSED" if self.passed else f"FAILED ({len(self.violations)} problem(s))"
        what = f"{self.parts} parts, " if self.parts > 1 else ""
        lines = [f"{head}: {self.rows:,} rows, {len(self.columns)} columns, {what}{self.bytes:,} bytes"]
        lines += [f"- {n:,} rows dropped ({reason.replace('_', ' ')})" for reason, n in self.rows_dropped.items() if n]
        lines += [f"- [{v.rule}] {v.message}" for v in self.violations]
        return "\n".join(lines)


# -- accumulating violations ------------------------------------------------------------
@dataclass
class _Tally:
    rule: str
    column: str | None
    describe: str  # plural, e.g. "values below min 0": reads "column 'x': 12 values below min 0"
    count: int = 0
    samples: list[dict[str, Any]] = field(default_factory=list)

    def violation(self) -> Violation:
        where = f"column {self.column!r}: " if self.column else ""
        describe = _singular(self.describe) if self.count == 1 else self.describe
        example = ""
        if self.samples:
            s = self.samples[0]
            has_value = "value" in s and self.rule != "null"
            place = _place(s)
            shown = f"{s['value']!r} on {place}" if has_value else place
            if "first_line" in s:
                shown += f", first seen on {_place(s, 'first_')}"
            example = f" (e.g. {shown})"
        return Violation(self.rule, self.column, self.count, f"{where}{self.count:,} {describe}{example}", self.samples)


def _place(sample: dict[str, Any], prefix: str = "") -> str:
    unit = "row" if f"{prefix}row" in sample else "line"
    text = f"{unit} {sample[prefix + unit]}"
    part = sample.get(f"{prefix}part")
    return f"{text} of {part}" if part else text


def _singular(text: str) -> str:
    noun, _, rest = text.partition(" ")
    rest = re.sub(r"^(are|repeat|duplicate) ", lambda m: {"are": "is "}.get(m[1], m[1] + "s "), rest)
    return f"{noun.removesuffix('s')} {rest}"


class _Tallies:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.items: dict[tuple[str, str | None], _Tally] = {}

    def add(self, rule: str, column: str | None, describe: str, count: int, samples: list[dict[str, Any]]) -> None:
        tally = self.items.setdefault((rule, column), _Tally(rule, column, describe))
        tally.count += count
        tally.samples.extend(samples[: self.limit - len(tally.samples)])

    def wants(self, rule: str, column: str | None) -> int:
        tally = self.items.get((rule, column))
        return self.limit - (len(tally.samples) if tally else 0)

    def __bool__(self) -> bool:
        return bool(self.items)

    def violations(self, columns: list[str]) -> list[Violation]:
        """In a stable order: file-level rules first, then column by column in file order."""

        def key(t: _Tally) -> tuple[int, int, int]:
            column = columns.index(t.column) if t.column in columns else -1
            return (t.column is not None, column, RULES.index(t.rule) if t.rule in RULES else len(RULES))

        return [t.violation() for t in sorted(self.items.values(), key=key)]


# -- the engine ------------------------------------------------------------------------
@dataclass(frozen=True)
class _Rule:
    """A per-value rule: ``mask`` is true where a value breaks it; ``probe`` (null count, min, max, values
    outside the allowed ones), when set, says whether any value does with cheap aggregates, so the mask is
    counted only for rules that fired."""

    rule: str
    spec: Column
    describe: str
    mask: pl.Expr
    probe: pl.Expr | None = None

    def fired(self, value: Any, counted: bool) -> bool:
        if counted or self.rule in ("null", "allowed"):
            return bool(value)
        if value is None:  # no value in the block
            return False
        return value < self.spec.min if self.rule == "min" else value > self.spec.max


class _Engine:
    """Checks the blocks of every part of one dataset; the parts are fed one after the other."""

    def __init__(
        self, contract: DatasetContract, limit: int, writer: CanonicalWriter | None, hash_rows: bool = False
    ) -> None:
        self.contract = contract
        self.columns = {c.name: c for c in contract.columns}
        self.na = list(contract.na_values)
        self.tallies = _Tallies(limit)
        self.limit = limit
        self.writer = writer
        self.rows = 0  # every data row read
        self.dropped = 0  # rows left out because their target is missing (missing_target: drop)
        self.row_hashes: list[pl.Series] = []
        self.unique_values: dict[str, list[pl.Series]] = {c.name: [] for c in contract.columns if c.unique}
        self.hashed: set[str] = set()
        # Row hashes for the duplicate-rows rule. With a unique column they are skipped at first: when its values
        # turn out non-null and distinct on every kept row, no two rows can be equal; else ``rehash`` asks for
        # a second pass that hashes every row (only datasets that already break that column's rule pay for it).
        self.hash_rows = hash_rows or not self.unique_values
        self.rehash = False
        self.blocks: list[Block] = []  # without their data: maps global row numbers to lines
        self.profile: ProfileBuilder | None = ProfileBuilder(contract, background=True)
        self.allowed = {c.name: allowed_values(c.type, c.allowed) for c in contract.columns if c.allowed is not None}
        # per part
        self.header: list[str] = []
        self.specs: dict[str, Column] = {}
        self.kind = formats.CSV
        self.part: str | None = None
        self.next_line = 2
        self.delim = contract.delimiter
        self.source_canonical = False
        self.rules: list[_Rule] = []

    def start_part(self, header: list[str], kind: str, part: str | None, first_line: int, canonical: bool) -> None:
        self.header = header
        self.specs = {n: self.columns[n] for n in header if n in self.columns}
        self.kind = kind
        self.part = part
        self.next_line = first_line
        self.source_canonical = canonical
        self.rules = self._rule_exprs()
        needed = {c.name for c in self.contract.features} | {self.contract.target}
        if not needed <= set(self.specs):
            self._drop_profile()
            self._stop_writing()

    def _schema(self, typed: bool) -> dict[str, Any]:
        """Columns in file order: the contract's polars type where polars parses it strictly, else text."""
        out = {}
        for name in self.header:
            spec = self.specs.get(name)
            if typed and spec is not None and (spec.type is not ColumnType.BOOL or self.kind == formats.JSONL):
                out[name] = dtype_of(spec.type)
            else:
                out[name] = pl.String
        return out

    def feed(self, block: Block) -> None:
        block.first_row, block.first_line = self.rows, self.next_line
        block.part = self.part
        if block.frame is not None:  # Parquet batches, and CSV parsed by the optimistic pass (``_fast_csv``)
            frame, raw, one_per_line = block.frame, None, True
            block.frame = None
        else:
            parsed = self._parse_csv(block) if self.kind == formats.CSV else self._parse_jsonl(block)
            if parsed is None:
                self.next_line += readers.count_lines(block.data)
                self._stop_writing()
                return
            frame, raw, one_per_line = parsed
        self.next_line += frame.height if one_per_line else readers.count_lines(block.data)
        self.rows += frame.height
        typed, errors, wrong, rewritten = self._normalise(frame, block)
        keep = self._keep(typed, wrong)
        canonical = self.source_canonical and raw is None and not rewritten and keep is None
        if not canonical and block.offset < 0 and self.writer is not None and self.writer.pending:
            raise _Inexact("the copy of the source up to this block needs its byte offset")
        # the profile's moments and counts go in the rules' query when it profiles this very frame
        shared = self.profile.exprs() if self.profile is not None and keep is None else []
        computed = self._check_rules(typed, block, wrong, keep, shared)
        self._keep_global(typed, raw, errors, keep)
        self.blocks.append(
            Block(
                b"",
                block.first_line,
                block.first_row,
                block.offset,
                block.record_lines,
                part=block.part,
                unit=block.unit,
            )
        )
        if self.tallies:  # the data already failed: no profile, no copy; skip the work
            self._drop_profile()
            self._stop_writing()
            return
        kept = typed if keep is None else typed.filter(keep)
        if self.profile is not None:
            self.profile.update(kept, computed if shared else None)
        if self.writer is not None:
            self.writer.add(block, kept, canonical)

    def _drop_profile(self) -> None:
        if self.profile is not None:
            self.profile.close()
            self.profile = None

    def _stop_writing(self) -> None:
        if self.writer is not None:
            self.writer.abandon()
            self.writer = None

    # -- parsing CSV ------------------------------------------------------------------------
    def _read_csv(self, data: bytes, typed: bool, lossy: bool = False) -> pl.DataFrame:
        return pl.read_csv(
            data,
            has_header=False,
            schema=self._schema(typed),
            separator=self.delim,
            truncate_ragged_lines=not typed,
            encoding="utf8-lossy" if lossy else "utf8",
            # an unquoted empty field is null in a typed parse anyway (and naming it costs ~15% of the parse);
            # a quoted one ("") stays text and becomes missing in ``convert``, as the contract says
            null_values=self.na if typed and self.na != [""] else None,
        )

    def _parse_csv(self, block: Block) -> tuple[pl.DataFrame, pl.DataFrame | None, bool] | None:
        """The block with typed columns, or as text (``raw``) when that fails; and one-record-per-line."""
        bad_shape = self._scan_quoted(block) if block.quoted and b'"' in block.data else None
        frame: pl.DataFrame | None = None
        raw: pl.DataFrame | None = None
        with contextlib.suppress(pl.exceptions.PolarsError):  # some value does not parse: convert or diagnose below
            frame = self._read_csv(block.data, typed=True)
        if frame is None:
            lossy = self._check_encoding(block)
            try:
                raw = frame = self._read_csv(block.data, typed=False, lossy=lossy)
            except pl.exceptions.PolarsError as exc:
                self._unparsable(block, str(exc))
                return None
        if block.record_lines is not None and len(block.record_lines) != frame.height:
            block.record_lines = None  # the two parsers disagree: fall back to one record per line
        return frame, raw, self._check_shape(block, frame, bad_shape, typed_ok=raw is None)

    def _unparsable(self, block: Block, reason: str) -> None:
        lines = block.data.count(b"\n")
        last = block.first_line + max(lines - 1, 0)
        reason = reason.splitlines()[0]
        describe = f"lines could not be parsed between lines {block.first_line} and {last}: {reason}"
        self.tallies.add("parse", None, describe, lines, [block.where(0)])

    def _check_encoding(self, block: Block) -> bool:
        """Record lines that are not UTF-8; True if any (the block is then read lossily)."""
        try:
            block.data.decode("utf-8")
            return False
        except UnicodeDecodeError as exc:
            first = exc.start
        bad = []
        for i, line in enumerate(block.data.split(b"\n")):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError:
                bad.append(i)
        samples: list[dict[str, Any]] = []
        for i in bad[: self.tallies.wants("encoding", None)]:
            samples.append({"line": block.first_line + i, **({"part": block.part} if block.part else {})})
        where = f"first bad byte at offset {block.offset + first:,}"
        if samples and not self.tallies.items.get(("encoding", None)):
            samples[0]["byte_offset"] = block.offset + first
        self.tallies.add(
            "encoding", None, f"lines are not valid UTF-8 ({where}); the contract requires utf-8", len(bad), samples
        )
        return True

    def _scan_quoted(self, block: Block) -> list[tuple[int, int]]:
        """For blocks with quotes (records may span lines): each record's line, and bad field counts."""
        text = block.data.decode("utf-8", "replace")
        reader = csv.reader(io.StringIO(text, newline=""), delimiter=self.delim)
        starts, bad, previous = [], [], 0
        for record in reader:
            line = block.first_line + previous
            starts.append(line)
            if len(record) != len(self.header):
                bad.append((line, len(record)))
            previous = reader.line_num
        block.record_lines = np.asarray(starts, dtype=np.int64)
        return bad

    def _check_shape(
        self, block: Block, frame: pl.DataFrame, bad: list[tuple[int, int]] | None, typed_ok: bool
    ) -> bool:
        """Rows with the wrong number of fields (polars pads short rows with nulls silently).

        Returns True when the block is proven to hold exactly one record per line.
        """
        sep, expected = self.delim.encode(), len(self.header) - 1
        if bad is None and typed_ok:
            # A typed parse rejects long rows; a short row (or a blank line) leaves the last column
            # null. So no null there, or else a full delimiter count, proves every row is whole.
            if not frame.get_column(self.header[-1]).null_count():
                return True
            if block.data.count(sep) == frame.height * expected:
                return True
        if bad is None:
            lines = block.data.split(b"\n")
            if block.data.endswith(b"\n"):
                lines.pop()
            bad = [(block.first_line + i, ln.count(sep) + 1) for i, ln in enumerate(lines) if ln.count(sep) != expected]
        if bad:
            extra = {"part": block.part} if block.part else {}
            samples = [{"line": line, "fields": n, **extra} for line, n in bad[: self.tallies.wants("parse", None)]]
            describe = f"rows have a number of fields other than the header's {expected + 1}"
            self.tallies.add("parse", None, describe, len(bad), samples)
        return False

    # -- parsing JSON Lines -------------------------------------------------------------------
    def _parse_jsonl(self, block: Block) -> tuple[pl.DataFrame, pl.DataFrame | None, bool] | None:
        data = block.data
        lines = data.split(b"\n")
        if data.endswith(b"\n"):
            lines.pop()
        blank = [i for i, line in enumerate(lines) if not line.strip()]
        if blank:  # records are the non-blank lines
            kept = [i for i, line in enumerate(lines) if line.strip()]
            block.record_lines = np.asarray([block.first_line + i for i in kept], dtype=np.int64)
            data = b"\n".join(lines[i] for i in kept) + b"\n"
        if not data.strip():
            return pl.DataFrame(schema=self._schema(False)), None, False
        try:
            return pl.read_ndjson(data, schema=self._schema(True)), None, not blank
        except pl.exceptions.PolarsError:
            pass
        lossy = self._check_encoding(block)
        text = data.decode("utf-8", "replace").encode() if lossy else data
        try:
            raw = pl.read_ndjson(text, schema=self._schema(False))
            return raw, raw, not blank
        except pl.exceptions.PolarsError:
            pass
        # some line is not a JSON object: name those lines, check the others
        good, bad = [], []
        record_lines = block.record_lines
        for i, line in enumerate(text.split(b"\n")[: len(lines) - len(blank)]):
            number = int(record_lines[i]) if record_lines is not None else block.first_line + i
            try:
                ok = isinstance(json.loads(line), dict)
            except ValueError:
                ok = False
            (good if ok else bad).append((number, line))
        extra = {"part": block.part} if block.part else {}
        samples = [{"line": n, **extra} for n, _ in bad[: self.tallies.wants("parse", None)]]
        self.tallies.add("parse", None, "lines are not JSON objects", len(bad), samples)
        block.record_lines = np.asarray([n for n, _ in good], dtype=np.int64)
        body = b"\n".join(line for _, line in good) + b"\n"
        raw = pl.read_ndjson(body, schema=self._schema(False)) if good else pl.DataFrame(schema=self._schema(False))
        return raw, raw, False

    # -- types -----------------------------------------------------------------------------
    def _normalise(
        self, frame: pl.DataFrame, block: Block
    ) -> tuple[pl.DataFrame, pl.Series | None, dict[str, pl.Series], bool]:
        """Typed columns (nulls for missing or wrong values), rows with any type error, wrong values per column,
        and whether any value had to be rewritten."""
        columns = []
        error_any: pl.Series | None = None
        wrong: dict[str, pl.Series] = {}
        rewritten = False
        clean = self._already_typed(frame)
        for name in self.header:
            spec = self.specs.get(name)
            series = frame.get_column(name)
            if spec is None or name in clean:
                columns.append(series)
                continue
            done: Converted = convert(spec.type, series, self.na)
            rewritten = rewritten or done.rewritten
            if done.wrong is not None:
                count = int(done.wrong.sum())
                if count:
                    self._sample(
                        "type", spec, _type_text(spec, series, done.wrong, self.na), count, done.wrong, series, block
                    )
                    error_any = done.wrong if error_any is None else error_any | done.wrong
                    wrong[name] = done.wrong
            columns.append(done.values)
        return pl.DataFrame(columns), error_any, wrong, rewritten

    def _already_typed(self, frame: pl.DataFrame) -> set[str]:
        """Columns a typed parse already left in their final form: Int64 ints, Float64 floats without NaN or
        infinities, String text holding no ``na_values``; one multi-threaded query checks them (the common case)."""
        ints = [n for n, s in self.specs.items() if s.type is ColumnType.INT and frame.schema.get(n) == pl.Int64]
        floats = [n for n, s in self.specs.items() if s.type is ColumnType.FLOAT and frame.schema.get(n) == pl.Float64]
        texts = [n for n, s in self.specs.items() if s.type is ColumnType.STRING and frame.schema.get(n) == pl.String]
        # a NaN or an infinity makes the sum non-finite (so may an overflow: that column is then converted too)
        exprs = [pl.col(n).sum().alias(n) for n in floats]
        if self.na:
            exprs += [pl.col(n).is_in(self.na).sum().alias(n) for n in texts]
        found = frame.select(exprs).row(0, named=True) if exprs else {}
        clean = {n for n in floats if math.isfinite(found[n])} | {n for n in texts if not found.get(n)}
        return set(ints) | clean

    def _keep(self, typed: pl.DataFrame, wrong: dict[str, pl.Series]) -> pl.Series | None:
        """Rows to keep when rows with a missing target are dropped; None when every row is kept."""
        target = self.contract.target
        if self.contract.missing_target != "drop" or target not in typed.columns:
            return None
        missing = typed.get_column(target).is_null()
        if target in wrong:  # a wrong target is a type error, not a missing one
            missing = missing & ~wrong[target]
        count = int(missing.sum())
        if not count:
            return None
        self.dropped += count
        return ~missing

    # -- per-column rules ---------------------------------------------------------------
    def _rule_exprs(self) -> list[_Rule]:
        rules = []
        for name, spec in self.specs.items():
            col = pl.col(name)
            if not spec.nullable and not (name == self.contract.target and self.contract.missing_target == "drop"):
                text = "rows are empty but the column is not nullable"
                rules.append(_Rule("null", spec, text, col.is_null(), col.null_count()))
            if spec.min is not None:
                rules.append(_Rule("min", spec, f"values below min {spec.min:g}", col < spec.min, col.min()))
            if spec.max is not None:
                rules.append(_Rule("max", spec, f"values above max {spec.max:g}", col > spec.max, col.max()))
            if spec.allowed is not None:
                text = ", ".join(_text(a) for a in self.allowed[name])
                mask = ~col.is_in(self.allowed[name])
                # non-null values minus those equal to an allowed one: cheaper than a hash lookup per value
                distinct = list(dict.fromkeys(self.allowed[name]))
                probe = col.count() - pl.sum_horizontal([(col == value).sum() for value in distinct])
                rules.append(_Rule("allowed", spec, f"values not in the allowed set [{text}]", mask, probe))
        return rules

    def _check_rules(
        self,
        typed: pl.DataFrame,
        block: Block,
        wrong: dict[str, pl.Series],
        keep: pl.Series | None,
        shared: list[pl.Expr],
    ) -> dict[str, Any]:
        """Count every rule in one multi-threaded query (with ``shared``, whose values are returned)."""
        masked = [r.mask.fill_null(False) for r in self.rules]
        if keep is not None:
            masked = [e & pl.lit(keep) for e in masked]
            probes = [e.sum() for e in masked]
        else:  # null count, min and max say whether a rule fired without a mask per row
            probes = [r.probe if r.probe is not None else e.sum() for r, e in zip(self.rules, masked, strict=True)]
        exprs = [e.alias(f"\0rule{i}") for i, e in enumerate(probes)]
        computed = typed.select([*exprs, *shared]).row(0, named=True) if exprs or shared else {}
        for i, (rule, expr) in enumerate(zip(self.rules, masked, strict=True)):
            if not rule.fired(computed[f"\0rule{i}"], counted=keep is not None or rule.probe is None):
                continue
            mask = typed.select(expr).to_series()
            if rule.rule == "null" and rule.spec.name in wrong:  # wrong values were type errors, not missing ones
                mask = mask & ~wrong[rule.spec.name]
            count = int(mask.sum())
            if count:
                self._sample(rule.rule, rule.spec, rule.describe, count, mask, typed.get_column(rule.spec.name), block)
        return computed

    def _sample(
        self, rule: str, spec: Column, describe: str, count: int, mask: pl.Series, values: pl.Series, block: Block
    ) -> None:
        samples = []
        for i in mask.arg_true().head(max(self.tallies.wants(rule, spec.name), 0)).to_list():
            value = values[i]
            samples.append({**block.where(i), "value": "" if value is None else _text(value)})
        self.tallies.add(rule, spec.name, describe, count, samples)

    # -- global rules: duplicates and uniqueness ----------------------------------------
    def _keep_global(
        self, typed: pl.DataFrame, raw: pl.DataFrame | None, errors: pl.Series | None, keep: pl.Series | None
    ) -> None:
        for name in self.unique_values:
            if name not in typed.columns:
                continue
            col = typed.get_column(name)
            if name in self.hashed or not col.dtype.is_integer():  # kept as a 64-bit hash; integers exactly
                self.hashed.add(name)
                col = pl.select(pl.when(col.is_not_null()).then(col.hash(seed=7))).to_series()
            if keep is not None:
                col = pl.select(pl.when(pl.lit(keep)).then(col)).to_series()
            self.unique_values[name].append(col)
        if self.contract.allow_duplicate_rows or not self.hash_rows:
            return
        ordered = typed.select([n for n in self.columns if n in typed.columns])  # parts may order columns differently
        hashes = ordered.hash_rows(seed=11)
        if raw is not None and errors is not None:  # wrong values became null: keep their text in the hash
            text = raw.select([n for n in self.columns if n in raw.columns]).hash_rows(seed=13)
            hashes = pl.select(pl.when(pl.lit(errors)).then(hashes ^ text).otherwise(hashes)).to_series()
        if keep is not None:
            hashes = pl.select(pl.when(pl.lit(keep)).then(hashes)).to_series()
        self.row_hashes.append(hashes)

    def finish_global(self) -> None:
        starts = np.asarray([b.first_row for b in self.blocks], dtype=np.int64)

        def where(row: int) -> dict[str, Any]:
            block = self.blocks[int(np.searchsorted(starts, row, side="right")) - 1]
            return block.where(row - block.first_row)

        proven = False  # rows are distinct: a unique column is non-null and distinct on every kept row
        for name, parts in self.unique_values.items():
            if parts:
                values = pl.concat(parts, rechunk=True)
                describe = "values repeat a value of an earlier row but the column is unique"
                distinct = self._repeats("unique", name, values, describe, where, name not in self.hashed)
                # every dropped row holds a null here: more nulls than that are kept rows without a value
                proven = proven or (distinct and len(values) == self.rows and values.null_count() == self.dropped)
        if not self.contract.allow_duplicate_rows and not self.hash_rows and not proven:
            self.rehash = True
        if self.row_hashes:
            hashes = pl.concat(self.row_hashes, rechunk=True)
            describe = "rows duplicate an earlier row and allow_duplicate_rows is false"
            self._repeats("duplicate_rows", None, hashes, describe, where, False)

    def _repeats(self, rule: str, column: str | None, values: pl.Series, describe: str, where: Any, show: bool) -> bool:
        """Tally the values that repeat an earlier one (nulls aside); True if none does."""
        if _all_distinct(values):
            return True  # the common case
        frame = pl.DataFrame({"v": values, "row": np.arange(len(values), dtype=np.int64)}).drop_nulls("v")
        first = pl.col("v").is_first_distinct()
        repeated = frame.filter(~first)
        if not repeated.height:
            return True
        firsts = frame.filter(first).rename({"row": "first"})
        shown = repeated.head(self.limit).join(firsts, on="v", how="left", maintain_order="left")
        samples = []
        for value, row, first_row in shown.select("v", "row", "first").iter_rows():
            sample: dict[str, Any] = where(row)
            if show:
                sample["value"] = _text(value)
            samples.append(sample | {f"first_{k}": v for k, v in where(first_row).items()})
        self.tallies.add(rule, column, describe, repeated.height, samples)
        return False


def _all_distinct(values: pl.Series) -> bool:
    """No non-null value repeats: a strictly increasing integer column (ids in order) is proven by one
    comparison of neighbours, anything else by one multi-threaded hash pass."""
    if values.dtype.is_integer() and not values.null_count():
        array = values.to_numpy()
        if bool(np.all(array[1:] > array[:-1])):
            return True
    return values.n_unique() + max(values.null_count() - 1, 0) == len(values)


def _type_text(spec: Column, series: pl.Series, wrong: pl.Series, na_values: list[str]) -> str:
    text = f"values are not {describe(spec.type)} (type {spec.type.value})"
    if series.dtype == pl.String:
        found = [v for v in series.filter(wrong).unique().head(20).to_list() if v is not None]
        hints = sorted({v.strip() for v in found if v.strip() in COMMON_NA and v.strip() not in na_values})
        if hints:
            listed = ", ".join(repr(h) for h in hints)
            text += f"; if {listed} mark{'s' if len(hints) == 1 else ''} a missing value, add it to dataset.na_values"
    return text


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


# -- file-level checks ---------------------------------------------------------------------
def _header(first: bytes, contract: DatasetContract) -> tuple[list[str], Violation | None]:
    if first.startswith(BOM):
        first = first[len(BOM) :]
    try:
        text = first.decode("utf-8").rstrip("\r\n")
    except UnicodeDecodeError as exc:
        msg = f"the header (line 1) is not valid UTF-8 at byte {exc.start}; the contract requires utf-8"
        return [], Violation("encoding", None, 1, msg, [{"line": 1, "byte_offset": exc.start}])
    header = next(csv.reader([text], delimiter=contract.delimiter), [])
    if len(header) == 1 and len(contract.columns) > 1:
        found = [d for d in DELIMITERS if d != contract.delimiter and d in text]
        looks = f"the file looks {found[0]!r}-delimited but" if found else "yet"
        msg = f"the header has 1 column {text!r}; {looks} the contract says {contract.delimiter!r}"
        return header, Violation("parse", None, 1, msg, [{"line": 1, "value": text}])
    dupes = sorted({n for n in header if header.count(n) > 1})
    if dupes:
        msg = f"the header repeats column names: {', '.join(dupes)}"
        return header, Violation("schema", None, 1, msg, [{"line": 1, "value": text}])
    return header, None


def _schema_violation(header: list[str], contract: DatasetContract, part: str | None, unit: str) -> Violation | None:
    missing = [n for n in contract.column_names if n not in header]
    extra = [n for n in header if n not in contract.column_names]
    if not missing and not extra:
        return None
    parts = []
    if missing:
        parts.append(f"missing column(s): {', '.join(missing)}")
    if extra:
        parts.append(f"unexpected column(s): {', '.join(extra)}")
    message = "; ".join(parts)
    sample: dict[str, Any] = {"missing": missing, "unexpected": extra}
    if unit == "line":
        sample["line"] = 1
    if part:
        message = f"{part}: {message}"
        sample["part"] = part
    return Violation("schema", None, len(missing) + len(extra), message, [sample])


def _row_count(rows: int, contract: DatasetContract) -> Violation | None:
    if rows < contract.min_rows:
        return Violation("row_count", None, rows, f"{rows:,} data rows, fewer than min_rows {contract.min_rows:,}", [])
    if contract.max_rows is not None and rows > contract.max_rows:
        return Violation("row_count", None, rows, f"{rows:,} data rows, more than max_rows {contract.max_rows:,}", [])
    return None


class _Inexact(Exception):
    """The optimistic pass cannot give the exact report: the dataset is checked again, block by block."""


@dataclass(frozen=True)
class Part:
    """One file of a dataset: where it is on disk and how reports name it."""

    path: Path
    name: str


def validate_file(
    path: str | Path,
    contract: DatasetContract,
    *,
    sample_limit: int = 5,
    block_bytes: int = BLOCK_BYTES,
    output: Path | None = None,
) -> ValidationResult:
    """Check one file against ``contract``; never raises on bad data (FileNotFoundError if missing).

    ``output``: where to write the canonical CSV copy when the file passes and is not canonical
    CSV already (``result.canonical`` says which).
    """
    path = Path(path)
    return validate_dataset([Part(path, path.name)], contract, sample_limit=sample_limit, block_bytes=block_bytes,
                            output=output)  # fmt: skip


def validate_dataset(
    parts: Sequence[Part],
    contract: DatasetContract,
    *,
    sample_limit: int = 5,
    block_bytes: int = BLOCK_BYTES,
    output: Path | None = None,
) -> ValidationResult:
    """Check a dataset made of one or more part files (one format, validated as one table)."""
    started = time.perf_counter()
    sizes = [p.path.stat().st_size for p in parts]
    size = sum(sizes)
    multi = len(parts) > 1
    state: dict[str, Any] = {"format": None}

    def done(rows: int, header: list[str], violations: list[Violation], **extra: Any) -> ValidationResult:
        elapsed = time.perf_counter() - started
        result = ValidationResult(not violations, rows, header, size, violations, None, elapsed, parts=len(parts))
        result.format = state["format"]
        for key, value in extra.items():
            setattr(result, key, value)
        return result

    if size > contract.max_bytes:
        what = f"the {len(parts)} parts are" if multi else "file is"
        msg = f"{what} {size:,} bytes, over the contract's max_bytes of {contract.max_bytes:,}"
        return done(0, [], [Violation("size", None, 1, msg, [])])
    present = [(p, s) for p, s in zip(parts, sizes, strict=True) if s]
    if not present:
        msg = (
            f"all {len(parts)} part files are empty (0 bytes)"
            if multi
            else "the file is empty (0 bytes): no header, no rows"
        )
        return done(0, [], [Violation("empty_file", None, 1, msg, [])])
    detected = [formats.detect(p.path) for p, _ in present]
    for (part, _), found in zip(present, detected, strict=True):
        if not found.accepted:
            where = f"{part.name}: " if multi else ""
            sample = [{"part": part.name}] if multi else []
            return done(0, [], [Violation("format", None, 1, where + found.unsupported_message(), sample)])
    kinds = {d.kind for d in detected}
    if len(kinds) > 1:
        listed = "; ".join(f"{p.name} is {d.what}" for (p, _), d in zip(present, detected, strict=True))
        msg = f"the parts of a dataset must have one format: {listed}"
        return done(0, [], [Violation("format", None, len(parts), msg, [])])
    labels = sorted({d.label for d in detected})
    state["format"] = labels[0] if len(labels) == 1 else "+".join(labels)

    first_kind = detected[0]
    raw_source = (
        present[0][0].path
        if not multi and first_kind.kind == formats.CSV and not first_kind.compression and contract.delimiter == ","
        and contract.na_values == [""]
        else None
    )  # fmt: skip
    writer = None
    engine: _Engine | None = None
    violations: list[Violation] = []
    header: list[str] = []
    # First an optimistic pass (CSV through polars' streaming reader, no row hashes when a unique column can
    # prove rows distinct); a second, exact one only when it cannot report exactly: the data then fails.
    fails = False  # the first pass found a violation: the second one needs no profile and no copy
    for exact in (False, True):
        writer, engine, violations = None, None, []
        for index, ((part, _), found) in enumerate(zip(present, detected, strict=True)):
            name = part.name if multi else None
            part_header, problem, canonical = _open_part(part, found, contract, name)
            if problem is not None:
                if writer is not None:
                    writer.abandon()
                return done(0, part_header, [*violations, problem])
            if index == 0:
                header = part_header
                order = part_header if raw_source is not None else contract.column_names
                if output is not None and not fails:
                    writer = CanonicalWriter(output, order, raw_source)
                engine = _Engine(contract, sample_limit, writer, hash_rows=exact)
                if fails:
                    engine._drop_profile()
            assert engine is not None
            unit = "row" if found.kind == formats.PARQUET else "line"
            schema = _schema_violation(part_header, contract, name, unit)
            if schema is not None:
                violations.append(schema)
            engine.start_part(part_header, str(found.kind), name, 1 if found.kind != formats.CSV else 2,
                              canonical and index == 0 and raw_source is not None)  # fmt: skip
            try:
                _feed(engine, part, found, block_bytes, optimistic=not exact)
            except _Inexact:
                break
        else:
            assert engine is not None
            engine.finish_global()
            if not engine.rehash:
                break
        assert engine is not None
        fails = bool(engine.tallies)
        engine._drop_profile()
        engine._stop_writing()
    order = header if not multi else contract.column_names
    violations += engine.tallies.violations(order)
    kept = engine.rows - engine.dropped
    violations += [v for v in [_row_count(kept, contract)] if v]
    passed = not violations
    profile = engine.profile.result() if engine.profile is not None and passed else None
    engine._drop_profile()
    canonical_copy = None
    if engine.writer is not None:
        if passed:
            canonical_copy = engine.writer.close()
        else:
            engine.writer.abandon()
    dropped = {"missing_target": engine.dropped} if contract.missing_target == "drop" else {}
    return done(kept, header, violations, profile=profile, rows_dropped=dropped, canonical=canonical_copy)


def _open_part(
    part: Part, found: formats.Detected, contract: DatasetContract, name: str | None
) -> tuple[list[str], Violation | None, bool]:
    """The part's column names, a file-level problem if any, and whether it may be canonical CSV as it is."""
    where = f"{name}: " if name else ""
    if found.kind == formats.PARQUET:
        try:
            return list(pl.read_parquet_schema(part.path)), None, False
        except (pl.exceptions.PolarsError, OSError) as exc:
            msg = f"{where}the Parquet file cannot be read: {str(exc).splitlines()[0]}"
            return [], Violation("parse", None, 1, msg, [{"part": name}] if name else []), False
    with formats.open_stream(part.path, found.compression) as stream:
        if found.kind == formats.JSONL:
            keys, bad_line = readers.jsonl_keys(stream.read(1024 * 1024))
            if bad_line is not None and not keys:
                msg = f"{where}line {bad_line} is not a JSON object: JSON Lines needs one object per line"
                return [], Violation("parse", None, 1, msg, [{"line": bad_line}]), False
            return keys, None, False
        first = stream.readline()
    header, problem = _header(first, contract)
    if problem is not None and name:
        problem = Violation(problem.rule, None, problem.count, f"{where}{problem.message}",
                            [{**s, "part": name} for s in problem.samples])  # fmt: skip
    return header, problem, not first.startswith(BOM)


def _feed(engine: _Engine, part: Part, found: formats.Detected, block_bytes: int, optimistic: bool) -> None:
    if optimistic and found.kind == formats.CSV and not found.compression:
        _fast_csv(engine, part)
        return
    if found.kind == formats.PARQUET:
        offset = 0
        for frame in readers.Prefetch(readers.parquet_batches(part.path)):
            engine.feed(Block(b"", 0, 0, offset, frame=frame, unit="row"))
            offset += frame.height
        return
    with formats.open_stream(part.path, found.compression) as stream:
        start = len(stream.readline()) if found.kind == formats.CSV else 0
        quotes = found.kind == formats.CSV
        for block in readers.Prefetch(readers.csv_blocks(stream, start, block_bytes, quotes=quotes)):
            engine.feed(block)


def _fast_csv(engine: _Engine, part: Part) -> None:
    """The optimistic pass over a plain CSV file: polars' streaming reader parses it with the contract's types
    straight from the file (no blocks cut and copied in Python), in batches of about a block's rows.

    It holds for data that is clean, the common case. Anything it cannot report exactly raises ``_Inexact``,
    and the dataset is validated again by the block reader, which locates every problem: a value that does not
    parse (or a row with too many fields, or invalid UTF-8), a null in the last column (a short row looks
    the same), any violation (its samples need the line of each record, and a quoted field may span lines).
    """
    last = engine.header[-1]
    scan = pl.scan_csv(
        part.path,
        has_header=False,
        skip_lines=1,  # the header, as the block reader skips it
        schema=engine._schema(typed=True),
        separator=engine.delim,
        truncate_ragged_lines=False,
        encoding="utf8",
        null_values=engine.na if engine.na != [""] else None,
    )
    try:
        with _env_default("POLARS_CSV_CHUNK_SIZE", str(FAST_READ_BYTES)):
            for frame in scan.collect_batches(chunk_size=FAST_BATCH_ROWS):
                if frame.get_column(last).null_count():
                    raise _Inexact(f"nulls in the last column {last!r}: maybe short rows")
                engine.feed(Block(b"", 0, 0, -1, frame=frame))
                if engine.tallies:
                    raise _Inexact("a violation: its samples need exact lines")
    except (pl.exceptions.PolarsError, pl.exceptions.PanicException, OSError, ValueError) as exc:
        raise _Inexact(str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from exc


@contextlib.contextmanager
def _env_default(name: str, value: str) -> Iterator[None]:
    """Set an environment variable polars reads while a query runs, unless the user set it; then restore it."""
    if name in os.environ:
        yield
        return
    os.environ[name] = value
    try:
        yield
    finally:
        os.environ.pop(name, None)
