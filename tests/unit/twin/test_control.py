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


def test_a_restart_kills_what_a_dead_twin_left_running(tmp_path: Path) -> None:
    from mlops.twin.daemon import reap_orphans

    job_dir = tmp_path / "sagemaker" / "training" / "job-1"
    job_dir.mkdir(parents=True)
    # a "daemon" in its own session starts a long job in the work dir, then dies without cleaning up
    leader = subprocess.Popen(
        ["sh", "-c", f"cd {job_dir} && sleep 120 & echo $!"],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    orphan = int(leader.stdout.readline())
    leader.wait()
    (tmp_path / STATE_FILE).write_text(json.dumps({"pid": leader.pid, "cdk_out": str(tmp_path / "cdk.out")}))
    assert Path(f"/proc/{orphan}").exists()

    assert reap_orphans(tmp_path) == [orphan]
    deadline = time.monotonic() + 5
    while Path(f"/proc/{orphan}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not Path(f"/proc/{orphan}").exists() or "Z" in Path(f"/proc/{orphan}/stat").read_text().split()[2]
    assert not (tmp_path / STATE_FILE).exists()
