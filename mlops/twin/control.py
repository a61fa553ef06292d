"""Start, stop and query a twin running in the background, from another process."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3

from mlops.twin.clock import STATE_FILE as CLOCK_FILE
from mlops.twin.daemon import STATE_FILE, read_state

DEFAULT_PORT = 4599


class TwinError(RuntimeError):
    pass


@dataclass
class TwinHandle:
    workdir: Path
    state: dict[str, Any]

    @property
    def endpoint(self) -> str:
        return str(self.state["endpoint"])

    def client(self, service: str = "s3") -> Any:
        return boto3.client(
            service,
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id="operator",
            aws_secret_access_key="operator",
        )

    def bucket(self, role: str) -> str:
        """The bucket for a role (incoming, validated, artifacts, quarantine, capture), from the stack outputs."""
        for key, value in self.state.get("outputs", {}).items():
            name = key.split(".", 1)[-1].lower()
            if name.startswith(role.lower()) and "bucket" in name:
                return str(value)
        raise TwinError(f"no stack output for the {role} bucket in {self.workdir / STATE_FILE}")


def status(workdir: Path) -> TwinHandle | None:
    state = read_state(workdir)
    return TwinHandle(workdir, state) if state else None


def start(
    cdk_out: Path, workdir: Path, *, port: int = DEFAULT_PORT, time_scale: float = 1.0, iam: bool = True
) -> TwinHandle:
    running = status(workdir)
    if running:
        return running
    (workdir / "logs").mkdir(parents=True, exist_ok=True)
    log = (workdir / "logs" / "daemon.out").open("ab")
    cmd = [sys.executable, "-m", "mlops.twin.daemon", "--cdk-out", str(cdk_out), "--workdir", str(workdir)]
    cmd += ["--port", str(port), "--time-scale", str(time_scale), "--iam", "on" if iam else "off"]
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        handle = status(workdir)
        if handle and handle.state.get("pid") == proc.pid:
            return handle
        if proc.poll() is not None:
            tail = (workdir / "logs" / "daemon.out").read_text(errors="replace")[-3000:]
            raise TwinError(f"the twin exited during start (exit {proc.returncode}):\n{tail}")
        time.sleep(0.2)
    proc.terminate()
    raise TwinError("the twin did not become ready within 120 s; see " + str(workdir / "logs"))


def stop(workdir: Path, timeout_s: float = 30) -> bool:
    handle = status(workdir)
    if handle is None:
        return False
    pid = int(handle.state["pid"])
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not _alive(pid):
            (workdir / STATE_FILE).unlink(missing_ok=True)  # the daemon removes it too, unless killed
            return True
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)
    (workdir / STATE_FILE).unlink(missing_ok=True)
    return True


def _alive(pid: int) -> bool:
    """Whether the process runs; an exited child of ours (a zombie still answers ``kill 0``) is reaped."""
    try:
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    except ChildProcessError:  # not our child: its parent (or init) reaps it
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    if state == "Z":
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        return False
    return True


# What a twin keeps in its work directory, and what it is (for `mlops local reset`).
STATE = {
    "s3": "buckets, objects and their versions",
    "executions": "state machine executions and their histories",
    "sagemaker": "model package groups and packages, models, endpoint configs, endpoints, jobs and their files",
    "endpoints": "models loaded by endpoints",
    "cloudwatch": "metrics, alarm states and history",
    "logs": "Lambda and twin logs",
    "notifications.jsonl": "SNS messages",
    "events.jsonl": "events on the bus and their deliveries",
    "clock.json": "the twin's timeline",
    "demo": "demo datasets",
}


def twin_now(workdir: Path) -> float:
    """The twin's current time (its timeline, see ``mlops.twin.clock``); the wall clock if it has none."""
    try:
        last = json.loads((workdir / CLOCK_FILE).read_text())
        return float(last["twin"]) + (time.time() - float(last["real"])) / float(last["time_scale"])
    except (OSError, ValueError, KeyError, ZeroDivisionError):
        return time.time()


def reset(workdir: Path) -> list[tuple[Path, str]]:
    """Remove a stopped twin's state; what was removed, with what it held."""
    if status(workdir) is not None:
        raise TwinError("the twin is running: stop it first (`mlops local down`)")
    removed = []
    for name in sorted(p.name for p in workdir.iterdir()) if workdir.is_dir() else []:
        path = workdir / name
        what = STATE.get(name, "other twin state")
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
        removed.append((path, what))
    return removed


def load_executions(workdir: Path, machine: str = "") -> list[dict[str, Any]]:
    """Every recorded execution of the state machines whose name contains ``machine``, newest first."""
    found = []
    for path in (workdir / "executions").glob(f"*{machine}*/*.json"):
        try:
            found.append(json.loads(path.read_text()))
        except (json.JSONDecodeError, OSError):
            continue  # being written right now
    return sorted(found, key=lambda e: str(e.get("start_date", "")), reverse=True)


def wait_for_executions(
    workdir: Path,
    mentions: str,
    *,
    machine: str = "",
    count: int = 1,
    timeout_s: float = 300,
    poll_s: float = 0.3,
) -> list[dict[str, Any]]:
    """Wait until ``count`` executions of state machines named like ``machine`` whose input
    mentions ``mentions`` have ended."""
    deadline = time.monotonic() + timeout_s
    while True:
        matching = [e for e in load_executions(workdir, machine) if mentions in json.dumps(e.get("input"))]
        done = [e for e in matching if e.get("status") != "RUNNING"]
        if len(done) >= count:
            return done
        if time.monotonic() > deadline:
            raise TwinError(f"no finished execution for {mentions!r} after {timeout_s:.0f} s ({len(matching)} running)")
        time.sleep(poll_s)
