"""Retry and Catch: which retrier/catcher handles an error, and the backoff schedule."""

from __future__ import annotations

import random
from typing import Any

from mlops.twin.stepfunctions.asl.errors import error_matches


def find(entries: list[dict[str, Any]], error: str) -> int | None:
    """Index of the first retrier/catcher whose ErrorEquals handles ``error``."""
    for index, entry in enumerate(entries):
        if error_matches(entry.get("ErrorEquals", []), error):
            return index
    return None


def delay(retrier: dict[str, Any], attempt: int, rng: random.Random | None = None) -> float:
    """Seconds to wait before retry number ``attempt + 1`` (attempt counts from 0):
    IntervalSeconds * BackoffRate ** attempt, capped by MaxDelaySeconds, FULL jitter
    picks uniformly in [0, that]."""
    seconds = retrier.get("IntervalSeconds", 1) * retrier.get("BackoffRate", 2.0) ** attempt
    if "MaxDelaySeconds" in retrier:
        seconds = min(seconds, retrier["MaxDelaySeconds"])
    if retrier.get("JitterStrategy") == "FULL":
        seconds = (rng or random).uniform(0, seconds)
    return float(seconds)


def max_attempts(retrier: dict[str, Any]) -> int:
    return int(retrier.get("MaxAttempts", 3))
