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
      ValidateDataset failed after its retries (crash, timeout, bug)
        -> RecordValidationError (Lambda: report, quarantine, fate; see mlops/services/validation_errors.py)
           (if that fails too: ErrorNotRecorded, what is known of the object)
        -> PublishValidationErrored ("Dataset Validation Errored", forwarded to SNS by MlopsServing)
        -> ValidationErrored (the validate step's error and cause)
      CheckCommit failed after its retries -> CommitCheckErrored -> PublishValidationErrored -> ValidationErrored

Retries: Lambda service errors 6 times with backoff; a crashed worker (``Runtime.ExitError``,
``Lambda.Unknown``) twice; a timeout or out-of-memory once, since those tend to repeat.
Retrying is safe: a retry of one execution takes over its own lock and writes the same keys
(the dataset version's time is the execution's start), and removes an upload only if it still
is the version it copied.

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
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from mlops import env_names as E
from mlops.naming import METRICS_NAMESPACE
from stacks.data_stack import INCOMING_PREFIX
from stacks.event_tasks import put_event
from stacks.functions import LAMBDA_RETRY_ERRORS, project_function
from stacks.layers import ProjectLayers
from stacks.nag import acknowledge, acknowledge_wildcard_resources
from stacks.props import DataResources
from stacks.state_machines import logged_state_machine, machine_log_group

EVENT_SOURCE = "mlops.validation"
DATASET_VALIDATED = "Dataset Validated"
DATASET_VALIDATION_ERRORED = "Dataset Validation Errored"
# Unhandled failures of the function itself: a worker that died (Lambda reports Lambda.Unknown,
# or the runtime's errorType), retried twice; a timeout or out-of-memory once (they tend to repeat).
CRASH_RETRY_ERRORS = ["Lambda.Unknown", "Runtime.ExitError"]
TIMEOUT_RETRY_ERRORS = ["Sandbox.Timedout", "States.Timeout", "Runtime.OutOfMemory"]
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
    "execution_started": sfn.JsonPath.execution_start_time,
}
# After the validate step failed for good: the same object, and the error caught in $.error.
RECORD_ERROR_PAYLOAD = {
    **PAYLOAD,
    "error": sfn.JsonPath.string_at("$.error.Error"),
    "cause": sfn.JsonPath.string_at("$.error.Cause"),
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
        data: DataResources,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.key = data.key
        self.removal_policy = data.removal_policy
        self.layers = ProjectLayers(self, "Layers")
        buckets = (data.incoming_bucket, data.validated_bucket, data.artifacts_bucket, data.quarantine_bucket)
        self.function = self._function(*buckets)
        self.record_function = self._record_function(*buckets)
        self.state_machine = self._state_machine()
        self.rule, self.dead_letter_queue = self._rule(data.incoming_bucket)
        self._acknowledge_machine_findings()
        cdk.CfnOutput(self, "ValidationStateMachineArn", value=self.state_machine.state_machine_arn)
        cdk.CfnOutput(self, "ValidationFunctionName", value=self.function.function_name)
        cdk.CfnOutput(self, "RecordValidationErrorFunctionName", value=self.record_function.function_name)

    # -- Lambda ------------------------------------------------------------------------
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
            environment=self._environment(incoming, validated, artifacts, quarantine),
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

    @staticmethod
    def _environment(
        incoming: s3.IBucket, validated: s3.IBucket, artifacts: s3.IBucket, quarantine: s3.IBucket
    ) -> dict[str, str]:
        return {
            E.INCOMING_BUCKET: incoming.bucket_name,
            E.VALIDATED_BUCKET: validated.bucket_name,
            E.ARTIFACTS_BUCKET: artifacts.bucket_name,
            E.QUARANTINE_BUCKET: quarantine.bucket_name,
            **E.powertools("mlops-validation", METRICS_NAMESPACE),
        }

    def _record_function(
        self, incoming: s3.IBucket, validated: s3.IBucket, artifacts: s3.IBucket, quarantine: s3.IBucket
    ) -> lambda_.Function:
        """RecordValidationError: small, its own role; it reads no data, it copies and reports."""
        function = project_function(
            self,
            "RecordValidationError",
            code="functions/validate",
            handler="handler.record_error",
            description="Leaves a report, a quarantined copy and a fate when validation could not complete",
            # the validated bucket's name only (Buckets reads all four): no access to it
            environment=self._environment(incoming, validated, artifacts, quarantine),
            layers=self.layers.all,
            key=self.key,
            memory_mb=512,
            timeout=cdk.Duration.minutes(5),  # a server-side copy of up to 5 GB
            removal_policy=self.removal_policy,
        )
        role = function.role
        assert isinstance(role, iam.Role)
        uploads = incoming.arn_for_objects(f"{INCOMING_PREFIX}*")
        quarantined = quarantine.arn_for_objects("quarantine/*")
        reports = artifacts.arn_for_objects("reports/*")
        locks = artifacts.arn_for_objects("locks/validation/*")
        fates = artifacts.arn_for_objects("fates/*")
        statements = [
            # copy the failed upload's version to quarantine (the copy reads it), then a plain delete
            ("ReadUploads", ["s3:GetObject", "s3:GetObjectVersion"], [uploads]),
            ("RemoveQuarantinedUploads", ["s3:DeleteObject"], [uploads]),
            ("WriteResults", ["s3:PutObject", "s3:AbortMultipartUpload"], [quarantined, reports, locks, fates]),
            ("ReadLocksAndFates", ["s3:GetObject"], [locks, fates]),
            ("ListForNotFound", ["s3:ListBucket"], [incoming.bucket_arn, artifacts.bucket_arn]),
            ("UseDataKey", ["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey"], [self.key.key_arn]),
        ]
        for sid, actions, resources in statements:
            role.add_to_policy(iam.PolicyStatement(sid=sid, actions=actions, resources=resources))
        acknowledge_wildcard_resources(
            role,
            [uploads, quarantined, reports, locks, fates],
            "Object ARNs under the prefixes the handler owns in the app's own buckets; keys are data-dependent.",
        )
        return function

    def _grant_data_access(
        self, role: iam.Role, incoming: s3.IBucket, validated: s3.IBucket, artifacts: s3.IBucket, quarantine: s3.IBucket
    ) -> None:
        uploads = incoming.arn_for_objects(f"{INCOMING_PREFIX}*")
        promoted = validated.arn_for_objects("validated/*")
        quarantined = quarantine.arn_for_objects("quarantine/*")
        reports, locks = artifacts.arn_for_objects("reports/*"), artifacts.arn_for_objects("locks/*")
        fates = artifacts.arn_for_objects("fates/*")  # each dataset's first fate: validated or quarantined
        statements = [
            ("ReadUploads", ["s3:GetObject", "s3:GetObjectVersion"], [uploads]),
            # a failing upload is moved to quarantine: copy, then a plain delete (the version stays)
            ("RemoveQuarantinedUploads", ["s3:DeleteObject"], [uploads]),
            (
                "WriteResults",
                ["s3:PutObject", "s3:AbortMultipartUpload"],
                [promoted, quarantined, reports, locks, fates],
            ),
            ("ReadReportsLocksAndFates", ["s3:GetObject"], [reports, locks, fates]),
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
            [uploads, promoted, quarantined, reports, locks, fates],
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
        task.add_retry(errors=LAMBDA_RETRY_ERRORS, interval=cdk.Duration.seconds(2), max_attempts=6, backoff_rate=2)
        task.add_retry(errors=CRASH_RETRY_ERRORS, interval=cdk.Duration.seconds(5), max_attempts=2, backoff_rate=3)
        task.add_retry(errors=TIMEOUT_RETRY_ERRORS, interval=cdk.Duration.seconds(10), max_attempts=1)
        task.add_catch(errored, errors=[sfn.Errors.ALL], result_path="$.error")
        return task

    def _error_trail(self, errored: sfn.Fail) -> tuple[sfn.IChainable, sfn.IChainable]:
        """After a step failed for good: record it, tell people, then fail with its cause.

        Returns where a failed ValidateDataset goes (record, publish) and where a failed
        CheckCommit goes (publish: it has no object to record, and its parts stay in place).
        """
        publish = put_event(
            self, "PublishValidationErrored", EVENT_SOURCE, DATASET_VALIDATION_ERRORED, "$.recorded.result"
        )
        publish.add_catch(errored, errors=[sfn.Errors.ALL], result_path="$.publish_error")
        publish.next(errored)
        # the record step failed as well: the event still goes out, with what is known
        not_recorded = sfn.Pass(
            self,
            "ErrorNotRecorded",
            parameters={
                "result": {
                    "status": "errored",
                    "summary": sfn.JsonPath.format(
                        "ERRORED: validation of s3://{}/{} (version {}) could not complete: {}; "
                        "recording the error failed too ({}): the object may still be in incoming/",
                        sfn.JsonPath.string_at("$.detail.bucket.name"),
                        sfn.JsonPath.string_at("$.detail.object.key"),
                        sfn.JsonPath.string_at("$.detail.object.version-id"),
                        sfn.JsonPath.string_at("$.error.Error"),
                        sfn.JsonPath.string_at("$.record_error.Error"),
                    ),
                    "error": sfn.JsonPath.string_at("$.error.Error"),
                    "source_key": sfn.JsonPath.string_at("$.detail.object.key"),
                    "source_version_id": sfn.JsonPath.string_at("$.detail.object.version-id"),
                }
            },
            result_path="$.recorded",
        )
        not_recorded.next(publish)
        record = tasks.LambdaInvoke(
            self,
            "RecordValidationError",
            lambda_function=self.record_function,
            payload=sfn.TaskInput.from_object(RECORD_ERROR_PAYLOAD),
            retry_on_service_exceptions=False,
            result_selector={"result": sfn.JsonPath.object_at("$.Payload")},
            result_path="$.recorded",
        )
        record.add_retry(errors=LAMBDA_RETRY_ERRORS, interval=cdk.Duration.seconds(2), max_attempts=6, backoff_rate=2)
        record.add_retry(
            errors=[*CRASH_RETRY_ERRORS, *TIMEOUT_RETRY_ERRORS],
            interval=cdk.Duration.seconds(5),
            max_attempts=2,
            backoff_rate=3,
        )
        record.add_catch(not_recorded, errors=[sfn.Errors.ALL], result_path="$.record_error")
        check_failed = sfn.Pass(
            self,
            "CommitCheckErrored",
            parameters={
                "result": {
                    "status": "errored",
                    "summary": sfn.JsonPath.format(
                        "ERRORED: checking the commit marker of s3://{}/{} could not complete: {}; "
                        "its part files were left in place",
                        sfn.JsonPath.string_at("$.bucket"),
                        sfn.JsonPath.string_at("$.dataset_prefix"),
                        sfn.JsonPath.string_at("$.error.Error"),
                    ),
                    "error": sfn.JsonPath.string_at("$.error.Error"),
                    "model": sfn.JsonPath.string_at("$.model"),
                    "dataset_prefix": sfn.JsonPath.string_at("$.dataset_prefix"),
                }
            },
            result_path="$.recorded",
        )
        return record.next(publish), check_failed.next(publish)

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
        validate_failed, check_failed = self._error_trail(errored)
        validate = self._invoke("ValidateDataset", PAYLOAD, validate_failed)

        # the output stays the validation result
        publish = put_event(self, "PublishDatasetValidated", EVENT_SOURCE, DATASET_VALIDATED, "$")
        rejected = sfn.Fail(self, "ValidationFailed", error="DatasetRejected", cause_path="$.summary")
        routed = (
            sfn.Choice(self, "DatasetPassed?")
            .when(sfn.Condition.boolean_equals("$.duplicate", True), sfn.Succeed(self, "AlreadyValidated"))
            .when(
                sfn.Condition.string_equals("$.status", "passed"),
                publish.next(sfn.Succeed(self, "ValidationPassed")),
            )
            .when(sfn.Condition.string_equals("$.status", "waiting"), self._commit_watch(check_failed))
            .when(sfn.Condition.string_equals("$.status", "ignored"), sfn.Succeed(self, "NotADataFile"))
            .otherwise(rejected)
        )
        return logged_state_machine(
            self,
            "ValidationMachine",
            start=validate.next(routed),
            log_group=machine_log_group(
                self,
                "ValidationMachineLogs",
                self.key,
                retention=logs.RetentionDays.THREE_MONTHS,
                removal_policy=self.removal_policy,
            ),
            timeout=cdk.Duration.hours(26),  # a part file's execution waits up to commit_timeout_minutes (24 h)
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
        """IAM5 on the state machine role: LambdaInvoke's versions and aliases."""
        acknowledge_wildcard_resources(
            self.state_machine.role,
            [f"{self.function.function_arn}:*", f"{self.record_function.function_arn}:*"],
            "LambdaInvoke is granted on the versions and aliases of the validation and record-error functions only.",
        )
