"""A large object through the twin's S3 with boto3's transfer manager, multipart both ways, in bounded memory.

256 MB by default (``MLOPS_S3_LARGE_MB`` sets another size); the twin's S3 runs in a process of
its own so that its peak memory is its own.
"""

from __future__ import annotations

import base64
import hashlib
import math
import os
import subprocess
import sys
import zlib
from pathlib import Path

import boto3
import pytest
from boto3.s3.transfer import TransferConfig

MB = 1024 * 1024
SIZE = int(os.environ.get("MLOPS_S3_LARGE_MB", "256")) * MB
MEMORY_BOUND = 200 * MB


def _kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(field)


@pytest.mark.slow
def test_a_large_object_both_ways_with_the_transfer_manager(tmp_path: Path) -> None:
    source = tmp_path / "source.bin"
    crc, sha, part_crcs = 0, hashlib.sha256(), []
    with source.open("wb") as out:
        for i in range(SIZE // MB):
            block = os.urandom(MB)
            out.write(block)
            crc, _ = zlib.crc32(block, crc), sha.update(block)
            part_crcs.append(zlib.crc32(block, part_crcs.pop() if i % 8 else 0))
    child = subprocess.Popen(
        [sys.executable, "-m", "mlops.twin.s3", str(tmp_path / "twin"), "large"],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).parents[3],
    )
    try:
        assert child.stdout is not None
        endpoint = child.stdout.readline().strip()
        assert child.stdout.readline().strip() == "ready"
        s3 = boto3.client(
            "s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="t", aws_secret_access_key="t"
        )
        s3.head_bucket(Bucket="large")
        baseline = _kb(child.pid, "VmRSS")
        Path(f"/proc/{child.pid}/clear_refs").write_text("5")  # peak RSS from here on
        config = TransferConfig(multipart_threshold=8 * MB, multipart_chunksize=8 * MB)
        s3.upload_file(str(source), "large", "data.bin", Config=config, ExtraArgs={"ChecksumAlgorithm": "CRC32"})
        back = tmp_path / "back.bin"
        s3.download_file("large", "data.bin", str(back), Config=config)
        peak = _kb(child.pid, "VmHWM")
        head = s3.head_object(Bucket="large", Key="data.bin", ChecksumMode="ENABLED")
    finally:
        child.kill()
        child.wait()

    got = hashlib.sha256()
    with back.open("rb") as f:
        while block := f.read(MB):
            got.update(block)
    assert got.hexdigest() == sha.hexdigest()
    parts = math.ceil(SIZE / (8 * MB))
    assert head["ETag"].strip('"').endswith(f"-{parts}") and len(head["ETag"].strip('"').split("-")[0]) == 32
    if head["ChecksumType"] == "FULL_OBJECT":
        assert head["ChecksumCRC32"] == base64.b64encode(crc.to_bytes(4, "big")).decode()
    else:  # COMPOSITE: the CRC32 of the parts' CRC32s, and their count
        of_parts = zlib.crc32(b"".join(c.to_bytes(4, "big") for c in part_crcs)).to_bytes(4, "big")
        assert head["ChecksumCRC32"] == f"{base64.b64encode(of_parts).decode()}-{parts}"
    assert peak - baseline <= MEMORY_BOUND, f"the twin's S3 grew by {(peak - baseline) / MB:.0f} MB"
