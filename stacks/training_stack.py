"""Training, evaluation, gate and registration, started by "Dataset Validated" events.

    PrepareTraining ─▶ TrainingNeeded? ─busy─▶ TrainingSkipped
                           └▶ TrainModel (createTrainingJob.sync)
                              ─▶ EvaluateModel (createProcessingJob.sync)
                              ─▶ ApplyGate ─▶ RegisterModel ─▶ RecordOutcome ─▶ GatePassed?
                                                      ModelRegistered ◀─┘└▶ CandidateRejected
    any failure ─▶ RecordFailure (releases the lock, writes the run report) ─▶ TrainingFailed

The SageMaker tasks are written as raw ASL (CustomState) so that every parameter
can come from the prepare step's output; the IAM they need is granted by hand,
scoped to this app's jobs, buckets, key and role.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sagemaker as sagemaker
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from mlops.config import ModelConfig, ProblemType
from mlops.core.metrics import sagemaker_metric_definitions
from stacks.sagemaker_code import SourcedirAsset, sklearn_image_uri

EVALUATE_SHELL = (
    "set -e; mkdir -p /opt/ml/processing/src; "
    "tar -xzf /opt/ml/processing/input/code/*.gz -C /opt/ml/processing/src; "
    'cd /opt/ml/processing/src; PYTHONPATH=/opt/ml/processing/src exec python3 evaluate.py "$@"'
)
# train.py prints "validation:<metric>=<value>"; one definition per metric any problem type reports
METRIC_DEFINITIONS = [
    d for kind in (ProblemType.BINARY, ProblemType.REGRESSION) for d in sagemaker_metric_definitions(kind)
]
LAMBDA_RETRY_ERRORS = [
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
]
SAGEMAKER_RETRY_ERRORS = ["SageMaker.AmazonSageMakerException", "ThrottlingException", "SageMaker.ThrottlingException"]


def training_task(sagemaker_role: iam.IRole, key: kms.IKey) -> dict[str, Any]:
    return {
        "Type": "Task",
        "Resource": "arn:aws:states:::sagemaker:createTrainingJob.sync",
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
            "StoppingCondition": {"MaxRuntimeInSeconds.$": "$.run.resources.max_runtime_seconds"},
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


def evaluation_task(sagemaker_role: iam.IRole, key: kms.IKey, code_url: str) -> dict[str, Any]:
    return {
        "Type": "Task",
        "Resource": "arn:aws:states:::sagemaker:createProcessingJob.sync",
        "Parameters": {
            "ProcessingJobName.$": "$.run.processing_job_name",
            "RoleArn": sagemaker_role.role_arn,
            "AppSpecification": {
                "ImageUri.$": "$.run.image_uri",
                "ContainerEntrypoint": ["/bin/sh", "-c", EVALUATE_SHELL, "sh"],
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
                        "S3Uri": code_url,
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


class TrainingStack(cdk.Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        key: kms.IKey,
        validated_bucket: s3.IBucket,
        artifacts_bucket: s3.IBucket,
        layers: Sequence[lambda_.ILayerVersion],
        configs: dict[str, ModelConfig],
        runtime: lambda_.Runtime,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.code = SourcedirAsset(self, "TrainingCode")
        self.image_uri = sklearn_image_uri(self)
        self.groups = {
            name: sagemaker.CfnModelPackageGroup(
                self,
                f"Group{''.join(p.capitalize() for p in name.split('-'))}",
                model_package_group_name=name,
                model_package_group_description=(config.description or name)[:1024],
            )
            for name, config in configs.items()
        }
        self.sagemaker_role = self._sagemaker_role(key, artifacts_bucket)
        env = {
            "VALIDATED_BUCKET": validated_bucket.bucket_name,
            "ARTIFACTS_BUCKET": artifacts_bucket.bucket_name,
            "CODE_URI": self.code.s3_url,
            "CODE_HASH": self.code.hash,
            "TRAINING_IMAGE_URI": self.image_uri,
            "POWERTOOLS_SERVICE_NAME": "mlops-training",
            "POWERTOOLS_METRICS_NAMESPACE": "Mlops",
            "POWERTOOLS_LOG_LEVEL": "INFO",
        }
        fns = {
            name: self._function(name, env, layers, runtime, key, memory, timeout)
            for name, memory, timeout in (
                ("prepare", 3008, 900),
                ("gate", 512, 60),
                ("register", 512, 120),
                ("finish", 512, 60),
            )
        }
        validated_bucket.grant_read(fns["prepare"])
        for fn in fns.values():
            artifacts_bucket.grant_read_write(fn)
        self.code.asset.grant_read(self.sagemaker_role)
        groups_arn = self.format_arn(service="sagemaker", resource="model-package-group", resource_name="*")
        packages_arn = self.format_arn(service="sagemaker", resource="model-package", resource_name="*")
        registry_read = iam.PolicyStatement(
            actions=["sagemaker:ListModelPackages", "sagemaker:DescribeModelPackage"],
            resources=[groups_arn, packages_arn],
        )
        fns["prepare"].add_to_role_policy(registry_read)
        fns["register"].add_to_role_policy(registry_read)
        fns["register"].add_to_role_policy(
            iam.PolicyStatement(
                actions=["sagemaker:CreateModelPackage", "sagemaker:UpdateModelPackage", "sagemaker:AddTags"],
                resources=[groups_arn, packages_arn],
            )
        )
        self.functions = fns
        self.state_machine = self._state_machine(fns, key)
        events.Rule(
            self,
            "OnDatasetValidated",
            description="Train when a dataset passed validation",
            event_pattern=events.EventPattern(source=["mlops.validation"], detail_type=["Dataset Validated"]),
            targets=[
                targets.SfnStateMachine(
                    self.state_machine, input=events.RuleTargetInput.from_event_path("$.detail"), retry_attempts=3
                )
            ],
        )
        cdk.CfnOutput(self, "TrainingStateMachineArn", value=self.state_machine.state_machine_arn)

    # -- resources -----------------------------------------------------------------------
    def _sagemaker_role(self, key: kms.IKey, artifacts: s3.IBucket) -> iam.Role:
        role = iam.Role(
            self,
            "SageMakerJobRole",
            assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"),
            description="Training and evaluation jobs: read their inputs, write their outputs",
        )
        artifacts.grant_read_write(role, "training/*")
        key.grant_encrypt_decrypt(role)
        key.grant(role, "kms:CreateGrant", "kms:DescribeKey")
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["logs:CreateLogStream", "logs:PutLogEvents", "logs:CreateLogGroup", "logs:DescribeLogStreams"],
                resources=[
                    self.format_arn(
                        service="logs",
                        resource="log-group",
                        resource_name="/aws/sagemaker/*",
                        arn_format=cdk.ArnFormat.COLON_RESOURCE_NAME,
                    )
                ],
            )
        )
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"],
                resources=["arn:aws:ecr:*:*:repository/sagemaker-scikit-learn"],
            )
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
        return role

    def _function(
        self,
        name: str,
        env: dict[str, str],
        layers: Sequence[lambda_.ILayerVersion],
        runtime: lambda_.Runtime,
        key: kms.IKey,
        memory: int,
        timeout: int,
    ) -> lambda_.Function:
        log_group = logs.LogGroup(
            self,
            f"{name.capitalize()}Logs",
            retention=logs.RetentionDays.ONE_MONTH,
            encryption_key=key,
            removal_policy=cdk.RemovalPolicy.DESTROY,
        )
        return lambda_.Function(
            self,
            f"{name.capitalize()}Fn",
            description=f"Training state machine step: {name}",
            runtime=runtime,
            architecture=lambda_.Architecture.X86_64,
            handler=f"handler.{name}",
            code=lambda_.Code.from_asset("functions/training"),
            layers=list(layers),
            environment=env,
            memory_size=memory,
            ephemeral_storage_size=cdk.Size.mebibytes(10240 if name == "prepare" else 512),
            timeout=cdk.Duration.seconds(timeout),
            tracing=lambda_.Tracing.ACTIVE,
            log_group=log_group,
        )

    def _invoke(
        self, state_id: str, fn: lambda_.IFunction, payload: dict[str, Any], result_path: str
    ) -> tasks.LambdaInvoke:
        task = tasks.LambdaInvoke(
            self,
            state_id,
            lambda_function=fn,
            payload=sfn.TaskInput.from_object(payload),
            payload_response_only=True,
            result_path=result_path,
            retry_on_service_exceptions=False,
        )
        task.add_retry(errors=LAMBDA_RETRY_ERRORS, interval=cdk.Duration.seconds(2), max_attempts=4, backoff_rate=2)
        return task

    def _state_machine(self, fns: dict[str, lambda_.Function], key: kms.IKey) -> sfn.StateMachine:
        run = sfn.JsonPath.object_at("$.run")
        execution_id = sfn.JsonPath.string_at("$$.Execution.Id")
        prepare = self._invoke(
            "PrepareTraining",
            fns["prepare"],
            {
                "dataset": sfn.JsonPath.entire_payload,
                "model": sfn.JsonPath.string_at("$.model"),
                "execution_id": execution_id,
            },
            "$.run",
        )
        train = sfn.CustomState(self, "TrainModel", state_json=training_task(self.sagemaker_role, key))
        evaluate = sfn.CustomState(
            self, "EvaluateModel", state_json=evaluation_task(self.sagemaker_role, key, self.code.s3_url)
        )
        gate = self._invoke("ApplyGate", fns["gate"], {"run": run}, "$.gate")
        register = self._invoke(
            "RegisterModel",
            fns["register"],
            {"run": run, "training": sfn.JsonPath.object_at("$.training"), "gate": sfn.JsonPath.object_at("$.gate")},
            "$.registration",
        )
        outcome = self._invoke(
            "RecordOutcome",
            fns["finish"],
            {
                "run": run,
                "status": "registered",
                "gate": sfn.JsonPath.object_at("$.gate"),
                "registration": sfn.JsonPath.object_at("$.registration"),
                "execution_id": execution_id,
            },
            "$.outcome",
        )
        record_failure = self._invoke(
            "RecordFailure",
            fns["finish"],
            {
                "run": sfn.JsonPath.object_at("$.run"),
                "model": sfn.JsonPath.string_at("$.model"),
                "status": "failed",
                "error": sfn.JsonPath.object_at("$.error"),
                "execution_id": execution_id,
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
        for step in (train, evaluate, gate, register, outcome):
            step.add_catch(record_failure, errors=["States.ALL"], result_path="$.error")
        prepare.add_catch(record_failure, errors=["States.ALL"], result_path="$.error")
        for job in (train, evaluate):
            job.add_retry(
                errors=SAGEMAKER_RETRY_ERRORS, interval=cdk.Duration.seconds(10), max_attempts=5, backoff_rate=2
            )

        passed = (
            sfn.Choice(self, "GatePassed?")
            .when(sfn.Condition.boolean_equals("$.gate.passed", True), sfn.Succeed(self, "ModelRegistered"))
            .otherwise(sfn.Succeed(self, "CandidateRejected", comment="recorded as Rejected with the gate's reasons"))
        )
        needed = (
            sfn.Choice(self, "TrainingNeeded?")
            .when(
                sfn.Condition.string_equals("$.run.status", "busy"),
                sfn.Succeed(self, "TrainingSkipped", comment="another training of this model is running"),
            )
            .otherwise(train.next(evaluate).next(gate).next(register).next(outcome).next(passed))
        )
        log_group = logs.LogGroup(
            self,
            "TrainingMachineLogs",
            retention=logs.RetentionDays.ONE_MONTH,
            encryption_key=key,
            removal_policy=cdk.RemovalPolicy.DESTROY,
        )
        machine = sfn.StateMachine(
            self,
            "TrainingStateMachine",
            definition_body=sfn.DefinitionBody.from_chainable(prepare.next(needed)),
            tracing_enabled=True,
            logs=sfn.LogOptions(destination=log_group, level=sfn.LogLevel.ALL, include_execution_data=True),
            timeout=cdk.Duration.hours(30),
        )
        self._grant_sagemaker_jobs(machine)
        return machine

    def _grant_sagemaker_jobs(self, machine: sfn.StateMachine) -> None:
        jobs = [
            self.format_arn(service="sagemaker", resource="training-job", resource_name="*"),
            self.format_arn(service="sagemaker", resource="processing-job", resource_name="*"),
        ]
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
