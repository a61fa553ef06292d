"""The twin's clock: real time, optionally sped up for schedules, alarms and metrics.

With ``time_scale`` 0.01 one real second is a hundred twin seconds, so an hourly
schedule fires every 36 real seconds and a 5-minute alarm period passes in 3.
"""

from __future__ import annotations

import time


class TwinClock:
    def __init__(self, time_scale: float = 1.0) -> None:
        if time_scale <= 0:
            raise ValueError("time_scale must be positive")
        self.time_scale = time_scale
        self._real_start = time.time()

    def now(self) -> float:
        elapsed = time.time() - self._real_start
        return self._real_start + elapsed / self.time_scale
