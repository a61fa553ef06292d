"""Batch scoring: a file's rows checked against the model's features, the transform's input, the join back.

``prepare_batch`` streams a batch file (any accepted format, detected by content) in bounded blocks and

- checks it against the model's **feature columns** with the contract's type rules
  (:mod:`mlops.core.convert`, the rules of :mod:`mlops.core.types`): a feature column that is
  missing, or values that are not of the column's type, are problems naming the column, the count
  and sample rows; the file is then refused (nothing is scored);
- writes the **transform input**: headerless CSV, one line per row, the features in the model's
  order (what ``pipelines/inference.py`` reads without a header), so a batch transform with
  ``SplitType: Line`` sends whole rows and its output has one line per input row, in order;
- writes the **passthrough** columns (every column of the file that is not a feature: ids such as
  ``record_id``, a target if present) as CSV with a header, row for row beside the features.

``join_predictions`` zips the passthrough rows with the transform's output lines (``label,p1,...``
or ``value``, ``text/csv`` of the inference handlers) into the predictions file and refuses a count
that differs. ``capture_record`` shapes scored rows as SageMaker's data capture does, so the drift
monitor reads batch inputs as it reads captured requests.
"""

from __future__ import annotations

import csv
import io
import json
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO, TextIO

import polars as pl

from mlops.config import DatasetContract
from mlops.core import formats
from mlops.core.convert import convert
from mlops.core.readers import csv_blocks, parquet_batches
from mlops.core.types import ColumnType

BLOCK_BYTES = 16 * 1024 * 1024
SAMPLES = 5
PREDICTION = "prediction"
BOM = b"\xef\xbb\xbf"


@dataclass
class Problem:
    column: str
    rule: str  # "missing" (the column is not in the file) or "type" (values not of the column's type)
    message: str
    count: int = 0
    samples: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        keys = ("column", "rule", "message", "count", "samples")
        return {k: getattr(self, k) for k in keys}


@dataclass
class Prepared:
    format: str
    rows: int
    features: list[str]
    passthrough: list[str]
    problems: list[Problem]

    @property
    def accepted(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        if self.accepted:
            return f"{self.rows:,} rows ({self.format}), {len(self.features)} features"
        return "; ".join(p.message for p in self.problems)


class Unsupported(ValueError):
    """The file is not in an accepted format (the message says what it looks like)."""


def _csv_frames(path: Path, compression: str | None, delimiter: str, block_bytes: int) -> Iterator[pl.DataFrame]:
    header: list[str] | None = None
    with formats.open_stream(path, compression) as handle:
        for block in csv_blocks(handle, 0, block_bytes):
            data = block.data
            if header is None:
                data = data.removeprefix(BOM)
                first, _, data = data.partition(b"\n")
                header = next(csv.reader([first.decode("utf-8").rstrip("\r")], delimiter=delimiter), [])
            if not data.strip():
                continue
            yield pl.read_csv(data, has_header=False, new_columns=header, infer_schema=False, separator=delimiter)


def _header_only(path: Path, compression: str | None, delimiter: str) -> list[str]:
    with formats.open_stream(path, compression) as handle:
        first = handle.readline().removeprefix(BOM).decode("utf-8", errors="replace").rstrip("\r\n")
    return next(csv.reader([first], delimiter=delimiter), []) if first else []


def _jsonl_frames(path: Path, compression: str | None, block_bytes: int) -> Iterator[pl.DataFrame]:
    with formats.open_stream(path, compression) as handle:
        for block in csv_blocks(handle, 0, block_bytes, quotes=False):
            if block.data.strip():
                yield pl.read_ndjson(io.BytesIO(block.data), infer_schema_length=None)


def frames(path: Path, contract: DatasetContract, block_bytes: int = BLOCK_BYTES) -> tuple[str, Iterator[pl.DataFrame]]:
    """The file's format label and its rows as data frames of about ``block_bytes`` each."""
    found = formats.detect(path)
    if not found.accepted:
        raise Unsupported(found.unsupported_message())
    if found.kind == formats.PARQUET:
        return found.label, parquet_batches(path)
    if found.kind == formats.JSONL:
        return found.label, _jsonl_frames(path, found.compression, block_bytes)
    return found.label, _csv_frames(path, found.compression, contract.delimiter, block_bytes)


def _text(series: pl.Series) -> pl.Series:
    return series if series.dtype == pl.String else series.cast(pl.String, strict=False)


def prepare_batch(
    path: Path,
    contract: DatasetContract,
    features_out: BinaryIO,
    passthrough_out: BinaryIO,
    *,
    block_bytes: int = BLOCK_BYTES,
) -> Prepared:
    """Check ``path`` against the contract's features; write the transform input and the passthrough columns."""
    features = contract.features
    names = [c.name for c in features]
    label, blocks = frames(path, contract, block_bytes)
    prepared = Prepared(label, 0, names, [], [])
    wrong: dict[str, Problem] = {}
    header: list[str] | None = None
    for frame in blocks:
        if header is None:
            header = list(frame.columns)
            prepared.passthrough = [c for c in header if c not in names]
            missing = [n for n in names if n not in header]
            for name in missing:
                prepared.problems.append(
                    Problem(name, "missing", f"feature column {name!r} is missing (the file has: {', '.join(header)})")
                )
            if missing:
                return prepared
        # JSON Lines blocks hold the keys their objects have: a column absent from a block is missing there
        absent = [c for c in [*names, *prepared.passthrough] if c not in frame.columns]
        if absent:
            frame = frame.with_columns(pl.lit(None, dtype=pl.String).alias(c) for c in absent)
        typed = []
        for column in features:
            converted = convert(ColumnType(column.type), frame[column.name], list(contract.na_values))
            typed.append(converted.values)
            if converted.wrong is not None and converted.wrong.any():
                problem = wrong.setdefault(column.name, Problem(column.name, "type", ""))
                problem.count += int(converted.wrong.sum())
                rows = converted.wrong.arg_true()[: SAMPLES - len(problem.samples)]
                values = frame[column.name]
                problem.samples += [{"row": prepared.rows + int(i) + 1, "value": values[int(i)]} for i in rows]
        if not wrong:
            pl.DataFrame(typed).write_csv(features_out, include_header=False, null_value="")
            passthrough = frame.select([_text(frame[c]) for c in prepared.passthrough])
            if prepared.passthrough:
                passthrough.write_csv(passthrough_out, include_header=prepared.rows == 0, null_value="")
        prepared.rows += frame.height
    if header is None and path.stat().st_size and formats.detect(path).kind == formats.CSV:
        header = _header_only(path, formats.detect(path).compression, contract.delimiter)
        prepared.passthrough = [c for c in header if c not in names]
        prepared.problems += [
            Problem(n, "missing", f"feature column {n!r} is missing (the file has: {', '.join(header)})")
            for n in names
            if n not in header
        ]
    for column in features:
        if column.name in wrong:
            problem = wrong[column.name]
            shown = ", ".join(f"row {s['row']}: {s['value']!r}" for s in problem.samples)
            problem.message = (
                f"feature column {column.name!r} must hold {column.type} values: {problem.count:,} row(s) do not "
                f"({shown})"
            )
            prepared.problems.append(problem)
    if not prepared.problems and prepared.rows == 0:
        prepared.problems.append(Problem("", "empty", "the file has no rows to score"))
    return prepared


# -- after the transform ----------------------------------------------------------------------------
class CountMismatch(ValueError):
    """The transform's output does not have one line per input row."""


def prediction_header(passthrough: list[str], first_output: str, classes: list[Any] | None) -> list[str]:
    """The predictions file's columns: the passthrough columns, ``prediction``, then one per class probability."""
    extra = len(next(csv.reader([first_output]), [])) - 1
    if extra <= 0:
        return [*passthrough, PREDICTION]
    labels = [str(c) for c in classes] if classes and len(classes) == extra else [str(i) for i in range(extra)]
    return [*passthrough, PREDICTION, *(f"probability_{c}" for c in labels)]


def join_predictions(
    passthrough: Iterable[str], outputs: Iterable[str], out: TextIO, *, classes: list[Any] | None = None
) -> int:
    """Write the predictions file (header, then one row per input row); the number of rows written.

    ``passthrough`` yields the passthrough CSV's lines (header first; empty when there are none),
    ``outputs`` the transform's output lines, one per input row.
    """
    ids = iter(passthrough)
    id_header = next(ids, "").rstrip("\r\n")
    id_columns = next(csv.reader([id_header]), []) if id_header else []
    rows = 0
    for line in outputs:
        line = line.rstrip("\r\n")
        if not line:
            continue
        if rows == 0:
            header = prediction_header(id_columns, line, classes)
            out.write(",".join(_quote(h) for h in header) + "\n")
        if id_columns:
            id_line = next(ids, None)
            if id_line is None:
                raise CountMismatch(f"the transform returned more lines than the {rows:,} input rows")
            out.write(id_line.rstrip("\r\n") + "," + line + "\n")
        else:
            out.write(line + "\n")
        rows += 1
    if id_columns and next(ids, None) is not None:
        raise CountMismatch(f"the transform returned {rows:,} lines, fewer than the input rows")
    return rows


def _quote(cell: str) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="").writerow([cell])
    return buffer.getvalue()


def capture_record(features: list[str], rows: list[str], outputs: list[str], inference_time: datetime) -> str:
    """One data-capture line (SageMaker's JSON Lines format) for scored rows: CSV input with a header row
    (so the monitor reads the columns by name) and the CSV output."""
    body = ",".join(features) + "\n" + "".join(r if r.endswith("\n") else r + "\n" for r in rows)
    record = {
        "captureData": {
            "endpointInput": {"observedContentType": "text/csv", "mode": "INPUT", "data": body, "encoding": "CSV"},
            "endpointOutput": {
                "observedContentType": "text/csv",
                "mode": "OUTPUT",
                "data": "".join(o if o.endswith("\n") else o + "\n" for o in outputs),
                "encoding": "CSV",
            },
        },
        "eventMetadata": {
            "eventId": str(uuid.uuid4()),
            "inferenceTime": inference_time.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        },
        "eventVersion": "0",
    }
    return json.dumps(record, separators=(",", ":"))
