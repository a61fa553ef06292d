"""The app's state machine executions, read through the Step Functions API (twin or AWS).

What an operator asks: which runs happened, which failed, in which state and why, and
for one run the whole path with the time each state took, its input, output, error and
cause, and the S3 objects it points at (reports, validated data, quarantine).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from mlops.platform import Platform

ENDED = ("SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED")
S3_URI = re.compile(r"s3://[A-Za-z0-9.\-_]+/[^\s\"']+")


@dataclass
class ExecutionSummary:
    kind: str  # validation, training, deploy
    name: str
    arn: str
    status: str
    start: datetime
    stop: datetime | None
    error: str = ""
    cause: str = ""
    failed_state: str = ""

    @property
    def seconds(self) -> float | None:
        return (self.stop - self.start).total_seconds() if self.stop else None


@dataclass
class StateRun:
    name: str
    entered: datetime
    exited: datetime | None = None
    failed: str = ""  # the error of the state's last failed attempt, if any
    failures: int = 0  # failed attempts (each one retried or caught)

    @property
    def seconds(self) -> float | None:
        return (self.exited - self.entered).total_seconds() if self.exited else None


@dataclass
class ExecutionDetail:
    summary: ExecutionSummary
    input: Any
    output: Any
    states: list[StateRun] = field(default_factory=list)
    links: list[str] = field(default_factory=list)  # s3:// URIs in the input, output and task results


def _json(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except (TypeError, ValueError):
        return text


def list_executions(platform: Platform, kinds: list[str] | None = None, limit: int = 20) -> list[ExecutionSummary]:
    """The newest ``limit`` executions of the app's state machines, failures described."""
    sfn = platform.client("stepfunctions")
    found: list[ExecutionSummary] = []
    for kind, arn in platform.state_machines().items():
        if kinds and kind not in kinds:
            continue
        pages = sfn.get_paginator("list_executions").paginate(
            stateMachineArn=arn, PaginationConfig={"MaxItems": limit, "PageSize": min(limit, 100)}
        )
        for page in pages:
            for item in page["executions"]:
                arn, status = item["executionArn"], item["status"]
                found.append(ExecutionSummary(kind, item["name"], arn, status, item["startDate"], item.get("stopDate")))
    found.sort(key=lambda e: e.start, reverse=True)
    found = found[:limit]
    for summary in found:
        if summary.status in ("FAILED", "TIMED_OUT", "ABORTED"):
            _describe_failure(platform, summary)
    return found


def _describe_failure(platform: Platform, summary: ExecutionSummary) -> None:
    sfn = platform.client("stepfunctions")
    described = sfn.describe_execution(executionArn=summary.arn)
    summary.error = described.get("error", "")
    summary.cause = described.get("cause", "")
    events = sfn.get_execution_history(executionArn=summary.arn, reverseOrder=True, maxResults=100)["events"]
    for event in events:
        if event["type"].endswith("StateEntered"):
            summary.failed_state = event["stateEnteredEventDetails"]["name"]
            break


def find(platform: Platform, ref: str) -> ExecutionSummary:
    """One execution by ARN, name or name prefix; LookupError naming what matched."""
    if ref.startswith("arn:"):
        matches = [e for e in list_executions(platform, limit=1000) if e.arn == ref]
    else:
        matches = [e for e in list_executions(platform, limit=1000) if e.name.startswith(ref)]
    if not matches:
        raise LookupError(f"no execution of the app's state machines matches {ref!r} (see `mlops executions`)")
    if len(matches) > 1 and not any(m.name == ref for m in matches):
        names = ", ".join(m.name for m in matches[:5])
        raise LookupError(f"{ref!r} matches {len(matches)} executions ({names}...): give more of the name")
    return next((m for m in matches if m.name == ref), matches[0])


def detail(platform: Platform, summary: ExecutionSummary) -> ExecutionDetail:
    sfn = platform.client("stepfunctions")
    described = sfn.describe_execution(executionArn=summary.arn)
    summary.error = described.get("error", summary.error)
    summary.cause = described.get("cause", summary.cause)
    events: list[dict[str, Any]] = []
    for page in sfn.get_paginator("get_execution_history").paginate(executionArn=summary.arn):
        events += page["events"]
    states: list[StateRun] = []
    texts = [described.get("input") or "", described.get("output") or ""]
    for event in events:
        kind = event["type"]
        if kind.endswith("StateEntered"):
            states.append(StateRun(event["stateEnteredEventDetails"]["name"], event["timestamp"]))
        elif kind.endswith("StateExited") and states:
            states[-1].exited = event["timestamp"]
            texts.append(event["stateExitedEventDetails"].get("output") or "")
        elif kind.endswith("Failed") and states and kind != "ExecutionFailed":
            details = next((v for k, v in event.items() if k.endswith("EventDetails")), {})
            states[-1].failed = str(details.get("error", kind))
            states[-1].failures += 1
        if kind == "ExecutionFailed" and not summary.failed_state and states:
            summary.failed_state = states[-1].name
    links = sorted({m.rstrip(".,)}]\\") for text in texts for m in S3_URI.findall(text)})
    return ExecutionDetail(summary, _json(described.get("input")), _json(described.get("output")), states, links)
