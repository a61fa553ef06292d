"""Execution records on disk: ``<workdir>/executions/<machine>/<name>.json``.

Each write goes to a temporary file that then replaces the record (``os.replace`` is
atomic), so a kill -9 at any moment leaves either the previous record or the new one,
never a torn file. Records of a start or an end are also fsync'd (file and directory),
so they survive a crash of the machine too; progress writes in between are not (the
page cache survives the death of the process, which is the case that matters here).
``mlops.twin.control`` and the CLI read these files.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path
from typing import Any

from mlops.twin.stepfunctions.asl import Execution

log = logging.getLogger("mlops.twin.stepfunctions")


def snapshot(execution: Execution) -> dict[str, Any]:
    """The record as JSON data; the history is copied, as other threads append to it."""
    data = execution.to_dict()
    data["history"] = list(execution.history)
    return data


class ExecutionStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self._lock = threading.Lock()  # one writer at a time: a later write is never older

    def path(self, execution: Execution) -> Path:
        machine = execution.state_machine_arn.rsplit(":", 1)[-1]
        return self.root / machine / f"{execution.name}.json"

    def save(self, execution: Execution, *, durable: bool = False) -> None:
        path = self.path(execution)
        with self._lock:
            # Taken under the lock: writes land in the order their snapshots were taken.
            text = json.dumps(snapshot(execution), default=str, indent=1)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.tmp")
            with tmp.open("w", encoding="utf-8") as f:
                f.write(text)
                if durable:
                    f.flush()
                    os.fsync(f.fileno())
            os.replace(tmp, path)
            if durable:
                _fsync_dir(path.parent)

    def load_all(self) -> list[Execution]:
        """Every readable record; unreadable ones are logged and left in place."""
        found = []
        for path in sorted(self.root.glob("*/*.json")):
            try:
                found.append(Execution.from_dict(json.loads(path.read_text(encoding="utf-8"))))
            except (OSError, ValueError, TypeError) as exc:
                log.warning("execution record %s is unreadable (%s): left as it is", path, exc)
        return found


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
