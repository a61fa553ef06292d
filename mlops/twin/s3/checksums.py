"""The checksums S3 takes and returns (``x-amz-checksum-*``), computed as data streams by.

CRC32, SHA1 and SHA256 come from the standard library; CRC32C and CRC64NVME from ``awscrt``
or ``crc32c`` when installed (botocore uses the same), else from a table-driven fallback that
is exact but slow (current SDKs send CRC32 unless asked for another algorithm).
"""

from __future__ import annotations

import base64
import hashlib
import zlib
from collections.abc import Callable
from functools import cache
from typing import Any, Protocol

ALGORITHMS = ("CRC32", "CRC32C", "CRC64NVME", "SHA1", "SHA256")
FULL_OBJECT_CAPABLE = ("CRC32", "CRC32C", "CRC64NVME")  # CRCs combine; SHA digests only compose


class Checksum(Protocol):
    def update(self, data: bytes) -> None: ...
    def digest(self) -> bytes: ...


@cache
def _table(poly: int, width: int) -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ poly if crc & 1 else crc >> 1
        table.append(crc & ((1 << width) - 1))
    return table


def _crc_fallback(poly: int, width: int) -> Callable[[bytes, int], int]:
    mask = (1 << width) - 1
    table = _table(poly, width)

    def crc(data: bytes, value: int) -> int:
        value ^= mask
        for byte in data:
            value = table[(value ^ byte) & 0xFF] ^ (value >> 8)
        return value ^ mask

    return crc


def _crc32c() -> Callable[[bytes, int], int]:
    try:
        from awscrt import checksums  # type: ignore[import-not-found]

        return lambda data, value: int(checksums.crc32c(data, value))
    except ImportError:
        pass
    try:
        import crc32c  # type: ignore[import-not-found]

        return lambda data, value: int(crc32c.crc32c(data, value))
    except ImportError:
        return _crc_fallback(0x82F63B78, 32)


def _crc64nvme() -> Callable[[bytes, int], int]:
    try:
        from awscrt import checksums

        return lambda data, value: int(checksums.crc64nvme(data, value))
    except ImportError:
        return _crc_fallback(0x9A6C9329AC4BC9B5, 64)


class _Crc:
    def __init__(self, fn: Callable[[bytes, int], int], size: int) -> None:
        self.fn, self.size, self.value = fn, size, 0

    def update(self, data: bytes) -> None:
        self.value = self.fn(data, self.value)

    def digest(self) -> bytes:
        return self.value.to_bytes(self.size, "big")


@cache
def _crc_fns() -> dict[str, tuple[Callable[[bytes, int], int], int]]:
    return {"CRC32": (zlib.crc32, 4), "CRC32C": (_crc32c(), 4), "CRC64NVME": (_crc64nvme(), 8)}


def new(algorithm: str) -> Checksum:
    algorithm = algorithm.upper()
    if algorithm in ("SHA1", "SHA256"):
        return _Hash(hashlib.new(algorithm.lower()))
    fn, size = _crc_fns()[algorithm]
    return _Crc(fn, size)


class _Hash:
    def __init__(self, h: Any) -> None:
        self.h = h

    def update(self, data: bytes) -> None:
        self.h.update(data)

    def digest(self) -> bytes:
        return bytes(self.h.digest())


def b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode()


def of(algorithm: str, data: bytes) -> bytes:
    checksum = new(algorithm)
    checksum.update(data)
    return checksum.digest()
