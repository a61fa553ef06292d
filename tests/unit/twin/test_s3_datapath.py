"""The twin's S3 data path: bytes between socket and disk, with S3's ETags, checksums, ranges and limits."""

from __future__ import annotations

import base64
import hashlib
import http.client
import io
import os
import urllib.parse
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import ClientError
from moto.s3.models import FakeKey, s3_backends

from mlops.twin import moto_ext
from mlops.twin.gateway import Gateway
from mlops.twin.iam import Principals
from mlops.twin.s3.service import S3Service

ACCOUNT = "000000000000"
MB = 1024 * 1024


@pytest.fixture
def twin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[S3Service, Any, str]]:
    s3_backends[ACCOUNT]["aws"].reset()
    whole = FakeKey.value

    def loaded(key: FakeKey) -> bytes:  # the data path never has moto load an object on disk whole
        assert moto_ext.body_of(key) is None, f"moto loaded {key.name} whole"
        return whole.fget(key)  # type: ignore[misc]

    monkeypatch.setattr(FakeKey, "value", property(loaded, whole.fset))
    service = S3Service(tmp_path, lambda _e: None, account=ACCOUNT)
    service.start()
    gateway = Gateway(Principals(ACCOUNT))
    gateway.mount_wsgi("s3", service.app)
    endpoint = gateway.start()
    service.create_bucket("bkt", versioned=True, eventbridge=False)
    args = {
        "endpoint_url": endpoint,
        "region_name": "us-east-1",
        "aws_access_key_id": "t",
        "aws_secret_access_key": "t",
    }
    client = boto3.client("s3", **args)
    client._twin_args = args
    try:
        yield service, client, endpoint
    finally:
        gateway.stop()
        service.stop()


def _code(err: pytest.ExceptionInfo[ClientError]) -> tuple[str, int]:
    return err.value.response["Error"]["Code"], err.value.response["ResponseMetadata"]["HTTPStatusCode"]


def _data_bytes(service: S3Service) -> int:
    return sum(p.stat().st_size for p in (service.root / "bkt" / "data").iterdir())


def test_a_put_is_on_disk_once_not_in_memory_with_md5_etag_and_its_checksum(twin: Any) -> None:
    service, s3, _ = twin
    body = os.urandom(2 * MB + 3)
    put = s3.put_object(Bucket="bkt", Key="k", Body=body, ChecksumAlgorithm="SHA256")
    assert put["ETag"] == f'"{hashlib.md5(body).hexdigest()}"'
    sha = base64.b64encode(hashlib.sha256(body).digest()).decode()
    assert put["ChecksumSHA256"] == sha
    key = service.backend.get_object("bkt", "k")
    assert moto_ext.body_of(key) is not None and not isinstance(key._value_buffer, io.IOBase)
    assert _data_bytes(service) == len(body)  # one copy
    got = s3.get_object(Bucket="bkt", Key="k", ChecksumMode="ENABLED")
    assert (got["Body"].read(), got["ChecksumSHA256"]) == (body, sha)
    # only when asked (botocore asks by default; told not to, it does not)
    plain = boto3.client("s3", config=Config(response_checksum_validation="when_required"), **s3._twin_args)
    assert "ChecksumSHA256" not in plain.get_object(Bucket="bkt", Key="k")


def test_a_checksum_that_does_not_match_is_a_bad_digest_and_stores_nothing(twin: Any) -> None:
    service, s3, _ = twin
    wrong = base64.b64encode((zlib.crc32(b"other")).to_bytes(4, "big")).decode()
    with pytest.raises(ClientError) as err:
        s3.put_object(Bucket="bkt", Key="k", Body=b"data", ChecksumCRC32=wrong)
    assert _code(err) == ("BadDigest", 400)
    with pytest.raises(ClientError) as err:
        s3.put_object(Bucket="bkt", Key="k", Body=b"data", ContentMD5=base64.b64encode(b"0" * 16).decode())
    assert _code(err) == ("BadDigest", 400)
    assert err.value.response["Error"]["CalculatedDigest"] == base64.b64encode(hashlib.md5(b"data").digest()).decode()
    with pytest.raises(ClientError) as err:
        s3.put_object(Bucket="bkt", Key="k", Body=b"data", ContentMD5="not-md5")
    assert _code(err) == ("InvalidDigest", 400)
    with pytest.raises(ClientError) as err:
        s3.put_object(Bucket="bkt", Key="k", Body=b"data", ChecksumCRC32="x")
    assert _code(err) == ("InvalidRequest", 400)
    assert "Versions" not in s3.list_object_versions(Bucket="bkt")
    assert _data_bytes(service) == 0


def test_ranges_answer_as_s3_documents(twin: Any) -> None:
    _, s3, _ = twin
    body = bytes(range(256)) * 4096  # 1 MiB
    s3.put_object(Bucket="bkt", Key="k", Body=body)
    cases = {"bytes=0-9": (0, 9), "bytes=1000-": (1000, len(body) - 1), "bytes=-100": (len(body) - 100, len(body) - 1)}
    for header, (first, last) in cases.items():
        got = s3.get_object(Bucket="bkt", Key="k", Range=header)
        assert got["ResponseMetadata"]["HTTPStatusCode"] == 206
        assert got["ContentRange"] == f"bytes {first}-{last}/{len(body)}"
        assert got["Body"].read() == body[first : last + 1]
    assert s3.get_object(Bucket="bkt", Key="k", Range="bytes=10-99999999")["Body"].read() == body[10:]
    with pytest.raises(ClientError) as err:
        s3.get_object(Bucket="bkt", Key="k", Range=f"bytes={len(body)}-")
    assert _code(err) == ("InvalidRange", 416)
    assert err.value.response["Error"]["ActualObjectSize"] == str(len(body))
    assert s3.get_object(Bucket="bkt", Key="k", Range="bytes=5-1")["Body"].read() == body  # ignored, as S3 does


def test_conditional_requests(twin: Any) -> None:
    _, s3, _ = twin
    etag = s3.put_object(Bucket="bkt", Key="k", Body=b"v1")["ETag"]
    with pytest.raises(ClientError) as err:
        s3.put_object(Bucket="bkt", Key="k", Body=b"v2", IfNoneMatch="*")
    assert _code(err) == ("PreconditionFailed", 412)
    with pytest.raises(ClientError) as err:
        s3.put_object(Bucket="bkt", Key="k", Body=b"v2", IfMatch='"0000"')
    assert _code(err) == ("PreconditionFailed", 412)
    s3.put_object(Bucket="bkt", Key="k", Body=b"v2", IfMatch=etag)
    with pytest.raises(ClientError) as err:
        s3.get_object(Bucket="bkt", Key="k", IfMatch=etag)
    assert _code(err) == ("PreconditionFailed", 412)
    assert s3.get_object(Bucket="bkt", Key="k", IfNoneMatch=etag)["Body"].read() == b"v2"


def test_multipart_both_ways_assembles_on_disk_without_a_copy(twin: Any, tmp_path: Path) -> None:
    service, s3, _ = twin
    body = os.urandom(13 * MB)
    config = TransferConfig(multipart_threshold=5 * MB, multipart_chunksize=5 * MB)
    s3.upload_fileobj(io.BytesIO(body), "bkt", "big", Config=config, ExtraArgs={"ChecksumAlgorithm": "CRC32"})
    head = s3.head_object(Bucket="bkt", Key="big", ChecksumMode="ENABLED")
    md5s = b"".join(hashlib.md5(body[i : i + 5 * MB]).digest() for i in range(0, len(body), 5 * MB))
    assert head["ETag"] == f'"{hashlib.md5(md5s).hexdigest()}-3"'
    if head["ChecksumType"] == "FULL_OBJECT":  # what current transfer managers ask for
        assert head["ChecksumCRC32"] == base64.b64encode(zlib.crc32(body).to_bytes(4, "big")).decode()
    else:
        crcs = b"".join(zlib.crc32(body[i : i + 5 * MB]).to_bytes(4, "big") for i in range(0, len(body), 5 * MB))
        assert head["ChecksumCRC32"] == base64.b64encode(zlib.crc32(crcs).to_bytes(4, "big")).decode() + "-3"
    assert _data_bytes(service) == len(body)
    assert not list((service.root / "bkt" / "uploads").iterdir())
    out = io.BytesIO()
    s3.download_fileobj("bkt", "big", out, Config=config)
    assert out.getvalue() == body
    assert s3.get_object(Bucket="bkt", Key="big", PartNumber=2)["Body"].read() == body[5 * MB : 10 * MB]


def test_an_aborted_upload_leaves_no_parts(twin: Any) -> None:
    service, s3, _ = twin
    upload = s3.create_multipart_upload(Bucket="bkt", Key="k")["UploadId"]
    s3.upload_part(Bucket="bkt", Key="k", UploadId=upload, PartNumber=1, Body=b"x" * MB)
    assert len(list((service.root / "bkt" / "uploads").iterdir())) == 1
    s3.abort_multipart_upload(Bucket="bkt", Key="k", UploadId=upload)
    assert not list((service.root / "bkt" / "uploads").iterdir())
    with pytest.raises(ClientError) as err:
        s3.upload_part(Bucket="bkt", Key="k", UploadId=upload, PartNumber=10_001, Body=b"x")
    assert _code(err)[0] == "InvalidArgument"


def test_a_single_put_over_5_gib_is_refused_before_its_body_is_read(twin: Any) -> None:
    _, _, endpoint = twin
    url = urllib.parse.urlparse(endpoint)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
    conn.putrequest("PUT", "/bkt/huge")
    conn.putheader("Content-Length", str(5 * 1024**3 + 1))
    conn.endheaders()
    response = conn.getresponse()
    text = response.read().decode()
    assert response.status == 400 and "<Code>EntityTooLarge</Code>" in text
    assert "<MaxSizeAllowed>5368709120</MaxSizeAllowed>" in text


def _chunked(data: bytes, trailer: str) -> bytes:
    out = b""
    for i in range(0, len(data), 4096):
        piece = data[i : i + 4096]
        out += f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
    return out + b"0\r\n" + trailer.encode() + b"\r\n\r\n"


@pytest.mark.parametrize("good", [True, False])
def test_an_aws_chunked_body_with_a_trailing_checksum(twin: Any, good: bool) -> None:
    _service, s3, endpoint = twin
    data = os.urandom(10_000)
    crc = base64.b64encode(zlib.crc32(data if good else b"x").to_bytes(4, "big")).decode()
    wire = _chunked(data, f"x-amz-checksum-crc32:{crc}")
    url = urllib.parse.urlparse(endpoint)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
    conn.request(
        "PUT",
        "/bkt/chunked",
        body=wire,
        headers={
            "Content-Encoding": "aws-chunked",
            "x-amz-content-sha256": "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
            "x-amz-decoded-content-length": str(len(data)),
            "x-amz-trailer": "x-amz-checksum-crc32",
            "x-amz-sdk-checksum-algorithm": "CRC32",
        },
    )
    response = conn.getresponse()
    text = response.read().decode()
    if not good:
        assert response.status == 400 and "<Code>BadDigest</Code>" in text
        return
    assert response.status == 200, text
    assert response.getheader("x-amz-checksum-crc32") == crc
    got = s3.get_object(Bucket="bkt", Key="chunked", ChecksumMode="ENABLED")
    assert (got["Body"].read(), got["ChecksumCRC32"]) == (data, crc)
    assert "ContentEncoding" not in got  # aws-chunked is the transfer's, not the object's


def test_copies_go_file_to_file(twin: Any) -> None:
    service, s3, _ = twin
    body = os.urandom(13 * MB)
    source = s3.put_object(Bucket="bkt", Key="src", Body=body, ChecksumAlgorithm="CRC32")
    s3.put_object(Bucket="bkt", Key="src", Body=b"newer")
    copied = s3.copy_object(
        Bucket="bkt", Key="one", CopySource={"Bucket": "bkt", "Key": "src", "VersionId": source["VersionId"]}
    )
    assert copied["CopyObjectResult"]["ETag"] == f'"{hashlib.md5(body).hexdigest()}"'
    config = TransferConfig(multipart_threshold=5 * MB, multipart_chunksize=5 * MB)
    s3.copy({"Bucket": "bkt", "Key": "src", "VersionId": source["VersionId"]}, "bkt", "parts", Config=config)
    for key in ("one", "parts"):
        assert moto_ext.body_of(service.backend.get_object("bkt", key)) is not None
        got = s3.get_object(Bucket="bkt", Key=key, ChecksumMode="ENABLED")
        assert got["Body"].read() == body, key
    assert s3.head_object(Bucket="bkt", Key="parts")["ETag"].endswith('-3"')
    with pytest.raises(ClientError) as err:
        s3.copy_object(Bucket="bkt", Key="x", CopySource={"Bucket": "bkt", "Key": "missing"})
    assert _code(err)[0] == "NoSuchKey"
    assert _data_bytes(service) == 3 * len(body) + len(b"newer")


def test_a_get_under_way_reads_whole_although_its_version_is_deleted(twin: Any) -> None:
    service, s3, _ = twin
    body = os.urandom(32 * MB)
    version = s3.put_object(Bucket="bkt", Key="k", Body=body)["VersionId"]
    stream = s3.get_object(Bucket="bkt", Key="k")["Body"]
    first = stream.read(MB)
    s3.delete_object(Bucket="bkt", Key="k", VersionId=version)
    assert _data_bytes(service) == 0  # gone from the store at once
    assert first + stream.read() == body
