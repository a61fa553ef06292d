from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlops.twin.cloudwatch.alarms import Alarm, AlarmEvaluator, MetricStore, statistic
from mlops.twin.cloudwatch.metrics import Sample, aggregate

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


def test_set_state_holds_until_the_next_evaluation_interval() -> None:
    _, evaluator, events = _setup(TreatMissingData="notBreaching", EvaluationPeriods=1, DatapointsToAlarm=1)
    clock = [60.0]
    evaluator.clock = lambda: clock[0]
    evaluator.evaluate(60)
    assert evaluator.alarms["drift"].state == "OK"
    clock[0] = 75.0
    evaluator.set_state("drift", "ALARM", "testing")
    evaluator.evaluate(90)  # same minute: not evaluated again
    assert evaluator.alarms["drift"].state == "ALARM"
    evaluator.evaluate(120)  # the next evaluation finds no breach
    assert evaluator.alarms["drift"].state == "OK"
    assert [e["detail"]["state"]["value"] for e in events] == ["OK", "ALARM", "OK"]


def test_the_journal_restores_state_and_history(tmp_path: Path) -> None:
    journal = tmp_path / "alarm-history.jsonl"
    store = MetricStore(tmp_path / "metrics.jsonl")
    first = AlarmEvaluator(store, lambda e: None, "000000000000", "us-east-1", journal=journal, clock=lambda: 10.0)
    first.add(Alarm.from_properties("drift", "arn:drift", PROPS))
    for minute in (0, 1):
        store.put("Mlops", "DriftShare", 0.9, dimensions={"model": "m1"}, timestamp=minute * 60 + 5)
    first.evaluate(3 * 60)
    assert first.alarms["drift"].state == "ALARM"
    first.close()
    store.close()
    with journal.open("a") as f:
        f.write('{"alarm": "drift", "time": 1')  # a line torn by kill -9
    again = AlarmEvaluator(
        MetricStore(tmp_path / "metrics.jsonl"), lambda e: None, "000000000000", "us-east-1", journal=journal
    )
    again.add(Alarm.from_properties("drift", "arn:drift", PROPS))
    alarm = again.alarms["drift"]
    assert alarm.state == "ALARM" and alarm.state_updated == 3 * 60
    assert [i.kind for i in again.history("drift")] == ["ConfigurationUpdate", "StateUpdate"]
    assert again.store.values(("Mlops", "DriftShare", (("model", "m1"),)), 0, 120) == [0.9, 0.9]
    changed = Alarm.from_properties("drift", "arn:drift", {**PROPS, "Threshold": 0.5})
    again.add(changed)  # a new template: the configuration update is in the history, the state is kept
    assert [i.summary for i in again.history("drift")][-1] == 'Alarm "drift" updated' and changed.state == "ALARM"


def test_statistic_sets_and_weighted_percentiles() -> None:
    store = MetricStore()
    key = ("N", "m", ())
    store.add("N", "m", None, Sample.value(1, 10.0, count=3))
    store.add("N", "m", None, Sample.value(2, 20.0, count=1))
    samples = store.samples(key, 0, 60)
    assert aggregate(samples, "SampleCount") == 4 and aggregate(samples, "Average") == 12.5
    assert aggregate(samples, "p75") == 10.0 and aggregate(samples, "p100") == 20.0
    store.add("N", "m", None, Sample.statistic_set(3, total=9, count=3, minimum=1, maximum=5))
    assert aggregate(store.samples(key, 0, 60), "p50") is None  # no percentiles over distinct-valued sets
    assert aggregate(store.samples(key, 0, 60), "Minimum") == 1
