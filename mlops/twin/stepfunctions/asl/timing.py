"""Time on the twin's ASL engine: which durations follow ``time_scale`` and which do not.

The rule (so that a fast clock can never contradict AWS):

- **Waiting scales.** Wait states and the intervals between retries are the engine's own
  waiting: with ``time_scale`` 0.01 a ``"Seconds": 600`` Wait takes 6 real seconds.
- **Work does not.** Lambdas, SageMaker jobs and child executions take their real time on
  the twin, so the timeouts that bound them — a Task's ``TimeoutSeconds`` (or
  ``TimeoutSecondsPath``), its ``HeartbeatSeconds`` — are real seconds, never scaled.
  Scaling them would time out at 0.005 any Task running longer than 0.5% of its timeout
  while the work itself goes on. (HeartbeatSeconds reaches the task unscaled; the twin has
  no SendTaskHeartbeat, so it does not enforce heartbeats.)
- **An execution's ``TimeoutSeconds``** counts the way AWS counts it: real time for the
  work, plus each wait at its full (unscaled) length, however long it really took (an
  overslept poll adds nothing). Work is therefore never counted faster than real time. The
  waits of the execution's main path (states outside Parallel branches and Map iterations)
  count exactly; waits inside branches and iterations, which overlap other work, are not
  counted, so the twin may let such an execution run longer than AWS would, but never ends
  one that AWS would let finish. An execution that ends past its limit is TIMED_OUT, as the
  limit would have stopped it first.
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
    """Elapsed time of one execution as AWS would count it (see the module docstring): real
    time, except that a main-path wait counts as its own length, however long it really took."""

    def __init__(self, time_scale: float) -> None:
        self.time_scale = time_scale
        self.changed = threading.Event()  # set when a main-path wait starts or ends, or the run ends
        self._start = time.monotonic()
        self._credit = 0.0  # counted minus real seconds of the finished main-path waits
        self._since: float | None = None  # real start of the main-path wait under way
        self._length = 0.0  # its length in twin seconds
        self._lock = threading.Lock()

    def _counted(self, spent: float, length: float) -> float:
        """Twin seconds of a wait of ``length`` after ``spent`` real seconds (never past its end)."""
        return min(spent / self.time_scale, length)

    def elapsed(self) -> float:
        with self._lock:
            now = time.monotonic()
            total = now - self._start + self._credit
            if self._since is not None:
                spent = now - self._since
                total += self._counted(spent, self._length) - spent
            return total

    def rate(self) -> float:
        """Counted seconds per real second right now."""
        with self._lock:
            if self._since is not None and (time.monotonic() - self._since) / self.time_scale < self._length:
                return 1.0 / self.time_scale
            return 1.0

    @contextmanager
    def waiting(self, twin_seconds: float) -> Iterator[None]:
        """Around a main-path wait of ``twin_seconds``: it counts that long, scaled or not."""
        with self._lock:
            self._since, self._length = time.monotonic(), max(0.0, twin_seconds)
        self.changed.set()
        try:
            yield
        finally:
            with self._lock:
                if self._since is not None:
                    spent = time.monotonic() - self._since
                    self._credit += self._counted(spent, self._length) - spent
                self._since = None
            self.changed.set()

    def real_seconds_until(self, limit: float) -> float:
        """Real seconds until ``elapsed()`` reaches ``limit`` at the current rate (<= 0: reached);
        never more than the truth, so a watcher waking then re-checks in time."""
        return (limit - self.elapsed()) / self.rate()
