"""The CloudWatch API of the twin: metrics from its :class:`MetricStore`, alarms from its
:class:`AlarmEvaluator` (the assembly's alarms, with their state and durable history)."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from datetime import UTC, datetime
from functools import cache
from typing import Any

from mlops.twin.api import ApiError, Call, not_implemented, page
from mlops.twin.cloudwatch.alarms import Alarm, AlarmError, AlarmEvaluator, HistoryItem
from mlops.twin.cloudwatch.metrics import (
    PERCENTILE,
    MetricKey,
    MetricStore,
    Sample,
    aggregate,
    is_supported_statistic,
    metric_key,
)
from mlops.twin.gateway.routing import service_model

MAX_DATAPOINTS = 1440  # GetMetricStatistics
MAX_METRIC_DATA = 1000  # PutMetricData items
MAX_VALUES = 150
MAX_DIMENSIONS = 30
TWO_WEEKS_S = 14 * 86400
TWO_HOURS_S = 2 * 3600
QUERY_ID = re.compile(r"^[a-z][a-zA-Z0-9_]*$")


def _invalid(message: str) -> ApiError:
    return ApiError("InvalidParameterValue", message)


def _combination(message: str) -> ApiError:
    return ApiError("InvalidParameterCombination", message)


def _epoch(value: Any) -> float:
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()
    return float(value)


def _when(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


@cache
def _units() -> frozenset[str]:
    return frozenset(service_model("cloudwatch").shape_for("StandardUnit").enum)


def _dimensions(dims: list[dict[str, str]] | None, where: str) -> dict[str, str]:
    dims = dims or []
    if len(dims) > MAX_DIMENSIONS:
        raise _invalid(f"The collection {where}.Dimensions must not have a size greater than {MAX_DIMENSIONS}.")
    return {d["Name"]: d["Value"] for d in dims}


def _check_period(period: int, where: str = "Period") -> None:
    if period < 1 or (period >= 60 and period % 60) or (period < 60 and period not in (1, 5, 10, 20, 30)):
        raise _invalid(f"The parameter {where} must be 1, 5, 10, 20, 30, 60, or any multiple of 60.")


def _check_unit(unit: str | None) -> None:
    if unit is not None and unit not in _units():
        raise _invalid(f"The parameter Unit must be one of: {', '.join(sorted(_units()))}.")


class CloudWatchApi:
    service = "cloudwatch"

    def __init__(self, metrics: MetricStore, alarms: AlarmEvaluator, *, clock: Callable[[], float]) -> None:
        self.metrics = metrics
        self.alarms = alarms
        self.clock = clock

    def operations(self) -> set[str]:
        return {
            "PutMetricData",
            "GetMetricData",
            "GetMetricStatistics",
            "ListMetrics",
            "DescribeAlarms",
            "DescribeAlarmHistory",
            "SetAlarmState",
        }

    def handle(self, call: Call) -> dict[str, Any]:
        method = getattr(self, "_" + re.sub(r"(?<!^)(?=[A-Z])", "_", call.operation).lower(), None)
        if method is None:
            raise not_implemented(self.service, call.operation)
        try:
            return method(call.params)
        except AlarmError as exc:
            raise ApiError(exc.code, str(exc), 404 if exc.code == "ResourceNotFound" else 400) from None

    # -- PutMetricData --------------------------------------------------------------------------
    def _put_metric_data(self, params: dict[str, Any]) -> dict[str, Any]:
        namespace = str(params["Namespace"])
        if namespace.startswith("AWS/"):
            raise _invalid(f"The value {namespace} for parameter Namespace is invalid.")
        if params.get("EntityMetricData"):
            raise not_implemented(self.service, "PutMetricData with EntityMetricData")
        data = params.get("MetricData") or []
        if not data:
            raise ApiError("MissingParameter", "The parameter MetricData is required.")
        if len(data) > MAX_METRIC_DATA:
            raise _invalid(f"The collection MetricData must not have a size greater than {MAX_METRIC_DATA}.")
        now = self.clock()
        ready: list[tuple[str, dict[str, str], list[Sample]]] = []
        for i, datum in enumerate(data, 1):
            where = f"MetricData.member.{i}"
            ready.append(
                (datum["MetricName"], _dimensions(datum.get("Dimensions"), where), self._samples(datum, where, now))
            )
        for name, dims, samples in ready:  # all checked before any is stored, as one request
            for sample in samples:
                self.metrics.add(namespace, name, dims, sample)
        return {}

    @staticmethod
    def _samples(datum: dict[str, Any], where: str, now: float) -> list[Sample]:
        unit = datum.get("Unit") or "None"
        _check_unit(unit)
        if datum.get("StorageResolution") not in (None, 1, 60):
            raise _invalid(
                f"The value {datum['StorageResolution']} for parameter {where}.StorageResolution is invalid."
            )
        ts = _epoch(datum["Timestamp"]) if datum.get("Timestamp") is not None else now
        if ts < now - TWO_WEEKS_S:
            raise _invalid(f"The parameter {where}.Timestamp must specify a time no more than two weeks in the past.")
        if ts > now + TWO_HOURS_S:
            raise _invalid(f"The parameter {where}.Timestamp must specify a time no more than two hours in the future.")
        given = [k for k in ("Value", "StatisticValues", "Values") if datum.get(k) is not None]
        if len(given) > 1:
            raise _combination(
                f"The parameters {where}.{given[0]} and {where}.{given[1]} are mutually exclusive and you have "
                "specified both."
            )
        if not given:
            raise ApiError("MissingParameter", f"The parameter {where}.Value is required.")

        def finite(value: Any, name: str) -> float:
            number = float(value)
            if not math.isfinite(number):
                raise _invalid(f"The value {value} for parameter {where}.{name} is invalid.")
            return number

        if given[0] == "Value":
            return [Sample.value(ts, finite(datum["Value"], "Value"), 1, unit)]
        if given[0] == "StatisticValues":
            stats = datum["StatisticValues"]
            count = finite(stats["SampleCount"], "StatisticValues.SampleCount")
            if count <= 0:
                raise _invalid(f"The value {count} for parameter {where}.StatisticValues.SampleCount is invalid.")
            lo = finite(stats["Minimum"], "StatisticValues.Minimum")
            hi = finite(stats["Maximum"], "StatisticValues.Maximum")
            if lo > hi:
                raise _invalid(f"The parameter {where}.StatisticValues.Minimum must not be greater than Maximum.")
            total = finite(stats["Sum"], "StatisticValues.Sum")
            return [Sample.statistic_set(ts, total, count, lo, hi, unit)]
        values = [finite(v, "Values") for v in datum["Values"]]
        counts = [finite(c, "Counts") for c in datum.get("Counts") or [1.0] * len(values)]
        if len(values) > MAX_VALUES:
            raise _invalid(f"The collection {where}.Values must not have a size greater than {MAX_VALUES}.")
        if len(counts) != len(values):
            raise _invalid(f"The parameters {where}.Values and {where}.Counts must be of the same size.")
        return [Sample.value(ts, v, c, unit) for v, c in zip(values, counts, strict=True) if c > 0]

    # -- reading metrics --------------------------------------------------------------------------
    def _buckets(self, start: float, end: float, period: int) -> list[float]:
        if start >= end:
            raise _invalid("The parameter StartTime must be less than the parameter EndTime.")
        first = math.floor(start / min(period, 60)) * min(period, 60)
        return [first + i * period for i in range(max(0, math.ceil((end - first) / period)))]

    def _get_metric_statistics(self, params: dict[str, Any]) -> dict[str, Any]:
        stats, extended = params.get("Statistics") or [], params.get("ExtendedStatistics") or []
        if stats and extended:
            raise _combination("Must specify either Statistics or ExtendedStatistics, but not both.")
        if not stats and not extended:
            raise ApiError("MissingParameter", "The parameter Statistics or ExtendedStatistics must be specified.")
        for stat in extended:
            if not PERCENTILE.match(stat):
                raise not_implemented(self.service, f"GetMetricStatistics with the extended statistic {stat}")
        period = int(params["Period"])
        _check_period(period)
        unit = params.get("Unit")
        _check_unit(unit)
        buckets = self._buckets(_epoch(params["StartTime"]), _epoch(params["EndTime"]), period)
        if len(buckets) > MAX_DATAPOINTS:
            raise _combination(
                f"You have requested up to {len(buckets):,} datapoints, which exceeds the limit of "
                f"{MAX_DATAPOINTS:,}. You may reduce the datapoints requested by increasing Period, "
                "or decreasing the time range."
            )
        key = metric_key(params["Namespace"], params["MetricName"], _dimensions(params.get("Dimensions"), "Metric"))
        datapoints = []
        for start in buckets:
            samples = self.metrics.samples(key, start, start + period, unit)
            if not samples:
                continue
            point: dict[str, Any] = {"Timestamp": _when(start), "Unit": unit or samples[0].unit}
            for stat in stats:
                point[stat] = aggregate(samples, stat)
            percentiles = {p: aggregate(samples, p) for p in extended}
            if extended:
                point["ExtendedStatistics"] = {p: v for p, v in percentiles.items() if v is not None}
            datapoints.append(point)
        return {"Label": params["MetricName"], "Datapoints": datapoints}

    def _get_metric_data(self, params: dict[str, Any]) -> dict[str, Any]:
        queries = params["MetricDataQueries"]
        if not 1 <= len(queries) <= 500:
            raise _invalid("The collection MetricDataQueries must have between 1 and 500 items.")
        seen: set[str] = set()
        for q in queries:
            if not QUERY_ID.match(q["Id"]):
                raise ApiError("ValidationError", f"The value {q['Id']} for parameter MetricDataQueries.Id is invalid.")
            if q["Id"] in seen:
                raise ApiError("ValidationError", "The values for parameter id in MetricDataQueries are not unique.")
            seen.add(q["Id"])
            if q.get("Expression"):
                raise not_implemented(self.service, "GetMetricData with metric math (MetricDataQueries.Expression)")
            if not q.get("MetricStat"):
                raise ApiError(
                    "MissingParameter", f"MetricDataQueries {q['Id']}: MetricStat or Expression is required."
                )
        if params.get("NextToken"):
            raise ApiError("InvalidNextToken", "The twin issued no NextToken for GetMetricData.")
        start, end = _epoch(params["StartTime"]), _epoch(params["EndTime"])
        newest_first = (params.get("ScanBy") or "TimestampDescending") == "TimestampDescending"
        results, total = [], 0
        for q in queries:
            stat = q["MetricStat"]
            period = int(stat["Period"])
            _check_period(period, "MetricStat.Period")
            if not is_supported_statistic(stat["Stat"]):
                raise not_implemented(self.service, f"GetMetricData with the statistic {stat['Stat']}")
            _check_unit(stat.get("Unit"))
            metric = stat["Metric"]
            key = metric_key(metric["Namespace"], metric["MetricName"], _dimensions(metric.get("Dimensions"), "Metric"))
            stamps, values = [], []
            for bucket in self._buckets(start, end, period):
                value = aggregate(self.metrics.samples(key, bucket, bucket + period, stat.get("Unit")), stat["Stat"])
                if value is not None:
                    stamps.append(_when(bucket))
                    values.append(value)
            if newest_first:
                stamps.reverse()
                values.reverse()
            total += len(values)
            if q.get("ReturnData", True):
                results.append(
                    {
                        "Id": q["Id"],
                        "Label": q.get("Label") or metric["MetricName"],
                        "Timestamps": stamps,
                        "Values": values,
                        "StatusCode": "Complete",
                    }
                )
        limit = int(params.get("MaxDatapoints") or 100_800)
        if total > limit:
            raise not_implemented(
                self.service,
                f"GetMetricData paging ({total} datapoints over MaxDatapoints {limit}); narrow the time range",
            )
        return {"MetricDataResults": results, "Messages": []}

    def _list_metrics(self, params: dict[str, Any]) -> dict[str, Any]:
        namespace, name = params.get("Namespace"), params.get("MetricName")
        filters = params.get("Dimensions") or []
        recent = params.get("RecentlyActive")
        if recent not in (None, "PT3H"):
            raise _invalid(f"The value {recent} for parameter RecentlyActive is invalid.")
        since = self.clock() - 3 * 3600 if recent else None
        found: list[MetricKey] = []
        for key in sorted(self.metrics.metrics()):
            ns, metric, dims = key
            if (namespace and ns != namespace) or (name and metric != name):
                continue
            have = dict(dims)
            if any(f["Name"] not in have or ("Value" in f and have[f["Name"]] != f["Value"]) for f in filters):
                continue
            if since is not None and (self.metrics.last_timestamp(key) or 0) < since:
                continue
            found.append(key)
        chosen, token = page(
            found, params.get("NextToken"), 500, bad_token=ApiError("InvalidNextToken", "The NextToken is invalid.")
        )
        metrics = [
            {"Namespace": ns, "MetricName": metric, "Dimensions": [{"Name": k, "Value": v} for k, v in dims]}
            for ns, metric, dims in chosen
        ]
        return {"Metrics": metrics, **({"NextToken": token} if token else {})}

    # -- alarms -----------------------------------------------------------------------------------
    def _describe_alarms(self, params: dict[str, Any]) -> dict[str, Any]:
        names, prefix = params.get("AlarmNames"), params.get("AlarmNamePrefix")
        if names and prefix:
            raise _combination("AlarmNames and AlarmNamePrefix cannot be specified together.")
        if names and len(names) > 100:
            raise _invalid("The collection AlarmNames must not have a size greater than 100.")
        types = params.get("AlarmTypes") or ["MetricAlarm"]
        state, action_prefix = params.get("StateValue"), params.get("ActionPrefix")
        related = params.get("ChildrenOfAlarmName") or params.get("ParentsOfAlarmName")
        alarms: list[Alarm] = []
        if "MetricAlarm" in types and not related:  # the twin's alarms are metric alarms: no composite relations
            for alarm in sorted(self.alarms.alarms.values(), key=lambda a: a.name):
                if (names and alarm.name not in names) or (prefix and not alarm.name.startswith(prefix)):
                    continue
                if state and alarm.state != state:
                    continue
                actions = alarm.alarm_actions + alarm.ok_actions + alarm.insufficient_data_actions
                if action_prefix and not any(a.startswith(action_prefix) for a in actions):
                    continue
                alarms.append(alarm)
        limit = int(params.get("MaxRecords") or 50)
        if not 1 <= limit <= 100:
            raise _invalid("The parameter MaxRecords must be between 1 and 100.")
        chosen, token = page(
            alarms, params.get("NextToken"), limit, bad_token=ApiError("InvalidNextToken", "The NextToken is invalid.")
        )
        out: dict[str, Any] = {"MetricAlarms": [self._alarm_shape(a) for a in chosen]}
        if "CompositeAlarm" in types:
            out["CompositeAlarms"] = []
        if token:
            out["NextToken"] = token
        return out

    @staticmethod
    def _alarm_shape(alarm: Alarm) -> dict[str, Any]:
        shape = alarm.configuration() | {
            "AlarmConfigurationUpdatedTimestamp": _when(alarm.configuration_updated),
            "StateValue": alarm.state,
            "StateReason": alarm.reason,
            "StateUpdatedTimestamp": _when(alarm.state_updated),
            "StateTransitionedTimestamp": _when(alarm.state_transitioned),
        }
        if alarm.reason_data is not None:
            shape["StateReasonData"] = alarm.reason_data
        return shape

    def _describe_alarm_history(self, params: dict[str, Any]) -> dict[str, Any]:
        types = params.get("AlarmTypes") or ["MetricAlarm"]
        kind = params.get("HistoryItemType")
        start = _epoch(params["StartDate"]) if params.get("StartDate") else None
        end = _epoch(params["EndDate"]) if params.get("EndDate") else None
        items: list[HistoryItem] = []
        if "MetricAlarm" in types and not params.get("AlarmContributorId"):
            for item in self.alarms.history(params.get("AlarmName")):
                if (kind and item.kind != kind) or (start is not None and item.timestamp < start):
                    continue
                if end is not None and item.timestamp > end:
                    continue
                items.append(item)
        items.sort(
            key=lambda i: i.timestamp, reverse=(params.get("ScanBy") or "TimestampDescending") != "TimestampAscending"
        )
        limit = int(params.get("MaxRecords") or 100)
        if not 1 <= limit <= 100:
            raise _invalid("The parameter MaxRecords must be between 1 and 100.")
        chosen, token = page(
            items, params.get("NextToken"), limit, bad_token=ApiError("InvalidNextToken", "The NextToken is invalid.")
        )
        shaped = [
            {
                "AlarmName": i.alarm,
                "AlarmType": "MetricAlarm",
                "Timestamp": _when(i.timestamp),
                "HistoryItemType": i.kind,
                "HistorySummary": i.summary,
                "HistoryData": json.dumps({k: v for k, v in i.data.items() if k != "fingerprint"}),
            }
            for i in chosen
        ]
        return {"AlarmHistoryItems": shaped, **({"NextToken": token} if token else {})}

    def _set_alarm_state(self, params: dict[str, Any]) -> dict[str, Any]:
        self.alarms.set_state(
            params["AlarmName"], params["StateValue"], params["StateReason"], params.get("StateReasonData")
        )
        return {}
