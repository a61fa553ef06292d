"""The Execution record (DescribeExecution plus its history)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field, fields
from typing import Any

STATUSES = ("RUNNING", "SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED")


def execution_arn(state_machine_arn: str, name: str) -> str:
    """``arn:aws:states:<region>:<account>:execution:<machine name>:<name>``."""
    parts = state_machine_arn.split(":")
    if len(parts) >= 7 and parts[5] == "stateMachine":
        return ":".join([*parts[:5], "execution", parts[6], name])
    return f"{state_machine_arn}:{name}"


@dataclass
class Execution:
    arn: str
    name: str
    state_machine_arn: str
    status: str = "RUNNING"
    input: Any = None
    output: Any = None
    error: str | None = None
    cause: str | None = None
    start_date: str = ""
    stop_date: str | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    _done: threading.Event = field(default_factory=threading.Event, init=False, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self) if not f.name.startswith("_")}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Execution:
        names = {f.name for f in fields(cls) if not f.name.startswith("_")}
        execution = cls(**{k: v for k, v in data.items() if k in names})
        if execution.status != "RUNNING":
            execution._done.set()
        return execution

    def wait(self, timeout: float | None = None) -> bool:
        """True once the execution has stopped (any terminal status)."""
        return self._done.wait(timeout)

    def failed_state(self) -> str | None:
        """The state the failure happened in: the innermost state entered and never exited."""
        if self.status == "SUCCEEDED" or self.status == "RUNNING":
            return None
        open_states: list[str] = []
        for event in self.history:
            kind = event.get("type", "")
            if kind.endswith("StateEntered"):
                open_states.append(event["stateEnteredEventDetails"]["name"])
            elif kind.endswith("StateExited"):
                name = event["stateExitedEventDetails"]["name"]
                for index in range(len(open_states) - 1, -1, -1):
                    if open_states[index] == name:
                        del open_states[index]
                        break
        return open_states[-1] if open_states else None
