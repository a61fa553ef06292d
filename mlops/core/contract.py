"""Streaming validation of a CSV file against a model's dataset contract.

The file is read in blocks of whole records (about 32 MB each) and every block is
parsed by polars with the contract's types, so memory stays bounded whatever the file
size and parsing runs at polars speed on all cores. Per block the engine counts every
rule at once in one multi-threaded ``select``, takes sample rows (with their file line
numbers) only for rules that fired, updates the statistical profile while the file is
still clean, and keeps what the global rules need: a 64-bit hash per row (duplicate
rows) and the values of unique columns.

A block that polars cannot parse with the contract's types (text in a number column,
a row with too many fields, invalid UTF-8) is re-read as text and diagnosed column by
column: that slower path only runs on blocks that are already known to be bad.

File-level problems (size, empty file, undecodable or mis-delimited header, duplicate
header names) stop the validation early; column-level ones are all counted.
Bad data never raises: it comes back as violations. Only a missing file or a
programming error raises.
"""

from __future__ import annotations

import csv
import io
import queue
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from mlops.config import Column, ColumnType, DatasetContract
from mlops.core.profile import ProfileBuilder

BLOCK_BYTES = 32 * 1024 * 1024
BOM = b"\xef\xbb\xbf"
DELIMITERS = [",", ";", "\t", "|"]
TRUE = ("true", "1")
FALSE = ("false", "0")
RULES = ["size", "empty_file", "encoding", "parse", "schema", "type", "null", "min", "max", "allowed", "unique"]
RULES += ["duplicate_rows", "row_count"]
_POLARS_TYPES = {ColumnType.INT: pl.Int64, ColumnType.FLOAT: pl.Float64, ColumnType.STRING: pl.String}


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
    rows: int
    columns: list[str]
    bytes: int
    violations: list[Violation]
    profile: dict[str, Any] | None
    duration_s: float

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["violations"] = [v.to_dict() for v in self.violations]
        return out

    def summary(self) -> str:
        head = "PASSED" if self.passed else f"FAILED ({len(self.violations)} problem(s))"
        lines = [f"{head}: {self.rows:,} rows, {len(self.columns)} columns, {self.bytes:,} bytes"]
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
            shown = f"{s['value']!r} on line {s['line']}" if has_value else f"line {s['line']}"
            if "first_line" in s:
                shown += f", first seen on line {s['first_line']}"
            example = f" (e.g. {shown})"
        return Violation(self.rule, self.column, self.count, f"{where}{self.count:,} {describe}{example}", self.samples)


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


# -- reading ------------------------------------------------------------------------------
@dataclass
class _Block:
    data: bytes
    first_line: int  # file line number of the block's first record
    first_row: int  # 0-based index of the block's first record among all rows
    offset: int  # byte offset in the file
    record_lines: np.ndarray | None = None  # line of each record when records span lines
    quoted: bool = True  # whether the block may hold quotes

    def line_of(self, index: int) -> int:
        if self.record_lines is not None and index < len(self.record_lines):
            return int(self.record_lines[index])
        return self.first_line + index


def _count_lines(data: bytes) -> int:
    return data.count(b"\n") + (0 if data.endswith(b"\n") else 1)


def _cut(buf: bytes) -> int:
    """End (exclusive) of the last complete record in ``buf``, quotes considered; 0 if none."""
    cut = buf.rfind(b"\n")
    while cut >= 0 and buf.count(b'"', 0, cut) % 2:  # a newline inside quotes does not end a record
        cut = buf.rfind(b"\n", 0, cut)
    return cut + 1


def _blocks(handle: io.BufferedReader, offset: int, block_bytes: int) -> Iterator[_Block]:
    """Whole records, about ``block_bytes`` at a time, with their byte offset."""
    rest = b""
    while True:
        chunk = handle.read(block_bytes)
        if not chunk:
            if rest:
                yield _Block(rest, 0, 0, offset)
            return
        quoted = b'"' in chunk or b'"' in rest
        end = _cut(rest + chunk) - len(rest) if quoted else chunk.rfind(b"\n") + 1
        if end <= 0:  # no record ends in this chunk: read on
            rest += chunk
            continue
        data = b"".join([rest, memoryview(chunk)[:end]])
        rest = chunk[end:]
        yield _Block(data, 0, 0, offset, quoted=quoted)
        offset += len(data)


class _Prefetch:
    """Reads the next block in a thread while the current one is checked (file reads release the GIL)."""

    _END = object()

    def __init__(self, blocks: Iterator[_Block]) -> None:
        self.queue: queue.Queue[Any] = queue.Queue(maxsize=1)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(blocks,), daemon=True)
        self.thread.start()

    def _run(self, blocks: Iterator[_Block]) -> None:
        try:
            for block in blocks:
                if not self._put(block):
                    return
        except Exception as exc:  # handed to the consumer, raised there
            self._put(exc)
        self._put(self._END)

    def _put(self, item: Any) -> bool:
        while not self.stop.is_set():
            try:
                self.queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def __iter__(self) -> Iterator[_Block]:
        try:
            while (item := self.queue.get()) is not self._END:
                if isinstance(item, Exception):
                    raise item
                yield item
        finally:
            self.stop.set()
            self.thread.join()


# -- the engine ------------------------------------------------------------------------
class _Engine:
    def __init__(self, contract: DatasetContract, header: list[str], limit: int) -> None:
        self.contract = contract
        self.header = header
        self.delim = contract.delimiter
        self.specs = {c.name: c for c in contract.columns if c.name in header}
        self.tallies = _Tallies(limit)
        self.limit = limit
        self.rows = 0
        self.next_line = 2  # the header is line 1
        self.rules = self._rule_exprs()
        self.row_hashes: list[np.ndarray] = []
        self.unique_values: dict[str, list[pl.Series]] = {n: [] for n, c in self.specs.items() if c.unique}
        self.hashed: set[str] = set()
        self.blocks: list[_Block] = []  # without their data: maps global row numbers to lines
        needed = {c.name for c in contract.features} | {contract.target}
        self.profile: ProfileBuilder | None = ProfileBuilder(contract) if needed <= set(self.specs) else None

    def _schema(self, typed: bool) -> dict[str, Any]:
        """Columns in file order: the contract's polars type where polars parses it strictly, else text."""
        out = {}
        for name in self.header:
            spec = self.specs.get(name)
            out[name] = _POLARS_TYPES.get(spec.type, pl.String) if typed and spec else pl.String
        return out

    def feed(self, block: _Block) -> None:
        block.first_row, block.first_line = self.rows, self.next_line
        bad_shape = self._scan_quoted(block) if block.quoted and b'"' in block.data else None
        parsed = self._parse(block)
        if parsed is None:
            self.next_line += _count_lines(block.data)
            return
        frame, raw = parsed
        if block.record_lines is not None and len(block.record_lines) != frame.height:
            block.record_lines = None  # the two parsers disagree: fall back to one record per line
        one_per_line = self._check_shape(block, frame, bad_shape, typed_ok=raw is None)
        self.next_line += frame.height if one_per_line else _count_lines(block.data)
        self.rows += frame.height
        typed, errors, bad = self._normalise(frame, block)
        self._check_rules(typed, block, bad)
        self._keep_global(typed, raw, errors)
        self.blocks.append(_Block(b"", block.first_line, block.first_row, block.offset, block.record_lines))
        if self.profile is not None:
            if self.tallies:
                self.profile = None  # the data already failed: no profile, skip the work
            else:
                self.profile.update(typed)

    # -- parsing ------------------------------------------------------------------------
    def _read(self, data: bytes, typed: bool, lossy: bool = False) -> pl.DataFrame:
        return pl.read_csv(
            data,
            has_header=False,
            schema=self._schema(typed),
            separator=self.delim,
            truncate_ragged_lines=not typed,
            encoding="utf8-lossy" if lossy else "utf8",
        )

    def _parse(self, block: _Block) -> tuple[pl.DataFrame, pl.DataFrame | None] | None:
        """The block with typed columns; or, when that fails, as text (returned twice: frame and raw)."""
        try:
            return self._read(block.data, typed=True), None
        except pl.exceptions.PolarsError:
            pass  # some value does not parse: diagnose below, on text
        lossy = self._check_encoding(block)
        try:
            raw = self._read(block.data, typed=False, lossy=lossy)
        except pl.exceptions.PolarsError as exc:
            lines = block.data.count(b"\n")
            last = block.first_line + max(lines - 1, 0)
            reason = str(exc).splitlines()[0]
            describe = f"lines could not be parsed as CSV between lines {block.first_line} and {last}: {reason}"
            self.tallies.add("parse", None, describe, lines, [{"line": block.first_line}])
            return None
        return raw, raw

    def _check_encoding(self, block: _Block) -> bool:
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
                bad.append(block.first_line + i)
        samples: list[dict[str, Any]] = [{"line": n} for n in bad[: self.tallies.wants("encoding", None)]]
        where = f"first bad byte at offset {block.offset + first:,}"
        if samples and not self.tallies.items.get(("encoding", None)):
            samples[0]["byte_offset"] = block.offset + first
        self.tallies.add(
            "encoding", None, f"lines are not valid UTF-8 ({where}); the contract requires utf-8", len(bad), samples
        )
        return True

    def _scan_quoted(self, block: _Block) -> list[tuple[int, int]]:
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
        self, block: _Block, frame: pl.DataFrame, bad: list[tuple[int, int]] | None, typed_ok: bool
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
            samples = [{"line": line, "fields": n} for line, n in bad[: self.tallies.wants("parse", None)]]
            describe = f"rows have a number of fields other than the header's {expected + 1}"
            self.tallies.add("parse", None, describe, len(bad), samples)
        return False

    # -- types -----------------------------------------------------------------------------
    def _normalise(
        self, frame: pl.DataFrame, block: _Block
    ) -> tuple[pl.DataFrame, pl.Series | None, dict[str, pl.Series]]:
        """Typed columns (nulls for missing or wrong values), rows with any type error, wrong values per column."""
        columns = []
        error_any: pl.Series | None = None
        wrong: dict[str, pl.Series] = {}
        for name in self.header:
            spec = self.specs.get(name)
            series = frame.get_column(name)
            if spec is None:
                columns.append(series)
                continue
            typed, bad = _convert(spec, series)
            if bad is not None:
                count = int(bad.sum())
                if count:
                    self._sample("type", spec, _type_text(spec), count, bad, series, block)
                    error_any = bad if error_any is None else error_any | bad
                    wrong[name] = bad
            columns.append(typed)
        return pl.DataFrame(columns), error_any, wrong

    # -- per-column rules ---------------------------------------------------------------
    def _rule_exprs(self) -> list[tuple[str, Column, str, pl.Expr]]:
        rules = []
        for name, spec in self.specs.items():
            col = pl.col(name)
            if not spec.nullable:
                rules.append(("null", spec, "rows are empty but the column is not nullable", col.is_null()))
            if spec.min is not None:
                rules.append(("min", spec, f"values below min {spec.min:g}", col < spec.min))
            if spec.max is not None:
                rules.append(("max", spec, f"values above max {spec.max:g}", col > spec.max))
            if spec.allowed is not None:
                text = ", ".join(_text(a) for a in spec.allowed)
                rules.append(("allowed", spec, f"values not in the allowed set [{text}]", ~col.is_in(_allowed(spec))))
        return rules

    def _check_rules(self, typed: pl.DataFrame, block: _Block, wrong: dict[str, pl.Series]) -> None:
        if not self.rules:
            return
        sums = [e.fill_null(False).sum().alias(str(i)) for i, (*_, e) in enumerate(self.rules)]
        counts = typed.select(sums).row(0)
        for (rule, spec, describe, expr), count in zip(self.rules, counts, strict=True):
            if not count:
                continue
            mask = typed.select(expr.fill_null(False)).to_series()
            if rule == "null" and spec.name in wrong:  # wrong values were reported as type errors, not as missing
                mask = mask & ~wrong[spec.name]
                count = int(mask.sum())
            if count:
                self._sample(rule, spec, describe, int(count), mask, typed.get_column(spec.name), block)

    def _sample(
        self, rule: str, spec: Column, describe: str, count: int, mask: pl.Series, values: pl.Series, block: _Block
    ) -> None:
        samples = []
        for i in mask.arg_true().head(max(self.tallies.wants(rule, spec.name), 0)).to_list():
            value = values[i]
            samples.append({"line": block.line_of(i), "value": "" if value is None else _text(value)})
        self.tallies.add(rule, spec.name, describe, count, samples)

    # -- global rules: duplicates and uniqueness ----------------------------------------
    def _keep_global(self, typed: pl.DataFrame, raw: pl.DataFrame | None, errors: pl.Series | None) -> None:
        for name in self.unique_values:
            col = typed.get_column(name)
            if name in self.hashed or not col.dtype.is_integer():  # kept as a 64-bit hash; integers exactly
                self.hashed.add(name)
                col = pl.select(pl.when(col.is_not_null()).then(col.hash(seed=7))).to_series()
            self.unique_values[name].append(col)
        if self.contract.allow_duplicate_rows:
            return
        hashes = typed.hash_rows(seed=11).to_numpy()
        if raw is not None and errors is not None:  # wrong values became null: keep their text in the hash
            hashes = np.where(errors.to_numpy(), hashes ^ raw.hash_rows(seed=13).to_numpy(), hashes)
        self.row_hashes.append(hashes)

    def finish_global(self) -> None:
        starts = np.asarray([b.first_row for b in self.blocks], dtype=np.int64)

        def line_of_row(row: int) -> int:
            block = self.blocks[int(np.searchsorted(starts, row, side="right")) - 1]
            return block.line_of(row - block.first_row)

        for name, parts in self.unique_values.items():
            if parts:
                values = pl.concat(parts, rechunk=True)
                describe = "values repeat a value of an earlier row but the column is unique"
                self._repeats("unique", name, values, describe, line_of_row, name not in self.hashed)
        if self.row_hashes:
            hashes = pl.Series("v", np.concatenate(self.row_hashes))
            describe = "rows duplicate an earlier row and allow_duplicate_rows is false"
            self._repeats("duplicate_rows", None, hashes, describe, line_of_row, False)

    def _repeats(
        self, rule: str, column: str | None, values: pl.Series, describe: str, line_of_row: Any, show: bool
    ) -> None:
        if values.n_unique() + max(values.null_count() - 1, 0) == len(values):
            return  # the common case, found with one multi-threaded hash pass
        frame = pl.DataFrame({"v": values, "row": np.arange(len(values), dtype=np.int64)}).drop_nulls("v")
        first = pl.col("v").is_first_distinct()
        repeated = frame.filter(~first)
        if not repeated.height:
            return
        firsts = frame.filter(first).rename({"row": "first"})
        shown = repeated.head(self.limit).join(firsts, on="v", how="left", maintain_order="left")
        samples = []
        for value, row, first_row in shown.select("v", "row", "first").iter_rows():
            sample: dict[str, Any] = {"line": line_of_row(row)}
            if show:
                sample["value"] = _text(value)
            samples.append(sample | {"first_line": line_of_row(first_row)})
        self.tallies.add(rule, column, describe, repeated.height, samples)


def _convert(spec: Column, series: pl.Series) -> tuple[pl.Series, pl.Series | None]:
    """The column in its contract type and, where values can be wrong, a mask of wrong ones."""
    if spec.type is ColumnType.STRING:
        return series.replace("", None) if series.dtype == pl.String else series, None
    if spec.type is ColumnType.BOOL:
        text = series.str.strip_chars().str.to_lowercase().replace("", None)
        typed = pl.select(
            pl.when(text.is_in(TRUE)).then(True).when(text.is_in(FALSE)).then(False).otherwise(None).alias(spec.name)
        ).to_series()
        return typed, text.is_not_null() & typed.is_null()
    target = _POLARS_TYPES[spec.type]
    if series.dtype == pl.String:
        text = series.replace("", None)
        typed = text.cast(target, strict=False)
        bad = text.is_not_null() & typed.is_null()
    else:
        typed, bad = series, None
    if spec.type is ColumnType.FLOAT:
        finite = typed.is_finite().fill_null(True)
        if not finite.all():  # nan/inf are not usable numbers: a type problem, then treated as missing
            bad = ~finite if bad is None else bad | ~finite
            typed = pl.select(pl.when(finite).then(typed).otherwise(None).alias(spec.name)).to_series()
    return typed, bad


def _type_text(spec: Column) -> str:
    wanted = {
        ColumnType.INT: "integers",
        ColumnType.FLOAT: "finite numbers",
        ColumnType.BOOL: "booleans (true/false/1/0)",
    }
    return f"values are not {wanted[spec.type]} (type {spec.type.value})"


def _allowed(spec: Column) -> list[Any]:
    values = spec.allowed or []
    if spec.type is ColumnType.INT:
        return [int(v) for v in values]
    if spec.type is ColumnType.BOOL:
        return [v if isinstance(v, bool) else str(v).strip().lower() in TRUE for v in values]
    return [str(v) for v in values]


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


def _schema_violation(header: list[str], contract: DatasetContract) -> Violation | None:
    missing = [n for n in contract.column_names if n not in header]
    extra = [n for n in header if n not in contract.column_names]
    if not missing and not extra:
        return None
    parts = []
    if missing:
        parts.append(f"missing column(s): {', '.join(missing)}")
    if extra:
        parts.append(f"unexpected column(s): {', '.join(extra)}")
    samples = [{"line": 1, "missing": missing, "unexpected": extra}]
    return Violation("schema", None, len(missing) + len(extra), "; ".join(parts), samples)


def _row_count(rows: int, contract: DatasetContract) -> Violation | None:
    if rows < contract.min_rows:
        return Violation("row_count", None, rows, f"{rows:,} data rows, fewer than min_rows {contract.min_rows:,}", [])
    if contract.max_rows is not None and rows > contract.max_rows:
        return Violation("row_count", None, rows, f"{rows:,} data rows, more than max_rows {contract.max_rows:,}", [])
    return None


def validate_file(
    path: str | Path, contract: DatasetContract, *, sample_limit: int = 5, block_bytes: int = BLOCK_BYTES
) -> ValidationResult:
    """Check a CSV file against ``contract``; never raises on bad data (FileNotFoundError if missing)."""
    started = time.perf_counter()
    path = Path(path)
    size = path.stat().st_size

    def done(rows: int, header: list[str], violations: list[Violation], profile: dict[str, Any] | None = None):
        elapsed = time.perf_counter() - started
        return ValidationResult(not violations, rows, header, size, violations, profile, elapsed)

    if size > contract.max_bytes:
        msg = f"file is {size:,} bytes, over the contract's max_bytes of {contract.max_bytes:,}"
        return done(0, [], [Violation("size", None, 1, msg, [])])
    if size == 0:
        return done(0, [], [Violation("empty_file", None, 1, "the file is empty (0 bytes): no header, no rows", [])])
    with path.open("rb") as handle:
        first = handle.readline()
        header, problem = _header(first, contract)
        if problem:
            return done(0, header, [problem])
        violations = [v for v in [_schema_violation(header, contract)] if v]
        engine = _Engine(contract, header, sample_limit)
        for block in _Prefetch(_blocks(handle, len(first), block_bytes)):
            engine.feed(block)
    engine.finish_global()
    violations += engine.tallies.violations(header)
    violations += [v for v in [_row_count(engine.rows, contract)] if v]
    profile = engine.profile.result() if engine.profile is not None and not violations else None
    return done(engine.rows, header, violations, profile)
