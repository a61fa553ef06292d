"""The twin's in-process EventBridge bus: envelopes, routing, target input, failures and schedules."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from mlops.twin.events.bus import EventBus, Rule, ScheduleError, Target, parse_schedule
from mlops.twin.events.patterns import PatternError

ACCOUNT, REGION = "123456789012", "eu-west-1"


def ts(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


class FakeClock:
    def __init__(self, start: str = "2024-01-01T00:00:00") -> None:
        self.now = ts(start)

    def __call__(self) -> float:
        return self.now


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str, Any]] = []

    def __call__(self, rule: Rule, target: Target, payload: Any) -> None:
        self.calls.append((rule.name, target.id, payload))


def rule_arn(name: str) -> str:
    return f"arn:aws:events:{REGION}:{ACCOUNT}:rule/{name}"


def make_rule(name: str, pattern: dict | str | None = None, *targets: Target, **kw: Any) -> Rule:
    return Rule(
        name=name,
        arn=rule_arn(name),
        bus_name=kw.pop("bus_name", "default"),
        event_pattern=pattern,
        schedule_expression=kw.pop("schedule_expression", None),
        state=kw.pop("state", "ENABLED"),
        targets=list(targets) or [Target(id="t1", arn=f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}")],
    )


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def bus(recorder: Recorder, clock: FakeClock) -> EventBus:
    return EventBus(recorder, account=ACCOUNT, region=REGION, clock=clock)


ORDER_ENTRY = {
    "Source": "com.example.orders",
    "DetailType": "Order Placed",
    "Detail": json.dumps({"order": {"id": "o-1", "total": 42.5}, "channel": "web"}),
    "Resources": ["arn:aws:dynamodb:eu-west-1:123456789012:table/orders"],
}


def s3_object_created(bucket: str, key: str) -> dict:
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Object Created",
        "source": "aws.s3",
        "account": ACCOUNT,
        "time": "2024-01-01T00:00:00Z",
        "region": REGION,
        "resources": [f"arn:aws:s3:::{bucket}"],
        "detail": {
            "version": "0",
            "bucket": {"name": bucket},
            "object": {"key": key, "size": 10},
            "reason": "PutObject",
        },
    }


# --- put_events --------------------------------------------------------------------------------------------------


def test_put_events_builds_the_envelope(bus: EventBus, recorder: Recorder, clock: FakeClock) -> None:
    clock.now = ts("2024-03-04T05:06:07")
    bus.put_rule(make_rule("all-orders", {"source": ["com.example.orders"]}))
    [result] = bus.put_events([ORDER_ENTRY])
    assert set(result) == {"EventId"}
    [(_, _, event)] = recorder.calls
    assert event == {
        "version": "0",
        "id": result["EventId"],
        "detail-type": "Order Placed",
        "source": "com.example.orders",
        "account": ACCOUNT,
        "time": "2024-03-04T05:06:07Z",
        "region": REGION,
        "resources": ["arn:aws:dynamodb:eu-west-1:123456789012:table/orders"],
        "detail": {"order": {"id": "o-1", "total": 42.5}, "channel": "web"},
    }
    uuid.UUID(result["EventId"])


def test_put_events_time_and_bus_name(bus: EventBus, recorder: Recorder) -> None:
    bus.put_rule(make_rule("custom", {"source": ["app"]}, bus_name="ml-bus"))
    entry = {
        "Source": "app",
        "DetailType": "x",
        "Detail": "{}",
        "Time": datetime(2023, 5, 6, 7, 8, 9, tzinfo=UTC),
        "EventBusName": f"arn:aws:events:{REGION}:{ACCOUNT}:event-bus/ml-bus",
    }
    bus.put_events([entry])
    [(name, _, event)] = recorder.calls
    assert name == "custom"
    assert event["time"] == "2023-05-06T07:08:09Z"
    assert event["resources"] == []
    # the same event on the default bus does not reach the custom bus's rule
    bus.put_events([{**entry, "EventBusName": "default"}])
    assert len(recorder.calls) == 1


def test_put_events_entry_errors_do_not_stop_other_entries(bus: EventBus, recorder: Recorder) -> None:
    bus.put_rule(make_rule("all", {"source": ["app", "aws.s3"]}))
    results = bus.put_events(
        [
            {"Source": "app", "DetailType": "x"},
            {"Source": "app", "DetailType": "x", "Detail": "{not json"},
            {"Source": "app", "DetailType": "x", "Detail": "[1, 2]"},
            {"Source": "aws.s3", "DetailType": "Object Created", "Detail": "{}"},
            {"Source": "app", "DetailType": "x", "Detail": '{"ok": true}'},
        ]
    )
    assert [r.get("ErrorCode") for r in results] == [
        "InvalidArgument",
        "MalformedDetail",
        "MalformedDetail",
        "NotAuthorizedForSourceException",
        None,
    ]
    assert all("ErrorMessage" in r for r in results[:4])
    assert "EventId" in results[4]
    assert [payload["detail"] for _, _, payload in recorder.calls] == [{"ok": True}]


def test_put_events_entry_count_limits(bus: EventBus) -> None:
    with pytest.raises(ValueError):
        bus.put_events([])
    with pytest.raises(ValueError):
        bus.put_events([ORDER_ENTRY] * 11)


# --- routing -------------------------------------------------------------------------------------------------------


def test_routing_to_several_rules_and_targets(bus: EventBus, recorder: Recorder) -> None:
    bus.put_rule(
        make_rule(
            "incoming",
            {
                "source": ["aws.s3"],
                "detail-type": ["Object Created"],
                "detail": {"object": {"key": [{"prefix": "incoming/"}]}},
            },
            Target(id="sfn", arn=f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:validate"),
            Target(id="audit", arn=f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:audit"),
        )
    )
    bus.put_rule(make_rule("csv-only", {"source": ["aws.s3"], "detail": {"object": {"key": [{"suffix": ".csv"}]}}}))
    bus.put_rule(make_rule("other-bucket", {"detail": {"bucket": {"name": ["elsewhere"]}}}))

    bus.emit(s3_object_created("data", "incoming/a.csv"))
    assert sorted((rule, target) for rule, target, _ in recorder.calls) == [
        ("csv-only", "t1"),
        ("incoming", "audit"),
        ("incoming", "sfn"),
    ]
    recorder.calls.clear()
    bus.emit(s3_object_created("data", "validated/a.parquet"))
    assert recorder.calls == []
    assert len(bus.history) == 3
    assert all(d.ok for d in bus.history)


def test_disabled_rules_receive_nothing(bus: EventBus, recorder: Recorder) -> None:
    pattern = {"source": ["aws.s3"]}
    bus.put_rule(make_rule("off", pattern, state="DISABLED"))
    bus.emit(s3_object_created("data", "k"))
    assert recorder.calls == []
    bus.put_rule(make_rule("off", pattern, state="ENABLED"))  # replacing the rule re-enables it
    bus.emit(s3_object_created("data", "k"))
    assert [name for name, _, _ in recorder.calls] == ["off"]


def test_remove_rule(bus: EventBus, recorder: Recorder) -> None:
    bus.put_rule(make_rule("r", {"source": ["aws.s3"]}))
    bus.remove_rule("r")
    bus.emit(s3_object_created("data", "k"))
    assert recorder.calls == [] and bus.rules() == []


def test_put_rule_validates_the_pattern(bus: EventBus) -> None:
    with pytest.raises(PatternError):
        bus.put_rule(make_rule("bad", {"source": "aws.s3"}))
    with pytest.raises(PatternError):
        bus.put_rule(make_rule("bad", {"source": [{"numeric": ["<", "x"]}]}))
    with pytest.raises(ValueError):
        bus.put_rule(make_rule("neither"))
    with pytest.raises(ValueError):
        bus.put_rule(make_rule("state", {"source": ["a"]}, state="PAUSED"))
    assert bus.rules() == []


def test_pattern_given_as_json_text(bus: EventBus, recorder: Recorder) -> None:
    bus.put_rule(make_rule("text", json.dumps({"source": ["aws.s3"]})))
    bus.emit(s3_object_created("data", "k"))
    assert len(recorder.calls) == 1


# --- target input --------------------------------------------------------------------------------------------------


def test_target_input_forms(bus: EventBus, recorder: Recorder) -> None:
    transformer = {
        "InputPathsMap": {"bucket": "$.detail.bucket.name", "key": "$.detail.object.key"},
        "InputTemplate": (
            '{"bucket": <bucket>, "key": <key>, "uri": "s3://<bucket>/<key>", "rule": <aws.events.rule-name>}'
        ),
    }
    bus.put_rule(
        make_rule(
            "shapes",
            {"source": ["aws.s3"]},
            Target(id="whole", arn="arn:1"),
            Target(id="constant", arn="arn:2", input='{"mode": "nightly"}'),
            Target(id="path", arn="arn:3", input_path="$.detail.object"),
            Target(id="transformed", arn="arn:4", input_transformer=transformer),
            Target(
                id="text",
                arn="arn:5",
                input_transformer={"InputPathsMap": {"key": "$.detail.object.key"}, "InputTemplate": "uploaded <key>"},
            ),
        )
    )
    event = s3_object_created("data", "incoming/x.csv")
    bus.emit(event)
    payloads = {target: payload for _, target, payload in recorder.calls}
    assert payloads["whole"] == event
    assert payloads["constant"] == {"mode": "nightly"}
    assert payloads["path"] == {"key": "incoming/x.csv", "size": 10}
    assert payloads["transformed"] == {
        "bucket": "data",
        "key": "incoming/x.csv",
        "uri": "s3://data/incoming/x.csv",
        "rule": "shapes",
    }
    assert payloads["text"] == "uploaded incoming/x.csv"


def test_targets_get_independent_copies(bus: EventBus) -> None:
    seen: list[dict] = []

    def mutating(rule: Rule, target: Target, payload: Any) -> None:
        seen.append(json.loads(json.dumps(payload)))
        payload["detail"] = "clobbered"

    mutating_bus = EventBus(mutating)
    mutating_bus.put_rule(
        make_rule("r", {"source": ["aws.s3"]}, Target(id="a", arn="arn:a"), Target(id="b", arn="arn:b"))
    )
    event = s3_object_created("data", "k")
    mutating_bus.emit(event)
    assert seen[0] == seen[1] == event


# --- failures --------------------------------------------------------------------------------------------------------


def test_failing_deliver_is_recorded_not_raised(clock: FakeClock) -> None:
    delivered: list[str] = []

    def deliver(rule: Rule, target: Target, payload: Any) -> None:
        if target.id == "broken":
            raise RuntimeError("target is down")
        delivered.append(target.id)

    bus = EventBus(deliver, clock=clock)
    bus.put_rule(
        make_rule("r", {"source": ["app"]}, Target(id="broken", arn="arn:broken"), Target(id="fine", arn="arn:fine"))
    )
    [result] = bus.put_events([{"Source": "app", "DetailType": "x", "Detail": "{}"}])
    assert "EventId" in result
    assert delivered == ["fine"]
    by_target = {d.target_id: d for d in bus.history}
    assert by_target["broken"].error == "RuntimeError: target is down"
    assert not by_target["broken"].ok
    assert by_target["broken"].event_id == result["EventId"]
    assert by_target["fine"].ok


def test_bad_input_path_is_a_recorded_delivery_error(bus: EventBus, recorder: Recorder) -> None:
    bus.put_rule(make_rule("r", {"source": ["aws.s3"]}, Target(id="t", arn="arn:t", input_path="detail.object")))
    bus.emit(s3_object_created("data", "k"))
    assert recorder.calls == []
    [delivery] = bus.history
    assert delivery.error and "JSON path" in delivery.error


def test_history_is_bounded(recorder: Recorder) -> None:
    bus = EventBus(recorder, max_history=3)
    bus.put_rule(make_rule("r", {"source": ["aws.s3"]}))
    for i in range(5):
        bus.emit(s3_object_created("data", f"k{i}"))
    assert len(bus.history) == 3
    assert [d.payload["detail"]["object"]["key"] for d in bus.history] == ["k2", "k3", "k4"]


# --- schedules -------------------------------------------------------------------------------------------------------


def test_rate_schedule_fires_at_the_right_times(bus: EventBus, recorder: Recorder, clock: FakeClock) -> None:
    start = clock.now
    bus.put_rule(make_rule("every-5", schedule_expression="rate(5 minutes)"))
    bus.fire_schedules(start + 299)
    assert recorder.calls == []
    bus.fire_schedules(start + 300)
    assert len(recorder.calls) == 1
    bus.fire_schedules(start + 301)  # not due again yet
    assert len(recorder.calls) == 1
    bus.fire_schedules(start + 600)
    assert len(recorder.calls) == 2
    # a long gap fires once, not once per missed period, and keeps the original phase
    bus.fire_schedules(start + 3000 + 10)
    assert len(recorder.calls) == 3
    assert bus.next_fire_time("every-5") == start + 3300

    [_, _, event] = recorder.calls[0]
    assert event["source"] == "aws.events"
    assert event["detail-type"] == "Scheduled Event"
    assert event["resources"] == [rule_arn("every-5")]
    assert event["detail"] == {}
    assert event["account"] == ACCOUNT and event["region"] == REGION
    assert event["time"] == "2024-01-01T00:05:00Z"


def test_rate_units(bus: EventBus, recorder: Recorder, clock: FakeClock) -> None:
    bus.put_rule(make_rule("hourly", schedule_expression="rate(1 hour)"))
    bus.put_rule(make_rule("daily", schedule_expression="rate(1 day)"))
    bus.put_rule(make_rule("minutely", schedule_expression="rate(1 minute)"))
    bus.fire_schedules(clock.now + 3600)
    assert sorted(name for name, _, _ in recorder.calls) == ["hourly", "minutely"]
    bus.fire_schedules(clock.now + 86400)
    assert sorted(name for name, _, _ in recorder.calls) == ["daily", "hourly", "hourly", "minutely", "minutely"]


def test_cron_schedule_weekdays(bus: EventBus, recorder: Recorder, clock: FakeClock) -> None:
    # 2024-01-05 is a Friday; the rule fires at 18:00 UTC Monday to Friday
    clock.now = ts("2024-01-05T12:00:00")
    bus.put_rule(make_rule("weekday-evening", schedule_expression="cron(0 18 ? * MON-FRI *)"))
    bus.fire_schedules(ts("2024-01-05T17:59:00"))
    assert recorder.calls == []
    bus.fire_schedules(ts("2024-01-05T18:00:00"))
    assert [e["time"] for _, _, e in recorder.calls] == ["2024-01-05T18:00:00Z"]
    bus.fire_schedules(ts("2024-01-06T18:00:00"))  # Saturday: nothing due
    bus.fire_schedules(ts("2024-01-07T18:30:00"))  # Sunday
    assert len(recorder.calls) == 1
    assert bus.next_fire_time("weekday-evening") == ts("2024-01-08T18:00:00")
    bus.fire_schedules(ts("2024-01-08T18:00:30"))
    assert [e["time"] for _, _, e in recorder.calls][-1] == "2024-01-08T18:00:00Z"


def test_disabled_schedule_skips_its_occurrences(bus: EventBus, recorder: Recorder, clock: FakeClock) -> None:
    start = clock.now
    bus.put_rule(make_rule("paused", schedule_expression="rate(1 minute)", state="DISABLED"))
    bus.fire_schedules(start + 600)
    assert recorder.calls == []
    assert bus.next_fire_time("paused") == start + 660


@pytest.mark.parametrize(
    ("expression", "after", "expected"),
    [
        # examples from the EventBridge "Schedule expressions for rules" page
        ("cron(0 10 * * ? *)", "2024-01-01T10:00:00", ["2024-01-02T10:00", "2024-01-03T10:00"]),
        ("cron(15 12 * * ? *)", "2024-01-01T00:00:00", ["2024-01-01T12:15", "2024-01-02T12:15"]),
        ("cron(0 18 ? * MON-FRI *)", "2024-01-05T19:00:00", ["2024-01-08T18:00", "2024-01-09T18:00"]),
        ("cron(0 8 1 * ? *)", "2024-01-01T09:00:00", ["2024-02-01T08:00", "2024-03-01T08:00"]),
        ("cron(0/15 * * * ? *)", "2024-01-01T00:07:00", ["2024-01-01T00:15", "2024-01-01T00:30"]),
        ("cron(0/10 * ? * MON-FRI *)", "2024-01-05T23:55:00", ["2024-01-08T00:00", "2024-01-08T00:10"]),
        ("cron(0/5 8-17 ? * MON-FRI *)", "2024-01-05T17:52:00", ["2024-01-05T17:55", "2024-01-08T08:00"]),
        ("cron(0 9 ? * 2#1 *)", "2024-01-02T00:00:00", ["2024-02-05T09:00", "2024-03-04T09:00"]),
        # L, W, nL and names
        ("cron(0 8 L * ? *)", "2024-02-01T00:00:00", ["2024-02-29T08:00", "2024-03-31T08:00"]),
        ("cron(0 8 15W * ? *)", "2024-06-01T00:00:00", ["2024-06-14T08:00", "2024-07-15T08:00"]),
        ("cron(30 23 ? * 6L 2024)", "2024-11-01T00:00:00", ["2024-11-29T23:30", "2024-12-27T23:30"]),
        ("cron(0 0 1 JAN,JUL ? *)", "2024-01-01T00:00:00", ["2024-07-01T00:00", "2025-01-01T00:00"]),
        ("cron(0 12 ? * SUN *)", "2024-01-01T00:00:00", ["2024-01-07T12:00", "2024-01-14T12:00"]),
    ],
)
def test_cron_next_fire_times(expression: str, after: str, expected: list[str]) -> None:
    schedule = parse_schedule(expression)
    t = ts(after)
    got = []
    for _ in expected:
        t = schedule.next_after(t)
        got.append(datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M"))
    assert got == expected


def test_cron_with_a_past_year_never_fires() -> None:
    assert parse_schedule("cron(0 0 1 1 ? 2020)").next_after(ts("2024-01-01T00:00:00")) is None


@pytest.mark.parametrize(
    "expression",
    [
        "rate(5 minute)",
        "rate(1 minutes)",
        "rate(0 minutes)",
        "rate(5 weeks)",
        "rate(five minutes)",
        "cron(0 10 * * * *)",  # both day fields given
        "cron(0 10 ? * ? *)",  # neither day field given
        "cron(0 10 * * ?)",  # five fields
        "cron(60 10 * * ? *)",
        "cron(0 24 * * ? *)",
        "cron(0 10 32 * ? *)",
        "cron(0 10 ? * MOO *)",
        "cron(0/0 10 * * ? *)",
        "every 5 minutes",
    ],
)
def test_invalid_schedule_expressions(expression: str) -> None:
    with pytest.raises(ScheduleError):
        parse_schedule(expression)


def test_schedules_only_on_the_default_bus(bus: EventBus) -> None:
    with pytest.raises(ScheduleError):
        bus.put_rule(make_rule("s", schedule_expression="rate(1 hour)", bus_name="custom"))
