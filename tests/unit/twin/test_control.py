"""Stopping a background twin: no 30 s wait on a child that has already exited (a zombie answers kill 0)."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

from mlops.twin import control
from mlops.twin.daemon import STATE_FILE


def test_stop_reaps_an_exited_child_at_once(tmp_path: Path) -> None:
    child = subprocess.Popen(["sleep", "60"])  # stands in for the daemon this process started
    (tmp_path / STATE_FILE).write_text(json.dumps({"pid": child.pid, "endpoint": "http://127.0.0.1:1"}))
    started = time.monotonic()
    assert control.stop(tmp_path, timeout_s=30)
    assert time.monotonic() - started < 5
    assert control.status(tmp_path) is None
