"""Time on the twin's ASL engine: which durations follow ``time_scale`` and which do not.

The rule (so that a fast clock can never contradict AWS):

- **Waiting scales.** Wait states and the intervals between retries are the engine's own
  waiting: with ``time_scale`` 0.01 a ``"Seconds": 600`` Wait takes 6 real seconds.
- **Work does not.** Lambdas, SageMaker jobs and child executions take their real time on
  the twin, so the timeouts that bound them — a Task's ``TimeoutSeconds`` (or
  ``TimeoutSecondsPath``), its ``HeartbeatSeconds`` — are real seconds, never scaled.
  Scaling them would time out at 0.005 any Task running longer than 0.5% of its timeout
  while the work itself goes on.
- **An execution's ``TimeoutSeconds``** counts the way AWS counts it: real time for the
  work, plus the full (unscaled) length of the waits. The waits of the execution's main
  path (states outside Parallel branches and Map iterations) are credited exactly; waits
  inside branches and iterations, which overlap other work, are not credited, so the twin
  may let such an execution run longer than AWS would, but never ends one that AWS would
  let finish. The deadline is therefore never shorter in real time than ``TimeoutSeconds``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager


def scaled(twin_seconds: float, time_scale: float) -> float:
    """Real seconds a wait of ``twin_seconds`` takes."""
    return max(0.0, twin_seconds) * time_scale


class ExecutionClock:
    """Elapsed time of one execution as AWS would count it (see the module docstring)."""

    def __init__(self, time_scale: float) -> None:
        self.time_scale = time_scale
        self.changed = threading.Event()  # set when a main-path wait starts or ends, or the run ends
        self._start = time.monotonic()
        self._credit = 0.0  # twin seconds of finished main-path waits, beyond the real time they took
        self._since: float | None = None  # real start of the main-path wait under way
        self._lock = threading.Lock()

    @property
    def _gain(self) -> float:
        return 1.0 / self.time_scale - 1.0  # extra twin seconds per real second of waiting

    def elapsed(self) -> float:
        with self._lock:
            now = time.monotonic()
            waiting = (now - self._since) * self._gain if self._since is not None else 0.0
            return now - self._start + self._credit + waiting

    def rate(self) -> float:
        """Counted seconds per real second right now."""
        with self._lock:
            return 1.0 / self.time_scale if self._since is not None else 1.0

    @contextmanager
    def waiting(self) -> Iterator[None]:
        """Around a main-path wait: its length counts unscaled."""
        with self._lock:
            self._since = time.monotonic()
        self.changed.set()
        try:
            yield
        finally:
            with self._lock:
                if self._since is not None:
                    self._credit += (time.monotonic() - self._since) * self._gain
                self._since = None
            self.changed.set()

    def real_seconds_until(self, limit: float) -> float:
        """Real seconds until ``elapsed()`` reaches ``limit`` at the current rate (<= 0: reached)."""
        return (limit - self.elapsed()) / self.rate()
