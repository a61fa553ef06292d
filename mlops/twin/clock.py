"""The twin's clock: one timeline for schedules, alarms, locks and cooldowns, across restarts.

With ``time_scale`` 0.01 one real second is a hundred twin seconds, so an hourly
schedule fires every 36 real seconds and a 5-minute alarm period passes in 3.

The timeline is kept in ``<workdir>/clock.json``: a restarted twin continues from where
the last one stopped (checkpointed every tick, so a kill -9 loses at most a tick), plus
the real time it was down, whatever time scale either run used. A record stamped with
twin time in one run therefore keeps its age in the next. Twin time runs ahead of the
wall clock once the scale is below 1; Lambda functions see the same timeline (see
:func:`env` and ``mlops/twin/timeshim.py``); SageMaker jobs and the host keep real time.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

# "<twin anchor>:<real anchor>:<scale>" for processes the twin starts, read there by mlops.twin.timeshim
from mlops.twin.timeshim import CLOCK_ENV

STATE_FILE = "clock.json"


class TwinClock:
    def __init__(self, time_scale: float = 1.0, state_dir: Path | None = None) -> None:
        if time_scale <= 0:
            raise ValueError("time_scale must be positive")
        self.time_scale = time_scale
        self._path = state_dir / STATE_FILE if state_dir is not None else None
        self._lock = threading.Lock()
        self._real_start = time.time()
        self._twin_start = self._resume(self._real_start)

    def _resume(self, real_now: float) -> float:
        if self._path is None or not self._path.is_file():
            return real_now
        try:
            last = json.loads(self._path.read_text())
            twin, real = float(last["twin"]), float(last["real"])
        except (ValueError, KeyError, OSError):
            return real_now  # unreadable: start a new timeline rather than fail the twin
        return twin + max(real_now - real, 0.0)  # time passes at real speed while the twin is down

    def now(self) -> float:
        return self._twin_start + (time.time() - self._real_start) / self.time_scale

    def checkpoint(self) -> None:
        """Record where the timeline is, atomically (called every tick and at stop)."""
        if self._path is None:
            return
        with self._lock:
            real = time.time()
            twin = self._twin_start + (real - self._real_start) / self.time_scale
            tmp = self._path.with_name(STATE_FILE + ".tmp")
            tmp.write_text(json.dumps({"twin": twin, "real": real, "time_scale": self.time_scale}))
            os.replace(tmp, self._path)

    def env(self) -> dict[str, str]:
        """The environment that makes a child process see this timeline (``mlops.twin.timeshim``)."""
        return {CLOCK_ENV: f"{self._twin_start!r}:{self._real_start!r}:{self.time_scale!r}"}
