"""Make a process the twin starts (a Lambda worker) see the twin's timeline.

``install()`` reads ``MLOPS_TWIN_CLOCK`` (set from :meth:`mlops.twin.clock.TwinClock.env`)
and replaces ``time.time``/``time.time_ns`` and the ``now``/``utcnow``/``today`` constructors
of ``datetime`` with the twin's clock, so cooldowns, locks and timestamps the app writes
agree with the schedules and alarms the twin runs fast. Monotonic clocks (timeouts,
durations) keep real time. Standard library only: the worker imports it before any
handler code. Without the variable nothing changes, as in AWS.
"""

from __future__ import annotations

import datetime as _dt
import os
import time as _time

CLOCK_ENV = "MLOPS_TWIN_CLOCK"


def install(environ: dict[str, str] | None = None) -> bool:
    spec = (environ if environ is not None else os.environ).get(CLOCK_ENV)
    if not spec:
        return False
    twin_start, real_start, scale = (float(x) for x in spec.split(":"))
    real_time = _time.time

    def twin_time() -> float:
        return twin_start + (real_time() - real_start) / scale

    def twin_time_ns() -> int:
        return int(twin_time() * 1e9)

    real_datetime, real_date = _dt.datetime, _dt.date

    class _Accepts(type):
        # objects made by C code (or before install) are real datetimes: still datetimes
        def __instancecheck__(cls, obj: object) -> bool:
            return isinstance(obj, real_datetime if issubclass(cls, real_datetime) else real_date)

        def __subclasscheck__(cls, sub: type) -> bool:
            return issubclass(sub, real_datetime if issubclass(cls, real_datetime) else real_date)

    class TwinDatetime(_dt.datetime, metaclass=_Accepts):
        @classmethod
        def now(cls, tz: _dt.tzinfo | None = None) -> TwinDatetime:  # type: ignore[override]
            return cls.fromtimestamp(twin_time(), tz)

        @classmethod
        def utcnow(cls) -> TwinDatetime:  # type: ignore[override]
            return cls.fromtimestamp(twin_time(), _dt.UTC).replace(tzinfo=None)

        @classmethod
        def today(cls) -> TwinDatetime:  # type: ignore[override]
            return cls.fromtimestamp(twin_time())

    class TwinDate(_dt.date, metaclass=_Accepts):
        @classmethod
        def today(cls) -> TwinDate:  # type: ignore[override]
            return cls.fromtimestamp(twin_time())

    _time.time = twin_time
    _time.time_ns = twin_time_ns
    _dt.datetime = TwinDatetime  # type: ignore[misc]
    _dt.date = TwinDate  # type: ignore[misc]
    return True
