"""Streaming readers: a dataset file as a sequence of bounded blocks.

CSV and JSON Lines come as blocks of whole records (about ``block_bytes`` of
decompressed text each, cut at a newline outside quotes) with their byte offset;
Parquet as record batches of about ``PARQUET_BATCH_ROWS`` rows. A prefetch thread
reads (and decompresses) the next block while the current one is checked.
"""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import polars as pl

PARQUET_BATCH_ROWS = 250_000


@dataclass
class Block:
    data: bytes  # whole records (CSV, JSON Lines); empty for Parquet batches
    first_line: int  # line (CSV, JSON Lines) or row (Parquet) number of the block's first record
    first_row: int  # 0-based index of the block's first record among all rows of the dataset
    offset: int  # byte offset of the data in the (decompressed) stream
    record_lines: np.ndarray | None = None  # line of each record when records span or skip lines
    quoted: bool = True  # whether the block may hold quotes
    frame: pl.DataFrame | None = None  # Parquet: the batch itself
    part: str | None = None  # the part file it comes from, in multi-part datasets
    unit: str = "line"  # "line" or, for Parquet, "row"

    def line_of(self, index: int) -> int:
        if self.record_lines is not None and index < len(self.record_lines):
            return int(self.record_lines[index])
        return self.first_line + index

    def where(self, index: int) -> dict[str, Any]:
        """A sample's location: ``{"line": 12}`` or ``{"row": 12}``, with ``part`` in multi-part datasets."""
        out: dict[str, Any] = {self.unit: self.line_of(index)}
        if self.part is not None:
            out["part"] = self.part
        return out


def count_lines(data: bytes) -> int:
    return data.count(b"\n") + (0 if data.endswith(b"\n") else 1)


def _cut(buf: bytes) -> int:
    """End (exclusive) of the last complete record in ``buf``, quotes considered; 0 if none."""
    cut = buf.rfind(b"\n")
    while cut >= 0 and buf.count(b'"', 0, cut) % 2:  # a newline inside quotes does not end a record
        cut = buf.rfind(b"\n", 0, cut)
    return cut + 1


def csv_blocks(handle: BinaryIO, offset: int, block_bytes: int, quotes: bool = True) -> Iterator[Block]:
    """Whole records, about ``block_bytes`` at a time, with their byte offset (``quotes``: CSV quoting applies)."""
    rest = b""
    while True:
        chunk = handle.read(block_bytes)
        if not chunk:
            if rest:
                yield Block(rest, 0, 0, offset, quoted=quotes)
            return
        quoted = quotes and (b'"' in chunk or b'"' in rest)
        end = _cut(rest + chunk) - len(rest) if quoted else chunk.rfind(b"\n") + 1
        if end <= 0:  # no record ends in this chunk: read on
            rest += chunk
            continue
        data = b"".join([rest, memoryview(chunk)[:end]])
        rest = chunk[end:]
        yield Block(data, 0, 0, offset, quoted=quoted)
        offset += len(data)


def jsonl_keys(head: bytes, limit: int = 1000) -> tuple[list[str], int | None]:
    """Keys of the first objects (in order of appearance) and the line of the first unreadable one, if any."""
    keys: dict[str, None] = {}
    for number, line in enumerate(head.split(b"\n")[:limit], start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            return list(keys), number
        if not isinstance(record, dict):
            return list(keys), number
        keys.update(dict.fromkeys(record))
    return list(keys), None


def parquet_batches(path: Path, rows: int = PARQUET_BATCH_ROWS) -> Iterator[pl.DataFrame]:
    yield from pl.scan_parquet(path).collect_batches(chunk_size=rows)


class Prefetch:
    """Reads the next block in a thread while the current one is checked (file reads release the GIL)."""

    _END = object()

    def __init__(self, blocks: Iterator[Any]) -> None:
        self.queue: queue.Queue[Any] = queue.Queue(maxsize=1)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(blocks,), daemon=True)
        self.thread.start()

    def _run(self, blocks: Iterator[Any]) -> None:
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

    def __iter__(self) -> Iterator[Any]:
        try:
            while (item := self.queue.get()) is not self._END:
                if isinstance(item, Exception):
                    raise item
                yield item
        finally:
            self.stop.set()
            self.thread.join()
