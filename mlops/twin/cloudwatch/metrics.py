"""CloudWatch metrics on the twin: datapoints per metric, statistics per period, EMF ingestion.

A datapoint is a :class:`Sample`: a single value with a count (PutMetricData ``Value``,
``Values``/``Counts``, EMF) or a statistic set (``StatisticValues``). Percentiles come from
individual values only, as in CloudWatch (a statistic set counts as values only when its
minimum equals its maximum). With a journal, every datapoint is appended to it as it is
stored and replayed at start, so a restart (even ``kill -9``) keeps the metrics alarms read.
"""

from __future__ import annotations

import json
import math
import os
import re
import threading
from bisect import bisect_left, bisect_right
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

MetricKey = tuple[str, str, tuple[tuple[str, str], ...]]  # namespace, name, sorted dimensions
BASIC_STATISTICS = ("SampleCount", "Average", "Sum", "Minimum", "Maximum")
PERCENTILE = re.compile(r"^p(\d{1,2}(?:\.\d+)?|100)$")


def metric_key(namespace: str, name: str, dimensions: dict[str, str] | None) -> MetricKey:
    return namespace, name, tuple(sorted((dimensions or {}).items()))


@dataclass(slots=True)
class Sample:  # not frozen: frozen dataclasses are slow to create, and a store holds many (never mutated)
    timestamp: float
    total: float  # the sum of the values it stands for
    count: float
    minimum: float
    maximum: float
    unit: str = "None"
    exact: bool = True  # individual values known (a value x count): percentiles can use it

    @classmethod
    def value(cls, timestamp: float, value: float, count: float = 1, unit: str = "None") -> Sample:
        return cls(timestamp, value * count, count, value, value, unit, True)

    @classmethod
    def statistic_set(
        cls, timestamp: float, total: float, count: float, minimum: float, maximum: float, unit: str = "None"
    ) -> Sample:
        if minimum == maximum:
            return cls(timestamp, total, count, minimum, maximum, unit, True)
        return cls(timestamp, total, count, minimum, maximum, unit, count == 1)


def is_supported_statistic(stat: str) -> bool:
    return stat in BASIC_STATISTICS or PERCENTILE.match(stat) is not None


def aggregate(samples: list[Sample], stat: str) -> float | None:
    """One statistic over the samples of a period; None when there are none (or a percentile has no values)."""
    if not samples:
        return None
    count = sum(s.count for s in samples)
    if stat == "SampleCount":
        return float(count)
    if stat == "Sum":
        return float(sum(s.total for s in samples))
    if stat == "Average":
        return float(sum(s.total for s in samples) / count) if count else None
    if stat == "Minimum":
        return float(min(s.minimum for s in samples))
    if stat == "Maximum":
        return float(max(s.maximum for s in samples))
    found = PERCENTILE.match(stat)
    if found is None:
        raise ValueError(f"unsupported statistic {stat!r}")
    if not all(s.exact for s in samples):
        return None  # CloudWatch has no percentiles for statistic sets with distinct values
    ordered = sorted(samples, key=lambda s: s.minimum)
    rank = max(math.ceil(float(found[1]) / 100 * count), 1)  # nearest rank over the weighted values
    seen = 0.0
    for sample in ordered:
        seen += sample.count
        if seen >= rank:
            return float(sample.minimum)
    return float(ordered[-1].minimum)


def statistic(values: list[float], stat: str) -> float | None:
    """A statistic of plain values."""
    return aggregate([Sample.value(0.0, v) for v in values], stat)


class _Series:
    """The samples of one metric in time order, with their timestamps apart for bisection."""

    __slots__ = ("samples", "times")

    def __init__(self) -> None:
        self.times: list[float] = []
        self.samples: list[Sample] = []

    def add(self, sample: Sample) -> None:
        if not self.times or sample.timestamp >= self.times[-1]:
            self.times.append(sample.timestamp)
            self.samples.append(sample)
        else:
            at = bisect_right(self.times, sample.timestamp)
            self.times.insert(at, sample.timestamp)
            self.samples.insert(at, sample)


class MetricStore:
    """Datapoints per metric, in time order; optionally journaled to ``journal`` (JSON Lines)."""

    def __init__(self, journal: Path | None = None) -> None:
        self._points: dict[MetricKey, _Series] = defaultdict(_Series)
        self._lock = threading.Lock()
        self._fd = -1
        if journal is not None:
            journal.parent.mkdir(parents=True, exist_ok=True)
            self._replay(journal)
            self._fd = os.open(journal, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def _replay(self, journal: Path) -> None:
        if not journal.is_file():
            return
        with journal.open(encoding="utf-8", errors="replace") as f:
            for line in f:
                try:
                    ns, name, dims, ts, total, count, lo, hi, unit, exact = json.loads(line)
                except (ValueError, TypeError):
                    continue  # a line torn by a crash
                key = (ns, name, tuple((str(k), str(v)) for k, v in dims))
                self._points[key].add(Sample(ts, total, count, lo, hi, unit, bool(exact)))

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1

    def add(self, namespace: str, name: str, dimensions: dict[str, str] | None, sample: Sample) -> None:
        key = metric_key(namespace, name, dimensions)
        with self._lock:
            self._points[key].add(sample)
            if self._fd >= 0:
                record = [*key[:2], key[2], sample.timestamp, sample.total, sample.count]
                record += [sample.minimum, sample.maximum, sample.unit, int(sample.exact)]
                os.write(self._fd, (json.dumps(record) + "\n").encode())

    def put(
        self,
        namespace: str,
        name: str,
        value: float,
        *,
        dimensions: dict[str, str] | None = None,
        timestamp: float,
        count: int = 1,
        unit: str = "None",
    ) -> None:
        self.add(namespace, name, dimensions, Sample.value(timestamp, float(value), max(count, 1), unit))

    def samples(self, key: MetricKey, start: float, end: float, unit: str | None = None) -> list[Sample]:
        """The samples of a metric with ``start <= timestamp < end`` (of one unit, if given)."""
        with self._lock:
            series = self._points.get(key)
            if series is None:
                return []
            found = series.samples[bisect_left(series.times, start) : bisect_left(series.times, end)]
        return [s for s in found if unit is None or s.unit == unit]

    def values(self, key: MetricKey, start: float, end: float) -> list[float]:
        """The individual values of a metric in ``[start, end)`` (statistic sets as their average)."""
        out: list[float] = []
        for s in self.samples(key, start, end):
            out += [s.total / s.count if s.count else s.minimum] * max(int(s.count), 1)
        return out

    def metrics(self) -> list[MetricKey]:
        with self._lock:
            return list(self._points)

    def last_timestamp(self, key: MetricKey) -> float | None:
        with self._lock:
            series = self._points.get(key)
            return series.times[-1] if series is not None and series.times else None

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
                unit = str(metric.get("Unit", "None"))
                raw = doc.get(name)
                values = raw if isinstance(raw, list) else [raw]
                for dims in dimension_sets:
                    dimensions = {d: str(doc[d]) for d in dims if d in doc}
                    for v in values:
                        if isinstance(v, int | float) and not isinstance(v, bool):
                            self.put(namespace, name, v, dimensions=dimensions, timestamp=timestamp, unit=unit)
                            added += 1
        return added
