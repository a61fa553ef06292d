"""Batch scoring of files landing in S3 with each model's approved champion.

- Per model (:func:`batch_trigger`, built by :class:`BatchTriggers` into each model's
  ``ModelOperations`` in the serving stack): a rule on S3 "Object Created" under ``batch/<model>/``
  in the incoming bucket starts the batch state machine.
- The batch state machine: PrepareBatch (Lambda: check the file against the model's feature
  columns, write the transform input, find the champion's SageMaker model) ─▶ refused: "Batch
  Scoring Refused" ─▶ BatchRefused | score: ``createTransformJob.sync`` (KMS on volume and
  output, SplitType Line, one output line per input row) ─▶ FinishBatch (Lambda: predictions
  joined with the passthrough columns, data capture for the drift monitor, report) ─▶ "Batch
  Scoring Completed". A transform or step that fails: FinishBatch writes the failure report ─▶
  "Batch Scoring Failed" ─▶ BatchScoringFailed.
- The three events (source ``mlops.batch``) go to the notifications topic through the serving
  stack's :func:`batch_outcome_rule`, as the other stacks' events do.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from mlops import env_names as E
from mlops.config import ModelConfig
from mlops.naming import (
    BATCH_EVENT_SOURCE,
    BATCH_FAILED,
    BATCH_PREFIX,
    BATCH_REFUSED,
    BATCH_SCORED,
    CAPTURE_PREFIX,
    METRICS_NAMESPACE,
    batch_upload_prefix,
    endpoint_name,
)
from stacks.event_tasks import put_event
from stacks.functions import invoke_task, project_function
from stacks.grants import READ, WRITE, grant_key, grant_objects, registry_arns
from stacks.nag import acknowledge, acknowledge_wildcard_resources
from stacks.props import BatchProps
from stacks.sagemaker_retries import state_arn
from stacks.state_machines import logged_state_machine, machine_log_group

TRANSFORM_RULE = "StepFunctionsGetEventsForSageMakerTransformJobsRule"


def batch_trigger(
    scope: Construct, model: str, incoming: s3.IBucket, machine: sfn.IStateMachine, role: iam.IRole, dlq: sqs.IQueue
) -> events.Rule:
    """What one model needs: a rule that scores each file uploaded under ``batch/<model>/``."""
    return events.Rule(
        scope,
        "BatchTrigger",
        description=f"Score files uploaded under {batch_upload_prefix(model)} with {model}'s champion",
        event_pattern=events.EventPattern(
            source=["aws.s3"],
            detail_type=["Object Created"],
            detail={
                "bucket": {"name": [incoming.bucket_name]},
                "object": {"key": [{"prefix": batch_upload_prefix(model)}]},
            },
        ),
        targets=[
            targets.SfnStateMachine(
                machine, role=role, dead_letter_queue=dlq, retry_attempts=8, max_event_age=cdk.Duration.hours(24)
            )
        ],
    )


@dataclass(frozen=True)
class BatchTriggers:
    """Builds a model's batch trigger (``ModelOperationsProps.batch``), sharing one role and one
    dead-letter queue. They live in the stack of the rules (the serving stack, with each model's
    other operations): EventBridge adds the queue's policy only in the rule's own stack."""

    incoming: s3.IBucket
    machine: sfn.IStateMachine
    role: iam.IRole
    dlq: sqs.IQueue

    @classmethod
    def create(cls, scope: Construct, key: kms.IKey, incoming: s3.IBucket, machine: sfn.IStateMachine) -> BatchTriggers:
        role = iam.Role(
            scope,
            "BatchTriggerRole",
            assumed_by=iam.ServicePrincipal("events.amazonaws.com"),
            description="Starts the batch scoring state machine for uploaded files",
        )
        dlq = sqs.Queue(
            scope,
            "BatchTriggerDeadLetters",
            encryption=sqs.QueueEncryption.KMS,
            encryption_master_key=key,
            enforce_ssl=True,
            retention_period=cdk.Duration.days(14),
        )
        acknowledge(dlq, "AwsSolutions-SQS3", "This queue is the dead-letter queue of the batch rules' targets.")
        return cls(incoming=incoming, machine=machine, role=role, dlq=dlq)

    def __call__(self, scope: Construct, config: ModelConfig) -> Construct:
        return batch_trigger(scope, config.name, self.incoming, self.machine, self.role, self.dlq)


def batch_outcome_rule(scope: Construct, topic: sns.ITopic) -> events.Rule:
    """Tells people what became of each batch file (the events the batch machine puts)."""
    return events.Rule(
        scope,
        "OnBatchOutcome",
        description="Tell people what became of each batch file",
        event_pattern=events.EventPattern(
            source=[BATCH_EVENT_SOURCE], detail_type=[BATCH_SCORED, BATCH_REFUSED, BATCH_FAILED]
        ),
        targets=[
            targets.SnsTopic(
                topic, message=events.RuleTargetInput.from_text(events.EventField.from_path("$.detail.summary"))
            )
        ],
    )


def transform_task(input_path: str) -> dict[str, Any]:
    """``createTransformJob.sync`` whose whole request is prepared by the prepare step (InputPath)."""
    return {
        "Type": "Task",
        "Resource": state_arn("sagemaker:createTransformJob.sync"),
        "InputPath": input_path,
        "ResultSelector": {"TransformJobStatus.$": "$.TransformJobStatus", "TransformJobArn.$": "$.TransformJobArn"},
        "ResultPath": "$.transform",
    }


class BatchStack(cdk.Stack):
    def __init__(self, scope: Construct, construct_id: str, *, props: BatchProps, **kwargs: Any) -> None:
        super().__init__(scope, construct_id, **kwargs)
        data = props.platform.data
        key, incoming_bucket, artifacts_bucket = data.key, data.incoming_bucket, data.artifacts_bucket
        capture_bucket, sagemaker_role, layers = data.capture_bucket, props.sagemaker_role, props.platform.layers
        self.key = key
        self.models = list(props.platform.configs)
        env = {
            **E.powertools("mlops-batch", METRICS_NAMESPACE),
            E.INCOMING_BUCKET: incoming_bucket.bucket_name,
            E.ARTIFACTS_BUCKET: artifacts_bucket.bucket_name,
            E.CAPTURE_BUCKET: capture_bucket.bucket_name,
            E.KMS_KEY_ARN: key.key_arn,
            E.SAGEMAKER_ROLE_ARN: sagemaker_role.role_arn,
        }
        prepare = self._function("Prepare", "handler.prepare", env, layers, memory=3008)
        finish = self._function("Finish", "handler.finish", env, layers, memory=1024)
        self._grant(prepare, finish, incoming_bucket, artifacts_bucket, capture_bucket, sagemaker_role)
        # the transform job reads its input and writes its output as the model's execution role; a policy
        # of this stack's own, so the role's stack stays as it is
        runs = artifacts_bucket.arn_for_objects(f"{BATCH_PREFIX}*")
        transform_data = iam.Policy(
            self,
            "TransformJobData",
            roles=[sagemaker_role],
            statements=[
                iam.PolicyStatement(sid="BatchTransformData", actions=[*READ, *WRITE], resources=[runs]),
                iam.PolicyStatement(
                    sid="BatchTransformDataList", actions=["s3:ListBucket"], resources=[artifacts_bucket.bucket_arn]
                ),
            ],
        )
        acknowledge_wildcard_resources(
            transform_data, [runs], "Batch runs' objects under batch/ in the app's artifacts bucket; keys are per run."
        )
        self.state_machine = self._machine(prepare, finish)
        cdk.CfnOutput(self, "BatchStateMachineArn", value=self.state_machine.state_machine_arn)

    # -- functions and permissions -------------------------------------------------------------
    def _function(
        self, name: str, handler: str, env: dict[str, str], layers: Sequence[lambda_.ILayerVersion], *, memory: int
    ) -> lambda_.Function:
        function = project_function(
            self,
            name,
            code="functions/batch",
            handler=handler,
            description=f"Batch scoring: {name.lower()}",
            environment=env,
            layers=layers,
            key=self.key,
            memory_mb=memory,
            timeout=cdk.Duration.minutes(15),
            ephemeral_mb=10240,  # the uploaded file and the transform input, on /tmp
        )
        assert function.role is not None
        grant_key(function.role, self.key)
        return function

    def _arns(self, resource: str, suffix: str = "-*") -> list[str]:
        """This app's SageMaker resources of a kind, named after its models."""
        return [
            self.format_arn(service="sagemaker", resource=resource, resource_name=f"{m}{suffix}") for m in self.models
        ]

    def _grant(
        self,
        prepare: lambda_.Function,
        finish: lambda_.Function,
        incoming: s3.IBucket,
        artifacts: s3.IBucket,
        capture: s3.IBucket,
        sagemaker_role: iam.IRole,
    ) -> None:
        uploads = [incoming.arn_for_objects(f"{batch_upload_prefix(m)}*") for m in self.models]
        prepare.add_to_role_policy(
            iam.PolicyStatement(
                sid="ReadBatchFiles", actions=["s3:GetObject", "s3:GetObjectVersion"], resources=uploads
            )
        )
        prepare.add_to_role_policy(
            iam.PolicyStatement(sid="ReadBatchFilesList", actions=["s3:ListBucket"], resources=[incoming.bucket_arn])
        )
        runs = [f"{BATCH_PREFIX}{m}/" for m in self.models]
        grant_objects(prepare.role, artifacts, runs, READ + WRITE, sid="BatchRuns")
        grant_objects(finish.role, artifacts, runs, READ + WRITE, sid="BatchRuns")
        captures = [f"{CAPTURE_PREFIX}/{endpoint_name(m)}/batch/" for m in self.models]
        grant_objects(finish.role, capture, captures, WRITE, sid="BatchCapture")
        registry = registry_arns(self, self.models)
        prepare.add_to_role_policy(
            iam.PolicyStatement(
                actions=["sagemaker:DescribeModelPackage", "sagemaker:ListModelPackages"], resources=registry
            )
        )
        endpoints = self._arns("endpoint", "")
        prepare.add_to_role_policy(
            iam.PolicyStatement(actions=["sagemaker:DescribeEndpoint", "sagemaker:ListTags"], resources=endpoints)
        )
        prepare.add_to_role_policy(
            iam.PolicyStatement(actions=["sagemaker:DescribeEndpointConfig"], resources=self._arns("endpoint-config"))
        )
        # the champion's model when no endpoint serves one: created once per approved version
        batch_models = self._arns("model", "-batch-v*")
        prepare.add_to_role_policy(
            iam.PolicyStatement(actions=["sagemaker:DescribeModel"], resources=self._arns("model"))
        )
        prepare.add_to_role_policy(
            iam.PolicyStatement(actions=["sagemaker:CreateModel", "sagemaker:AddTags"], resources=batch_models)
        )
        prepare.add_to_role_policy(
            iam.PolicyStatement(
                actions=["iam:PassRole"],
                resources=[sagemaker_role.role_arn],
                conditions={"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}},
            )
        )
        acknowledge_wildcard_resources(
            prepare.role,
            [*uploads, *registry, *self._arns("endpoint-config"), *self._arns("model"), *batch_models],
            "Batch files under each model's batch/ prefix; this app's model packages, endpoint configs and "
            "models, versioned under their model's name.",
        )

    # -- the batch state machine ------------------------------------------------------------
    def _machine(self, prepare_fn: lambda_.Function, finish_fn: lambda_.Function) -> sfn.StateMachine:
        prepare = invoke_task(
            self, "PrepareBatch", prepare_fn, {"detail": sfn.JsonPath.object_at("$.detail")}, "$.plan"
        )
        transform = sfn.CustomState(self, "TransformBatch", state_json=transform_task("$.plan.transform_request"))
        finish = invoke_task(self, "FinishBatch", finish_fn, {"plan": sfn.JsonPath.object_at("$.plan")}, "$.result")
        record_failure = invoke_task(
            self,
            "RecordBatchFailure",
            finish_fn,
            {"plan": sfn.JsonPath.object_at("$.plan"), "error": sfn.JsonPath.object_at("$.error")},
            "$.result",
        )
        failed = sfn.Fail(self, "BatchScoringFailed", error="BatchScoringFailed", cause_path="$.result.summary")
        record_failure.next(put_event(self, "NotifyBatchFailed", BATCH_EVENT_SOURCE, BATCH_FAILED, "$.result")).next(
            failed
        )
        for step in (transform, finish):
            step.add_catch(record_failure, errors=["States.ALL"], result_path="$.error")
        # a prepare step that cannot complete: its error and the object go out as the event
        prepare_failed = sfn.Pass(
            self,
            "DescribePrepareFailure",
            parameters={
                "key": sfn.JsonPath.string_at("$.detail.object.key"),
                "summary": sfn.JsonPath.format(
                    "batch file {} could not be prepared: {}",
                    sfn.JsonPath.string_at("$.detail.object.key"),
                    sfn.JsonPath.string_at("$.error.Cause"),
                ),
            },
            result_path="$.result",
        )
        prepare.add_catch(prepare_failed, errors=["States.ALL"], result_path="$.error")
        prepare_failed.next(put_event(self, "NotifyPrepareFailed", BATCH_EVENT_SOURCE, BATCH_FAILED, "$.result")).next(
            sfn.Fail(self, "BatchPrepareFailed", error="BatchScoringFailed", cause_path="$.result.summary")
        )
        scored = finish.next(put_event(self, "NotifyBatchScored", BATCH_EVENT_SOURCE, BATCH_SCORED, "$.result")).next(
            sfn.Succeed(self, "BatchScored")
        )
        refused = put_event(self, "NotifyBatchRefused", BATCH_EVENT_SOURCE, BATCH_REFUSED, "$.plan").next(
            sfn.Fail(self, "BatchRefused", error="BatchRefused", cause_path="$.plan.summary")
        )
        route = (
            sfn.Choice(self, "Score?")
            .when(sfn.Condition.string_equals("$.plan.action", "score"), transform.next(scored))
            .when(sfn.Condition.string_equals("$.plan.action", "refuse"), refused)
            .otherwise(sfn.Succeed(self, "AlreadyScored"))
        )
        log_group = machine_log_group(self, "BatchMachineLogs", self.key)
        machine = logged_state_machine(
            self, "BatchStateMachine", start=prepare.next(route), log_group=log_group, timeout=cdk.Duration.hours(6)
        )
        self._grant_transform(machine)
        acknowledge_wildcard_resources(
            machine.role,
            [prepare_fn.function_arn + ":*", finish_fn.function_arn + ":*"],
            "LambdaInvoke covers the function's versions and aliases.",
        )
        return machine

    def _grant_transform(self, machine: sfn.StateMachine) -> None:
        """What ``createTransformJob.sync`` needs: the job (named after its model), its tags, the polling rule."""
        jobs = self._arns("transform-job")
        machine.add_to_role_policy(
            iam.PolicyStatement(
                sid="TransformJobs",
                actions=[
                    "sagemaker:CreateTransformJob",
                    "sagemaker:DescribeTransformJob",
                    "sagemaker:StopTransformJob",
                    "sagemaker:AddTags",
                    "sagemaker:ListTags",
                ],
                resources=jobs,
            )
        )
        machine.add_to_role_policy(
            iam.PolicyStatement(
                sid="TransformJobEvents",
                actions=["events:PutTargets", "events:PutRule", "events:DescribeRule"],
                resources=[self.format_arn(service="events", resource="rule", resource_name=TRANSFORM_RULE)],
            )
        )
        acknowledge_wildcard_resources(machine.role, jobs, "One transform job per batch file, named after its model.")
