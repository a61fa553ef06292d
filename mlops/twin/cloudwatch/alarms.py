"""CloudWatch on the twin: a metric store, Embedded Metric Format ingestion, and alarms
evaluated with their real period, evaluation periods, datapoints to alarm, comparison
and missing-data treatment. State changes become "CloudWatch Alarm State Change" events.
"""

from __future__ import annotations

import json
import math
import threading
import uuid
from bisect import insort
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

COMPARISONS: dict[str, Callable[[float, float], bool]] = {
    "GreaterThanOrEqualToThreshold": lambda v, t: v >= t,
    "GreaterThanThreshold": lambda v, t: v > t,
    "LessThanThreshold": lambda v, t: v < t,
    "LessThanOrEqualToThreshold": lambda v, t: v <= t,
}
MetricKey = tuple[str, str, tuple[tuple[str, str], ...]]  # namespace, name, sorted dimensions


def metric_key(namespace: str, name: str, dimensions: dict[str, str] | None) -> MetricKey:
    return namespace, name, tuple(sorted((dimensions or {}).items()))


class MetricStore:
    """Raw datapoints per metric; statistics are computed per period on demand."""

    def __init__(self) -> None:
        self._points: dict[MetricKey, list[tuple[float, float]]] = defaultdict(list)
        self._lock = threading.Lock()

    def put(
        self,
        namespace: str,
        name: str,
        value: float,
        *,
        dimensions: dict[str, str] | None = None,
        timestamp: float,
        count: int = 1,
    ) -> None:
        with self._lock:
            points = self._points[metric_key(namespace, name, dimensions)]
            for _ in range(max(count, 1)):
                insort(points, (timestamp, float(value)))

    def values(self, key: MetricKey, start: float, end: float) -> list[float]:
        with self._lock:
            return [v for t, v in self._points.get(key, []) if start <= t < end]

    def metrics(self) -> list[MetricKey]:
        with self._lock:
            return list(self._points)

    def ingest_emf(self, line: str, fallback_time: float, override_time: float | None = None) -> int:
        """Read one log line in Embedded Metric Format; returns how many datapoints it held.

        ``override_time`` stamps the datapoints with the ingesting clock (the twin's, which
        may run faster than the wall clock the function used)."""
        try:
            doc = json.loads(line)
        except (json.JSONDecodeError, TypeError):
            return 0
        meta = doc.get("_aws") if isinstance(doc, dict) else None
        if not isinstance(meta, dict):
            return 0
        timestamp = (
            override_time if override_time is not None else float(meta.get("Timestamp", fallback_time * 1000)) / 1000
        )
        added = 0
        for directive in meta.get("CloudWatchMetrics", []):
            namespace = directive.get("Namespace", "aws-embedded-metrics")
            dimension_sets = directive.get("Dimensions") or [[]]
            for metric in directive.get("Metrics", []):
                name = metric["Name"]
                raw = doc.get(name)
                values = raw if isinstance(raw, list) else [raw]
                for dims in dimension_sets:
                    dimensions = {d: str(doc[d]) for d in dims if d in doc}
                    for v in values:
                        if isinstance(v, int | float):
                            self.put(namespace, name, v, dimensions=dimensions, timestamp=timestamp)
                            added += 1
        return added


def statistic(values: list[float], stat: str) -> float | None:
    if not values:
        return None
    if stat == "Sum":
        return float(sum(values))
    if stat == "Average":
        return float(sum(values) / len(values))
    if stat == "Minimum":
        return float(min(values))
    if stat == "Maximum":
        return float(max(values))
    if stat == "SampleCount":
        return float(len(values))
    if stat.startswith("p"):
        ordered = sorted(values)
        rank = max(math.ceil(float(stat[1:]) / 100 * len(ordered)) - 1, 0)
        return float(ordered[rank])
    raise ValueError(f"unsupported statistic {stat!r}")


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
    state: str = "INSUFFICIENT_DATA"
    reason: str = "Unchecked: Initial alarm creation"
    state_updated: float = 0.0
    history: list[dict[str, Any]] = field(default_factory=list)

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
        )

    def datapoints(self, store: MetricStore, now: float) -> list[float | None]:
        """One value per period for the last ``evaluation_periods`` complete periods, oldest first."""
        end = math.floor(now / self.period) * self.period
        key = metric_key(self.namespace, self.metric_name, self.dimensions)
        points = []
        for i in range(self.evaluation_periods, 0, -1):
            start = end - i * self.period
            points.append(statistic(store.values(key, start, start + self.period), self.statistic))
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


class AlarmEvaluator:
    def __init__(self, store: MetricStore, emit: Callable[[dict[str, Any]], None], account: str, region: str) -> None:
        self.store = store
        self.emit = emit
        self.account = account
        self.region = region
        self.alarms: dict[str, Alarm] = {}

    def add(self, alarm: Alarm) -> None:
        self.alarms[alarm.name] = alarm

    def evaluate(self, now: float) -> list[Alarm]:
        """Evaluate every alarm at ``now``; returns the alarms whose state changed."""
        changed = []
        for alarm in self.alarms.values():
            state, reason = alarm.decide(alarm.datapoints(self.store, now))
            if state == alarm.state:
                alarm.reason = reason
                continue
            previous = {"value": alarm.state, "reason": alarm.reason, "timestamp": _iso(alarm.state_updated)}
            alarm.state, alarm.reason, alarm.state_updated = state, reason, now
            alarm.history.append({"time": now, "from": previous["value"], "to": state, "reason": reason})
            changed.append(alarm)
            self.emit(self._event(alarm, previous, now))
        return changed

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


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.000+0000")
