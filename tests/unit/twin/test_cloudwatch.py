from __future__ import annotations

import json

import pytest

from mlops.twin.cloudwatch.alarms import Alarm, AlarmEvaluator, MetricStore, statistic

PROPS = {
    "Namespace": "Mlops",
    "MetricName": "DriftShare",
    "Dimensions": [{"Name": "model", "Value": "m1"}],
    "Statistic": "Maximum",
    "Period": 60,
    "EvaluationPeriods": 3,
    "DatapointsToAlarm": 2,
    "Threshold": 0.3,
    "ComparisonOperator": "GreaterThanOrEqualToThreshold",
}


def _setup(**overrides: object) -> tuple[MetricStore, AlarmEvaluator, list[dict]]:
    store, events = MetricStore(), []
    evaluator = AlarmEvaluator(store, events.append, "000000000000", "us-east-1")
    evaluator.add(
        Alarm.from_properties("drift", "arn:aws:cloudwatch:us-east-1:000000000000:alarm:drift", {**PROPS, **overrides})
    )
    return store, evaluator, events


def _put(store: MetricStore, minute: int, value: float) -> None:
    store.put("Mlops", "DriftShare", value, dimensions={"model": "m1"}, timestamp=minute * 60 + 5)


def test_statistics() -> None:
    values = [1.0, 2.0, 3.0, 4.0]
    assert statistic(values, "Sum") == 10 and statistic(values, "Average") == 2.5
    assert statistic(values, "SampleCount") == 4 and statistic(values, "p50") == 2.0
    assert statistic([float(i) for i in range(1, 101)], "p99") == 99.0
    assert statistic([], "Sum") is None


def test_m_of_n_datapoints_to_alarm_and_back() -> None:
    store, evaluator, events = _setup()
    _put(store, 0, 0.1)
    _put(store, 1, 0.5)
    _put(store, 2, 0.1)
    evaluator.evaluate(3 * 60)  # periods 0,1,2: one breaching of three -> OK
    assert evaluator.alarms["drift"].state == "OK"
    _put(store, 3, 0.6)
    evaluator.evaluate(4 * 60)  # periods 1,2,3: two breaching -> ALARM
    alarm = evaluator.alarms["drift"]
    assert alarm.state == "ALARM" and "2 out of the last 3 datapoints" in alarm.reason
    assert [e["detail"]["state"]["value"] for e in events] == ["OK", "ALARM"]
    assert events[-1]["detail"]["previousState"]["value"] == "OK"
    assert events[-1]["detail-type"] == "CloudWatch Alarm State Change" and events[-1]["source"] == "aws.cloudwatch"
    evaluator.evaluate(4 * 60 + 30)  # same state: no new event
    assert len(events) == 2


def test_only_complete_periods_count() -> None:
    store, evaluator, _ = _setup(DatapointsToAlarm=1, EvaluationPeriods=1)
    _put(store, 5, 0.9)
    evaluator.evaluate(5 * 60 + 30)  # period 5 is still open: the last complete one (4) has no data
    assert evaluator.alarms["drift"].state == "INSUFFICIENT_DATA"
    evaluator.evaluate(6 * 60)
    assert evaluator.alarms["drift"].state == "ALARM"


@pytest.mark.parametrize(
    ("treat", "expected"),
    [("missing", "INSUFFICIENT_DATA"), ("breaching", "ALARM"), ("notBreaching", "OK"), ("ignore", "INSUFFICIENT_DATA")],
)
def test_missing_data_treatment(treat: str, expected: str) -> None:
    _, evaluator, _ = _setup(TreatMissingData=treat)
    evaluator.evaluate(10 * 60)
    assert evaluator.alarms["drift"].state == expected


def test_ignore_keeps_the_previous_state() -> None:
    store, evaluator, _ = _setup(TreatMissingData="ignore", EvaluationPeriods=1, DatapointsToAlarm=1)
    _put(store, 0, 0.9)
    evaluator.evaluate(60)
    assert evaluator.alarms["drift"].state == "ALARM"
    evaluator.evaluate(30 * 60)  # no data since: still ALARM
    assert evaluator.alarms["drift"].state == "ALARM"


def test_emf_lines_become_datapoints() -> None:
    store = MetricStore()
    line = json.dumps(
        {
            "_aws": {
                "Timestamp": 120_000,
                "CloudWatchMetrics": [
                    {"Namespace": "Mlops", "Dimensions": [["model"]], "Metrics": [{"Name": "DriftShare"}]}
                ],
            },
            "model": "m1",
            "DriftShare": [0.2, 0.4],
        }
    )
    assert store.ingest_emf(line, fallback_time=0) == 2
    assert store.ingest_emf("plain text log line", fallback_time=0) == 0
    key = ("Mlops", "DriftShare", (("model", "m1"),))
    assert store.values(key, 120, 180) == [0.2, 0.4]


def test_unsupported_alarm_shapes_are_named() -> None:
    with pytest.raises(ValueError, match="metric math alarms are not supported"):
        Alarm.from_properties("x", "arn", {**PROPS, "Metrics": []})
    with pytest.raises(ValueError, match="LessThanLowerOrGreaterThanUpperThreshold is not supported"):
        Alarm.from_properties("x", "arn", {**PROPS, "ComparisonOperator": "LessThanLowerOrGreaterThanUpperThreshold"})
