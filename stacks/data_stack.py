"""Where data lives: one customer-managed KMS key and the app's buckets.

Every data bucket is KMS-encrypted with the key (S3 bucket keys on), versioned, SSL-only,
not public, and logs its requests to the access-logs bucket (which must use S3-managed
encryption: S3 server access logging cannot write to a KMS-encrypted target).
The incoming bucket sends its events to EventBridge, natively through the bucket's
``NotificationConfiguration`` rather than CDK's notifications custom resource, so no
helper Lambda is deployed for it. Buckets are retained on stack deletion unless the
context flag ``mlops:destroy-data`` is true (dev accounts).
"""

from __future__ import annotations

from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

from stacks.nag import acknowledge
from stacks.props import DataResources

DESTROY_CONTEXT = "mlops:destroy-data"
# Prefixes inside the buckets, shared with the code that writes them.
INCOMING_PREFIX = "incoming/"
GROUND_TRUTH_PREFIX = "ground-truth/"  # labels arrive in the incoming bucket too (later issue)


def _flag(scope: Construct, name: str) -> bool:
    value = scope.node.try_get_context(name)
    return value is True or str(value).lower() == "true"


def _days(scope: Construct, name: str, default: int) -> cdk.Duration:
    return cdk.Duration.days(int(scope.node.try_get_context(name) or default))


class DataStack(cdk.Stack):
    def __init__(self, scope: Construct, construct_id: str, **kwargs: Any) -> None:
        super().__init__(scope, construct_id, **kwargs)
        destroy = _flag(self, DESTROY_CONTEXT)
        self.removal_policy = cdk.RemovalPolicy.DESTROY if destroy else cdk.RemovalPolicy.RETAIN

        self.key = kms.Key(
            self,
            "DataKey",
            alias="alias/mlops-data",
            description="Encrypts the MLOps platform's data, artifacts, logs and queues",
            enable_key_rotation=True,
            removal_policy=self.removal_policy,
        )
        self._allow_services_on_key()

        self.access_logs_bucket = s3.Bucket(
            self,
            "AccessLogsBucket",
            encryption=s3.BucketEncryption.S3_MANAGED,
            versioned=True,
            enforce_ssl=True,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            removal_policy=self.removal_policy,
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="expire-access-logs",
                    expiration=_days(self, "mlops:access-log-days", 365),
                    noncurrent_version_expiration=cdk.Duration.days(30),
                    abort_incomplete_multipart_upload_after=cdk.Duration.days(7),
                )
            ],
        )
        acknowledge(
            self.access_logs_bucket,
            "AwsSolutions-S1",
            "This is the server access log target of the app's buckets; logging it into itself would loop.",
        )

        self.incoming_bucket = self._bucket("Incoming", eventbridge=True)
        self.validated_bucket = self._bucket("Validated")
        self.artifacts_bucket = self._bucket("Artifacts")
        self.quarantine_bucket = self._bucket(
            "Quarantine",
            transition_after=cdk.Duration.days(30),
            expire_after=_days(self, "mlops:quarantine-days", 365),
        )
        self.capture_bucket = self._bucket(
            "Capture",
            transition_after=cdk.Duration.days(30),
            expire_after=_days(self, "mlops:capture-days", 180),
        )

        for role, bucket in self.buckets.items():
            cdk.CfnOutput(self, f"{role.capitalize()}BucketName", value=bucket.bucket_name)
        cdk.CfnOutput(self, "DataKeyArn", value=self.key.key_arn)
        self.resources = DataResources(
            key=self.key,
            incoming_bucket=self.incoming_bucket,
            validated_bucket=self.validated_bucket,
            artifacts_bucket=self.artifacts_bucket,
            quarantine_bucket=self.quarantine_bucket,
            capture_bucket=self.capture_bucket,
            removal_policy=self.removal_policy,
        )

    @property
    def buckets(self) -> dict[str, s3.Bucket]:
        """The data buckets by role (the access-logs bucket is not one)."""
        return {
            "incoming": self.incoming_bucket,
            "validated": self.validated_bucket,
            "artifacts": self.artifacts_bucket,
            "quarantine": self.quarantine_bucket,
            "capture": self.capture_bucket,
        }

    def _bucket(
        self,
        name: str,
        *,
        eventbridge: bool = False,
        transition_after: cdk.Duration | None = None,
        expire_after: cdk.Duration | None = None,
    ) -> s3.Bucket:
        rules = [
            s3.LifecycleRule(
                id="noncurrent-versions",
                noncurrent_version_expiration=_days(self, "mlops:noncurrent-days", 90),
                abort_incomplete_multipart_upload_after=cdk.Duration.days(7),
            )
        ]
        if transition_after or expire_after:
            to_ia = s3.Transition(storage_class=s3.StorageClass.INFREQUENT_ACCESS, transition_after=transition_after)
            rules.append(
                s3.LifecycleRule(
                    id="age-out", transitions=[to_ia] if transition_after else None, expiration=expire_after
                )
            )
        bucket = s3.Bucket(
            self,
            f"{name}Bucket",
            encryption=s3.BucketEncryption.KMS,
            encryption_key=self.key,
            bucket_key_enabled=True,
            versioned=True,
            enforce_ssl=True,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            server_access_logs_bucket=self.access_logs_bucket,
            server_access_logs_prefix=f"{name.lower()}/",
            lifecycle_rules=rules,
            removal_policy=self.removal_policy,
            auto_delete_objects=False,
        )
        if eventbridge:
            cfn = bucket.node.default_child
            assert isinstance(cfn, s3.CfnBucket)
            cfn.notification_configuration = s3.CfnBucket.NotificationConfigurationProperty(
                event_bridge_configuration=s3.CfnBucket.EventBridgeConfigurationProperty(event_bridge_enabled=True)
            )
        return bucket

    def _allow_services_on_key(self) -> None:
        """Key policy for the services that encrypt with the key on the app's behalf."""
        region, account, partition = cdk.Aws.REGION, cdk.Aws.ACCOUNT_ID, cdk.Aws.PARTITION
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="CloudWatchLogsInThisAccount",
                principals=[iam.ServicePrincipal(f"logs.{region}.amazonaws.com")],
                actions=["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"],
                resources=["*"],  # in a key policy, "*" is this key
                conditions={
                    "ArnLike": {
                        "kms:EncryptionContext:aws:logs:arn": f"arn:{partition}:logs:{region}:{account}:log-group:*"
                    }
                },
            )
        )
        # EventBridge sends failed deliveries to the KMS-encrypted dead-letter queues.
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="EventBridgeDeadLetterQueues",
                principals=[iam.ServicePrincipal("events.amazonaws.com")],
                actions=["kms:Decrypt", "kms:GenerateDataKey"],
                resources=["*"],
                conditions={"StringEquals": {"aws:SourceAccount": account}},
            )
        )
