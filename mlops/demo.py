"""``mlops local demo``: the whole loop on the twin, told as it happens, repeatable.

Everything here acts as a user or an application would, through the AWS APIs at the
twin's one URL (S3, Step Functions, SageMaker and its runtime, CloudWatch): uploads,
then it watches what the app does with them. Every wait watches for the outcomes that
end the story (a quarantine, a training that is skipped or rejected, a failed or rolled
back deployment, a retrain that is not needed) and stops within seconds with the reason
and what to try next, as a :class:`DemoFailed`.

**Runs continue the story.** The first run in a work directory deploys version 1 and
retrains it on drifted traffic into version 2. Each later run uploads a new dataset
(trained and gated against the serving champion), then labels new drifted traffic so
the drift alarm has something new to retrain on: every run ends with a newer version
serving. A run killed at any step leaves nothing that blocks the next: the twin fails
executions a dead twin left running and frees their locks, and the next run waits out
what must be waited out (a running training, the retrain cooldown, an alarm still in
ALARM from the last run) and says so. ``mlops local reset`` starts over.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pandas as pd
from botocore.exceptions import ClientError
from rich.console import Console
from rich.table import Table

from mlops.config import ModelConfig
from mlops.core.capture import GROUND_TRUTH_PREFIX
from mlops.naming import ALARM_KINDS, alarm_name, endpoint_name
from mlops.platform import Platform
from mlops.twin import control

POLL_S = 0.5

# deploy executions that end without deploying anything to report: a duplicate event, or a
# package a newer one superseded while it waited for the endpoint
NOT_DEPLOYED = ("NothingToDeploy", "DeploymentSuperseded")


class DemoFailed(RuntimeError):
    """An outcome that ends the story: what happened and what to try next."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.hint = hint


def runtime_client(handle: control.TwinHandle) -> Any:
    """boto3 ``sagemaker-runtime`` on the twin's URL, as an application would use it."""
    return boto3.client(
        "sagemaker-runtime",
        endpoint_url=handle.endpoint,
        region_name="us-east-1",
        aws_access_key_id="operator",
        aws_secret_access_key="operator",
    )


def feature_frame(frame: pd.DataFrame, config: ModelConfig) -> pd.DataFrame:
    """The columns an application sends: the contract's features, in order."""
    return frame[[c.name for c in config.dataset.features]]


def wait_until(check: Callable[[], Any], timeout_s: float, what: str, poll_s: float = POLL_S) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(poll_s)
    raise control.TwinError(f"timed out after {timeout_s:.0f} s waiting for {what}")


def serving_version(platform: Platform, endpoint: str) -> str | None:
    """The model version an endpoint serves (its config is named ``<model>-v<version>-...``)."""
    try:
        config = platform.client("sagemaker").describe_endpoint(EndpointName=endpoint)["EndpointConfigName"]
    except ClientError:
        return None
    return config.split("-v")[-1].split("-")[0]


# -- executions, through the Step Functions API ------------------------------------------------
@dataclass
class Run:
    """One ended (or running) execution, with where it ended and what it returned."""

    kind: str
    arn: str
    name: str
    status: str
    started: datetime
    stopped: datetime | None
    input: dict[str, Any]
    output: dict[str, Any]
    end_state: str = ""
    error: str = ""
    cause: str = ""

    @property
    def seconds(self) -> float:
        return ((self.stopped or datetime.now(UTC)) - self.started).total_seconds()


class Executions:
    """The executions of one of the app's state machines started since a moment."""

    def __init__(self, platform: Platform, kind: str, since: datetime) -> None:
        self.platform = platform
        self.kind = kind
        self.arn = platform.state_machine(kind)
        self.since = since - timedelta(seconds=1)
        self._inputs: dict[str, dict[str, Any]] = {}
        self._ended: dict[str, Run] = {}

    def _sfn(self) -> Any:
        return self.platform.client("stepfunctions")

    def all(self) -> list[Run]:
        """Newest first; ended ones described once."""
        page = self._sfn().list_executions(stateMachineArn=self.arn, maxResults=100)["executions"]
        runs = []
        for item in page:
            if item["startDate"] < self.since:
                continue
            arn = item["executionArn"]
            if arn in self._ended:
                runs.append(self._ended[arn])
                continue
            if arn not in self._inputs:
                described = self._sfn().describe_execution(executionArn=arn)
                self._inputs[arn] = _json(described.get("input"))
            run = Run(
                self.kind, arn, item["name"], item["status"], item["startDate"], item.get("stopDate"),
                self._inputs[arn], {},
            )  # fmt: skip
            if run.status != "RUNNING":
                self._describe_end(run)
                self._ended[arn] = run
            runs.append(run)
        return runs

    def _describe_end(self, run: Run) -> None:
        described = self._sfn().describe_execution(executionArn=run.arn)
        run.output = _json(described.get("output")) or {}
        run.error, run.cause = described.get("error", ""), described.get("cause", "")
        events = self._sfn().get_execution_history(executionArn=run.arn, reverseOrder=True, maxResults=50)["events"]
        run.end_state = next(
            (e["stateEnteredEventDetails"]["name"] for e in events if e["type"].endswith("StateEntered")), ""
        )

    def ended(self, match: Callable[[Run], bool] = lambda run: True) -> list[Run]:
        return [r for r in self.all() if r.status != "RUNNING" and match(r)]


def _json(text: str | None) -> Any:
    try:
        return json.loads(text) if text else {}
    except ValueError:
        return {}


def _mentions(run: Run, text: str) -> bool:
    return text in json.dumps(run.input)


# -- the story -----------------------------------------------------------------------------------
@dataclass
class Times:
    marks: dict[str, float] = field(default_factory=dict)

    def mark(self, name: str) -> None:
        self.marks[name] = time.monotonic()

    def table(self) -> Table:
        table = Table(title="how long each stage took (wall clock on this machine)", header_style="bold")
        table.add_column("stage")
        table.add_column("seconds", justify="right")
        names = list(self.marks)
        for before, after in itertools.pairwise(names):
            table.add_row(f"{before} → {after}", f"{self.marks[after] - self.marks[before]:.1f}")
        if names:
            table.add_row("[bold]total", f"[bold]{self.marks[names[-1]] - self.marks[names[0]]:.1f}")
        return table


class Story:
    """The demo's steps against a running twin; each returns or raises DemoFailed."""

    def __init__(self, console: Console, handle: control.TwinHandle, config: ModelConfig, timeout_s: float) -> None:
        self.console = console
        self.handle = handle
        self.platform = Platform.twin(handle.endpoint)
        self.config = config
        self.model = config.name
        self.timeout_s = timeout_s
        self.began = self.now()

    # -- what came before ------------------------------------------------------------------
    def versions(self) -> list[dict[str, Any]]:
        from mlops.services.registry import RegistryClient

        registry = RegistryClient(self.platform.client("sagemaker"), self.platform.client("s3"))
        try:
            return registry.versions(self.model)
        except ClientError:
            return []

    def serving(self) -> str | None:
        return serving_version(self.platform, endpoint_name(self.model))

    def now(self) -> datetime:
        """The twin's time, which alarm and metric times are on (ahead of the wall clock);
        execution dates are wall-clock times."""
        return datetime.fromtimestamp(control.twin_now(self.handle.workdir), UTC)

    # -- validation --------------------------------------------------------------------------
    def validations(self, keys: dict[str, str], since: datetime) -> dict[str, Run]:
        watch = Executions(self.platform, "validation", since)
        found: dict[str, Run] = {}

        def done() -> bool:
            for label, key in keys.items():
                ended = watch.ended(lambda r, key=key: _mentions(r, key))
                if ended and label not in found:
                    found[label] = ended[0]
            return len(found) == len(keys)

        self._wait(done, "the validation executions", "validation")
        return found

    # -- training ------------------------------------------------------------------------------
    def training_of(self, dataset_version: str, since: datetime) -> Run:
        """The run that trained this dataset (a queued one waits for its follow-up run)."""
        watch = Executions(self.platform, "training", since)
        queued = False

        def ended() -> Run | None:
            nonlocal queued
            for run in watch.ended():
                trained = json.dumps(run.output)
                if run.end_state == "TrainingQueued" and _mentions(run, dataset_version):
                    if not queued:
                        self.console.print(
                            "  [dim]another training holds the lock: this dataset is queued; "
                            "its follow-up run starts when that one ends[/]"
                        )
                    queued = True
                    continue
                if dataset_version in trained or (
                    _mentions(run, dataset_version) and run.end_state != "TrainingQueued"
                ):
                    return run
            return None

        run = self._wait(ended, f"the training of dataset {dataset_version}", "training")
        if run.end_state in ("ModelRegistered", "CandidateRejected"):
            return run
        raise DemoFailed(
            f"training ended in {run.end_state or run.status}: {reason(run)}",
            f"the whole story: mlops executions {run.name}",
        )

    # -- deployment ------------------------------------------------------------------------------
    def deployment(self, since: datetime) -> Run:
        watch = Executions(self.platform, "deploy", since)
        run = self._wait(lambda: next(iter(watch.ended(lambda r: r.end_state not in NOT_DEPLOYED)), None),
                         "a deployment", "deploy")  # fmt: skip
        if run.end_state == "ModelDeployed":
            return run
        raise DemoFailed(
            f"deployment ended in {run.end_state or run.status}: {reason(run)}",
            f"the whole story: mlops executions {run.name}; endpoints and alarms: mlops status",
        )

    # -- drift ---------------------------------------------------------------------------------------
    def alarm_state(self, kind: str) -> str:
        name = alarm_name(self.model, kind)
        found = self.platform.client("cloudwatch").describe_alarms(AlarmNames=[name])["MetricAlarms"]
        return found[0]["StateValue"] if found else "missing"

    def wait_for_calm(self, normal: pd.DataFrame) -> None:
        """An alarm still in ALARM from the last run cannot fire again: normal traffic until it is OK."""
        if self.alarm_state("drift") != "ALARM":
            return
        self.console.print("  the drift alarm is still in ALARM from the last run; normal traffic until it is OK")
        runtime = runtime_client(self.handle)
        body = feature_frame(normal, self.config)

        def calm() -> bool:
            start = int(time.monotonic() * 10) % max(len(body) - 25, 1)
            runtime.invoke_endpoint(
                EndpointName=self.model, ContentType="text/csv",
                Body=body.iloc[start : start + 25].to_csv(header=False, index=False),
            )  # fmt: skip
            return self.alarm_state("drift") != "ALARM"

        self._wait(calm, "the drift alarm to return to OK", "alarm", poll_s=0.2)

    def wait_for_cooldown(self) -> None:
        """The last retrain's cooldown must be over before drift can retrain (it runs on the twin's clock)."""
        s3 = self.platform.client("s3")
        try:
            body = s3.get_object(Bucket=self.platform.bucket("artifacts"), Key=f"monitoring/{self.model}/retrain.json")
        except ClientError:
            return
        claim = json.loads(body["Body"].read())
        scale = float(self.handle.state.get("time_scale", 1.0))
        left_twin = (
            float(claim["started_at"])
            + self.config.monitoring.retrain_cooldown_minutes * 60
            - control.twin_now(self.handle.workdir)
        )
        if left_twin <= 0:
            return
        left = left_twin * scale
        self.console.print(
            f"  the last retrain started {claim.get('started', '')[:19]}; its cooldown "
            f"({self.config.monitoring.retrain_cooldown_minutes} twin minutes) ends in {left:.0f} s at this time scale"
        )
        if left > self.timeout_s:
            raise DemoFailed(
                f"the retrain cooldown has {left:.0f} s left, longer than the demo waits ({self.timeout_s:.0f} s)",
                "run the demo again later, or start over with `mlops local reset`",
            )
        time.sleep(left + 1)

    def send_labelled(self, frame: pd.DataFrame, tag: str) -> None:
        """Each row as its own request with an InferenceId, then its ground truth: new labelled data."""
        runtime = runtime_client(self.handle)
        features = feature_frame(frame, self.config)
        for i in range(len(frame)):
            runtime.invoke_endpoint(
                EndpointName=self.model, ContentType="text/csv", InferenceId=f"{tag}-{i}",
                Body=features.iloc[i : i + 1].to_csv(header=False, index=False),
            )  # fmt: skip
        target = self.config.dataset.target
        truth = pd.DataFrame({"inference_id": [f"{tag}-{i}" for i in range(len(frame))], target: frame[target]})
        key = f"{GROUND_TRUTH_PREFIX}/{self.model}/{tag}.csv"
        self.platform.client("s3").put_object(
            Bucket=self.platform.bucket("incoming"), Key=key, Body=truth.to_csv(index=False).encode()
        )
        self.console.print(
            f"  {len(frame)} drifted requests with inference ids, and their labels in "
            f"s3://{self.platform.bucket('incoming')}/{key}"
        )

    def drift(self, drifted: pd.DataFrame, since: datetime) -> tuple[Run, Run]:
        """Drifted traffic until the alarm has retrained the model and the new version is deployed."""
        runtime = runtime_client(self.handle)
        features = feature_frame(drifted, self.config)
        trainings = Executions(self.platform, "training", since)
        deploys = Executions(self.platform, "deploy", since)
        history = AlarmHistory(self.platform, self.model, self.now())
        notes = Notifications(self.handle.workdir)
        retrain: Run | None = None
        noted: set[str] = set()
        sent = 0
        deadline = time.monotonic() + self.timeout_s
        with self.console.status("sending drifted traffic to the endpoint...") as status:
            while time.monotonic() < deadline:
                start = (sent * 25) % max(len(features) - 25, 1)
                runtime.invoke_endpoint(
                    EndpointName=self.model, ContentType="text/csv",
                    Body=features.iloc[start : start + 25].to_csv(header=False, index=False),
                )  # fmt: skip
                sent += 1
                for line in notes.new():
                    self.console.print(f"  [cyan]SNS[/] {line}")
                for change in history.new():
                    self.console.print(f"  [yellow]alarm[/] {change}")
                if retrain is None:
                    alarm_runs = [r for r in trainings.all() if r.input.get("trigger") == "alarm"]
                    for run in (r for r in alarm_runs if r.status != "RUNNING"):
                        if run.end_state in ("RetrainNotNeeded", "TrainingSkipped") and _another_retrain(
                            run, alarm_runs
                        ):
                            if run.arn not in noted:  # two alarms of one episode: the other one retrains
                                noted.add(run.arn)
                                self.console.print(f"  [dim]{run.name} ended {run.end_state} ({reason(run)})[/]")
                            continue
                        if run.end_state in ("RetrainNotNeeded", "TrainingSkipped", "CandidateRejected"):
                            raise DemoFailed(
                                f"the alarm's retrain ended in {run.end_state}: {reason(run)}",
                                f"the whole story: mlops executions {run.name}",
                            )
                        if run.end_state == "ModelRegistered":
                            retrain = run
                            self.console.print(f"  [green]retrained[/]: {run.name} registered a new version")
                        elif run.status != "SUCCEEDED":
                            raise DemoFailed(
                                f"the alarm's retrain failed: {reason(run)}", f"mlops executions {run.name}"
                            )
                else:
                    for run in deploys.ended(lambda r: r.end_state not in NOT_DEPLOYED):
                        if run.end_state != "ModelDeployed":
                            raise DemoFailed(
                                f"the canary deployment ended in {run.end_state or run.status}: {reason(run)}",
                                f"the whole story: mlops executions {run.name}",
                            )
                        return retrain, run
                status.update(f"sent {sent * 25:,} drifted rows; waiting for drift alarm → retrain → canary deployment")
                time.sleep(0.1)
        running = [r.name for r in trainings.all() + deploys.all() if r.status == "RUNNING"]
        raise DemoFailed(
            f"no new deployment within {self.timeout_s:.0f} s of drifted traffic"
            + (f" (still running: {', '.join(running)})" if running else ""),
            "alarms: mlops status; runs: mlops executions",
        )

    # -- waiting ----------------------------------------------------------------------------------------
    def _wait(self, check: Callable[[], Any], what: str, kind: str, poll_s: float = POLL_S) -> Any:
        deadline = time.monotonic() + self.timeout_s
        while time.monotonic() < deadline:
            found = check()
            if found:
                return found
            time.sleep(poll_s)
        raise DemoFailed(
            f"timed out after {self.timeout_s:.0f} s waiting for {what}",
            f"what ran: mlops executions --machine {kind}; the twin's log: {self.handle.workdir / 'logs'}",
        )


def _another_retrain(skipped: Run, alarm_runs: list[Run]) -> bool:
    """Whether another alarm's retrain goes on (or has registered) while this one was skipped."""
    return any(r.arn != skipped.arn and (r.status == "RUNNING" or r.end_state == "ModelRegistered") for r in alarm_runs)


def reason(run: Run) -> str:
    """Why a run ended as it did, from its output (the app's own words) or its error."""
    out = run.output or {}
    for path in (("run", "reason"), ("reason",), ("gate", "reasons"), ("result", "message")):
        value: Any = out
        for part in path:
            value = value.get(part) if isinstance(value, dict) else None
        if value:
            return value if isinstance(value, str) else "; ".join(map(str, value))
    return f"{run.error}: {run.cause[:400]}" if run.error else run.status


class AlarmHistory:
    """New state changes of the model's alarms, through DescribeAlarmHistory."""

    def __init__(self, platform: Platform, model: str, since: datetime) -> None:
        self.platform, self.model, self.since = platform, model, since
        self._seen: set[str] = set()

    def items(self) -> list[dict[str, Any]]:
        cloudwatch = self.platform.client("cloudwatch")
        found = [
            item
            for kind in ALARM_KINDS  # DescribeAlarmHistory takes one alarm name (or none), no prefix
            for item in cloudwatch.describe_alarm_history(
                AlarmName=alarm_name(self.model, kind), HistoryItemType="StateUpdate", StartDate=self.since,
                MaxRecords=100,
            )["AlarmHistoryItems"]
        ]  # fmt: skip
        return sorted(found, key=lambda i: i["Timestamp"])

    def new(self) -> list[str]:
        lines = []
        for item in self.items():
            key = f"{item['AlarmName']} {item['Timestamp'].isoformat()}"
            if key in self._seen:
                continue
            self._seen.add(key)
            data = _json(item.get("HistoryData"))
            old, new = data.get("oldState", {}).get("stateValue"), data.get("newState", {}).get("stateValue")
            if new == "ALARM" or old == "ALARM":
                lines.append(f"{item['AlarmName']}: {old} → {new} ({item.get('HistorySummary', '')[:100]})")
        return lines

    def table(self) -> Table:
        table = Table(title=f"alarm history of {self.model} (this run)", header_style="bold")
        for col in ("time", "alarm", "summary"):
            table.add_column(col)
        for item in self.items():
            if "INSUFFICIENT_DATA to OK" not in item.get("HistorySummary", ""):
                table.add_row(str(item["Timestamp"])[:19], item["AlarmName"], item.get("HistorySummary", "")[:90])
        return table


class Notifications:
    """New SNS messages, as the twin records them."""

    def __init__(self, workdir: Path) -> None:
        self.path = workdir / "notifications.jsonl"
        self._offset = self.path.stat().st_size if self.path.is_file() else 0

    def new(self) -> list[str]:
        if not self.path.is_file():
            return []
        with self.path.open("rb") as f:
            f.seek(self._offset)
            chunk = f.read()
        complete = chunk.rfind(b"\n") + 1
        self._offset += complete
        out = []
        for line in chunk[:complete].decode(errors="replace").splitlines():
            try:
                out.append(str(json.loads(line).get("message", line))[:200])
            except ValueError:
                continue
        return out
