"""A twin restart keeps what was uploaded: the S3 API's objects are mirrored in the work dir."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto.s3.models import s3_backends

from mlops.twin.gateway import Gateway
from mlops.twin.iam import Principals
from mlops.twin.s3.service import S3Service

ACCOUNT = "000000000000"


def _client(endpoint: str) -> Any:
    return boto3.client(
        "s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="t", aws_secret_access_key="t"
    )


class _Running:
    def __init__(self, service: S3Service, gateway: Gateway) -> None:
        self.service, self.gateway = service, gateway

    def stop(self) -> None:
        self.gateway.stop()
        self.service.stop()


def _run(workdir: Path, events: list[dict[str, Any]]) -> tuple[_Running, Any]:
    s3_backends[ACCOUNT]["aws"].reset()  # a new process: nothing in memory
    service = S3Service(workdir, events.append, account=ACCOUNT)
    service.start()
    gateway = Gateway(Principals(ACCOUNT))
    gateway.mount_wsgi("s3", service.app)
    endpoint = gateway.start()
    service.create_bucket("incoming", versioned=True, eventbridge=True)
    return _Running(service, gateway), _client(endpoint)


def test_objects_survive_a_restart_without_new_events(tmp_path: Path) -> None:
    events: list[dict[str, Any]] = []
    service, s3 = _run(tmp_path, events)
    try:
        s3.put_object(Bucket="incoming", Key="incoming/m/data.csv", Body=b"a,b\n1,2\n")
        s3.put_object(Bucket="incoming", Key="incoming/m/gone.csv", Body=b"x")
        s3.delete_object(Bucket="incoming", Key="incoming/m/gone.csv")
        s3.put_object(Bucket="incoming", Key="odd names/ü %2F.csv", Body=b"odd")
    finally:
        service.stop()
    created = [e for e in events if e["detail-type"] == "Object Created"]
    assert len(created) == 3

    service, s3 = _run(tmp_path, events)
    try:
        assert s3.get_object(Bucket="incoming", Key="incoming/m/data.csv")["Body"].read() == b"a,b\n1,2\n"
        assert s3.get_object(Bucket="incoming", Key="odd names/ü %2F.csv")["Body"].read() == b"odd"
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket="incoming")["Contents"]]
        assert "incoming/m/gone.csv" not in keys
    finally:
        service.stop()
    assert len([e for e in events if e["detail-type"] == "Object Created"]) == 3  # restoring is not uploading


def test_a_multipart_upload_is_one_object_created_event(tmp_path: Path) -> None:
    from boto3.s3.transfer import TransferConfig

    events: list[dict[str, Any]] = []
    service, s3 = _run(tmp_path, events)
    try:
        big = tmp_path / "big.csv"
        big.write_bytes(b"x" * (6 * 1024 * 1024))
        config = TransferConfig(multipart_threshold=5 * 1024 * 1024, multipart_chunksize=5 * 1024 * 1024)
        s3.upload_file(str(big), "incoming", "incoming/m/big.csv", Config=config)
    finally:
        service.stop()
    created = [e["detail"] for e in events if e["detail-type"] == "Object Created"]
    assert [(d["object"]["key"], d["reason"]) for d in created] == [("incoming/m/big.csv", "CompleteMultipartUpload")]

    service, s3 = _run(tmp_path, events)  # restored from its parts' files, parts known
    try:
        got = s3.get_object(Bucket="incoming", Key="incoming/m/big.csv", Range="bytes=5242878-5242881")
        assert got["Body"].read() == b"xxxx" and got["ETag"].endswith('-2"')
        part = s3.get_object(Bucket="incoming", Key="incoming/m/big.csv", PartNumber=2)
        assert (part["ContentLength"], part["PartsCount"]) == (1024 * 1024, 2)
    finally:
        service.stop()


def test_every_version_and_delete_marker_survives_a_restart_with_its_id(tmp_path: Path) -> None:
    events: list[dict[str, Any]] = []
    service, s3 = _run(tmp_path, events)
    try:
        v1 = s3.put_object(Bucket="incoming", Key="k.csv", Body=b"one", ContentType="text/csv")["VersionId"]
        v2 = s3.put_object(Bucket="incoming", Key="k.csv", Body=b"two", Metadata={"who": "me"})["VersionId"]
        marker = s3.delete_object(Bucket="incoming", Key="k.csv")["VersionId"]
        s3.put_object(Bucket="incoming", Key="gone.csv", Body=b"x")
        gone = s3.put_object(Bucket="incoming", Key="gone.csv", Body=b"y")["VersionId"]
        s3.delete_object(Bucket="incoming", Key="gone.csv", VersionId=gone)  # a version deleted for good
        before = s3.list_object_versions(Bucket="incoming")
    finally:
        service.stop()

    service, s3 = _run(tmp_path, events)
    try:
        after = s3.list_object_versions(Bucket="incoming")
        for field in ("Versions", "DeleteMarkers"):
            assert [(v["Key"], v["VersionId"], v["IsLatest"], v["LastModified"]) for v in after[field]] == [
                (v["Key"], v["VersionId"], v["IsLatest"], v["LastModified"]) for v in before[field]
            ]
        assert [v["ETag"] for v in after["Versions"]] == [v["ETag"] for v in before["Versions"]]
        assert marker in [m["VersionId"] for m in after["DeleteMarkers"]]
        old = s3.get_object(Bucket="incoming", Key="k.csv", VersionId=v1)
        assert (old["Body"].read(), old["ContentType"]) == (b"one", "text/csv")
        newer = s3.get_object(Bucket="incoming", Key="k.csv", VersionId=v2)
        assert (newer["Body"].read(), newer["Metadata"]) == (b"two", {"who": "me"})
        with pytest.raises(ClientError) as err:
            s3.get_object(Bucket="incoming", Key="k.csv")
        assert err.value.response["Error"]["Code"] == "NoSuchKey"
        assert s3.get_object(Bucket="incoming", Key="gone.csv")["Body"].read() == b"x"
        s3.delete_object(Bucket="incoming", Key="k.csv", VersionId=marker)  # undelete, as in S3
        assert s3.get_object(Bucket="incoming", Key="k.csv")["VersionId"] == v2
    finally:
        service.stop()
    service, s3 = _run(tmp_path, events)
    try:
        assert s3.get_object(Bucket="incoming", Key="k.csv")["Body"].read() == b"two"  # the undelete was kept
    finally:
        service.stop()


def test_a_kill_9_right_after_a_put_is_answered_loses_nothing(tmp_path: Path) -> None:
    child = subprocess.Popen(
        [sys.executable, "-m", "mlops.twin.s3", str(tmp_path), "incoming"],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).parents[3],
    )
    try:
        assert child.stdout is not None
        endpoint = child.stdout.readline().strip()
        assert child.stdout.readline().strip() == "ready"
        s3 = _client(endpoint)
        body = os.urandom(3 * 1024 * 1024 + 7)
        first = s3.put_object(Bucket="incoming", Key="incoming/m/a.bin", Body=b"first")["VersionId"]
        put = s3.put_object(Bucket="incoming", Key="incoming/m/a.bin", Body=body)
        child.send_signal(signal.SIGKILL)  # at once: no shutdown path runs
    finally:
        child.kill()
        child.wait()

    service, s3 = _run(tmp_path, [])
    try:
        got = s3.get_object(Bucket="incoming", Key="incoming/m/a.bin")
        assert (got["VersionId"], got["ETag"], got["Body"].read()) == (put["VersionId"], put["ETag"], body)
        assert s3.get_object(Bucket="incoming", Key="incoming/m/a.bin", VersionId=first)["Body"].read() == b"first"
    finally:
        service.stop()


def test_objects_of_the_former_mirror_layout_are_taken_over(tmp_path: Path) -> None:
    legacy = tmp_path / "s3" / "incoming" / "objects"
    (legacy / "incoming" / "m").mkdir(parents=True)
    (legacy / "incoming" / "m" / "data.csv").write_bytes(b"a,b\n1,2\n")
    (legacy / "odd%20name.csv").write_bytes(b"odd")
    service, s3 = _run(tmp_path, [])
    try:
        assert s3.get_object(Bucket="incoming", Key="incoming/m/data.csv")["Body"].read() == b"a,b\n1,2\n"
        version = s3.get_object(Bucket="incoming", Key="odd name.csv")["VersionId"]
    finally:
        service.stop()
    assert not [p for p in legacy.rglob("*") if p.is_file()]
    service, s3 = _run(tmp_path, [])
    try:
        assert s3.get_object(Bucket="incoming", Key="odd name.csv")["VersionId"] == version  # now a stored version
    finally:
        service.stop()


def test_tags_set_after_the_upload_survive_a_restart(tmp_path: Path) -> None:
    service, s3 = _run(tmp_path, [])
    try:
        version = s3.put_object(Bucket="incoming", Key="t.csv", Body=b"x", Tagging="stage=raw")["VersionId"]
        s3.put_object_tagging(Bucket="incoming", Key="t.csv", Tagging={"TagSet": [{"Key": "stage", "Value": "done"}]})
    finally:
        service.stop()
    service, s3 = _run(tmp_path, [])
    try:
        tags = s3.get_object_tagging(Bucket="incoming", Key="t.csv", VersionId=version)["TagSet"]
        assert tags == [{"Key": "stage", "Value": "done"}]
    finally:
        service.stop()
