"""Deployment to endpoints, monitoring, alarms, and alarm-driven retraining.

- Deploy state machine, started by "SageMaker Model Package State Change" (Approved):
  PlanDeployment (takes the endpoint's deployment lock; retried while the endpoint is busy;
  a Failed endpoint is deleted first and retried until it is gone) ─▶ CreateModel
  ─▶ CreateEndpointConfig ─▶ CreateEndpoint | UpdateEndpoint (blue/green: canary from two
  instances, else all at once with a baking period; auto-rollback on the 5XX and latency
  alarms) ─▶ poll DescribeEndpoint ─▶ RecordDeployment (lets the lock go) ─▶ Notify
  ─▶ ModelDeployed | DeploymentRolledBack. One deployment per endpoint at a time: while
  another execution holds the lock, PlanDeployment answers ``wait`` and the execution waits
  (WaitForTurn, up to DEPLOY_TURNS times) and plans again: a package newer than what serves
  then deploys, an older one ends DeploymentSuperseded (notified). Every failure is notified,
  then ReleaseDeployment lets the lock go (it would be free anyway once the execution ends).
- The monitor Lambda (drift + quality as EMF metrics), shared by the models.
- Per model, one ``ModelOperations`` construct (``stacks/model_operations.py``): the monitor's
  schedule, the alarms, the retrain rule and the dashboard.
- An SNS topic tells people about deployments, rollbacks, rejections and retrains.
"""

from __future__ import annotations

from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sns as sns
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from mlops import env_names as E
from mlops.naming import (
    CAPTURE_PREFIX,
    DEPLOYMENT_LOCKS,
    METRICS_NAMESPACE,
    ROLLBACK_ALARM_KINDS,
    alarm_name,
    endpoint_name,
)
from stacks.batch_stack import BatchTriggers, batch_outcome_rule
from stacks.functions import invoke_task, project_function
from stacks.grants import DELETE, READ, WRITE, grant_key, grant_objects, registry_arns
from stacks.model_operations import MONITOR_SERVICE, ModelOperations, ModelOperationsProps, model_id
from stacks.nag import acknowledge_wildcard_resources
from stacks.props import ServingProps
from stacks.sagemaker_retries import retry_counters, retry_when_throttled, state_arn
from stacks.state_machines import logged_state_machine, machine_log_group
from stacks.training_stack import RETRAIN_NOT_NEEDED, TRAINING_EVENT_SOURCE
from stacks.validation_stack import DATASET_VALIDATION_ERRORED
from stacks.validation_stack import EVENT_SOURCE as VALIDATION_EVENT_SOURCE

SETTLING = ["Creating", "Updating", "SystemUpdating", "RollingBack"]
# A deployment waiting for the endpoint's running one: a turn every DEPLOY_TURN_S, at most
# DEPLOY_TURNS turns (2.5 h), so it gives up, notified, before the machine's 3 h timeout.
DEPLOY_TURN_S = 60
DEPLOY_TURNS = 150
DEPLOY_TIMEOUT = cdk.Duration.hours(3)


def _sagemaker_call(action: str, input_path: str) -> dict[str, Any]:
    """A SageMaker request whose whole body is prepared by the plan step (no Parameters: InputPath is the request)."""
    return {
        "Type": "Task",
        "Resource": state_arn(f"sagemaker:{action}"),
        "InputPath": input_path,
        # kept beside the plan (a null ResultPath would not survive jsii: None is dropped)
        "ResultPath": f"$.sagemaker.{action}",
    }


class ServingStack(cdk.Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        props: ServingProps,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        data, configs = props.platform.data, props.platform.configs
        key, capture_bucket, artifacts_bucket = data.key, data.capture_bucket, data.artifacts_bucket
        incoming_bucket, validated_bucket = data.incoming_bucket, data.validated_bucket
        sagemaker_role, training_machine = props.sagemaker_role, props.training_machine
        self.key = key
        self.configs = configs
        self.layers = list(props.platform.layers)
        self.topic = sns.Topic(self, "Notifications", display_name="MLOps notifications", master_key=key)
        self.topic.add_to_resource_policy(
            iam.PolicyStatement(
                effect=iam.Effect.DENY,
                principals=[iam.AnyPrincipal()],
                actions=["sns:Publish"],
                resources=[self.topic.topic_arn],
                conditions={"Bool": {"aws:SecureTransport": "false"}},
            )
        )
        key.grant_encrypt_decrypt(iam.ServicePrincipal("events.amazonaws.com"))
        deploy_env = {
            **E.powertools("mlops-deploy", METRICS_NAMESPACE),
            E.CAPTURE_BUCKET: capture_bucket.bucket_name,
            E.ARTIFACTS_BUCKET: artifacts_bucket.bucket_name,
            E.KMS_KEY_ARN: key.key_arn,
            E.SAGEMAKER_ROLE_ARN: sagemaker_role.role_arn,
        }
        plan = self._function("Plan", "functions/deploy", "handler.plan", deploy_env, 256, 60)
        record = self._function("Record", "functions/deploy", "handler.record", deploy_env, 256, 60)
        release = self._function("Release", "functions/deploy", "handler.release", deploy_env, 256, 30)
        monitor_env = {
            **E.powertools(MONITOR_SERVICE, METRICS_NAMESPACE),
            E.CAPTURE_BUCKET: capture_bucket.bucket_name,
            E.INCOMING_BUCKET: incoming_bucket.bucket_name,
            E.ARTIFACTS_BUCKET: artifacts_bucket.bucket_name,
        }
        monitor = self._function("Monitor", "functions/monitor", "handler.handler", monitor_env, 2048, 900)
        self._grant(plan, record, monitor, capture_bucket, artifacts_bucket, incoming_bucket, validated_bucket)
        self._grant_lock(plan, record, release, artifacts_bucket)
        # endpoints write their data capture with the SageMaker role
        grant_objects(sagemaker_role, capture_bucket, [f"{CAPTURE_PREFIX}/"], WRITE, sid="DataCapture")
        self.deploy_machine = self._deploy_machine(plan, record, release, sagemaker_role)
        self._grant_lock_owner_check(plan)
        groups = list(configs)
        events.Rule(
            self,
            "OnModelApproved",
            description="Deploy a model package when it is approved",
            event_pattern=events.EventPattern(
                source=["aws.sagemaker"],
                detail_type=["SageMaker Model Package State Change"],
                detail={"ModelPackageGroupName": groups, "ModelApprovalStatus": ["Approved"]},
            ),
            targets=[targets.SfnStateMachine(self.deploy_machine, retry_attempts=3)],
        )
        events.Rule(
            self,
            "OnModelRejected",
            description="Tell people when a candidate is rejected",
            event_pattern=events.EventPattern(
                source=["aws.sagemaker"],
                detail_type=["SageMaker Model Package State Change"],
                detail={"ModelPackageGroupName": groups, "ModelApprovalStatus": ["Rejected"]},
            ),
            targets=[
                targets.SnsTopic(
                    self.topic,
                    message=events.RuleTargetInput.from_text(
                        f"model {events.EventField.from_path('$.detail.ModelPackageGroupName')} version "
                        f"{events.EventField.from_path('$.detail.ModelPackageVersion')} rejected: "
                        f"{events.EventField.from_path('$.detail.ApprovalDescription')}"
                    ),
                )
            ],
        )
        events.Rule(
            self,
            "OnRetrainNotNeeded",
            description="Tell people when an alarm found nothing new to retrain on",
            event_pattern=events.EventPattern(
                source=[TRAINING_EVENT_SOURCE], detail_type=[RETRAIN_NOT_NEEDED], detail={"model": groups}
            ),
            targets=[
                targets.SnsTopic(
                    self.topic, message=events.RuleTargetInput.from_text(events.EventField.from_path("$.detail.reason"))
                )
            ],
        )
        events.Rule(
            self,
            "OnValidationErrored",
            description="Tell people when a dataset's validation could not complete (crash, timeout)",
            event_pattern=events.EventPattern(
                source=[VALIDATION_EVENT_SOURCE], detail_type=[DATASET_VALIDATION_ERRORED]
            ),
            targets=[
                targets.SnsTopic(
                    self.topic,
                    message=events.RuleTargetInput.from_text(events.EventField.from_path("$.detail.summary")),
                )
            ],
        )
        batch = None
        if props.batch_machine is not None:
            batch = BatchTriggers.create(self, key, incoming_bucket, props.batch_machine)
            batch_outcome_rule(self, self.topic)
        self.models = {
            name: ModelOperations(
                self,
                model_id(name),
                ModelOperationsProps(
                    config=config, monitor=monitor, training_machine=training_machine, topic=self.topic, batch=batch
                ),
            )
            for name, config in configs.items()
        }
        cdk.CfnOutput(self, "DeployStateMachineArn", value=self.deploy_machine.state_machine_arn)
        cdk.CfnOutput(self, "NotificationsTopicArn", value=self.topic.topic_arn)

    # -- functions and permissions -------------------------------------------------------------
    def _function(
        self, name: str, code: str, handler: str, env: dict[str, str], memory: int, timeout: int
    ) -> lambda_.Function:
        function = project_function(
            self,
            name,
            code=code,
            handler=handler,
            description=f"Serving: {name.lower()}",
            environment=env,
            layers=self.layers,
            key=self.key,
            memory_mb=memory,
            timeout=cdk.Duration.seconds(timeout),
        )
        assert function.role is not None
        grant_key(function.role, self.key)
        return function

    def _sagemaker_arns(self, resource: str) -> list[str]:
        """This app's SageMaker resources of a kind: named after the model (``mlops.naming``)."""
        suffix = "" if resource == "endpoint" else "-*"
        return [
            self.format_arn(service="sagemaker", resource=resource, resource_name=f"{name}{suffix}")
            for name in self.configs
        ]

    def _registry_arns(self) -> list[str]:
        return registry_arns(self, list(self.configs))

    def _grant(
        self,
        plan: lambda_.Function,
        record: lambda_.Function,
        monitor: lambda_.Function,
        capture: s3.IBucket,
        artifacts: s3.IBucket,
        incoming: s3.IBucket,
        validated: s3.IBucket,
    ) -> None:
        endpoints = self._sagemaker_arns("endpoint")
        for fn in (plan, record, monitor):
            fn.add_to_role_policy(
                iam.PolicyStatement(
                    actions=["sagemaker:DescribeModelPackage", "sagemaker:ListModelPackages"],
                    resources=self._registry_arns(),
                )
            )
            fn.add_to_role_policy(
                iam.PolicyStatement(actions=["sagemaker:DescribeEndpoint", "sagemaker:ListTags"], resources=endpoints)
            )
            acknowledge_wildcard_resources(
                fn.role, self._registry_arns(), "Versions of this app's model package groups; numbered as registered."
            )
        # a Failed endpoint accepts only DeleteEndpoint: plan deletes it before the deployment creates it again
        plan.add_to_role_policy(iam.PolicyStatement(actions=["sagemaker:DeleteEndpoint"], resources=endpoints))
        record.add_to_role_policy(iam.PolicyStatement(actions=["sagemaker:AddTags"], resources=endpoints))
        # a rolled-back model package is set to Rejected
        record.add_to_role_policy(
            iam.PolicyStatement(actions=["sagemaker:UpdateModelPackage"], resources=self._registry_arns())
        )
        scalable_targets = [
            self.format_arn(service="application-autoscaling", resource="scalable-target", resource_name="*")
        ]
        record.add_to_role_policy(
            iam.PolicyStatement(
                actions=["application-autoscaling:RegisterScalableTarget", "application-autoscaling:PutScalingPolicy"],
                resources=scalable_targets,
            )
        )
        acknowledge_wildcard_resources(
            record.role, scalable_targets, "Scalable target ids are generated by Application Auto Scaling."
        )
        # Application Auto Scaling validates that its caller may do what scaling does to the
        # endpoint (register) and to the target tracking alarms it creates (scaling policy).
        record.add_to_role_policy(
            iam.PolicyStatement(
                actions=["sagemaker:DescribeEndpointConfig"], resources=self._sagemaker_arns("endpoint-config")
            )
        )
        record.add_to_role_policy(
            iam.PolicyStatement(actions=["sagemaker:UpdateEndpointWeightsAndCapacities"], resources=endpoints)
        )
        tracking_alarms = [
            self.format_arn(
                service="cloudwatch",
                resource="alarm",
                resource_name=f"TargetTracking-endpoint/{endpoint_name(name)}/variant/*",
                arn_format=cdk.ArnFormat.COLON_RESOURCE_NAME,
            )
            for name in self.configs
        ]
        record.add_to_role_policy(
            iam.PolicyStatement(
                actions=["cloudwatch:PutMetricAlarm", "cloudwatch:DescribeAlarms", "cloudwatch:DeleteAlarms"],
                resources=tracking_alarms,
            )
        )
        acknowledge_wildcard_resources(
            record.role,
            [*self._sagemaker_arns("endpoint-config"), *tracking_alarms],
            "Endpoint configs are versioned under their model's name; target tracking alarms are named by "
            "Application Auto Scaling after the endpoint's variant.",
        )
        # Registering a SageMaker scalable target creates its service-linked role on first use.
        record.add_to_role_policy(
            iam.PolicyStatement(
                actions=["iam:CreateServiceLinkedRole"],
                resources=[
                    f"arn:{cdk.Aws.PARTITION}:iam::{cdk.Aws.ACCOUNT_ID}:role/aws-service-role/"
                    "sagemaker.application-autoscaling.amazonaws.com/AWSServiceRoleForApplicationAutoScaling_SageMakerEndpoint"
                ],
                conditions={"StringLike": {"iam:AWSServiceName": "sagemaker.application-autoscaling.amazonaws.com"}},
            )
        )
        grant_objects(record.role, artifacts, ["deployments/"], READ + WRITE, sid="DeploymentRecords")
        grant_objects(monitor.role, artifacts, ["monitoring/"], READ + WRITE, sid="MonitoringState")
        grant_objects(monitor.role, artifacts, ["training/"], READ, sid="TrainingLineage")
        grant_objects(monitor.role, capture, [f"{CAPTURE_PREFIX}/"], READ, sid="CapturedRequests")
        grant_objects(monitor.role, incoming, ["ground-truth/"], READ, sid="GroundTruth")
        grant_objects(monitor.role, validated, ["validated/"], READ, sid="TrainingProfiles")

    def _grant_lock(
        self, plan: lambda_.Function, record: lambda_.Function, release: lambda_.Function, artifacts: s3.IBucket
    ) -> None:
        """The endpoint's deployment lock: plan takes it (conditional PutObject) and lets it go when
        it deploys nothing; record and release only read it (is it ours?) and delete it."""
        prefix = [f"{DEPLOYMENT_LOCKS}/"]
        grant_objects(plan.role, artifacts, prefix, READ + WRITE + DELETE, sid="DeploymentLock")
        for fn in (record, release):
            grant_objects(fn.role, artifacts, prefix, READ + DELETE, sid="DeploymentLock")

    def _grant_lock_owner_check(self, plan: lambda_.Function) -> None:
        """DescribeExecution on the deploy machine's executions: is the lock's owner still RUNNING?

        A policy of its own, not the role's default policy: the function must not depend on
        the state machine that depends on it.
        """
        executions = self.format_arn(
            service="states",
            resource="execution",
            resource_name=f"{self.deploy_machine.state_machine_name}:*",
            arn_format=cdk.ArnFormat.COLON_RESOURCE_NAME,
        )
        policy = iam.Policy(
            self,
            "DeployExecutionsPolicy",
            statements=[
                iam.PolicyStatement(sid="LockOwnerAlive", actions=["states:DescribeExecution"], resources=[executions])
            ],
        )
        assert plan.role is not None
        policy.attach_to_role(plan.role)
        acknowledge_wildcard_resources(
            policy, [executions], "Executions of the deploy state machine: their names are generated per run."
        )

    # -- deploy state machine -------------------------------------------------------------------
    def _notify(self, state_id: str, message_path: str) -> tasks.SnsPublish:
        return tasks.SnsPublish(
            self,
            state_id,
            topic=self.topic,
            message=sfn.TaskInput.from_json_path_at(message_path),
            subject="MLOps deployment",
            result_path=sfn.JsonPath.DISCARD,
        )

    def _deploy_machine(
        self, plan_fn: lambda_.Function, record_fn: lambda_.Function, release_fn: lambda_.Function, role: iam.IRole
    ) -> sfn.StateMachine:
        execution_id = sfn.JsonPath.string_at("$$.Execution.Id")
        plan = invoke_task(
            self,
            "PlanDeployment",
            plan_fn,
            sfn.TaskInput.from_object({"detail": sfn.JsonPath.object_at("$.detail"), "execution_id": execution_id}),
            "$.plan",
        )
        plan.add_retry(errors=["DeploymentBusy"], interval=cdk.Duration.seconds(60), max_attempts=10, backoff_rate=1.5)
        create_model = sfn.CustomState(
            self, "CreateModel", state_json=_sagemaker_call("createModel", "$.plan.model_request")
        )
        create_config = sfn.CustomState(
            self, "CreateEndpointConfig", state_json=_sagemaker_call("createEndpointConfig", "$.plan.endpoint_config")
        )
        create_endpoint = sfn.CustomState(
            self, "CreateEndpoint", state_json=_sagemaker_call("createEndpoint", "$.plan.create_request")
        )
        update_endpoint = sfn.CustomState(
            self, "UpdateEndpoint", state_json=_sagemaker_call("updateEndpoint", "$.plan.update_request")
        )
        wait = sfn.Wait(self, "WaitForEndpoint", time=sfn.WaitTime.duration(cdk.Duration.seconds(30)))
        describe = tasks.CallAwsService(
            self,
            "DescribeEndpoint",
            service="sagemaker",
            action="describeEndpoint",
            parameters={"EndpointName": sfn.JsonPath.string_at("$.plan.endpoint_name")},
            iam_resources=self._sagemaker_arns("endpoint"),
            result_selector={
                "EndpointStatus": sfn.JsonPath.string_at("$.EndpointStatus"),
                "EndpointConfigName": sfn.JsonPath.string_at("$.EndpointConfigName"),
            },
            result_path="$.endpoint",
        )
        record = invoke_task(
            self,
            "RecordDeployment",
            record_fn,
            sfn.TaskInput.from_object({"plan": sfn.JsonPath.object_at("$.plan")}),
            "$.result",
        )
        notify = self._notify("NotifyDeployment", "$.result.message")
        failed = sfn.Fail(self, "DeploymentFailed", error="DeploymentFailed", cause_path="$.error.Cause")
        # after the notice, so that nothing (not even a failed release) keeps it from going out
        release = invoke_task(
            self,
            "ReleaseDeployment",
            release_fn,
            sfn.TaskInput.from_object(
                {"model": sfn.JsonPath.string_at("$.detail.ModelPackageGroupName"), "execution_id": execution_id}
            ),
            sfn.JsonPath.DISCARD,
        )
        release.add_catch(failed, errors=["States.ALL"], result_path="$.release_error")
        notify_failure = self._notify("NotifyFailure", "$.error.Cause").next(release.next(failed))
        calls = (create_model, create_config, create_endpoint, update_endpoint)
        for call in calls:  # only a throttled call goes round again (stacks/sagemaker_retries.py)
            retry_when_throttled(self, call, notify_failure)
        for step in (plan, *calls, describe, record):
            step.add_catch(notify_failure, errors=["States.ALL"], result_path="$.error")
        outcome = (
            sfn.Choice(self, "Deployed?")
            .when(sfn.Condition.string_equals("$.result.status", "deployed"), sfn.Succeed(self, "ModelDeployed"))
            .when(
                sfn.Condition.string_equals("$.result.status", "superseded"),
                sfn.Succeed(self, "ReplacedBeforeVerified"),
            )
            .otherwise(
                sfn.Fail(self, "DeploymentRolledBack", error="DeploymentRolledBack", cause_path="$.result.message")
            )
        )
        settled = (
            sfn.Choice(self, "EndpointSettled?")
            .when(
                sfn.Condition.or_(*[sfn.Condition.string_equals("$.endpoint.EndpointStatus", s) for s in SETTLING]),
                wait,
            )
            .otherwise(record.next(notify).next(outcome))
        )
        wait.next(describe).next(settled)
        apply = (
            sfn.Choice(self, "CreateOrUpdate?")
            .when(sfn.Condition.string_equals("$.plan.action", "create"), create_endpoint.next(wait))
            .otherwise(update_endpoint.next(wait))
        )
        turns = "$.turns"
        next_turn = (
            sfn.Choice(self, "TurnsLeft?")
            .when(
                sfn.Condition.number_less_than(f"{turns}.count", DEPLOY_TURNS),
                sfn.Wait(self, "WaitForTurn", time=sfn.WaitTime.duration(cdk.Duration.seconds(DEPLOY_TURN_S)))
                .next(
                    sfn.Pass(
                        self,
                        "CountTurn",
                        parameters={"count.$": f"States.MathAdd({turns}.count, 1)"},
                        result_path=turns,
                    )
                )
                .next(plan),
            )
            .otherwise(
                self._notify("NotifyGaveUp", "$.plan.reason").next(
                    sfn.Fail(self, "DeploymentWaitTimedOut", error="DeploymentWaitTimedOut", cause_path="$.plan.reason")
                )
            )
        )
        should = (
            sfn.Choice(self, "ShouldDeploy?")
            .when(sfn.Condition.string_equals("$.plan.action", "skip"), sfn.Succeed(self, "NothingToDeploy"))
            .when(
                sfn.Condition.string_equals("$.plan.action", "superseded"),
                self._notify("NotifySuperseded", "$.plan.message").next(sfn.Succeed(self, "DeploymentSuperseded")),
            )
            .when(sfn.Condition.string_equals("$.plan.action", "wait"), next_turn)
            .otherwise(
                retry_counters(self, "StartRetryCounters", calls).next(create_model).next(create_config).next(apply)
            )
        )
        log_group = machine_log_group(self, "DeployMachineLogs", self.key)
        machine = logged_state_machine(
            self,
            "DeployStateMachine",
            start=sfn.Pass(self, "StartTurns", result=sfn.Result.from_object({"count": 0}), result_path=turns)
            .next(plan)
            .next(should),
            log_group=log_group,
            timeout=DEPLOY_TIMEOUT,
        )
        deployable = [arn for kind in ("model", "endpoint-config", "endpoint") for arn in self._sagemaker_arns(kind)]
        machine.add_to_role_policy(
            iam.PolicyStatement(
                actions=[
                    "sagemaker:CreateModel",
                    "sagemaker:CreateEndpointConfig",
                    "sagemaker:CreateEndpoint",
                    "sagemaker:UpdateEndpoint",
                    "sagemaker:AddTags",
                ],
                resources=deployable,
            )
        )
        acknowledge_wildcard_resources(
            machine.role,
            [*deployable, *(fn.function_arn + ":*" for fn in (plan_fn, record_fn, release_fn))],
            "Models and endpoint configs are versioned under their model's name; LambdaInvoke covers the "
            "function's versions and aliases.",
        )
        machine.add_to_role_policy(
            iam.PolicyStatement(
                actions=["iam:PassRole"],
                resources=[role.role_arn],
                conditions={"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}},
            )
        )
        grant_key(machine.role, self.key)
        # endpoint configs carry the data key (KmsKeyId): creating or updating an endpoint from
        # one makes SageMaker create a grant on the key for the caller
        machine.add_to_role_policy(
            iam.PolicyStatement(
                actions=["kms:CreateGrant"],
                resources=[self.key.key_arn],
                conditions={"Bool": {"kms:GrantIsForAWSResource": "true"}},
            )
        )
        machine.add_to_role_policy(iam.PolicyStatement(actions=["kms:DescribeKey"], resources=[self.key.key_arn]))
        # UpdateEndpoint checks that the caller may read its auto-rollback alarms
        machine.add_to_role_policy(
            iam.PolicyStatement(
                actions=["cloudwatch:DescribeAlarms"],
                resources=[
                    self.format_arn(
                        service="cloudwatch",
                        resource="alarm",
                        resource_name=alarm_name(name, kind),
                        arn_format=cdk.ArnFormat.COLON_RESOURCE_NAME,
                    )
                    for name in self.configs
                    for kind in ROLLBACK_ALARM_KINDS
                ],
            )
        )
        return machine
