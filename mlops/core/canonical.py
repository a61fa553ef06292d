"""The validated copy: one format for every upload, canonical CSV.

Canonical CSV is what training reads (``pandas.read_csv`` with ``keep_default_na=False,
na_values=[""]`` in ``mlops.core.features``; prepare's line-by-line split needs no
parser): UTF-8, comma-delimited, a header row, ``\\n`` line ends, missing values as
empty fields, ints as integers, floats in shortest round-trip form, booleans as
``true``/``false``, text verbatim (quoted where needed). Why CSV rather than Parquet:
the training image's pandas reads it with no extra package, the split streams it line
by line in bounded memory, and it is readable by anyone who opens the bucket.

An upload that already is canonical CSV (the common case) is not rewritten: the
validated copy is then a server-side copy of the uploaded object. The writer starts
out that way and, at the first block that is not canonical, copies the bytes read so
far (all canonical) and writes every later block from its typed values.
"""

from __future__ import annotations

from pathlib import Path
from typing import IO

import polars as pl

from mlops.core.readers import Block

SOURCE, WRITTEN = "source", "written"


class CanonicalWriter:
    def __init__(self, out: Path, columns: list[str], source: Path | None = None) -> None:
        """``source``: a plain CSV file that may be canonical as it is (nothing is written until it is not)."""
        self.out = out
        self.columns = columns
        self.source = source
        self.file: IO[bytes] | None = None
        self.rows = 0
        if source is None:
            self._open()

    def _open(self) -> None:
        self.file = self.out.open("wb")
        self.file.write((",".join(_header_cell(c) for c in self.columns) + "\n").encode())

    @property
    def pending(self) -> bool:
        """Nothing written yet: the source is still the copy (a block that is not canonical needs its offset)."""
        return self.file is None and self.source is not None

    def add(self, block: Block, frame: pl.DataFrame, canonical: bool) -> None:
        """One checked block: its typed rows (dropped rows already left out)."""
        self.rows += frame.height
        if self.file is None:
            if canonical:
                return  # still byte-for-byte the source
            self.file = self.out.open("wb")
            assert self.source is not None
            with self.source.open("rb") as src:  # the header and every block before this one, as they were
                _copy_range(src, self.file, block.offset)
        if frame.height:
            frame.select(self.columns).write_csv(self.file, include_header=False, null_value="", line_terminator="\n")

    def close(self) -> str:
        """``SOURCE`` when the source file itself is the canonical copy, else ``WRITTEN`` (at ``out``)."""
        if self.file is None:
            return SOURCE
        self.file.close()
        return WRITTEN

    def abandon(self) -> None:
        if self.file is not None:
            self.file.close()
        self.out.unlink(missing_ok=True)
        self.file = None


def _header_cell(name: str) -> str:
    return '"' + name.replace('"', '""') + '"' if any(c in name for c in ',"\n\r') else name


def _copy_range(src: IO[bytes], dst: IO[bytes], length: int) -> None:
    remaining = length
    while remaining > 0:
        chunk = src.read(min(remaining, 8 * 1024 * 1024))
        if not chunk:
            break
        dst.write(chunk)
        remaining -= len(chunk)


__all__ = ["SOURCE", "WRITTEN", "CanonicalWriter"]
