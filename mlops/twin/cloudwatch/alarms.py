"""CloudWatch alarms on the twin, evaluated with their real period, evaluation periods, datapoints
to alarm, comparison and missing-data treatment, once per evaluation interval (every minute, or
every period for high-resolution alarms), as CloudWatch evaluates them.

A state change (from an evaluation or from SetAlarmState) becomes a "CloudWatch Alarm State
Change" event, runs the alarm's actions for the new state (SNS topics of the twin) and is
recorded in the alarm's history. With a journal, the history (configuration updates, state
updates, actions) is appended to a JSON Lines file as it happens; an alarm's state is the last
state update of its history, so a restart, even after ``kill -9``, resumes every alarm where it was.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mlops.twin.cloudwatch.metrics import MetricStore, aggregate, metric_key, statistic

__all__ = ["Alarm", "AlarmEvaluator", "HistoryItem", "MetricStore", "statistic"]

COMPARISONS: dict[str, Callable[[float, float], bool]] = {
    "GreaterThanOrEqualToThreshold": lambda v, t: v >= t,
    "GreaterThanThreshold": lambda v, t: v > t,
    "LessThanThreshold": lambda v, t: v < t,
    "LessThanOrEqualToThreshold": lambda v, t: v <= t,
}
STATES = ("OK", "ALARM", "INSUFFICIENT_DATA")
# Action = (action ARN, alarm, the notification as CloudWatch sends it to SNS); raises when it cannot run.
ActionRunner = Callable[[str, "Alarm", dict[str, Any]], None]


@dataclass
class HistoryItem:
    alarm: str
    timestamp: float
    kind: str  # ConfigurationUpdate | StateUpdate | Action
    summary: str
    data: dict[str, Any]

    def to_json(self) -> str:
        return json.dumps(
            {"alarm": self.alarm, "time": self.timestamp, "type": self.kind, "summary": self.summary, "data": self.data}
        )

    @classmethod
    def from_json(cls, line: str) -> HistoryItem:
        doc = json.loads(line)
        return cls(str(doc["alarm"]), float(doc["time"]), str(doc["type"]), str(doc["summary"]), dict(doc["data"]))


@dataclass
class Alarm:
    name: str
    arn: str
    namespace: str
    metric_name: str
    dimensions: dict[str, str]
    statistic: str
    period: int
    evaluation_periods: int
    datapoints_to_alarm: int
    threshold: float
    comparison: str
    treat_missing_data: str = "missing"
    actions_enabled: bool = True
    description: str | None = None
    unit: str | None = None
    alarm_actions: list[str] = field(default_factory=list)
    ok_actions: list[str] = field(default_factory=list)
    insufficient_data_actions: list[str] = field(default_factory=list)
    evaluate_low_sample_count_percentile: str | None = None
    state: str = "INSUFFICIENT_DATA"
    reason: str = "Unchecked: Initial alarm creation"
    reason_data: str | None = None
    state_updated: float = 0.0
    state_transitioned: float = 0.0
    configuration_updated: float = 0.0
    history: list[dict[str, Any]] = field(default_factory=list)  # state changes: time, from, to, reason
    last_slot: int | None = None  # the evaluation interval last evaluated

    @classmethod
    def from_properties(cls, name: str, arn: str, props: dict[str, Any]) -> Alarm:
        if "Metrics" in props:
            raise ValueError(f"alarm {name}: metric math alarms are not supported by the twin")
        if props["ComparisonOperator"] not in COMPARISONS:
            raise ValueError(f"alarm {name}: comparison {props['ComparisonOperator']} is not supported by the twin")
        periods = int(props["EvaluationPeriods"])
        return cls(
            name=name,
            arn=arn,
            namespace=props["Namespace"],
            metric_name=props["MetricName"],
            dimensions={d["Name"]: str(d["Value"]) for d in props.get("Dimensions", [])},
            statistic=props.get("ExtendedStatistic") or props.get("Statistic", "Average"),
            period=int(props["Period"]),
            evaluation_periods=periods,
            datapoints_to_alarm=int(props.get("DatapointsToAlarm", periods)),
            threshold=float(props["Threshold"]),
            comparison=props["ComparisonOperator"],
            treat_missing_data=props.get("TreatMissingData", "missing"),
            actions_enabled=bool(props.get("ActionsEnabled", True)),
            description=props.get("AlarmDescription"),
            unit=props.get("Unit"),
            alarm_actions=[str(a) for a in props.get("AlarmActions", [])],
            ok_actions=[str(a) for a in props.get("OKActions", [])],
            insufficient_data_actions=[str(a) for a in props.get("InsufficientDataActions", [])],
            evaluate_low_sample_count_percentile=props.get("EvaluateLowSampleCountPercentile"),
        )

    @property
    def extended(self) -> bool:
        """A percentile alarm (``ExtendedStatistic``) rather than a basic statistic."""
        return self.statistic.startswith("p")

    def fingerprint(self) -> str:
        """What identifies the alarm's configuration: a change is a ConfigurationUpdate in its history."""
        config = {k: v for k, v in self.configuration().items() if k != "AlarmConfigurationUpdatedTimestamp"}
        return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:16]

    def configuration(self) -> dict[str, Any]:
        """The alarm as DescribeAlarms shows its configuration (``MetricAlarm`` members)."""
        config: dict[str, Any] = {
            "AlarmName": self.name,
            "AlarmArn": self.arn,
            "ActionsEnabled": self.actions_enabled,
            "OKActions": list(self.ok_actions),
            "AlarmActions": list(self.alarm_actions),
            "InsufficientDataActions": list(self.insufficient_data_actions),
            "MetricName": self.metric_name,
            "Namespace": self.namespace,
            "Dimensions": [{"Name": k, "Value": v} for k, v in self.dimensions.items()],
            "Period": self.period,
            "EvaluationPeriods": self.evaluation_periods,
            "DatapointsToAlarm": self.datapoints_to_alarm,
            "Threshold": self.threshold,
            "ComparisonOperator": self.comparison,
            "TreatMissingData": self.treat_missing_data,
        }
        config["ExtendedStatistic" if self.extended else "Statistic"] = self.statistic
        if self.description is not None:
            config["AlarmDescription"] = self.description
        if self.unit is not None:
            config["Unit"] = self.unit
        if self.evaluate_low_sample_count_percentile is not None:
            config["EvaluateLowSampleCountPercentile"] = self.evaluate_low_sample_count_percentile
        return config

    def interval(self) -> int:
        """Seconds between evaluations: every minute, or every period for high-resolution alarms."""
        return self.period if self.period < 60 else 60

    def datapoints(self, store: MetricStore, now: float) -> list[float | None]:
        """One value per period for the last ``evaluation_periods`` complete periods, oldest first."""
        return [value for _, value in self.periods(store, now)]

    def periods(self, store: MetricStore, now: float) -> list[tuple[float, float | None]]:
        """(period start, value) for the last ``evaluation_periods`` complete periods, oldest first."""
        end = math.floor(now / self.period) * self.period
        key = metric_key(self.namespace, self.metric_name, self.dimensions)
        points = []
        for i in range(self.evaluation_periods, 0, -1):
            start = end - i * self.period
            samples = store.samples(key, start, start + self.period, self.unit)
            points.append((float(start), aggregate(samples, self.statistic)))
        return points

    def decide(self, points: list[float | None]) -> tuple[str, str]:
        """New state and reason, following CloudWatch's missing-data rules."""
        compare = COMPARISONS[self.comparison]
        breaching, present = 0, 0
        for value in points:
            if value is None:
                if self.treat_missing_data == "breaching":
                    breaching += 1
                    present += 1
                elif self.treat_missing_data == "notBreaching":
                    present += 1
                continue
            present += 1
            breaching += compare(value, self.threshold)
        shown = [None if v is None else round(v, 6) for v in points]
        if present == 0:
            if self.treat_missing_data == "ignore":
                return self.state, self.reason  # keep the current state
            return "INSUFFICIENT_DATA", f"Insufficient Data: {len(points)} datapoints were unknown."
        if breaching >= self.datapoints_to_alarm:
            return "ALARM", (
                f"Threshold Crossed: {breaching} out of the last {len(points)} datapoints {shown} were "
                f"{self.comparison} the threshold ({self.threshold})."
            )
        return "OK", (
            f"Threshold Crossed: {breaching} out of the last {len(points)} datapoints {shown} "
            f"crossed the threshold ({self.threshold}); {self.datapoints_to_alarm} needed to alarm."
        )

    def actions_for(self, state: str) -> list[str]:
        return {"ALARM": self.alarm_actions, "OK": self.ok_actions}.get(state, self.insufficient_data_actions)


class AlarmError(ValueError):
    """A request about alarms CloudWatch would refuse; ``code`` is CloudWatch's error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class AlarmEvaluator:
    def __init__(
        self,
        store: MetricStore,
        emit: Callable[[dict[str, Any]], None],
        account: str,
        region: str,
        *,
        journal: Path | None = None,
        clock: Callable[[], float] = time.time,
        act: ActionRunner | None = None,
    ) -> None:
        self.store = store
        self.emit = emit
        self.account = account
        self.region = region
        self.clock = clock
        self.act = act
        self.alarms: dict[str, Alarm] = {}
        self._items: dict[str, list[HistoryItem]] = {}
        self._lock = threading.RLock()
        self._fd = -1
        if journal is not None:
            journal.parent.mkdir(parents=True, exist_ok=True)
            self._items = self._replay(journal)
            self._fd = os.open(journal, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    @staticmethod
    def _replay(journal: Path) -> dict[str, list[HistoryItem]]:
        items: dict[str, list[HistoryItem]] = {}
        if journal.is_file():
            for line in journal.read_text(encoding="utf-8", errors="replace").splitlines():
                try:
                    item = HistoryItem.from_json(line)
                except (ValueError, KeyError, TypeError):
                    continue  # a line torn by a crash
                items.setdefault(item.alarm, []).append(item)
        return items

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1

    # -- alarms -------------------------------------------------------------------------------
    def add(self, alarm: Alarm) -> None:
        """Add an alarm of the assembly; one the history knows resumes its recorded state."""
        with self._lock:
            self.alarms[alarm.name] = alarm
            items = self._items.setdefault(alarm.name, [])
            for item in items:
                if item.kind == "StateUpdate":
                    new = item.data["newState"]
                    alarm.history.append(
                        {"time": item.timestamp, "from": item.data["oldState"]["stateValue"], "to": new["stateValue"]}
                        | {"reason": new["stateReason"]}
                    )
                    alarm.state, alarm.reason = new["stateValue"], new["stateReason"]
                    alarm.reason_data = json.dumps(new["stateReasonData"]) if "stateReasonData" in new else None
                    alarm.state_updated = alarm.state_transitioned = item.timestamp
                elif item.kind == "ConfigurationUpdate":
                    alarm.configuration_updated = item.timestamp
            configured = [i for i in items if i.kind == "ConfigurationUpdate"]
            fingerprint = alarm.fingerprint()
            if configured and configured[-1].data.get("fingerprint") == fingerprint:
                return
            now = self.clock()
            kind = "Update" if configured else "Create"
            verb = "updated" if configured else "created"
            alarm.configuration_updated = now
            if not configured:
                alarm.state_updated = alarm.state_transitioned = now
            data = {"version": "1.0", "type": kind, "fingerprint": fingerprint}
            data["updatedAlarm" if configured else "createdAlarm"] = _jsonable(alarm.configuration())
            self._record(HistoryItem(alarm.name, now, "ConfigurationUpdate", f'Alarm "{alarm.name}" {verb}', data))

    def history(self, name: str | None = None) -> list[HistoryItem]:
        """History items of one alarm (or of all), oldest first."""
        with self._lock:
            if name is not None:
                return list(self._items.get(name, []))
            return sorted((i for items in self._items.values() for i in items), key=lambda i: i.timestamp)

    def _record(self, item: HistoryItem) -> None:
        with self._lock:
            self._items.setdefault(item.alarm, []).append(item)
            if self._fd >= 0:
                os.write(self._fd, (item.to_json() + "\n").encode())

    # -- evaluation ---------------------------------------------------------------------------
    def evaluate(self, now: float) -> list[Alarm]:
        """Evaluate every alarm due at ``now``; returns the alarms whose state changed."""
        changed = []
        with self._lock:
            for alarm in list(self.alarms.values()):
                slot = math.floor(now / alarm.interval())
                if alarm.last_slot == slot:
                    continue
                alarm.last_slot = slot
                periods = alarm.periods(self.store, now)
                state, reason = alarm.decide([v for _, v in periods])
                if state == alarm.state:
                    continue
                data = self._reason_data(alarm, periods, now)
                self._transition(alarm, state, reason, data, now)
                changed.append(alarm)
        return changed

    def set_state(self, name: str, state: str, reason: str, reason_data: str | None = None) -> None:
        """SetAlarmState: the state holds until the alarm's next evaluation."""
        if state not in STATES:
            raise AlarmError("InvalidParameterValue", f"StateValue {state!r} must be one of {', '.join(STATES)}")
        parsed = None
        if reason_data is not None:
            try:
                parsed = json.loads(reason_data)
            except ValueError:
                raise AlarmError("InvalidFormat", "StateReasonData is not valid JSON.") from None
        with self._lock:
            alarm = self.alarms.get(name)
            if alarm is None:
                raise AlarmError("ResourceNotFound", f"Alarm {name} not found")
            now = self.clock()
            alarm.last_slot = math.floor(now / alarm.interval())
            if state == alarm.state:
                alarm.reason, alarm.state_updated = reason, now
                return
            self._transition(alarm, state, reason, parsed, now)

    def _transition(self, alarm: Alarm, state: str, reason: str, data: Any, now: float) -> None:
        old = {"stateValue": alarm.state, "stateReason": alarm.reason}
        previous = {"value": alarm.state, "reason": alarm.reason, "timestamp": _iso(alarm.state_updated)}
        new: dict[str, Any] = {"stateValue": state, "stateReason": reason}
        if data is not None:
            new["stateReasonData"] = data
        self._record(
            HistoryItem(
                alarm.name,
                now,
                "StateUpdate",
                f"Alarm updated from {alarm.state} to {state}",
                {"version": "1.0", "oldState": old, "newState": new},
            )
        )
        alarm.history.append({"time": now, "from": alarm.state, "to": state, "reason": reason})
        alarm.state, alarm.reason, alarm.state_updated = state, reason, now
        alarm.state_transitioned = now
        alarm.reason_data = json.dumps(data) if data is not None else None
        self.emit(self._event(alarm, previous, now))
        if alarm.actions_enabled:
            self._run_actions(alarm, old["stateValue"], now)

    def _run_actions(self, alarm: Alarm, old_state: str, now: float) -> None:
        for action in alarm.actions_for(alarm.state):
            message = self._notification(alarm, old_state, now)
            try:
                if self.act is None:
                    raise RuntimeError("the twin runs no alarm actions here")
                self.act(action, alarm, message)
            except Exception as exc:
                summary = f"Failed to execute action {action}. Reason: {exc}"
                data: dict[str, Any] = {"actionState": "Failed", "error": str(exc)}
            else:
                summary = f"Successfully executed action {action}"
                data = {"actionState": "Succeeded", "notificationResource": action}
            data |= {"stateUpdateTimestamp": int(now * 1000)}
            self._record(HistoryItem(alarm.name, now, "Action", summary, data))

    def _reason_data(self, alarm: Alarm, periods: list[tuple[float, float | None]], now: float) -> dict[str, Any]:
        present = [(start, value) for start, value in periods if value is not None]
        return {
            "version": "1.0",
            "queryDate": _iso(now),
            "startDate": _iso(periods[0][0]) if periods else _iso(now),
            "statistic" if not alarm.extended else "extendedStatistic": alarm.statistic,
            "period": alarm.period,
            "recentDatapoints": [value for _, value in present],
            "threshold": alarm.threshold,
            "evaluatedDatapoints": [{"timestamp": _iso(start), "value": value} for start, value in reversed(present)],
        }

    def _notification(self, alarm: Alarm, old_state: str, now: float) -> dict[str, Any]:
        """The message CloudWatch publishes to an SNS action."""
        return {
            "AlarmName": alarm.name,
            "AlarmDescription": alarm.description,
            "AWSAccountId": self.account,
            "NewStateValue": alarm.state,
            "NewStateReason": alarm.reason,
            "StateChangeTime": _iso(now),
            "Region": self.region,
            "AlarmArn": alarm.arn,
            "OldStateValue": old_state,
            "Trigger": {
                "MetricName": alarm.metric_name,
                "Namespace": alarm.namespace,
                "StatisticType": "ExtendedStatistic" if alarm.extended else "Statistic",
                "Statistic": alarm.statistic.upper() if not alarm.extended else None,
                "ExtendedStatistic": alarm.statistic if alarm.extended else None,
                "Unit": alarm.unit,
                "Dimensions": [{"value": v, "name": k} for k, v in alarm.dimensions.items()],
                "Period": alarm.period,
                "EvaluationPeriods": alarm.evaluation_periods,
                "DatapointsToAlarm": alarm.datapoints_to_alarm,
                "ComparisonOperator": alarm.comparison,
                "Threshold": alarm.threshold,
                "TreatMissingData": alarm.treat_missing_data,
            },
        }

    def _event(self, alarm: Alarm, previous: dict[str, Any], now: float) -> dict[str, Any]:
        return {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": "CloudWatch Alarm State Change",
            "source": "aws.cloudwatch",
            "account": self.account,
            "time": _iso(now),
            "region": self.region,
            "resources": [alarm.arn],
            "detail": {
                "alarmName": alarm.name,
                "state": {"value": alarm.state, "reason": alarm.reason, "timestamp": _iso(now)},
                "previousState": previous,
                "configuration": {
                    "metrics": [
                        {
                            "id": "m1",
                            "metricStat": {
                                "metric": {
                                    "namespace": alarm.namespace,
                                    "name": alarm.metric_name,
                                    "dimensions": alarm.dimensions,
                                },
                                "period": alarm.period,
                                "stat": alarm.statistic,
                            },
                            "returnData": True,
                        }
                    ]
                },
            },
        }


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.000+0000")
