"""The twin: the synthesized assembly brought to life on 127.0.0.1.

Built only from the templates in ``cdk.out``: buckets become buckets in the S3
service, rules go onto the event bus with their real patterns and targets, state
machines run their real definitions in the ASL engine, and Lambda functions run
their handlers from their code assets. Nothing here knows what the app's stacks
contain, so a change to the stack code changes what the twin runs.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from moto.s3.models import s3_backends
from moto.sagemaker.models import sagemaker_backends
from moto.server import create_backend_app

from mlops.twin.assembly import Assembly, Resource
from mlops.twin.awslambda.runtime import FunctionSpec, LambdaRuntime
from mlops.twin.clock import TwinClock
from mlops.twin.cloudwatch.alarms import Alarm, AlarmEvaluator, MetricStore
from mlops.twin.events.bus import EventBus, Rule, Target
from mlops.twin.gateway import Gateway
from mlops.twin.iam import Principals
from mlops.twin.s3.service import S3Service
from mlops.twin.sagemaker.endpoints import EndpointManager
from mlops.twin.sagemaker.jobs import JobRunner
from mlops.twin.sagemaker.registry import Registry
from mlops.twin.sagemaker.runtime_api import RuntimeApi
from mlops.twin.sagemaker.serving import CaptureWriter, EndpointRuntime
from mlops.twin.sns.topics import Notifications
from mlops.twin.stepfunctions.asl import AslEngine, Execution
from mlops.twin.stepfunctions.tasks import TaskDispatcher, is_supported_task

log = logging.getLogger("mlops.twin")

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
}
# Resources that exist in AWS but have no behaviour to reproduce here; listed at start.
INERT = {
    "AWS::IAM::Role": "IAM is not enforced on the twin",
    "AWS::IAM::Policy": "IAM is not enforced on the twin",
    "AWS::IAM::ManagedPolicy": "IAM is not enforced on the twin",
    "AWS::KMS::Key": "objects are stored unencrypted on the twin",
    "AWS::KMS::Alias": "objects are stored unencrypted on the twin",
    "AWS::S3::BucketPolicy": "bucket policies are not enforced on the twin",
    "AWS::Logs::LogGroup": "logs are written under <workdir>/logs",
    "AWS::SQS::Queue": "dead-letter queue: failed deliveries are kept in <workdir>/events.jsonl",
    "AWS::SQS::QueuePolicy": "queue policies are not enforced on the twin",
    "AWS::Lambda::Permission": "resource policies are not enforced on the twin",
    "AWS::CDK::Metadata": "CDK metadata only",
    "AWS::SNS::TopicPolicy": "topic policies are not enforced on the twin",
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


@dataclass(frozen=True)
class StateMachine:
    name: str
    arn: str
    definition: dict[str, Any]
    path: str


def _task_resources(states: dict[str, Any]) -> list[tuple[str, str]]:
    """Every (state name, Resource) of Task states, including inside Parallel and Map."""
    found = []
    for name, state in states.items():
        if state.get("Type") == "Task":
            found.append((name, state.get("Resource", "")))
        for branch in state.get("Branches", []):
            found += _task_resources(branch.get("States", {}))
        processor = state.get("ItemProcessor") or state.get("Iterator")
        if processor:
            found += _task_resources(processor.get("States", {}))
    return found


class Twin:
    def __init__(self, cdk_out: str | Path, workdir: str | Path, *, port: int = 0, time_scale: float = 1.0) -> None:
        self.assembly = Assembly(cdk_out)
        self.workdir = Path(workdir).resolve()  # jobs and workers run in other directories
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "logs").mkdir(exist_ok=True)
        self.principals = Principals(self.assembly.account)
        self.gateway = Gateway(self.principals, port=port)
        self.s3 = S3Service(self.workdir, self._on_s3_event, account=self.assembly.account)
        self.bus = EventBus(self._deliver, account=self.assembly.account, region=self.assembly.region)
        self.dispatcher = TaskDispatcher(self)
        self.engine = AslEngine(self.dispatcher, time_scale=time_scale)
        self.clock = TwinClock(time_scale)
        self.metrics = MetricStore()
        self.alarms = AlarmEvaluator(self.metrics, self.emit, self.assembly.account, self.assembly.region)
        self.capture = CaptureWriter(self._put_capture)
        self.endpoint_runtime = EndpointRuntime(self.metrics, self.capture, clock=self.clock.now)
        self.endpoints: EndpointManager | None = None
        self.notifications = Notifications(self.workdir / "notifications.jsonl")
        self._log_offsets: dict[Path, int] = {}
        self.registry = Registry(self.assembly.account, self.assembly.region, self.emit)
        self.jobs: JobRunner | None = None
        self.state_machines: dict[str, StateMachine] = {}
        self.functions: dict[str, LambdaRuntime] = {}
        self.report = StartReport()
        self._pending = 0
        self._pending_lock = threading.Condition()
        self._events_log = (self.workdir / "events.jsonl").open("a", encoding="utf-8")

    # -- lifecycle -------------------------------------------------------------------
    def start(self) -> StartReport:
        self._reset_moto()
        self.s3.start()
        self.gateway.mount_wsgi("s3", self.s3.app)
        # moto keeps the SageMaker control plane's and Application Auto Scaling's records
        self.gateway.mount_wsgi("sagemaker", create_backend_app("sagemaker"))
        self.gateway.mount_wsgi("application-autoscaling", create_backend_app("application-autoscaling"))
        self.gateway.mount_wsgi("sagemaker-runtime", RuntimeApi(self.endpoint_runtime))
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
            self.client("s3"), self.workdir / "sagemaker", self.assembly.account, self.assembly.region
        )
        self.endpoints = EndpointManager(
            account=self.assembly.account,
            region=self.assembly.region,
            s3=self.client("s3"),
            runtime=self.endpoint_runtime,
            alarms=self.alarms,
            workdir=self.workdir,
            time_scale=self.clock.time_scale,
            clock=self.clock.now,
        )
        self.endpoints.install()
        for res in self.assembly.resources("AWS::CloudWatch::Alarm"):
            self._create_alarm(res)
        for res in self.assembly.resources("AWS::SNS::Topic"):
            self.notifications.add_topic(res.arn)
        base_env = self._lambda_base_env(endpoint)
        for res in self.assembly.resources("AWS::Lambda::Function"):
            self._create_function(res, base_env)
        for res in self.assembly.resources("AWS::StepFunctions::StateMachine"):
            self._create_state_machine(res)
        for res in self.assembly.resources("AWS::Events::Rule"):
            self._create_rule(res)
        for problem in self.report.unsupported:
            log.warning("unsupported resource %s (%s): not run by the twin", *problem)
        for machine, state, resource in self.report.unsupported_tasks:
            log.warning("state machine %s, state %s: Task resource %s is not supported", machine, state, resource)
        return self.report

    def _reset_moto(self) -> None:
        """Start from empty S3 and SageMaker backends (objects are restored from the work dir).

        moto's backends are process-wide: a twin started in a process where another one ran
        (tests do this) would otherwise see that twin's buckets, packages and endpoints.
        """
        s3_backends[self.assembly.account]["aws"].reset()
        sagemaker_backends[self.assembly.account][self.assembly.region].reset()

    def stop(self) -> None:
        if self.jobs is not None:
            self.jobs.stop_all()
        for fn in self.functions.values():
            fn.close()
        self.capture.flush()
        self.gateway.stop()
        self.s3.stop()
        self._events_log.close()

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
            "AWS_REGION": self.assembly.region,
            "AWS_DEFAULT_REGION": self.assembly.region,
            "POWERTOOLS_TRACE_DISABLED": "true",  # no X-Ray daemon on the twin
        }

    @property
    def runtime_endpoint(self) -> str:
        return self.gateway.url

    def tick(self) -> None:
        """Advance what runs on the clock: schedules, EMF metrics from logs, alarms, capture files."""
        now = self.clock.now()
        self._ingest_logs(now)
        self.bus.fire_schedules(now)
        self.alarms.evaluate(now)
        self.capture.flush()

    def _ingest_logs(self, now: float) -> None:
        # Powertools Metrics writes EMF to the function's log, as CloudWatch Logs would ingest it.
        for path in (self.workdir / "logs").glob("*.log"):
            start = self._log_offsets.get(path, 0)
            size = path.stat().st_size
            if size <= start:
                continue
            with path.open("rb") as f:
                f.seek(start)
                chunk = f.read(size - start)
            complete = chunk.rfind(b"\n") + 1
            self._log_offsets[path] = start + complete
            for line in chunk[:complete].decode("utf-8", errors="replace").splitlines():
                if '"_aws"' in line:
                    self.metrics.ingest_emf(line, now, override_time=now)

    def _put_capture(self, bucket: str, key: str, body: bytes) -> None:
        self.client("s3").put_object(Bucket=bucket, Key=key, Body=body)

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
            if (layer_dir / "mlops-deps-layer.txt").exists():
                self.report.substituted_layers.append(f"{layer.path}: the host's installed packages stand in")
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
        self.functions[res.physical_id] = LambdaRuntime(spec, base_env=env, log_dir=self.workdir / "logs")

    def _create_state_machine(self, res: Resource) -> None:
        props = self.assembly.resolve(res.properties, res.stack)
        definition = props.get("DefinitionString") or json.dumps(props.get("Definition", {}))
        for key, value in props.get("DefinitionSubstitutions", {}).items():
            definition = definition.replace("${" + key + "}", str(value))
        parsed = json.loads(definition)
        machine = StateMachine(res.physical_id, res.arn, parsed, res.path)
        for problem in self.engine.validate(parsed):
            self.report.unsupported_tasks.append((res.physical_id, "(definition)", problem))
        for state, resource in _task_resources(parsed.get("States", {})):
            if not is_supported_task(resource):
                self.report.unsupported_tasks.append((res.physical_id, state, resource))
        self.state_machines[res.arn] = machine

    def _create_alarm(self, res: Resource) -> None:
        props = self.assembly.resolve(res.properties, res.stack)
        try:
            self.alarms.add(Alarm.from_properties(res.physical_id, res.arn, props))
        except (ValueError, KeyError) as exc:
            self.report.unsupported.append((res.path, f"AWS::CloudWatch::Alarm ({exc})"))

    def _create_rule(self, res: Resource) -> None:
        props = self.assembly.resolve(res.properties, res.stack)
        targets = [
            Target(
                id=t.get("Id", ""),
                arn=t["Arn"],
                input=t.get("Input"),
                input_path=t.get("InputPath"),
                input_transformer=t.get("InputTransformer"),
            )
            for t in props.get("Targets", [])
        ]
        bus = props.get("EventBusName", "default")
        rule = Rule(
            name=res.physical_id,
            arn=res.arn,
            bus_name=bus.rsplit("/", 1)[-1] if isinstance(bus, str) else "default",
            event_pattern=props.get("EventPattern"),
            schedule_expression=props.get("ScheduleExpression"),
            state=props.get("State", "ENABLED"),
            targets=targets,
        )
        self.bus.put_rule(rule)

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

    def emit(self, event: dict[str, Any]) -> None:
        self._record({"kind": "event", "event": event})
        with self._busy():
            self.bus.emit(event)

    def _deliver(self, rule: Rule, target: Target, payload: Any) -> None:
        self._record({"kind": "delivery", "rule": rule.name, "target": target.arn})
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

    def start_execution(self, arn: str, payload: Any, name: str | None = None) -> Execution:
        machine = self.state_machines.get(arn)
        if machine is None:
            raise KeyError(f"state machine {arn} is not in the assembly")
        with self._pending_lock:
            self._pending += 1
        execution = self.engine.start_execution(arn, machine.definition, payload, name or str(uuid.uuid4()))
        self._save(execution)
        threading.Thread(target=self._finish, args=(execution,), daemon=True).start()
        return execution

    def _finish(self, execution: Execution) -> None:
        try:
            execution.wait()
            self._save(execution)
        finally:
            with self._pending_lock:
                self._pending -= 1
                self._pending_lock.notify_all()

    def _save(self, execution: Execution) -> None:
        machine = execution.state_machine_arn.rsplit(":", 1)[-1]
        path = self.workdir / "executions" / machine / f"{execution.name}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(execution.to_dict(), default=str, indent=1))
        tmp.replace(path)

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
        for machine in self.state_machines.values():
            if name_or_arn in (machine.arn, machine.name) or machine.path.startswith(name_or_arn + "/"):
                return machine
        raise KeyError(f"no state machine {name_or_arn!r}; known: {[m.name for m in self.state_machines.values()]}")
