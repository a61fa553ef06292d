"""Training, evaluation, gate and registration, started by "Dataset Validated" events.

    PrepareTraining ─▶ TrainingNeeded? ─queued─▶ TrainingQueued (trains in the follow-up run)
                           ├─no_new_data─▶ NotifyRetrainNotNeeded ─▶ RetrainNotNeeded
                           ├─busy/skipped─▶ TrainingSkipped
                           └▶ StartRetryCounters ─▶ TrainModel (createTrainingJob.sync)
                              ─▶ EvaluateModel (createProcessingJob.sync)
                              ─▶ ApplyGate ─▶ RegisterModel ─▶ RecordOutcome ─▶ GatePassed?
                                                      ModelRegistered ◀─┘└▶ CandidateRejected
    any failure ─▶ RecordFailure (report, lock, follow-up) ─▶ TrainingFailed

A SageMaker job is retried only when SageMaker throttled its creation (no job exists
then, so the same name is free): ``SageMaker.AmazonSageMakerException`` also carries
deterministic errors such as ValidationException, told apart only by the cause text.
RecordOutcome and RecordFailure start one follow-up execution when datasets were queued
during the run; an execution that ends without them (stopped, timed out, worker lost) is
handled by the Reap function from its "Step Functions Execution Status Change" event.

The SageMaker tasks are written as raw ASL (CustomState) so that every parameter
can come from the prepare step's output (the image and source dir too: a model with its own
code, ``training.code``, gets a source dir asset of its own and its framework's image, given to
prepare in ``MODEL_CODE``); the IAM they need is granted by hand,
scoped to this app's jobs, buckets, key and role.
"""

from __future__ import annotations

from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sagemaker as sagemaker
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from mlops import env_names as E
from mlops.config import Framework, ModelConfig, ProblemType
from mlops.core.metrics import sagemaker_metric_definitions
from mlops.naming import CAPTURE_PREFIX, METRICS_NAMESPACE
from stacks.event_tasks import put_event
from stacks.functions import invoke_task, project_function
from stacks.grants import DELETE, READ, WRITE, grant_key, grant_objects, registry_arns
from stacks.nag import IAM5, acknowledge, acknowledge_wildcard_resources
from stacks.props import PlatformProps
from stacks.sagemaker_code import (
    SourcedirAsset,
    framework_image_uri,
    image_spec,
    processing_entrypoint,
    sklearn_image_uri,
)
from stacks.sagemaker_retries import retry_counters, retry_when_throttled, state_arn
from stacks.state_machines import logged_state_machine, machine_log_group
from stacks.validation_stack import DATASET_VALIDATED
from stacks.validation_stack import EVENT_SOURCE as VALIDATION_EVENT_SOURCE

# train.py prints "validation:<metric>=<value>"; one definition per metric any problem type reports
METRIC_DEFINITIONS = [
    d for kind in (ProblemType.BINARY, ProblemType.REGRESSION) for d in sagemaker_metric_definitions(kind)
]
# Instance quota in use by other jobs: the job was not created, it may be later.
SAGEMAKER_CAPACITY_ERRORS = ["SageMaker.ResourceLimitExceededException"]
# What the training machine tells the rest of the app (the serving stack notifies people).
TRAINING_EVENT_SOURCE = "mlops.training"
RETRAIN_NOT_NEEDED = "Retrain Not Needed"
# The prepare step keeps one copy of the dataset in /tmp (the split streams to S3).
LAMBDA_MAX_EPHEMERAL_MB = 10240
EPHEMERAL_HEADROOM_MB = 512  # labelled capture rows and the Python runtime's own files


def prepare_ephemeral_mb(configs: dict[str, ModelConfig]) -> int:
    """/tmp for the prepare step: the largest dataset a config allows, plus headroom; refused if Lambda has less."""
    largest = max((c.dataset.max_bytes for c in configs.values()), default=0)
    needed = -(-largest // (1024 * 1024)) + EPHEMERAL_HEADROOM_MB
    if needed > LAMBDA_MAX_EPHEMERAL_MB:
        too_big = sorted(
            n
            for n, c in configs.items()
            if c.dataset.max_bytes + EPHEMERAL_HEADROOM_MB * 2**20 > LAMBDA_MAX_EPHEMERAL_MB * 2**20
        )
        raise ValueError(
            f"dataset.max_bytes of {', '.join(too_big)} is larger than the training prepare step can hold: "
            f"Lambda's ephemeral storage is at most {LAMBDA_MAX_EPHEMERAL_MB} MiB and "
            f"{EPHEMERAL_HEADROOM_MB} MiB of it are kept for other files"
        )
    return max(512, needed)


# The steps that take the per-model lock or end a run: they release it and start follow-up runs.
LOCK_HOLDERS = ("prepare", "finish", "reap")


def training_task(sagemaker_role: iam.IRole, key: kms.IKey) -> dict[str, Any]:
    return {
        "Type": "Task",
        "Resource": state_arn("sagemaker:createTrainingJob.sync"),
        "Parameters": {
            "TrainingJobName.$": "$.run.training_job_name",
            "AlgorithmSpecification": {
                "TrainingImage.$": "$.run.image_uri",
                "TrainingInputMode": "File",
                "MetricDefinitions": METRIC_DEFINITIONS,
            },
            "RoleArn": sagemaker_role.role_arn,
            "HyperParameters.$": "$.run.hyperparameters",
            "InputDataConfig": [
                _channel("train", "$.run.channels.train", "text/csv"),
                _channel("validation", "$.run.channels.validation", "text/csv"),
                _channel("config", "$.run.channels.config", "application/json"),
            ],
            "OutputDataConfig": {"S3OutputPath.$": "$.run.output_uri", "KmsKeyId": key.key_arn},
            "ResourceConfig": {
                "InstanceType.$": "$.run.resources.instance_type",
                "InstanceCount.$": "$.run.resources.instance_count",
                "VolumeSizeInGB.$": "$.run.resources.volume_size_gb",
                "VolumeKmsKeyId": key.key_arn,
            },
            # with managed spot training it also holds MaxWaitTimeInSeconds (prepare's stopping_condition)
            "StoppingCondition.$": "$.run.resources.stopping_condition",
            "EnableManagedSpotTraining.$": "$.run.resources.use_spot",
            "Tags": [{"Key": "mlops:model", "Value.$": "$.run.model"}],
        },
        "ResultSelector": {
            "TrainingJobName.$": "$.TrainingJobName",
            "TrainingJobArn.$": "$.TrainingJobArn",
            "ModelArtifacts.$": "$.ModelArtifacts",
            "FinalMetricDataList.$": "$.FinalMetricDataList",
        },
        "ResultPath": "$.training",
    }


def _channel(name: str, path: str, content_type: str) -> dict[str, Any]:
    return {
        "ChannelName": name,
        "ContentType": content_type,
        "DataSource": {
            "S3DataSource": {"S3DataType": "S3Prefix", "S3Uri.$": path, "S3DataDistributionType": "FullyReplicated"}
        },
    }


def _processing_input(name: str, path: str, local: str) -> dict[str, Any]:
    return {
        "InputName": name,
        "S3Input": {"S3Uri.$": path, "LocalPath": local, "S3DataType": "S3Prefix", "S3InputMode": "File"},
    }


def evaluation_task(sagemaker_role: iam.IRole, key: kms.IKey) -> dict[str, Any]:
    return {
        "Type": "Task",
        "Resource": state_arn("sagemaker:createProcessingJob.sync"),
        "Parameters": {
            "ProcessingJobName.$": "$.run.processing_job_name",
            "RoleArn": sagemaker_role.role_arn,
            "AppSpecification": {
                "ImageUri.$": "$.run.image_uri",
                "ContainerEntrypoint": processing_entrypoint("evaluate.py"),
                "ContainerArguments": [
                    "--model-dir",
                    "/opt/ml/processing/model",
                    "--test-dir",
                    "/opt/ml/processing/test",
                    "--config-dir",
                    "/opt/ml/processing/config",
                    "--champion-dir",
                    "/opt/ml/processing/champion",
                    "--output-dir",
                    "/opt/ml/processing/evaluation",
                ],
            },
            "ProcessingInputs": [
                {
                    "InputName": "code",
                    "S3Input": {
                        "S3Uri.$": "$.run.code_uri",  # the model's source dir (prepare picks it per model)
                        "LocalPath": "/opt/ml/processing/input/code",
                        "S3DataType": "S3Prefix",
                        "S3InputMode": "File",
                    },
                },
                _processing_input("model", "$.training.ModelArtifacts.S3ModelArtifacts", "/opt/ml/processing/model"),
                _processing_input("test", "$.run.channels.test", "/opt/ml/processing/test"),
                _processing_input("config", "$.run.channels.config", "/opt/ml/processing/config"),
                _processing_input("champion", "$.run.channels.champion", "/opt/ml/processing/champion"),
            ],
            "ProcessingOutputConfig": {
                "Outputs": [
                    {
                        "OutputName": "evaluation",
                        "S3Output": {
                            "S3Uri.$": "$.run.evaluation_uri",
                            "LocalPath": "/opt/ml/processing/evaluation",
                            "S3UploadMode": "EndOfJob",
                        },
                    }
                ],
                "KmsKeyId": key.key_arn,
            },
            "ProcessingResources": {
                "ClusterConfig": {
                    "InstanceCount": 1,
                    "InstanceType.$": "$.run.resources.instance_type",
                    "VolumeSizeInGB.$": "$.run.resources.volume_size_gb",
                    "VolumeKmsKeyId": key.key_arn,
                }
            },
            "StoppingCondition": {"MaxRuntimeInSeconds.$": "$.run.resources.max_runtime_seconds"},
        },
        "ResultSelector": {"ProcessingJobName.$": "$.ProcessingJobName", "ProcessingJobArn.$": "$.ProcessingJobArn"},
        "ResultPath": "$.evaluation_job",
    }


def _own_code_or_image(config: ModelConfig) -> bool:
    training = config.training
    return bool(training.code or training.framework_version or training.framework != Framework.SKLEARN)


def _camel(name: str) -> str:
    return "".join(p.capitalize() for p in name.split("-"))


class TrainingStack(cdk.Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        props: PlatformProps,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        data, layers, configs = props.data, props.layers, props.configs
        key, validated_bucket, artifacts_bucket = data.key, data.validated_bucket, data.artifacts_bucket
        capture_bucket, incoming_bucket = data.capture_bucket, data.incoming_bucket
        self.code = SourcedirAsset(self, "TrainingCode")
        self.image_uri = sklearn_image_uri(self)
        # models with their own code or another framework image: their source dir and image, per model
        self.model_code = {
            name: (
                SourcedirAsset(self, f"TrainingCode{_camel(name)}", config) if config.training.code else self.code,
                framework_image_uri(self, config.training.framework, config.training.framework_version),
            )
            for name, config in configs.items()
            if _own_code_or_image(config)
        }
        self.groups = {
            name: sagemaker.CfnModelPackageGroup(
                self,
                f"Group{_camel(name)}",
                model_package_group_name=name,
                model_package_group_description=(config.description or name)[:1024],
            )
            for name, config in configs.items()
        }
        repositories = sorted({"sagemaker-scikit-learn", *(image_spec(c).repository for c in configs.values())})
        self.sagemaker_role = self._sagemaker_role(key, artifacts_bucket, repositories)
        env = {
            E.VALIDATED_BUCKET: validated_bucket.bucket_name,
            E.ARTIFACTS_BUCKET: artifacts_bucket.bucket_name,
            # alarm-triggered retrains add labelled captured requests (capture + ground truth)
            E.CAPTURE_BUCKET: capture_bucket.bucket_name,
            E.INCOMING_BUCKET: incoming_bucket.bucket_name,
            E.CODE_URI: self.code.s3_url,
            E.CODE_HASH: self.code.hash,
            E.TRAINING_IMAGE_URI: self.image_uri,
            E.MODEL_CODE: self.to_json_string(
                {
                    name: {"code_uri": code.s3_url, "code_hash": code.hash, "image_uri": image}
                    for name, (code, image) in self.model_code.items()
                }
            ),
            **E.powertools("mlops-training", METRICS_NAMESPACE),
        }
        ephemeral = prepare_ephemeral_mb(configs)
        fns = {
            name: project_function(
                self,
                name.capitalize(),
                code="functions/training",
                handler=f"handler.{name}",
                description=description,
                environment=env,
                layers=layers,
                key=key,
                memory_mb=memory,
                timeout=cdk.Duration.seconds(timeout),
                ephemeral_mb=ephemeral if name == "prepare" else 512,
            )
            for name, memory, timeout, description in (
                ("prepare", 3008, 900, "Training state machine step: prepare"),
                ("gate", 512, 60, "Training state machine step: gate"),
                ("register", 512, 120, "Training state machine step: register"),
                ("finish", 512, 60, "Training state machine step: finish"),
                ("reap", 512, 60, "Ends training executions that stopped without their last step"),
            )
        }
        for fn in fns.values():
            role = fn.role
            assert role is not None
            grant_key(role, key)
            # runs (model, evaluation, lineage, report), the per-model lock and the retrain cooldown marker
            grant_objects(
                role, artifacts_bucket, ["training/", "locks/training/", "monitoring/"], READ + WRITE, sid="Runs"
            )
            grant_objects(role, validated_bucket, ["validated/"], READ, sid="ValidatedData")
        for step in LOCK_HOLDERS:
            # releasing the lock; each dataset's fate and the markers of the queued ones
            grant_objects(fns[step].role, artifacts_bucket, ["locks/training/"], DELETE, sid="ReleaseLock")
            grant_objects(fns[step].role, artifacts_bucket, ["fates/"], READ + WRITE + DELETE, sid="DatasetFates")
        grant_objects(fns["prepare"].role, capture_bucket, [f"{CAPTURE_PREFIX}/"], READ, sid="CapturedRequests")
        grant_objects(fns["prepare"].role, incoming_bucket, ["ground-truth/"], READ, sid="GroundTruth")
        # the jobs (and the endpoints, as this role) download the code bundles: those asset objects.
        # EvaluateModel reads one as an S3Prefix input, which SageMaker lists first: ListBucket, for those keys.
        assets = [self.code.asset, *(c.asset for c, _ in self.model_code.values() if c is not self.code)]
        self.sagemaker_role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["s3:GetObject"],
                resources=[a.bucket.arn_for_objects(a.s3_object_key) for a in assets],
            )
        )
        self.sagemaker_role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["s3:ListBucket"],
                resources=[self.code.asset.bucket.bucket_arn],
                conditions={"StringEquals": {"s3:prefix": [a.s3_object_key for a in assets]}},
            )
        )
        registry = registry_arns(self, list(configs))
        registry_read = iam.PolicyStatement(
            actions=["sagemaker:ListModelPackages", "sagemaker:DescribeModelPackage"],
            resources=registry,
        )
        fns["prepare"].add_to_role_policy(registry_read)
        fns["register"].add_to_role_policy(registry_read)
        fns["register"].add_to_role_policy(
            iam.PolicyStatement(
                actions=["sagemaker:CreateModelPackage", "sagemaker:UpdateModelPackage", "sagemaker:AddTags"],
                resources=registry,
            )
        )
        for step in ("prepare", "register"):
            acknowledge_wildcard_resources(
                fns[step].role, registry, "Versions of this app's model package groups; numbered as registered."
            )
        self.functions = fns
        self.state_machine = self._state_machine(fns, key)
        self._grant_lock_holders(fns)
        events.Rule(
            self,
            "OnTrainingExecutionEnded",
            description="Finish training executions that ended without their last step (stopped, timed out)",
            event_pattern=events.EventPattern(
                source=["aws.states"],
                detail_type=["Step Functions Execution Status Change"],
                detail={
                    "status": ["FAILED", "TIMED_OUT", "ABORTED"],
                    "stateMachineArn": [self.state_machine.state_machine_arn],
                },
            ),
            targets=[targets.LambdaFunction(fns["reap"], retry_attempts=3)],
        )
        events.Rule(
            self,
            "OnDatasetValidated",
            description="Train when a dataset passed validation",
            event_pattern=events.EventPattern(source=[VALIDATION_EVENT_SOURCE], detail_type=[DATASET_VALIDATED]),
            targets=[
                targets.SfnStateMachine(
                    self.state_machine, input=events.RuleTargetInput.from_event_path("$.detail"), retry_attempts=3
                )
            ],
        )
        cdk.CfnOutput(self, "TrainingStateMachineArn", value=self.state_machine.state_machine_arn)

    # -- resources -----------------------------------------------------------------------
    def _grant_lock_holders(self, fns: dict[str, lambda_.Function]) -> None:
        """The steps that take, check and hand on the lock: DescribeExecution on this machine's
        executions (is the lock's owner still RUNNING?) and StartExecution of the follow-up run.

        A policy of its own, not the roles' default policies: the functions must not depend
        on the state machine that depends on them.
        """
        machine = self.state_machine
        executions = self.format_arn(
            service="states",
            resource="execution",
            resource_name=f"{machine.state_machine_name}:*",
            arn_format=cdk.ArnFormat.COLON_RESOURCE_NAME,
        )
        policy = iam.Policy(
            self,
            "TrainingExecutionsPolicy",
            statements=[
                iam.PolicyStatement(sid="LockOwnerAlive", actions=["states:DescribeExecution"], resources=[executions]),
                iam.PolicyStatement(
                    sid="FollowUpRun", actions=["states:StartExecution"], resources=[machine.state_machine_arn]
                ),
            ],
        )
        for step in LOCK_HOLDERS:
            role = fns[step].role
            assert role is not None
            policy.attach_to_role(role)
        acknowledge_wildcard_resources(
            policy, [executions], "Executions of the training state machine: their names are generated per run."
        )

    def _sagemaker_role(self, key: kms.IKey, artifacts: s3.IBucket, repositories: list[str]) -> iam.Role:
        log_groups = self.format_arn(
            service="logs",
            resource="log-group",
            resource_name="/aws/sagemaker/*",
            arn_format=cdk.ArnFormat.COLON_RESOURCE_NAME,
        )
        ecr_repositories = [f"arn:{cdk.Aws.PARTITION}:ecr:{cdk.Aws.REGION}:*:repository/{r}" for r in repositories]
        role = iam.Role(
            self,
            "SageMakerJobRole",
            assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"),
            description="Training and evaluation jobs: read their inputs, write their outputs",
        )
        grant_objects(role, artifacts, ["training/"], READ + WRITE, sid="JobData")
        grant_key(role, key)
        # SageMaker creates grants on the key to encrypt the job's volumes
        key.grant(role, "kms:CreateGrant", "kms:DescribeKey")
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["logs:CreateLogStream", "logs:PutLogEvents", "logs:CreateLogGroup", "logs:DescribeLogStreams"],
                resources=[log_groups],
            )
        )
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"],
                resources=ecr_repositories,
            )
        )
        acknowledge_wildcard_resources(
            role,
            [log_groups, *ecr_repositories],
            "SageMaker's own log groups for this role's jobs, and the framework images the models use, whose "
            "registry account depends on the region.",
        )
        # GetAuthorizationToken has no resource-level permissions.
        role.add_to_policy(iam.PolicyStatement(actions=["ecr:GetAuthorizationToken"], resources=["*"]))
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["cloudwatch:PutMetricData"],
                resources=["*"],
                conditions={"StringLike": {"cloudwatch:namespace": "/aws/sagemaker/*"}},
            )
        )
        acknowledge(
            role,
            IAM5,
            "ecr:GetAuthorizationToken and cloudwatch:PutMetricData (limited by namespace) have no resource scope.",
            ["Resource::*"],
        )
        return role

    def _state_machine(self, fns: dict[str, lambda_.Function], key: kms.IKey) -> sfn.StateMachine:
        run = sfn.JsonPath.object_at("$.run")
        execution_id = sfn.JsonPath.string_at("$$.Execution.Id")
        machine_arn = sfn.JsonPath.string_at("$$.StateMachine.Id")
        prepare = invoke_task(
            self,
            "PrepareTraining",
            fns["prepare"],
            {
                "dataset": sfn.JsonPath.entire_payload,
                "model": sfn.JsonPath.string_at("$.model"),
                "execution_id": execution_id,
                "state_machine_arn": machine_arn,
            },
            "$.run",
        )
        train = sfn.CustomState(self, "TrainModel", state_json=training_task(self.sagemaker_role, key))
        evaluate = sfn.CustomState(self, "EvaluateModel", state_json=evaluation_task(self.sagemaker_role, key))
        gate = invoke_task(self, "ApplyGate", fns["gate"], {"run": run}, "$.gate")
        register = invoke_task(
            self,
            "RegisterModel",
            fns["register"],
            {"run": run, "training": sfn.JsonPath.object_at("$.training"), "gate": sfn.JsonPath.object_at("$.gate")},
            "$.registration",
        )
        outcome = invoke_task(
            self,
            "RecordOutcome",
            fns["finish"],
            {
                "run": run,
                "status": "registered",
                "gate": sfn.JsonPath.object_at("$.gate"),
                "registration": sfn.JsonPath.object_at("$.registration"),
                "execution_id": execution_id,
                "state_machine_arn": machine_arn,
            },
            "$.outcome",
        )
        # The whole state: "$.run" does not exist when PrepareTraining itself failed.
        record_failure = invoke_task(
            self,
            "RecordFailure",
            fns["finish"],
            {
                "state": sfn.JsonPath.entire_payload,
                "status": "failed",
                "execution_id": execution_id,
                "state_machine_arn": machine_arn,
            },
            "$.outcome",
        )
        failed = sfn.Fail(
            self,
            "TrainingFailed",
            error="TrainingFailed",
            cause_path=sfn.JsonPath.format(
                "{}: {}", sfn.JsonPath.string_at("$.error.Error"), sfn.JsonPath.string_at("$.error.Cause")
            ),
        )
        record_failure.next(failed)
        for job in (train, evaluate):
            job.add_retry(
                errors=SAGEMAKER_CAPACITY_ERRORS, interval=cdk.Duration.seconds(60), max_attempts=5, backoff_rate=2
            )
            retry_when_throttled(self, job, record_failure)
        for step in (prepare, train, evaluate, gate, register, outcome):
            step.add_catch(record_failure, errors=["States.ALL"], result_path="$.error")

        passed = (
            sfn.Choice(self, "GatePassed?")
            .when(sfn.Condition.boolean_equals("$.gate.passed", True), sfn.Succeed(self, "ModelRegistered"))
            .otherwise(sfn.Succeed(self, "CandidateRejected", comment="recorded as Rejected with the gate's reasons"))
        )
        counters = retry_counters(self, "StartRetryCounters", (train, evaluate))
        notify_not_needed = put_event(
            self, "NotifyRetrainNotNeeded", TRAINING_EVENT_SOURCE, RETRAIN_NOT_NEEDED, "$.run"
        )
        needed = (
            sfn.Choice(self, "TrainingNeeded?")
            .when(
                sfn.Condition.string_equals("$.run.status", "ready"),
                counters.next(train).next(evaluate).next(gate).next(register).next(outcome).next(passed),
            )
            .when(
                sfn.Condition.string_equals("$.run.status", "queued"),
                sfn.Succeed(self, "TrainingQueued", comment="the run that holds the lock starts one follow-up run"),
            )
            .when(
                sfn.Condition.string_equals("$.run.status", "no_new_data"),
                notify_not_needed.next(
                    sfn.Succeed(self, "RetrainNotNeeded", comment="drift detected, no new labelled data")
                ),
            )
            .otherwise(sfn.Succeed(self, "TrainingSkipped", comment="another run has it in hand; see $.run.reason"))
        )
        log_group = machine_log_group(self, "TrainingMachineLogs", key)
        machine = logged_state_machine(
            self,
            "TrainingStateMachine",
            start=prepare.next(needed),
            log_group=log_group,
            timeout=cdk.Duration.hours(30),
        )
        self._grant_sagemaker_jobs(machine)
        acknowledge_wildcard_resources(
            machine.role,
            [f"{fn.function_arn}:*" for fn in fns.values()],
            "LambdaInvoke is granted on each step function's versions and aliases, those functions only.",
        )
        return machine

    def _grant_sagemaker_jobs(self, machine: sfn.StateMachine) -> None:
        # job names start with the model's name (mlops.services.training)
        jobs = [
            self.format_arn(service="sagemaker", resource=kind, resource_name=f"{model}-*")
            for kind in ("training-job", "processing-job")
            for model in self.groups
        ]
        acknowledge_wildcard_resources(
            machine.role, jobs, "One training/evaluation job per run, named after its model."
        )
        machine.add_to_role_policy(
            iam.PolicyStatement(
                actions=[
                    "sagemaker:CreateTrainingJob",
                    "sagemaker:DescribeTrainingJob",
                    "sagemaker:StopTrainingJob",
                    "sagemaker:CreateProcessingJob",
                    "sagemaker:DescribeProcessingJob",
                    "sagemaker:StopProcessingJob",
                    "sagemaker:AddTags",
                    # the .sync integrations read the job's tags (CDK's own SageMaker task grants it too)
                    "sagemaker:ListTags",
                ],
                resources=jobs,
            )
        )
        # .sync integrations poll through these Step Functions-managed rules.
        machine.add_to_role_policy(
            iam.PolicyStatement(
                actions=["events:PutTargets", "events:PutRule", "events:DescribeRule"],
                resources=[
                    self.format_arn(service="events", resource="rule", resource_name=name)
                    for name in (
                        "StepFunctionsGetEventsForSageMakerTrainingJobsRule",
                        "StepFunctionsGetEventsForSageMakerProcessingJobsRule",
                    )
                ],
            )
        )
        machine.add_to_role_policy(
            iam.PolicyStatement(
                actions=["iam:PassRole"],
                resources=[self.sagemaker_role.role_arn],
                conditions={"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}},
            )
        )
