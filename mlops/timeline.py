"""The app's one timeline: what time it is for cooldowns, locks and run records.

In AWS this is the wall clock. On the twin, time can run faster than the wall clock
(``--time-scale``) and must continue across restarts, so the twin publishes its clock in
a small JSON file and names the file in every Lambda's environment
(:data:`TWIN_CLOCK_ENV`). A record stamped by one twin run and read by another, or by a
twin started with another time scale, then means the same instant.

The file holds one linear mapping from the wall clock to twin time::

    {"real": <wall-clock epoch seconds at the anchor>,
     "twin": <twin epoch seconds at the anchor>,
     "scale": <wall seconds per twin second, e.g. 0.01>}

so ``twin_now = twin + (time.time() - real) / scale``. The twin rewrites the file
(atomically) whenever the mapping changes; readers pick up the change at their next call.
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

TWIN_CLOCK_ENV = "MLOPS_TWIN_CLOCK"


class ClockError(RuntimeError):
    """The twin named a clock file that cannot be read: never fall back to the wall clock silently."""


@dataclass(frozen=True)
class ClockMapping:
    real: float  # wall-clock epoch seconds at the anchor
    twin: float  # twin epoch seconds at the anchor
    scale: float  # wall seconds per twin second

    def at(self, wall: float) -> float:
        return self.twin + (wall - self.real) / self.scale

    def to_json(self) -> str:
        return json.dumps({"real": self.real, "twin": self.twin, "scale": self.scale})


_cache: dict[str, tuple[int, ClockMapping]] = {}
_cache_lock = threading.Lock()


def _mapping(path: str) -> ClockMapping:
    try:
        stamp = os.stat(path).st_mtime_ns
        with _cache_lock:
            cached = _cache.get(path)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        raw = json.loads(Path(path).read_text())
        mapping = ClockMapping(float(raw["real"]), float(raw["twin"]), float(raw["scale"]))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ClockError(f"{TWIN_CLOCK_ENV}={path}: cannot read the twin's clock ({exc})") from None
    if mapping.scale <= 0:
        raise ClockError(f"{TWIN_CLOCK_ENV}={path}: scale must be positive, found {mapping.scale}")
    with _cache_lock:
        _cache[path] = (stamp, mapping)
    return mapping


def now() -> float:
    """Epoch seconds on the app's timeline (the twin's clock when running on the twin)."""
    path = os.environ.get(TWIN_CLOCK_ENV)
    return _mapping(path).at(time.time()) if path else time.time()


def utcnow() -> datetime:
    return datetime.fromtimestamp(now(), UTC)


def iso(seconds: float | None = None) -> str:
    """An instant on the timeline as ISO 8601 UTC (now when not given)."""
    return datetime.fromtimestamp(now() if seconds is None else seconds, UTC).isoformat()


def publish(path: Path, mapping: ClockMapping) -> None:
    """Write the clock file for Lambdas to read (the twin's side of the contract), atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(mapping.to_json())
    tmp.replace(path)
