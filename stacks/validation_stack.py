"""Data landing in S3 is validated: rule -> state machine -> Lambda.

    S3 "Object Created" under incoming/ (EventBridge, default bus)
      -> ValidateDataset (Lambda) -> DatasetPassed?
           duplicate delivery -> AlreadyValidated (nothing published twice)
           passed             -> PublishDatasetValidated ("Dataset Validated") -> ValidationPassed
           part file          -> WatchThisFolder?
                                   watch: true  -> WaitForCommitMarker (commit_timeout_minutes) -> CheckCommit
                                                   -> CommitArrived? committed -> DatasetCommitted
                                                                     otherwise -> DatasetIncomplete (report)
                                   otherwise    -> AwaitingCommitMarker (another execution watches)
           bookkeeping file   -> NotADataFile (names starting with _ or .)
           failed             -> ValidationFailed (DatasetRejected, the summary with the report URI)
      any error after retries -> ValidationErrored

A multi-part dataset (``incoming/<model>/<dataset>/part-*`` + ``_SUCCESS`` or
``_manifest.json``) is validated by its marker's execution; see ``mlops/services/parts.py``.

The Lambda's permissions are written out per bucket and prefix (what the handler reads,
writes and deletes), not taken from the broad bucket grants.
"""

from __future__ import annotations

from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from mlops.naming import METRICS_NAMESPACE
from stacks.data_stack import INCOMING_PREFIX
from stacks.functions import project_function
from stacks.layers import ProjectLayers
from stacks.nag import IAM5, acknowledge, acknowledge_wildcard_resources

EVENT_SOURCE = "mlops.validation"
DATASET_VALIDATED = "Dataset Validated"
LAMBDA_RETRY_ERRORS = [
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
]
CONCURRENCY_CONTEXT = "mlops:validation-concurrency"
# The handler's input, from the S3 "Object Created" event (see functions/validate/handler.py).
PAYLOAD = {
    "bucket": sfn.JsonPath.string_at("$.detail.bucket.name"),
    "key": sfn.JsonPath.string_at("$.detail.object.key"),
    "version_id": sfn.JsonPath.string_at("$.detail.object.version-id"),
    "etag": sfn.JsonPath.string_at("$.detail.object.etag"),
    "size": sfn.JsonPath.number_at("$.detail.object.size"),
    "event_id": sfn.JsonPath.string_at("$.id"),
    "execution_id": sfn.JsonPath.execution_id,
}
# After the wait: the handler's check of the folder's commit marker (from the waiting result).
CHECK_COMMIT_PAYLOAD = {
    "action": "check_commit",
    "bucket": sfn.JsonPath.string_at("$.bucket"),
    "dataset_prefix": sfn.JsonPath.string_at("$.dataset_prefix"),
    "model": sfn.JsonPath.string_at("$.model"),
}


class ValidationStack(cdk.Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        key: kms.IKey,
        incoming_bucket: s3.IBucket,
        validated_bucket: s3.IBucket,
        artifacts_bucket: s3.IBucket,
        quarantine_bucket: s3.IBucket,
        removal_policy: cdk.RemovalPolicy = cdk.RemovalPolicy.RETAIN,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.key = key
        self.removal_policy = removal_policy
        self.layers = ProjectLayers(self, "Layers")
        self.function = self._function(incoming_bucket, validated_bucket, artifacts_bucket, quarantine_bucket)
        self.state_machine = self._state_machine()
        self.rule, self.dead_letter_queue = self._rule(incoming_bucket)
        self._acknowledge_machine_findings()
        cdk.CfnOutput(self, "ValidationStateMachineArn", value=self.state_machine.state_machine_arn)
        cdk.CfnOutput(self, "ValidationFunctionName", value=self.function.function_name)

    # -- Lambda ------------------------------------------------------------------------
    def _log_group(self, construct_id: str) -> logs.LogGroup:
        return logs.LogGroup(
            self,
            construct_id,
            retention=logs.RetentionDays.THREE_MONTHS,
            encryption_key=self.key,
            removal_policy=self.removal_policy,
        )

    def _function(
        self, incoming: s3.IBucket, validated: s3.IBucket, artifacts: s3.IBucket, quarantine: s3.IBucket
    ) -> lambda_.Function:
        concurrency = self.node.try_get_context(CONCURRENCY_CONTEXT)
        function = project_function(
            self,
            "Validate",
            code="functions/validate",
            handler="handler.handler",
            description="Validates an uploaded dataset against its model's contract",
            environment={
                "INCOMING_BUCKET": incoming.bucket_name,
                "VALIDATED_BUCKET": validated.bucket_name,
                "ARTIFACTS_BUCKET": artifacts.bucket_name,
                "QUARANTINE_BUCKET": quarantine.bucket_name,
                "POWERTOOLS_SERVICE_NAME": "mlops-validation",
                "POWERTOOLS_METRICS_NAMESPACE": METRICS_NAMESPACE,
                "POWERTOOLS_LOG_LEVEL": "INFO",
            },
            layers=self.layers.all,
            key=self.key,
            # Datasets up to 5 GB are streamed from /tmp by the contract engine.
            memory_mb=3008,
            ephemeral_mb=10240,
            timeout=cdk.Duration.minutes(15),
            removal_policy=self.removal_policy,
            reserved_concurrency=int(concurrency) if concurrency else None,
        )
        role = function.role
        assert isinstance(role, iam.Role)
        self._grant_data_access(role, incoming, validated, artifacts, quarantine)
        return function

    def _grant_data_access(
        self, role: iam.Role, incoming: s3.IBucket, validated: s3.IBucket, artifacts: s3.IBucket, quarantine: s3.IBucket
    ) -> None:
        uploads = incoming.arn_for_objects(f"{INCOMING_PREFIX}*")
        promoted = validated.arn_for_objects("validated/*")
        quarantined = quarantine.arn_for_objects("quarantine/*")
        reports, locks = artifacts.arn_for_objects("reports/*"), artifacts.arn_for_objects("locks/*")
        statements = [
            ("ReadUploads", ["s3:GetObject", "s3:GetObjectVersion"], [uploads]),
            # a failing upload is moved to quarantine: copy, then a plain delete (the version stays)
            ("RemoveQuarantinedUploads", ["s3:DeleteObject"], [uploads]),
            ("WriteResults", ["s3:PutObject", "s3:AbortMultipartUpload"], [promoted, quarantined, reports, locks]),
            ("ReadReportsAndLocks", ["s3:GetObject"], [reports, locks]),
            # without ListBucket a missing key answers 403 instead of 404
            ("ListForNotFound", ["s3:ListBucket"], [incoming.bucket_arn, artifacts.bucket_arn]),
        ]
        for sid, actions, resources in statements:
            role.add_to_policy(iam.PolicyStatement(sid=sid, actions=actions, resources=resources))
        role.add_to_policy(
            iam.PolicyStatement(
                sid="UseDataKey",
                actions=["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey"],
                resources=[self.key.key_arn],
            )
        )
        acknowledge_wildcard_resources(
            role,
            [uploads, promoted, quarantined, reports, locks],
            "Object ARNs under the prefixes the handler owns in the app's own buckets; keys are data-dependent.",
        )

    # -- state machine -------------------------------------------------------------------
    def _invoke(self, construct_id: str, payload: dict[str, Any], errored: sfn.IChainable) -> tasks.LambdaInvoke:
        task = tasks.LambdaInvoke(
            self,
            construct_id,
            lambda_function=self.function,
            payload=sfn.TaskInput.from_object(payload),
            output_path="$.Payload",  # the handler's result is the state's output
            retry_on_service_exceptions=False,
        )
        task.add_retry(
            errors=LAMBDA_RETRY_ERRORS,
            interval=cdk.Duration.seconds(2),
            max_attempts=6,
            backoff_rate=2,
        )
        task.add_catch(errored, errors=[sfn.Errors.ALL], result_path="$.error")
        return task

    def _commit_watch(self, errored: sfn.IChainable) -> sfn.IChainable:
        """A part file's execution: wait for the folder's commit marker, then report if none came."""
        wait = sfn.Wait(self, "WaitForCommitMarker", time=sfn.WaitTime.seconds_path("$.wait_seconds"))
        check = self._invoke("CheckCommit", CHECK_COMMIT_PAYLOAD, errored)
        incomplete = sfn.Fail(self, "DatasetIncomplete", error="DatasetIncomplete", cause_path="$.summary")
        arrived = (
            sfn.Choice(self, "CommitArrived?")
            .when(sfn.Condition.string_equals("$.status", "committed"), sfn.Succeed(self, "DatasetCommitted"))
            .otherwise(incomplete)
        )
        return (
            sfn.Choice(self, "WatchThisFolder?")
            .when(sfn.Condition.boolean_equals("$.watch", True), wait.next(check).next(arrived))
            .otherwise(sfn.Succeed(self, "AwaitingCommitMarker"))
        )

    def _state_machine(self) -> sfn.StateMachine:
        errored = sfn.Fail(self, "ValidationErrored", error_path="$.error.Error", cause_path="$.error.Cause")
        validate = self._invoke("ValidateDataset", PAYLOAD, errored)

        publish = tasks.EventBridgePutEvents(
            self,
            "PublishDatasetValidated",
            entries=[
                tasks.EventBridgePutEventsEntry(
                    source=EVENT_SOURCE,
                    detail_type=DATASET_VALIDATED,
                    detail=sfn.TaskInput.from_json_path_at("$"),
                )
            ],
            result_path=sfn.JsonPath.DISCARD,  # the output stays the validation result
        )
        publish.add_retry(errors=["EventBridge.EventBridgeException", "States.Timeout"], max_attempts=3)
        rejected = sfn.Fail(self, "ValidationFailed", error="DatasetRejected", cause_path="$.summary")
        routed = (
            sfn.Choice(self, "DatasetPassed?")
            .when(sfn.Condition.boolean_equals("$.duplicate", True), sfn.Succeed(self, "AlreadyValidated"))
            .when(
                sfn.Condition.string_equals("$.status", "passed"),
                publish.next(sfn.Succeed(self, "ValidationPassed")),
            )
            .when(sfn.Condition.string_equals("$.status", "waiting"), self._commit_watch(errored))
            .when(sfn.Condition.string_equals("$.status", "ignored"), sfn.Succeed(self, "NotADataFile"))
            .otherwise(rejected)
        )
        return sfn.StateMachine(
            self,
            "ValidationMachine",
            definition_body=sfn.DefinitionBody.from_chainable(validate.next(routed)),
            state_machine_type=sfn.StateMachineType.STANDARD,
            timeout=cdk.Duration.hours(26),  # a part file's execution waits up to commit_timeout_minutes (24 h)
            tracing_enabled=True,
            logs=sfn.LogOptions(
                destination=self._log_group("ValidationMachineLogs"),
                level=sfn.LogLevel.ALL,
                include_execution_data=True,
            ),
            comment="Validate one uploaded dataset against its model's contract",
        )

    # -- trigger -------------------------------------------------------------------------
    def _rule(self, incoming: s3.IBucket) -> tuple[events.Rule, sqs.Queue]:
        dlq = sqs.Queue(
            self,
            "TriggerDeadLetters",
            encryption=sqs.QueueEncryption.KMS,
            encryption_master_key=self.key,
            enforce_ssl=True,
            retention_period=cdk.Duration.days(14),
        )
        acknowledge(dlq, "AwsSolutions-SQS3", "This queue is the dead-letter queue of the validation rule's target.")
        trigger_role = iam.Role(
            self,
            "TriggerRole",
            assumed_by=iam.ServicePrincipal("events.amazonaws.com"),
            description="Starts the validation state machine for uploads",
        )
        rule = events.Rule(
            self,
            "OnDatasetUploaded",
            description="Validate every object created under incoming/ in the incoming bucket",
            event_pattern=events.EventPattern(
                source=["aws.s3"],
                detail_type=["Object Created"],
                detail={
                    "bucket": {"name": [incoming.bucket_name]},
                    "object": {"key": [{"prefix": INCOMING_PREFIX}]},
                },
            ),
            targets=[
                targets.SfnStateMachine(
                    self.state_machine,
                    role=trigger_role,
                    dead_letter_queue=dlq,
                    retry_attempts=8,
                    max_event_age=cdk.Duration.hours(24),
                )
            ],
        )
        return rule, dlq

    def _acknowledge_machine_findings(self) -> None:
        """IAM5 on the state machine role: CDK's service integrations ask for these."""
        role = self.state_machine.role
        acknowledge(
            role,
            IAM5,
            "CloudWatch Logs delivery and X-Ray actions of Step Functions have no resource-level permissions.",
            ["Resource::*"],
        )
        acknowledge_wildcard_resources(
            role,
            [f"{self.function.function_arn}:*"],
            "LambdaInvoke is granted on the validation function's versions and aliases, that function only.",
        )
