"""Dataset file formats, detected by content (never by file name), and their byte streams.

Accepted: CSV and JSON Lines, each plain, gzip- or zstd-compressed, and Parquet. The
first bytes of a file decide: compression by its magic number, Parquet by ``PAR1``,
then the (decompressed) text: a line starting with ``{`` is JSON Lines, any other
UTF-8 text is CSV. Everything else is named for what it looks like (zip, xlsx, a JSON
array, bzip2, ORC, Avro, Arrow, binary data...) and refused with the accepted list.

Standard library only, except zstd: ``compression.zstd`` on Python 3.14 (the Lambda
runtime), its backport ``backports.zstd`` elsewhere.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

CSV, JSONL, PARQUET = "csv", "jsonl", "parquet"
GZIP, ZSTD = "gzip", "zstd"
ACCEPTED = "CSV (plain, gzip or zstd), JSON Lines (plain, gzip or zstd), Parquet"
SNIFF_BYTES = 64 * 1024

# magic numbers of formats that are not accepted, to name what was found
_OTHER_MAGIC = [
    (b"PK\x03\x04", "a zip archive (an Excel .xlsx workbook is one too)"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "an OLE2 document (Excel .xls)"),
    (b"BZh", "bzip2-compressed data"),
    (b"\xfd7zXZ\x00", "xz-compressed data"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (b"ORC", "an ORC file"),
    (b"Obj\x01", "an Avro object container file"),
    (b"ARROW1", "an Arrow IPC file"),
    (b"%PDF", "a PDF document"),
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"SQLite format 3\x00", "an SQLite database"),
    (b"\x04\x22\x4d\x18", "lz4-compressed data"),
]


@dataclass(frozen=True)
class Detected:
    kind: str | None  # CSV, JSONL, PARQUET; None when not accepted
    compression: str | None  # GZIP, ZSTD or None
    what: str  # human description: "CSV", "gzip-compressed JSON Lines", "a zip archive"

    @property
    def accepted(self) -> bool:
        return self.kind is not None

    @property
    def label(self) -> str:
        """Short name for reports: ``csv``, ``csv+gzip``, ``parquet``."""
        return f"{self.kind}+{self.compression}" if self.compression else str(self.kind)

    def unsupported_message(self) -> str:
        return f"unsupported format: detected {self.what}; accepted: {ACCEPTED}"


def _zstd_module():  # type: ignore[no-untyped-def]
    try:
        from compression import zstd  # type: ignore[import-not-found]  # novermin: Python 3.14+, else the backport
    except ImportError:
        from backports import zstd  # type: ignore[import-not-found,no-redef]
    return zstd


def open_stream(path: Path, compression: str | None) -> BinaryIO:
    """The file's (decompressed) bytes as a stream."""
    if compression == GZIP:
        return gzip.open(path, "rb")  # type: ignore[return-value]
    if compression == ZSTD:
        return _zstd_module().open(path, "rb")  # type: ignore[no-any-return]
    return path.open("rb")


def _text_kind(head: bytes, compression: str | None, truncated: bool) -> Detected:
    wrapped = f"{compression}-compressed " if compression else ""
    if head.startswith(b"\xef\xbb\xbf"):
        head = head[3:]
    if not head.strip():
        return Detected(CSV, compression, f"{wrapped}CSV")  # empty: the CSV checks name the problem
    if b"\x00" in head:
        return Detected(None, compression, f"{wrapped}binary data (NUL bytes)")
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        # a multi-byte character cut by the sniff window is not an error
        if not (truncated and exc.start >= len(head) - 3):
            return Detected(CSV, compression, f"{wrapped}CSV")  # the CSV checks locate the bad bytes
    first = head.lstrip()[:1]
    if first == b"{":
        return Detected(JSONL, compression, f"{wrapped}JSON Lines")
    if first == b"[":
        return Detected(None, compression, f"{wrapped}a JSON array (not JSON Lines: one object per line)")
    if first == b"<":
        return Detected(None, compression, f"{wrapped}XML or HTML")
    return Detected(CSV, compression, f"{wrapped}CSV")


def detect(path: Path) -> Detected:
    """What the file is, from its first bytes (and, for compressed files, its first decompressed bytes)."""
    with path.open("rb") as f:
        head = f.read(SNIFF_BYTES)
    if head.startswith(b"PAR1"):
        return Detected(PARQUET, None, "Parquet")
    compression = GZIP if head.startswith(b"\x1f\x8b") else ZSTD if head.startswith(b"\x28\xb5\x2f\xfd") else None
    if compression:
        try:
            with open_stream(path, compression) as stream:
                inner = stream.read(SNIFF_BYTES)
        except (OSError, EOFError, ValueError) as exc:  # truncated or corrupt archives
            return Detected(None, compression, f"{compression}-compressed data that does not decompress ({exc})")
        if inner.startswith(b"PAR1"):
            return Detected(None, compression, f"{compression}-compressed Parquet (Parquet compresses internally)")
        for magic, what in _OTHER_MAGIC:
            if inner.startswith(magic):
                return Detected(None, compression, f"{compression}-compressed {what}")
        return _text_kind(inner, compression, truncated=len(inner) == SNIFF_BYTES)
    for magic, what in _OTHER_MAGIC:
        if head.startswith(magic):
            return Detected(None, None, what)
    return _text_kind(head, None, truncated=len(head) == SNIFF_BYTES)


__all__ = ["ACCEPTED", "CSV", "GZIP", "JSONL", "PARQUET", "ZSTD", "Detected", "detect", "open_stream"]
