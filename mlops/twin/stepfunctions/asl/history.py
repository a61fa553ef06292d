"""Execution history shaped like GetExecutionHistory events."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any


def now_iso() -> str:
    return datetime.now(UTC).isoformat()


def to_json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), default=str)


def details_key(event_type: str) -> str:
    """``TaskStateEntered`` -> ``stateEnteredEventDetails`` (one key for all state types)."""
    for suffix in ("StateEntered", "StateExited"):
        if event_type.endswith(suffix) and event_type != suffix:
            return "state" + suffix[len("State") :] + "EventDetails"
    return event_type[0].lower() + event_type[1:] + "EventDetails"


def split_resource(resource: str) -> tuple[str, str]:
    """(resourceType, resource) as AWS reports them for a Task's Resource ARN."""
    parts = resource.split(":")
    if resource.startswith("arn:aws:states:::") and len(parts) >= 7:
        if parts[5] == "aws-sdk" and len(parts) >= 8:
            return f"aws-sdk:{parts[6]}", ":".join(parts[7:])
        return parts[5], ":".join(parts[6:])
    if len(parts) >= 3 and parts[0] == "arn":
        return parts[2], resource
    return "unknown", resource


def entered_states(events: list[dict[str, Any]]) -> list[str]:
    """The names of the states an execution entered, in order, from its history."""
    return [e["stateEnteredEventDetails"]["name"] for e in events if e.get("type", "").endswith("StateEntered")]


def compress_states(states: list[str]) -> list[str]:
    """State names with repeated cycles folded: ``Wait → Describe → Settled? (9 times)``."""
    out: list[str] = []
    i = 0
    while i < len(states):
        for size in (3, 2, 1):
            cycle = states[i : i + size]
            repeats = 1
            while len(cycle) == size and states[i + repeats * size : i + (repeats + 1) * size] == cycle:
                repeats += 1
            if repeats > 1:
                out.append(f"{' → '.join(cycle)} ({repeats} times)")
                i += repeats * size
                break
        else:
            out.append(states[i])
            i += 1
    return out


class History:
    """Append-only event list shared by all branches; ids are assigned under a lock."""

    def __init__(self, events: list[dict[str, Any]], on_add: Callable[[], None] | None = None) -> None:
        self.events = events
        self.on_add = on_add  # told after each event (outside the lock)
        self._lock = threading.Lock()

    def add(self, event_type: str, previous: int, details: dict[str, Any] | None = None) -> int:
        with self._lock:
            event_id = len(self.events) + 1
            event: dict[str, Any] = {
                "id": event_id,
                "previousEventId": previous,
                "timestamp": now_iso(),
                "type": event_type,
            }
            if details is not None:
                event[details_key(event_type)] = details
            self.events.append(event)
        if self.on_add is not None:
            self.on_add()
        return event_id
