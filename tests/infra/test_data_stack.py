"""MlopsData: the KMS key and the buckets."""

from __future__ import annotations

from typing import Any

import pytest

from .conftest import Synthesized, logical_id, one, resources

DATA_BUCKETS = ("Incoming", "Validated", "Artifacts", "Quarantine", "Capture")


@pytest.fixture(scope="module")
def data(synthesized: Synthesized) -> dict[str, Any]:
    return synthesized.template_json("MlopsData")


def _bucket(data: dict[str, Any], name: str) -> dict[str, Any]:
    return data["Resources"][logical_id(data, "AWS::S3::Bucket", f"{name}Bucket")]


def test_customer_managed_key_rotates_and_has_an_alias(data: dict[str, Any]) -> None:
    _, key = one(data, "AWS::KMS::Key")
    assert key["Properties"]["EnableKeyRotation"] is True
    assert key["DeletionPolicy"] == "Retain"
    _, alias = one(data, "AWS::KMS::Alias")
    assert alias["Properties"]["AliasName"] == "alias/mlops-data"


def test_key_policy_lets_logs_and_eventbridge_use_the_key(data: dict[str, Any]) -> None:
    _, key = one(data, "AWS::KMS::Key")
    sids = {s.get("Sid") for s in key["Properties"]["KeyPolicy"]["Statement"]}
    assert {"CloudWatchLogsInThisAccount", "EventBridgeDeadLetterQueues"} <= sids


def test_data_buckets_are_kms_encrypted_with_the_key(data: dict[str, Any]) -> None:
    key_id, _ = one(data, "AWS::KMS::Key")
    for name in DATA_BUCKETS:
        [rule] = _bucket(data, name)["Properties"]["BucketEncryption"]["ServerSideEncryptionConfiguration"]
        assert rule["BucketKeyEnabled"] is True, name
        assert rule["ServerSideEncryptionByDefault"] == {
            "SSEAlgorithm": "aws:kms",
            "KMSMasterKeyID": {"Fn::GetAtt": [key_id, "Arn"]},
        }, name


def test_every_bucket_is_versioned_private_and_retained(data: dict[str, Any]) -> None:
    buckets = resources(data, "AWS::S3::Bucket")
    assert len(buckets) == len(DATA_BUCKETS) + 1  # + access logs
    for lid, bucket in buckets.items():
        props = bucket["Properties"]
        assert props["VersioningConfiguration"] == {"Status": "Enabled"}, lid
        assert props["PublicAccessBlockConfiguration"] == {
            "BlockPublicAcls": True,
            "BlockPublicPolicy": True,
            "IgnorePublicAcls": True,
            "RestrictPublicBuckets": True,
        }, lid
        assert bucket["DeletionPolicy"] == "Retain", lid


def test_every_bucket_policy_denies_requests_without_tls(data: dict[str, Any]) -> None:
    policies = resources(data, "AWS::S3::BucketPolicy")
    protected = {p["Properties"]["Bucket"]["Ref"] for p in policies.values()}
    assert protected == set(resources(data, "AWS::S3::Bucket"))
    for lid, policy in policies.items():
        denies = [
            s
            for s in policy["Properties"]["PolicyDocument"]["Statement"]
            if s["Effect"] == "Deny" and s.get("Condition") == {"Bool": {"aws:SecureTransport": "false"}}
        ]
        assert denies and denies[0]["Action"] == "s3:*", lid


def test_data_buckets_log_to_the_access_logs_bucket(data: dict[str, Any]) -> None:
    logs_id = logical_id(data, "AWS::S3::Bucket", "AccessLogsBucket")
    access_logs = data["Resources"][logs_id]["Properties"]
    # S3 server access logging can only deliver to an SSE-S3 bucket
    sse = access_logs["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"]
    assert sse == {"SSEAlgorithm": "AES256"}
    for name in DATA_BUCKETS:
        logging = _bucket(data, name)["Properties"]["LoggingConfiguration"]
        assert logging == {"DestinationBucketName": {"Ref": logs_id}, "LogFilePrefix": f"{name.lower()}/"}


def test_incoming_bucket_sends_events_to_eventbridge_natively(data: dict[str, Any]) -> None:
    incoming = _bucket(data, "Incoming")["Properties"]
    assert incoming["NotificationConfiguration"] == {"EventBridgeConfiguration": {"EventBridgeEnabled": True}}
    for name in DATA_BUCKETS[1:]:
        assert "NotificationConfiguration" not in _bucket(data, name)["Properties"], name
    # no notifications custom resource, hence no helper Lambda in the data stack
    assert not resources(data, "Custom::S3BucketNotifications")
    assert not resources(data, "AWS::Lambda::Function")


def test_lifecycle_rules(data: dict[str, Any]) -> None:
    for name in DATA_BUCKETS:
        rules = {r["Id"]: r for r in _bucket(data, name)["Properties"]["LifecycleConfiguration"]["Rules"]}
        noncurrent = rules["noncurrent-versions"]
        assert noncurrent["Status"] == "Enabled"
        assert noncurrent["NoncurrentVersionExpiration"] == {"NoncurrentDays": 90}
        assert noncurrent["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 7}
        if name in ("Quarantine", "Capture"):
            aged = rules["age-out"]
            assert aged["Transitions"] == [{"StorageClass": "STANDARD_IA", "TransitionInDays": 30}]
            assert aged["ExpirationInDays"] == {"Quarantine": 365, "Capture": 180}[name]
        else:
            assert "age-out" not in rules, name


def test_outputs_name_each_bucket_by_role(data: dict[str, Any]) -> None:
    # the twin finds buckets by role from these output names (mlops/twin/control.py)
    outputs = data["Outputs"]
    for name in DATA_BUCKETS:
        assert outputs[f"{name}BucketName"]["Value"] == {"Ref": logical_id(data, "AWS::S3::Bucket", f"{name}Bucket")}
