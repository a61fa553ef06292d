"""The twin: the synthesized assembly brought to life on 127.0.0.1.

Built only from the templates in ``cdk.out``: buckets become buckets in the S3
service, rules go onto the event bus with their real patterns and targets, state
machines run their real definitions in the ASL engine, and Lambda functions run
their handlers from their code assets. Nothing here knows what the app's stacks
contain, so a change to the stack code changes what the twin runs.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
from moto.applicationautoscaling.models import applicationautoscaling_backends
from moto.s3.models import s3_backends
from moto.sagemaker.models import sagemaker_backends
from moto.server import create_backend_app

from mlops.env_names import AWS_REGION, POWERTOOLS_TRACE_DISABLED
from mlops.twin import moto_ext
from mlops.twin.assembly import Assembly, Resource
from mlops.twin.awslambda.api import LambdaApi
from mlops.twin.awslambda.runtime import FunctionSpec, LambdaRuntime
from mlops.twin.clock import TwinClock
from mlops.twin.cloudformation.api import CloudFormationApi
from mlops.twin.cloudwatch.alarms import Alarm, AlarmEvaluator, MetricStore
from mlops.twin.cloudwatch.api import CloudWatchApi
from mlops.twin.events.api import EventsApi
from mlops.twin.events.bus import EventBus, Rule, Target
from mlops.twin.gateway import Gateway
from mlops.twin.iam import Authorizer, IamAuthorizer, PolicyStore, Principals, Unenforced
from mlops.twin.iam.lookups import TwinLookups
from mlops.twin.logs.api import LogsApi
from mlops.twin.logs.store import LogStore
from mlops.twin.s3.service import S3Service
from mlops.twin.sagemaker.endpoints import EndpointManager
from mlops.twin.sagemaker.jobs import JobFailed, JobRunner
from mlops.twin.sagemaker.registry import Registry
from mlops.twin.sagemaker.rules import SageMakerRules
from mlops.twin.sagemaker.runtime_api import RuntimeApi
from mlops.twin.sagemaker.serving import CaptureWriter, EndpointRuntime
from mlops.twin.sagemaker.state import ControlPlaneState, MotoRecords
from mlops.twin.sns.api import SnsApi
from mlops.twin.sns.topics import Notifications
from mlops.twin.stepfunctions.api import StepFunctionsApi
from mlops.twin.stepfunctions.asl import Execution
from mlops.twin.stepfunctions.service import StateMachine, StepFunctions
from mlops.twin.stepfunctions.tasks import TaskDispatcher

log = logging.getLogger("mlops.twin")
EVENTS_SERVICE = "events.amazonaws.com"  # the principal EventBridge delivers as

# Resources the twin runs.
RUNNABLE = {
    "AWS::S3::Bucket",
    "AWS::Events::Rule",
    "AWS::StepFunctions::StateMachine",
    "AWS::Lambda::Function",
    "AWS::Lambda::LayerVersion",
    "AWS::SageMaker::ModelPackageGroup",
    "AWS::CloudWatch::Alarm",
    "AWS::SNS::Topic",
    "AWS::SNS::Subscription",
    "AWS::Logs::LogGroup",
}
# Resources that exist in AWS but have no behaviour to reproduce here; listed at start.
INERT = {
    "AWS::IAM::Role": "enforced by the twin's IAM, not run",
    "AWS::IAM::Policy": "enforced by the twin's IAM, not run",
    "AWS::IAM::ManagedPolicy": "enforced by the twin's IAM, not run",
    "AWS::KMS::Key": "key policy enforced; objects are stored unencrypted on the twin",
    "AWS::KMS::Alias": "resolved for key policies; objects are stored unencrypted on the twin",
    "AWS::S3::BucketPolicy": "enforced by the twin's IAM (aws:SecureTransport is true on the twin)",
    "AWS::SQS::Queue": "dead-letter queue: failed deliveries are kept in <workdir>/events.jsonl",
    "AWS::SQS::QueuePolicy": "queue policies are not enforced on the twin",
    "AWS::Lambda::Permission": "enforced for EventBridge deliveries to functions",
    "AWS::CDK::Metadata": "CDK metadata only",
    "AWS::SNS::TopicPolicy": "enforced for EventBridge deliveries to topics",
    "AWS::CloudWatch::Dashboard": "dashboards are not drawn on the twin; `mlops` commands show the numbers",
}


@dataclass
class StartReport:
    running: dict[str, list[str]] = field(default_factory=dict)  # type -> names
    inert: list[tuple[str, str, str]] = field(default_factory=list)  # (path, type, reason)
    unsupported: list[tuple[str, str]] = field(default_factory=list)  # (path, type)
    unsupported_tasks: list[tuple[str, str, str]] = field(default_factory=list)  # (machine, state, resource)
    substituted_layers: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "running": self.running,
            "inert": [list(x) for x in self.inert],
            "unsupported": [list(x) for x in self.unsupported],
            "unsupported_tasks": [list(x) for x in self.unsupported_tasks],
            "substituted_layers": self.substituted_layers,
        }


class Twin:
    def __init__(
        self, cdk_out: str | Path, workdir: str | Path, *, port: int = 0, time_scale: float = 1.0, iam: bool = True
    ) -> None:
        self.assembly = Assembly(cdk_out)
        self.workdir = Path(workdir).resolve()  # jobs and workers run in other directories
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "logs").mkdir(exist_ok=True)
        self.principals = Principals(self.assembly.account)
        # IAM is enforced unless asked not to (--iam off, for debugging only)
        policies = PolicyStore.from_assembly(self.assembly)
        self.iam: Authorizer = (
            IamAuthorizer(policies, self.principals.operator, TwinLookups(policies)) if iam else Unenforced()
        )
        self.gateway = Gateway(self.principals, port=port, authorizer=self.iam)
        self.s3 = S3Service(self.workdir, self._on_s3_event, account=self.assembly.account)
        self.bus = EventBus(self._deliver, account=self.assembly.account, region=self.assembly.region)
        self.dispatcher = TaskDispatcher(self)
        self.stepfunctions = StepFunctions(
            self.workdir, self.dispatcher, time_scale=time_scale, busy=self._busy, on_status=self._execution_status
        )
        self.engine = self.stepfunctions.engine
        self.clock = TwinClock(time_scale, state_dir=self.workdir)
        # CloudWatch and its Logs: durable in the work dir (metrics, alarm history, log events)
        self.metrics = MetricStore(self.workdir / "cloudwatch" / "metrics.jsonl")
        self.alarms = AlarmEvaluator(
            self.metrics,
            self.emit,
            self.assembly.account,
            self.assembly.region,
            journal=self.workdir / "cloudwatch" / "alarm-history.jsonl",
            clock=self.clock.now,
            act=self._alarm_action,
        )
        self.logs = LogStore(self.workdir / "logs" / "groups")
        self.capture = CaptureWriter(self._put_capture)
        self.endpoint_runtime = EndpointRuntime(self.metrics, self.capture, clock=self.clock.now)
        self.endpoints: EndpointManager | None = None
        self.notifications = Notifications(self.workdir / "notifications.jsonl")
        self.registry = Registry(self.assembly.account, self.assembly.region, self.emit)
        # registry, models, endpoint configs, endpoints and jobs: durable in <workdir>/sagemaker/
        self.sagemaker_state = ControlPlaneState(
            self.workdir / "sagemaker", self.assembly.account, self.assembly.region
        )
        # SageMaker's request rules: every SageMaker request the twin serves passes them
        self.sagemaker_rules = SageMakerRules(
            lambda: sagemaker_backends[self.assembly.account][self.assembly.region],
            self.assembly.account,
            self.assembly.region,
        )
        self.autoscaling_state = MotoRecords(  # the endpoints' scalable targets and scaling policies
            self.workdir / "sagemaker" / "application-autoscaling.pickle",
            lambda: applicationautoscaling_backends[self.assembly.account][self.assembly.region],
        )
        self.jobs: JobRunner | None = None
        self.functions: dict[str, LambdaRuntime] = {}
        self.report = StartReport()
        self._pending = 0
        self._pending_lock = threading.Condition()
        self._events_log = (self.workdir / "events.jsonl").open("a", encoding="utf-8")

    # -- lifecycle -------------------------------------------------------------------
    def start(self) -> StartReport:
        self._reset_moto()
        self.sagemaker_state.restore()  # before any request is served
        self.autoscaling_state.restore()
        self.s3.start()
        self.gateway.mount_wsgi("s3", self.s3.app)
        # moto keeps the SageMaker control plane's and Application Auto Scaling's records
        self.gateway.mount_wsgi(
            "sagemaker", self.sagemaker_state.wsgi(create_backend_app("sagemaker")), check=self.sagemaker_rules
        )
        self.gateway.mount_wsgi(
            "application-autoscaling", self.autoscaling_state.wsgi(create_backend_app("application-autoscaling"))
        )
        self.gateway.mount_wsgi("sagemaker-runtime", RuntimeApi(self.endpoint_runtime))
        self.gateway.mount_api(CloudFormationApi(self.assembly))
        self.gateway.mount_api(StepFunctionsApi(self.stepfunctions))
        self.gateway.mount_api(CloudWatchApi(self.metrics, self.alarms, clock=self.clock.now))
        self.gateway.mount_api(LogsApi(self.logs, account=self.assembly.account, region=self.assembly.region))
        self.gateway.mount_api(EventsApi(self.bus, self.emit))
        self.gateway.mount_api(SnsApi(self.notifications, account=self.assembly.account))
        endpoint = self.gateway.start()
        for res in self.assembly.resources():
            if not self.assembly.included(res):
                continue
            if res.type in RUNNABLE:
                self.report.running.setdefault(res.type, []).append(res.physical_id)
            elif res.type in INERT:
                self.report.inert.append((res.path, res.type, INERT[res.type]))
            else:
                self.report.unsupported.append((res.path, res.type))
        self._publish_assets()
        for res in self.assembly.resources("AWS::S3::Bucket"):
            self._create_bucket(res)
        self.registry.install()
        for res in self.assembly.resources("AWS::SageMaker::ModelPackageGroup"):
            props = self.assembly.resolve(res.properties, res.stack)
            self.registry.create_group(res.physical_id, str(props.get("ModelPackageGroupDescription", "")))
        self.jobs = JobRunner(
            self.client("s3"),
            self.workdir / "sagemaker",
            self.assembly.account,
            self.assembly.region,
            s3_as=lambda role: self.client("s3", role),  # a job reads and writes S3 as its RoleArn
            record=self.sagemaker_state.record_job,
        )
        self.endpoints = EndpointManager(
            account=self.assembly.account,
            region=self.assembly.region,
            s3=self.client("s3"),
            s3_as=lambda role: self.client("s3", role),  # model download and capture as ExecutionRoleArn
            runtime=self.endpoint_runtime,
            alarms=self.alarms,
            workdir=self.workdir,
            time_scale=self.clock.time_scale,
            clock=self.clock.now,
            on_change=self.sagemaker_state.save,
        )
        self.endpoints.install()
        moto_ext.serve_transform_jobs(self._start_transform, self.jobs.stop_transform)
        self.endpoints.resume()  # endpoints restored from the work dir serve again (and the state is written)
        for res in self.assembly.resources("AWS::CloudWatch::Alarm"):
            self._create_alarm(res)
        self.notifications.install(self.assembly)
        self.logs.install(self.assembly)
        base_env = self._lambda_base_env(endpoint)
        for res in self.assembly.resources("AWS::Lambda::Function"):
            self._create_function(res, base_env)
        self.gateway.mount_api(
            LambdaApi(
                self.assembly, self.functions, self.invoke, s3=self.client("s3"), time_scale=self.clock.time_scale
            )
        )
        for res in self.assembly.resources("AWS::StepFunctions::StateMachine"):
            self._create_state_machine(res)
        # Executions a previous twin left running end as FAILED; their owners can react to this list.
        self.interrupted_executions = self.stepfunctions.recover()
        for res in self.assembly.resources("AWS::Events::Rule"):
            self._create_rule(res)
        for execution in self.interrupted_executions:  # as AWS would have told of their end
            self._execution_status(execution)
        for problem in self.report.unsupported:
            log.warning("unsupported resource %s (%s): not run by the twin", *problem)
        for machine, state, resource in self.report.unsupported_tasks:
            log.warning("state machine %s, state %s: Task resource %s is not supported", machine, state, resource)
        return self.report

    def _reset_moto(self) -> None:
        """Start from empty S3, SageMaker and Application Auto Scaling backends (restored from the work dir).

        moto's backends are process-wide: a twin started in a process where another one ran
        (tests do this) would otherwise see that twin's buckets, packages and endpoints.
        """
        s3_backends[self.assembly.account]["aws"].reset()
        sagemaker_backends[self.assembly.account][self.assembly.region].reset()
        applicationautoscaling_backends[self.assembly.account][self.assembly.region].reset()

    def stop(self) -> None:
        self.clock.checkpoint()
        if self.jobs is not None:
            self.jobs.stop_all()
        self.endpoint_runtime.close()  # the endpoints' model-server workers
        for fn in self.functions.values():
            fn.close()
        self.capture.flush()
        self.gateway.stop()
        self.s3.stop()
        self.metrics.close()
        self.alarms.close()
        self.logs.close()
        self._events_log.close()

    def sagemaker_model(self, name: str) -> dict[str, Any]:
        """A SageMaker model's record, as DescribeModel answers it (the keys a job reads)."""
        model = sagemaker_backends[self.assembly.account][self.assembly.region]._models[name]
        return {
            "ModelName": name,
            "PrimaryContainer": model.primary_container,
            "Containers": model.containers,
            "ExecutionRoleArn": model.execution_role_arn,
        }

    def _start_transform(self, params: dict[str, Any]) -> str:
        """CreateTransformJob on the API: the job runs in the background (as the model's role), as in SageMaker."""
        assert self.jobs is not None
        model = self.sagemaker_model(params["ModelName"])
        runner = self.jobs.as_role({"RoleArn": model.get("ExecutionRoleArn")})
        recorded = threading.Event()

        def run() -> None:
            with contextlib.suppress(JobFailed):
                runner.transform(params, model, on_start=recorded.set)
            recorded.set()

        threading.Thread(target=run, daemon=True, name=f"transform-{params['TransformJobName']}").start()
        recorded.wait()
        name = params["TransformJobName"]
        return f"arn:aws:sagemaker:{self.assembly.region}:{self.assembly.account}:transform-job/{name.lower()}"

    @property
    def endpoint(self) -> str:
        """The one URL of every AWS API the twin serves."""
        return self.gateway.url

    def client(self, service: str, role_arn: str | None = None) -> Any:
        """A boto3 client on the twin, as the operator or as a role of the app."""
        if role_arn:
            creds = self.principals.credentials(role_arn)
            keys = {
                "aws_access_key_id": creds.access_key_id,
                "aws_secret_access_key": creds.secret_access_key,
                "aws_session_token": creds.session_token,
            }
        else:
            keys = {"aws_access_key_id": "operator", "aws_secret_access_key": "operator"}
        return boto3.client(service, endpoint_url=self.gateway.url, region_name=self.assembly.region, **keys)

    def _publish_assets(self) -> None:
        """Upload file assets to their bootstrap bucket, as ``cdk deploy`` publishes them."""
        for bucket, key, path in self.assembly.file_assets():
            if bucket not in self.s3.backend.buckets:
                self.s3.create_bucket(bucket, versioned=False, eventbridge=False)
            if path.is_file():
                self.s3.backend.put_object(bucket, key, path.read_bytes(), disable_notification=True)

    def _lambda_base_env(self, endpoint: str) -> dict[str, str]:
        return {
            "AWS_ENDPOINT_URL": endpoint,  # every AWS SDK call of a handler goes to the twin
            AWS_REGION: self.assembly.region,
            "AWS_DEFAULT_REGION": self.assembly.region,
            POWERTOOLS_TRACE_DISABLED: "true",  # no X-Ray daemon on the twin
            **self.clock.env(),  # handlers see the twin's timeline (cooldowns, locks, timestamps)
        }

    @property
    def runtime_endpoint(self) -> str:
        return self.gateway.url

    def tick(self) -> None:
        """Advance what runs on the clock: schedules, alarms, capture files."""
        now = self.clock.now()
        self.clock.checkpoint()
        self.bus.fire_schedules(now)
        self.alarms.evaluate(now)
        self.capture.flush()

    def _log_line(self, group: str, stream: str, line: str) -> None:
        """A line a function wrote: into CloudWatch Logs, and its Embedded Metric Format metrics into
        CloudWatch as the line is ingested (stamped with the twin's clock, which may run fast)."""
        self.logs.append(group, stream, line)
        if '"_aws"' in line:
            now = self.clock.now()
            self.metrics.ingest_emf(line, now, override_time=now)

    def _put_capture(self, bucket: str, key: str, body: bytes) -> None:
        # SageMaker writes capture files as the endpoint's model execution role
        roles = self.endpoints.roles if self.endpoints else {}
        role = next((r for name, r in roles.items() if f"/{name}/" in f"/{key}"), None)
        self.client("s3", role).put_object(Bucket=bucket, Key=key, Body=body)

    # -- resources -----------------------------------------------------------------
    def _create_bucket(self, res: Resource) -> None:
        props = self.assembly.resolve(res.properties, res.stack)
        versioned = props.get("VersioningConfiguration", {}).get("Status") == "Enabled"
        notif = props.get("NotificationConfiguration", {})
        eventbridge = bool(notif.get("EventBridgeConfiguration", {}).get("EventBridgeEnabled", False))
        self.s3.create_bucket(res.physical_id, versioned=versioned, eventbridge=eventbridge)

    def _create_function(self, res: Resource, base_env: dict[str, str]) -> None:
        props = self.assembly.resolve(res.properties, res.stack)
        code_dir = self.assembly.asset_dir(res)
        if code_dir is None:
            self.report.unsupported.append((res.path, "AWS::Lambda::Function without a local code asset"))
            return
        layers = []
        for layer_arn in props.get("Layers", []):
            layer = self.assembly.find_by_arn(layer_arn)
            layer_dir = self.assembly.asset_dir(layer) if layer else None
            if layer_dir is None:
                self.report.unsupported.append((res.path, f"layer {layer_arn} (not in the assembly)"))
                continue
            layers.append(layer_dir)
        spec = FunctionSpec(
            name=res.physical_id,
            arn=res.arn,
            handler=props.get("Handler", "index.handler"),
            code_dir=code_dir,
            layer_dirs=layers,
            environment={k: str(v) for k, v in props.get("Environment", {}).get("Variables", {}).items()},
            timeout_s=float(props.get("Timeout", 3)),
            memory_mb=int(props.get("MemorySize", 128)),
            runtime=str(props.get("Runtime", "")),
        )
        role = str(props.get("Role", ""))
        env = {**base_env, **(self.principals.credentials(role).env() if role else {})}
        function = LambdaRuntime(spec, base_env=env, log_dir=self.workdir / "logs")
        for note in function.environment.notes:  # where its environment differs from AWS's
            if note not in self.report.substituted_layers:
                self.report.substituted_layers.append(note)
        function.log_group = str((props.get("LoggingConfig") or {}).get("LogGroup") or function.log_group)
        function.log_sink = self._log_line  # CloudWatch Logs: one stream per worker
        self.functions[res.physical_id] = function

    def _create_state_machine(self, res: Resource) -> None:
        # StateMachineRejected (AWS's InvalidDefinition) stops the start, as it would fail the deploy.
        machine, unsupported = self.stepfunctions.create_from_assembly(self.assembly, res)
        self.report.unsupported_tasks += [(machine.name, state, problem) for state, problem in unsupported]

    def _create_alarm(self, res: Resource) -> None:
        props = self.assembly.resolve(res.properties, res.stack)
        try:
            self.alarms.add(Alarm.from_properties(res.physical_id, res.arn, props))
        except (ValueError, KeyError) as exc:
            self.report.unsupported.append((res.path, f"AWS::CloudWatch::Alarm ({exc})"))

    def _create_rule(self, res: Resource) -> None:
        props = self.assembly.resolve(res.properties, res.stack)
        self.bus.put_rule(Rule.from_properties(res.physical_id, res.arn, props))

    def _alarm_action(self, action: str, alarm: Alarm, message: dict[str, Any]) -> None:
        if action not in self.notifications.topics:
            raise RuntimeError(f"the twin runs alarm actions on its SNS topics only, not {action}")
        subject = f'{alarm.state}: "{alarm.name}" in {self.assembly.region}'[:100]
        self.notifications.publish({"TopicArn": action, "Subject": subject, "Message": json.dumps(message)})

    # -- events ----------------------------------------------------------------------
    def _on_s3_event(self, event: dict[str, Any]) -> None:
        # Called inside the S3 request; S3 delivers events asynchronously, so do we. Counted
        # as pending before the upload returns, so wait_idle() cannot miss it.
        busy = self._busy()
        busy.__enter__()

        def deliver() -> None:
            try:
                self.emit(event)
            finally:
                busy.__exit__()

        threading.Thread(target=deliver, daemon=True).start()

    def _execution_status(self, execution: Execution) -> None:
        """A "Step Functions Execution Status Change" event, as Step Functions sends it to the default bus."""
        detail = {
            "executionArn": execution.arn,
            "stateMachineArn": execution.state_machine_arn,
            "name": execution.name,
            "status": execution.status,
            "startDate": _epoch_ms(execution.start_date),
            "stopDate": _epoch_ms(execution.stop_date) if execution.stop_date else None,
            "input": json.dumps(execution.input),
            "inputDetails": {"included": True},
            "output": json.dumps(execution.output) if execution.status == "SUCCEEDED" else None,
            "outputDetails": {"included": True} if execution.status == "SUCCEEDED" else None,
            "error": execution.error,
            "cause": execution.cause,
        }
        self.emit(
            {
                "version": "0",
                "id": str(uuid.uuid4()),
                "detail-type": "Step Functions Execution Status Change",
                "source": "aws.states",
                "account": self.assembly.account,
                "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "region": self.assembly.region,
                "resources": [execution.arn],
                "detail": detail,
            }
        )

    def emit(self, event: dict[str, Any], bus_name: str = "default") -> None:
        self._record({"kind": "event", "event": event})
        with self._busy():
            self.bus.emit(event, bus_name)

    def _deliver(self, rule: Rule, target: Target, payload: Any) -> None:
        self._record({"kind": "delivery", "rule": rule.name, "target": target.arn})
        self._authorize_delivery(rule, target)
        if target.arn in self.state_machines:
            self.start_execution(target.arn, payload)
        elif target.arn in self.notifications.topics:
            message = payload if isinstance(payload, str) else json.dumps(payload)
            self.notifications.publish({"TopicArn": target.arn, "Message": message})
        elif target.arn.startswith("arn:aws:lambda:"):
            name = target.arn.split(":function:")[1].split(":")[0]
            threading.Thread(target=self.invoke, args=(name, payload), daemon=True).start()
        else:
            raise RuntimeError(f"rule {rule.name}: target {target.arn} is not supported by the twin")

    def _authorize_delivery(self, rule: Rule, target: Target) -> None:
        """A rule starts a state machine as its target's role; it publishes to a topic and invokes a
        function as EventBridge, allowed by the topic's policy or the function's permissions."""
        source = {"aws:SourceArn": rule.arn}
        if target.arn in self.state_machines:
            if not target.role_arn:
                raise RuntimeError(f"rule {rule.name}: a state machine target needs a RoleArn")
            self.iam.authorize_as(target.role_arn, "events-target", "states", {"Arn": target.arn})
        elif target.arn.startswith("arn:aws:sns:"):
            self.iam.authorize_as(EVENTS_SERVICE, "sns", "Publish", {"TopicArn": target.arn}, source)
        elif target.arn.startswith("arn:aws:lambda:"):
            self.iam.authorize_as(EVENTS_SERVICE, "lambda", "Invoke", {"FunctionName": target.arn}, source)

    def _record(self, entry: dict[str, Any]) -> None:
        entry = {"time": time.time(), **entry}
        self._events_log.write(json.dumps(entry, default=str) + "\n")
        self._events_log.flush()

    # -- execution -------------------------------------------------------------------
    def invoke(self, function: str, payload: Any) -> Any:
        name = function.split(":function:")[1].split(":")[0] if ":function:" in function else function
        if name not in self.functions:
            raise KeyError(f"function {function} is not in the assembly")
        with self._busy():
            return self.functions[name].invoke(payload)

    @property
    def state_machines(self) -> dict[str, StateMachine]:
        return self.stepfunctions.machines

    def start_execution(self, arn: str, payload: Any, name: str | None = None) -> Execution:
        """StartExecution (KeyError for a machine not in the assembly), kept in the work directory."""
        return self.stepfunctions.start_execution(arn, payload, name)

    class _Busy:
        def __init__(self, twin: Twin) -> None:
            self.twin = twin

        def __enter__(self) -> None:
            with self.twin._pending_lock:
                self.twin._pending += 1

        def __exit__(self, *exc: object) -> None:
            with self.twin._pending_lock:
                self.twin._pending -= 1
                self.twin._pending_lock.notify_all()

    def _busy(self) -> Twin._Busy:
        return Twin._Busy(self)

    def wait_idle(self, timeout_s: float = 120.0, settle_s: float = 0.3) -> bool:
        """Wait until no event, invocation or execution is in flight (and none starts for settle_s)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._pending_lock:
                while self._pending and time.monotonic() < deadline:
                    self._pending_lock.wait(timeout=0.2)
            time.sleep(settle_s)
            with self._pending_lock:
                if not self._pending:
                    return True
        return False

    def state_machine(self, name_or_arn: str) -> StateMachine:
        return self.stepfunctions.state_machine(name_or_arn)


def _epoch_ms(iso: str | None) -> int | None:
    return int(datetime.fromisoformat(iso).timestamp() * 1000) if iso else None
