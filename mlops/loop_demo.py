"""The second half of ``mlops local demo``: serving, drift, alarm, retrain, canary.

Everything here acts as a user or an application would (boto3 against the twin's S3,
SageMaker and SageMaker Runtime APIs) and reads what happened from the twin's work
directory (executions, events, notifications).
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pandas as pd
from rich.console import Console
from rich.table import Table

from mlops.config import ModelConfig
from mlops.twin import control


def runtime_client(handle: control.TwinHandle) -> Any:
    """boto3 ``sagemaker-runtime`` against the twin's endpoint server."""
    return boto3.client(
        "sagemaker-runtime",
        endpoint_url=handle.endpoint,
        region_name="us-east-1",
        aws_access_key_id="twin",
        aws_secret_access_key="twin",
    )


def feature_frame(frame: pd.DataFrame, config: ModelConfig) -> pd.DataFrame:
    """The columns an application sends: the contract's features, in order."""
    return frame[[c.name for c in config.dataset.features]]


@dataclass
class LoopTimes:
    marks: dict[str, float] = field(default_factory=dict)

    def mark(self, name: str) -> None:
        self.marks[name] = time.monotonic()


def wait_until(check: Callable[[], Any], timeout_s: float, what: str, poll_s: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(poll_s)
    raise control.TwinError(f"timed out after {timeout_s:.0f} s waiting for {what}")


def serving_version(handle: control.TwinHandle, endpoint: str) -> str | None:
    try:
        config = handle.client("sagemaker").describe_endpoint(EndpointName=endpoint)["EndpointConfigName"]
    except Exception:  # not created yet
        return None
    return config.split("-v")[-1].split("-")[0]


def wait_for_deployment(handle: control.TwinHandle, done_before: int, timeout_s: float) -> dict[str, Any]:
    def finished() -> list[dict[str, Any]]:
        ended = [e for e in control.load_executions(handle.workdir, "Deploy") if e["status"] != "RUNNING"]
        return ended if len(ended) > done_before else []

    return sorted(wait_until(finished, timeout_s, "a deployment"), key=lambda e: e["start_date"])[-1]


def show_predictions(console: Console, handle: control.TwinHandle, config: ModelConfig, rows: pd.DataFrame) -> None:
    answer = runtime_client(handle).invoke_endpoint(
        EndpointName=config.name,
        ContentType="text/csv",
        Accept="application/json",
        Body=feature_frame(rows, config).to_csv(header=False, index=False),
    )
    predictions = json.loads(answer["Body"].read())["predictions"]
    variant = answer["ResponseMetadata"]["HTTPHeaders"].get("x-amzn-invoked-production-variant", "?")
    table = Table(title=f"InvokeEndpoint {config.name} (variant {variant})", header_style="bold")
    shown = [c.name for c in config.dataset.features][:3]
    for col in [*shown, "prediction", "probabilities"]:
        table.add_column(col)
    for (_, row), p in zip(rows.iterrows(), predictions, strict=False):
        probs = p.get("probabilities")
        table.add_row(
            *(str(row[c]) for c in shown),
            str(p.get("label", p.get("prediction"))),
            ", ".join(f"{k}: {v:.3f}" for k, v in probs.items()) if probs else "",
        )
    console.print(table)


def drive_drift(
    console: Console, handle: control.TwinHandle, config: ModelConfig, drifted: pd.DataFrame, timeout_s: float
) -> dict[str, Any]:
    """Send drifted traffic until the drift alarm has retrained and a new version is deployed."""
    runtime = runtime_client(handle)
    features = feature_frame(drifted, config)
    deployed_before = len([e for e in control.load_executions(handle.workdir, "Deploy") if e["status"] != "RUNNING"])
    seen: set[str] = set()
    _new_lines(handle.workdir / "notifications.jsonl", seen)  # only what happens from here on
    sent = 0
    deadline = time.monotonic() + timeout_s
    with console.status("sending drifted traffic to the endpoint...") as status:
        while time.monotonic() < deadline:
            start = (sent * 25) % max(len(features) - 25, 1)
            runtime.invoke_endpoint(
                EndpointName=config.name,
                ContentType="text/csv",
                Body=features.iloc[start : start + 25].to_csv(header=False, index=False),
            )
            sent += 25
            for line in _new_lines(handle.workdir / "notifications.jsonl", seen):
                console.print(f"  [cyan]SNS[/] {json.loads(line)['message']}")
            for change in _alarm_changes(handle.workdir, config.name, seen):
                console.print(f"  [yellow]alarm[/] {change}")
            status.update(f"sent {sent:,} drifted rows; waiting for drift alarm → retrain → canary deployment")
            ended = [e for e in control.load_executions(handle.workdir, "Deploy") if e["status"] != "RUNNING"]
            if len(ended) > deployed_before:
                return sorted(ended, key=lambda e: e["start_date"])[-1]
            time.sleep(0.1)
    raise control.TwinError(f"no new deployment within {timeout_s:.0f} s of drifted traffic")


def _new_lines(path: Path, seen: set[str]) -> list[str]:
    if not path.is_file():
        return []
    fresh = [line for line in path.read_text().splitlines() if line and line not in seen]
    seen.update(fresh)
    return fresh


def alarm_history(workdir: Path, model: str) -> list[dict[str, Any]]:
    path = workdir / "events.jsonl"
    if not path.is_file():
        return []
    changes = []
    for line in path.read_text().splitlines():
        entry = json.loads(line)
        event = entry.get("event") or {}
        if entry.get("kind") == "event" and event.get("detail-type") == "CloudWatch Alarm State Change":
            detail = event["detail"]
            if f"-{model}-" in detail["alarmName"]:
                changes.append(
                    {
                        "time": event.get("time"),
                        "alarm": detail["alarmName"],
                        "from": detail["previousState"]["value"],
                        "to": detail["state"]["value"],
                        "reason": detail["state"].get("reason", ""),
                    }
                )
    return changes


def _alarm_changes(workdir: Path, model: str, seen: set[str]) -> list[str]:
    lines = []
    for change in alarm_history(workdir, model):
        text = f"{change['alarm']}: {change['from']} → {change['to']}"
        key = f"{change['time']} {text}"
        if change["to"] == "ALARM" and key not in seen:
            seen.add(key)
            lines.append(f"{text} ({change['reason'][:120]})")
    return lines


def alarm_table(workdir: Path, model: str) -> Table:
    table = Table(title=f"alarm history of {model}", header_style="bold")
    for col in ("time", "alarm", "from", "to", "reason"):
        table.add_column(col)
    for change in alarm_history(workdir, model):
        if change["from"] != "INSUFFICIENT_DATA" or change["to"] != "OK":
            table.add_row(change["time"], change["alarm"], change["from"], change["to"], change["reason"][:90])
    return table


def times_table(times: LoopTimes) -> Table:
    table = Table(title="how long each stage took (wall clock on this machine)", header_style="bold")
    table.add_column("stage")
    table.add_column("seconds", justify="right")
    names = list(times.marks)
    for before, after in itertools.pairwise(names):
        table.add_row(f"{before} → {after}", f"{times.marks[after] - times.marks[before]:.1f}")
    if names:
        table.add_row("[bold]total", f"[bold]{times.marks[names[-1]] - times.marks[names[0]]:.1f}")
    return table
