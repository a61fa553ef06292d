"""An in-process EventBridge event bus for the local twin.

Rules carry their real EventPattern (matched by :mod:`mlops.twin.events.patterns`) or ScheduleExpression
(``rate(...)`` / six-field ``cron(...)``, evaluated in UTC); each matching, enabled rule's targets receive the
event shaped by the target's Input, InputPath or InputTransformer. Delivery is synchronous through a callback;
callback errors are recorded in :attr:`EventBus.history` and never reach the publisher.
"""

from __future__ import annotations

import calendar
import copy
import json
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from mlops.twin.events.patterns import apply_input_path, apply_input_transformer, matches, validate_pattern

__all__ = ["CronSchedule", "Delivery", "EventBus", "Rule", "ScheduleError", "Target", "parse_schedule"]

DEFAULT_BUS = "default"
MAX_PUT_EVENTS_ENTRIES = 10


@dataclass
class Target:
    id: str
    arn: str
    input: str | None = None
    input_path: str | None = None
    input_transformer: dict | None = None  # {"InputPathsMap": {...}, "InputTemplate": "..."}
    role_arn: str | None = None  # the role EventBridge assumes to call the target (IAM on the twin)
    # Described by ListTargetsByRule as the template gives them (role, dead-letter queue, retries, ...).
    properties: dict = field(default_factory=dict)

    @classmethod
    def from_properties(cls, props: dict) -> Target:
        """A target from its ``AWS::Events::Rule`` ``Targets`` entry (intrinsics resolved)."""
        return cls(
            id=props.get("Id", ""),
            arn=props["Arn"],
            input=props.get("Input"),
            input_path=props.get("InputPath"),
            input_transformer=props.get("InputTransformer"),
            role_arn=props.get("RoleArn"),
            properties=dict(props),
        )


@dataclass
class Rule:
    name: str
    arn: str
    bus_name: str = DEFAULT_BUS
    event_pattern: dict | None = None
    schedule_expression: str | None = None
    state: str = "ENABLED"  # or "DISABLED"
    targets: list[Target] = field(default_factory=list)
    description: str | None = None
    role_arn: str | None = None

    @classmethod
    def from_properties(cls, name: str, arn: str, props: dict) -> Rule:
        """A rule from its ``AWS::Events::Rule`` properties (intrinsics resolved)."""
        bus = props.get("EventBusName", DEFAULT_BUS)
        return cls(
            name=name,
            arn=arn,
            bus_name=bus.rsplit("/", 1)[-1] if isinstance(bus, str) else DEFAULT_BUS,
            event_pattern=props.get("EventPattern"),
            schedule_expression=props.get("ScheduleExpression"),
            state=props.get("State", "ENABLED"),
            targets=[Target.from_properties(t) for t in props.get("Targets", [])],
            description=props.get("Description"),
            role_arn=props.get("RoleArn"),
        )


@dataclass
class Delivery:
    """One target invocation (or attempt) recorded in :attr:`EventBus.history`."""

    time: float
    event_id: str
    rule: str
    target_id: str
    target_arn: str
    payload: Any
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


class ScheduleError(ValueError):
    """A ScheduleExpression EventBridge would reject."""


# --------------------------------------------------------------------------------------------------------------
# Schedules
# --------------------------------------------------------------------------------------------------------------

_RATE = re.compile(r"^rate\(\s*(\d+)\s+(minute|minutes|hour|hours|day|days)\s*\)$")
_CRON = re.compile(r"^cron\((.*)\)$")
_UNIT_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}
_MONTHS = {name.upper(): i for i, name in enumerate(calendar.month_abbr) if name}  # "JAN" -> 1
_DAYS = {"SUN": 1, "MON": 2, "TUE": 3, "WED": 4, "THU": 5, "FRI": 6, "SAT": 7}


def _aws_weekday(d: date) -> int:
    """EventBridge numbers days 1=SUN .. 7=SAT."""
    return (d.weekday() + 1) % 7 + 1


def _last_day(d: date) -> int:
    return calendar.monthrange(d.year, d.month)[1]


def _value(token: str, names: dict[str, int], lo: int, hi: int, what: str) -> int:
    token = token.upper()
    if token in names:
        return names[token]
    if not token.isdigit() or not lo <= int(token) <= hi:
        raise ScheduleError(f"Parameter ScheduleExpression is not valid: bad {what} value {token!r}")
    return int(token)


def _parse_set(spec: str, lo: int, hi: int, what: str, names: dict[str, int] | None = None) -> frozenset[int]:
    names = names or {}
    out: set[int] = set()
    for part in spec.split(","):
        step = 1
        has_step = "/" in part
        if has_step:
            part, step_text = part.split("/", 1)
            if not step_text.isdigit() or int(step_text) == 0:
                raise ScheduleError(f"Parameter ScheduleExpression is not valid: bad {what} increment {step_text!r}")
            step = int(step_text)
        if part == "*":
            start, end = lo, hi
        elif "-" in part:
            a, b = part.split("-", 1)
            start, end = _value(a, names, lo, hi, what), _value(b, names, lo, hi, what)
        else:
            start = _value(part, names, lo, hi, what)
            end = hi if has_step else start  # "5/10" means from 5 every 10
        if start <= end:
            out.update(range(start, end + 1, step))
        else:  # wrapping range such as FRI-MON
            span = list(range(start, hi + 1)) + list(range(lo, end + 1))
            out.update(span[::step])
    return frozenset(out)


@dataclass(frozen=True)
class CronSchedule:
    """EventBridge's cron(Minutes Hours Day-of-month Month Day-of-week Year), in UTC."""

    minutes: frozenset[int]
    hours: frozenset[int]
    dom: tuple  # ("any",) | ("set", frozenset) | ("last",) | ("last-weekday",) | ("weekday", n)
    months: frozenset[int]
    dow: tuple  # ("any",) | ("set", frozenset) | ("last", weekday) | ("nth", weekday, n)
    years: frozenset[int]

    @classmethod
    def parse(cls, body: str) -> CronSchedule:
        fields = body.split()
        if len(fields) != 6:
            raise ScheduleError(f"Parameter ScheduleExpression is not valid: cron needs 6 fields, got {len(fields)}")
        minute, hour, dom, month, dow, year = fields
        if (dom == "?") == (dow == "?"):
            # EventBridge requires exactly one of day-of-month / day-of-week to be "?"
            raise ScheduleError("Parameter ScheduleExpression is not valid: use '?' in exactly one of the day fields")
        return cls(
            minutes=_parse_set(minute, 0, 59, "minutes"),
            hours=_parse_set(hour, 0, 23, "hours"),
            dom=cls._parse_dom(dom),
            months=_parse_set(month, 1, 12, "month", _MONTHS),
            dow=cls._parse_dow(dow),
            years=_parse_set(year, 1970, 2199, "year"),
        )

    @staticmethod
    def _parse_dom(spec: str) -> tuple:
        if spec in ("?", "*"):
            return ("any",)
        if spec == "L":
            return ("last",)
        if spec == "LW":
            return ("last-weekday",)
        if spec.endswith("W"):
            return ("weekday", _value(spec[:-1], {}, 1, 31, "day-of-month"))
        return ("set", _parse_set(spec, 1, 31, "day-of-month"))

    @staticmethod
    def _parse_dow(spec: str) -> tuple:
        if spec in ("?", "*"):
            return ("any",)
        if spec == "L":
            return ("set", frozenset({7}))
        if spec.endswith("L"):
            return ("last", _value(spec[:-1], _DAYS, 1, 7, "day-of-week"))
        if "#" in spec:
            day, nth = spec.split("#", 1)
            return ("nth", _value(day, _DAYS, 1, 7, "day-of-week"), _value(nth, {}, 1, 5, "day-of-week instance"))
        return ("set", _parse_set(spec, 1, 7, "day-of-week", _DAYS))

    def _dom_ok(self, d: date) -> bool:
        kind = self.dom[0]
        if kind == "any":
            return True
        if kind == "set":
            return d.day in self.dom[1]
        if kind == "last":
            return d.day == _last_day(d)
        if kind == "last-weekday":
            target = date(d.year, d.month, _last_day(d))
            while target.weekday() >= 5:
                target -= timedelta(days=1)
            return d == target
        # nearest weekday to day n, staying inside the month
        n = min(self.dom[1], _last_day(d))
        target = date(d.year, d.month, n)
        if target.weekday() == 5:
            target = target - timedelta(days=1) if n > 1 else target + timedelta(days=2)
        elif target.weekday() == 6:
            target = target + timedelta(days=1) if n < _last_day(d) else target - timedelta(days=2)
        return d == target

    def _dow_ok(self, d: date) -> bool:
        kind = self.dow[0]
        if kind == "any":
            return True
        if kind == "set":
            return _aws_weekday(d) in self.dow[1]
        if kind == "last":
            return _aws_weekday(d) == self.dow[1] and d.day + 7 > _last_day(d)
        return _aws_weekday(d) == self.dow[1] and (d.day - 1) // 7 + 1 == self.dow[2]

    def next_after(self, ts: float) -> float | None:
        """The first fire time strictly after ``ts`` (epoch seconds), or None if there is none within 5 years."""
        start = datetime.fromtimestamp(ts, tz=UTC).replace(second=0, microsecond=0) + timedelta(minutes=1)
        day = start.date()
        hours, minutes = sorted(self.hours), sorted(self.minutes)
        for _ in range(366 * 5):
            if day.year in self.years and day.month in self.months and self._dom_ok(day) and self._dow_ok(day):
                for h in hours:
                    for m in minutes:
                        candidate = datetime(day.year, day.month, day.day, h, m, tzinfo=UTC)
                        if candidate >= start:
                            return candidate.timestamp()
            day += timedelta(days=1)
        return None


@dataclass(frozen=True)
class RateSchedule:
    seconds: int

    def next_after(self, ts: float) -> float:
        return ts + self.seconds

    def first_after(self, due: float, now: float) -> float:
        """The first occurrence of the series ``due + k * seconds`` strictly after ``now``."""
        return due + ((now - due) // self.seconds + 1) * self.seconds


def parse_schedule(expression: str) -> RateSchedule | CronSchedule:
    """Parse ``rate(N unit)`` or ``cron(...)``; ScheduleError if EventBridge would reject it."""
    text = expression.strip()
    if m := _RATE.match(text):
        value, unit = int(m.group(1)), m.group(2)
        if value <= 0:
            raise ScheduleError(f"Parameter ScheduleExpression is not valid: rate must be positive: {expression}")
        # EventBridge wants "1 minute" but "5 minutes"
        if (value == 1) != (not unit.endswith("s")):
            raise ScheduleError(
                f"Parameter ScheduleExpression is not valid: use a singular unit for 1 and plural otherwise: "
                f"{expression}"
            )
        return RateSchedule(value * _UNIT_SECONDS[unit.rstrip("s")])
    if m := _CRON.match(text):
        return CronSchedule.parse(m.group(1))
    raise ScheduleError(f"Parameter ScheduleExpression is not valid: {expression}")


# --------------------------------------------------------------------------------------------------------------
# The bus
# --------------------------------------------------------------------------------------------------------------


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _event_time(value: Any, default: float) -> str:
    if value is None:
        return _iso(default)
    if isinstance(value, datetime):
        return _iso((value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp())
    if isinstance(value, int | float):
        return _iso(float(value))
    if isinstance(value, str):
        try:
            return _event_time(datetime.fromisoformat(value.replace("Z", "+00:00")), default)
        except ValueError:
            pass
    raise ValueError(f"Time must be a timestamp: {value!r}")


class _EntryError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class _ScheduleState:
    schedule: RateSchedule | CronSchedule
    next_due: float | None


class EventBus:
    """EventBridge for one account/region: any number of named buses, rules, schedules and targets."""

    def __init__(
        self,
        deliver: Callable[[Rule, Target, Any], None],
        *,
        account: str = "000000000000",
        region: str = "us-east-1",
        clock: Callable[[], float] = time.time,
        max_history: int = 10_000,
    ) -> None:
        self._deliver = deliver
        self.account = account
        self.region = region
        self._clock = clock
        self._max_history = max_history
        self._lock = threading.RLock()
        self._rules: dict[tuple[str, str], Rule] = {}
        self._schedules: dict[tuple[str, str], _ScheduleState] = {}
        self.history: list[Delivery] = []

    # -- rules ------------------------------------------------------------------------------------------------
    def put_rule(self, rule: Rule) -> None:
        """Create or replace a rule (keyed by bus and name). PatternError / ScheduleError if invalid."""
        if isinstance(rule.event_pattern, str):  # CloudFormation allows the pattern as JSON text
            validate_pattern(rule.event_pattern)
            rule.event_pattern = json.loads(rule.event_pattern)
        if rule.event_pattern is None and not rule.schedule_expression:
            raise ValueError(f"Rule {rule.name}: Parameter(s) EventPattern or ScheduleExpression must be specified.")
        if rule.state not in ("ENABLED", "DISABLED"):
            raise ValueError(f"Rule {rule.name}: State must be ENABLED or DISABLED, got {rule.state!r}")
        if rule.event_pattern is not None:
            validate_pattern(rule.event_pattern)
        schedule = None
        if rule.schedule_expression:
            if rule.bus_name != DEFAULT_BUS:
                raise ScheduleError(f"Rule {rule.name}: ScheduleExpression is supported only on the default event bus.")
            schedule = parse_schedule(rule.schedule_expression)
        key = (rule.bus_name, rule.name)
        with self._lock:
            self._rules[key] = rule
            self._schedules.pop(key, None)
            if schedule is not None:
                self._schedules[key] = _ScheduleState(schedule, schedule.next_after(self._clock()))

    def remove_rule(self, name: str, bus_name: str = DEFAULT_BUS) -> None:
        with self._lock:
            self._rules.pop((bus_name, name), None)
            self._schedules.pop((bus_name, name), None)

    def rules(self, bus_name: str | None = None) -> list[Rule]:
        with self._lock:
            return [r for (bus, _), r in self._rules.items() if bus_name is None or bus == bus_name]

    def next_fire_time(self, name: str) -> float | None:
        """When the default-bus schedule rule ``name`` is next due (None if not a schedule / never again)."""
        with self._lock:
            state = self._schedules.get((DEFAULT_BUS, name))
            return state.next_due if state else None

    # -- events -----------------------------------------------------------------------------------------------
    def put_events(self, entries: list[dict], route: Callable[[dict, str], None] | None = None) -> list[dict]:
        """PutEvents: build the envelope of each entry and route it (through ``route(event, bus)`` if given,
        else straight onto the bus). Returns one result per entry, in order."""
        if not 1 <= len(entries) <= MAX_PUT_EVENTS_ENTRIES:
            raise ValueError(f"PutEvents takes 1 to {MAX_PUT_EVENTS_ENTRIES} entries, got {len(entries)}")
        results: list[dict] = []
        accepted: list[tuple[dict, str]] = []
        for entry in entries:
            try:
                bus, event = self._envelope(entry)
            except _EntryError as err:
                results.append({"ErrorCode": err.code, "ErrorMessage": err.message})
                continue
            results.append({"EventId": event["id"]})
            accepted.append((event, bus))
        for event, bus in accepted:
            (route or self.emit)(event, bus)
        return results

    def emit(self, event: dict, bus_name: str = DEFAULT_BUS) -> None:
        """Route an already-built event envelope (e.g. an S3 "Object Created" event made by the twin)."""
        self._route(event, bus_name)

    def _envelope(self, entry: dict) -> tuple[str, dict]:
        source, detail_type, detail = entry.get("Source"), entry.get("DetailType"), entry.get("Detail")
        if not source or not detail_type or detail is None:
            raise _EntryError("InvalidArgument", "Parameter(s) Source, DetailType, Detail must be specified.")
        if str(source).startswith("aws."):
            raise _EntryError("NotAuthorizedForSourceException", "Not authorized for the source.")
        if isinstance(detail, str):
            try:
                detail = json.loads(detail)
            except json.JSONDecodeError:
                raise _EntryError("MalformedDetail", "Detail is malformed.") from None
        if not isinstance(detail, dict):
            raise _EntryError("MalformedDetail", "Detail is malformed.")
        resources = entry.get("Resources") or []
        if not isinstance(resources, list) or not all(isinstance(r, str) for r in resources):
            raise _EntryError("InvalidArgument", "Parameter Resources must be a list of strings.")
        try:
            when = _event_time(entry.get("Time"), self._clock())
        except ValueError as exc:
            raise _EntryError("InvalidArgument", str(exc)) from None
        bus = entry.get("EventBusName") or DEFAULT_BUS
        bus = bus.rsplit("event-bus/", 1)[-1] if bus.startswith("arn:") else bus
        event = {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": detail_type,
            "source": source,
            "account": self.account,
            "time": when,
            "region": self.region,
            "resources": resources,
            "detail": detail,
        }
        return bus, event

    def _route(self, event: dict, bus_name: str) -> None:
        received = self._clock()
        with self._lock:
            candidates = [r for (bus, _), r in self._rules.items() if bus == bus_name]
        for rule in candidates:
            if rule.state != "ENABLED" or rule.event_pattern is None:
                continue
            try:
                hit = matches(rule.event_pattern, event)
            except Exception as exc:  # a bad event must not stop other rules
                self._record(Delivery(received, str(event.get("id", "")), rule.name, "", "", None, f"match: {exc}"))
                continue
            if hit:
                self._deliver_to_targets(rule, event, received)

    def _deliver_to_targets(self, rule: Rule, event: dict, received: float) -> None:
        event_id = str(event.get("id", ""))
        for target in rule.targets:
            payload: Any = None
            try:
                payload = self._target_input(rule, target, event, received)
                self._deliver(rule, target, payload)
            except Exception as exc:  # recorded, never raised to the publisher
                self._record(
                    Delivery(
                        received, event_id, rule.name, target.id, target.arn, payload, f"{type(exc).__name__}: {exc}"
                    )
                )
            else:
                self._record(Delivery(received, event_id, rule.name, target.id, target.arn, payload))

    @staticmethod
    def _parse_json_text(text: str) -> Any:
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            return text

    def _target_input(self, rule: Rule, target: Target, event: dict, received: float) -> Any:
        """What the target receives, as a JSON-compatible value (a str for non-JSON text)."""
        if target.input is not None:
            return self._parse_json_text(target.input)
        if target.input_path:
            return copy.deepcopy(apply_input_path(target.input_path, event))
        if target.input_transformer:
            rendered = apply_input_transformer(
                target.input_transformer.get("InputPathsMap") or {},
                target.input_transformer["InputTemplate"],
                event,
                rule_name=rule.name,
                rule_arn=rule.arn,
                ingestion_time=received,
            )
            return self._parse_json_text(rendered)
        return copy.deepcopy(event)

    def _record(self, delivery: Delivery) -> None:
        with self._lock:
            self.history.append(delivery)
            if len(self.history) > self._max_history:
                del self.history[: len(self.history) - self._max_history]

    # -- schedules --------------------------------------------------------------------------------------------
    def fire_schedules(self, now: float) -> None:
        """Fire a "Scheduled Event" for every schedule rule due at ``now``.

        A rule fires at most once per call even if several periods were missed; disabled rules skip their
        occurrences rather than firing them late when re-enabled.
        """
        due: list[tuple[Rule, float]] = []
        with self._lock:
            for key, state in self._schedules.items():
                if state.next_due is None or state.next_due > now:
                    continue
                rule = self._rules[key]
                if rule.state == "ENABLED":
                    due.append((rule, state.next_due))
                if isinstance(state.schedule, RateSchedule):
                    state.next_due = state.schedule.first_after(state.next_due, now)
                else:
                    state.next_due = state.schedule.next_after(now)
        for rule, fire_time in due:
            event = {
                "version": "0",
                "id": str(uuid.uuid4()),
                "detail-type": "Scheduled Event",
                "source": "aws.events",
                "account": self.account,
                "time": _iso(fire_time),
                "region": self.region,
                "resources": [rule.arn],
                "detail": {},
            }
            self._deliver_to_targets(rule, event, now)
