"""A twin restart keeps what was uploaded: the S3 API's objects are mirrored in the work dir."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import boto3
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
