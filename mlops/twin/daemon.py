"""Run the twin as a background process (``mlops local up``) until SIGTERM.

State lives in the work directory: ``twin.json`` (pid, endpoints, what runs and what
is not supported), ``s3/`` (persisted objects), ``executions/`` (one JSON file per
state machine execution, with its event history), ``logs/`` and ``events.jsonl``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from mlops.twin.runtime import Twin

STATE_FILE = "twin.json"


def read_state(workdir: Path) -> dict[str, Any] | None:
    path = workdir / STATE_FILE
    if not path.is_file():
        return None
    state = json.loads(path.read_text())
    try:
        os.kill(int(state["pid"]), 0)
    except (ProcessLookupError, ValueError, KeyError):
        return None  # left behind by a twin that is gone
    except PermissionError:
        pass
    return state


def reap_orphans(workdir: Path) -> list[int]:
    """Kill what a twin that died (kill -9) left running: its training jobs and Lambda workers.

    The daemon leads its own process group (``control.start`` starts it in a new session), so
    its children share the group id = its pid. Only processes of that group whose working
    directory or command line lies in this work dir or its assembly are touched.
    """
    path = workdir / STATE_FILE
    try:
        stale = json.loads(path.read_text())
        group = int(stale["pid"])
    except (OSError, ValueError, KeyError):
        return []
    if read_state(workdir) is not None:
        return []  # that twin is alive
    marks = [str(workdir.resolve()), str(stale.get("cdk_out", "")) or str(workdir.resolve())]
    killed = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if int(proc.joinpath("stat").read_text().rsplit(")", 1)[1].split()[2]) != group:
                continue
            cwd = os.readlink(proc / "cwd")
            cmdline = proc.joinpath("cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, ValueError, IndexError):
            continue
        if any(m and (cwd.startswith(m) or m in cmdline) for m in marks):
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(proc.name), signal.SIGKILL)
                killed.append(int(proc.name))
    path.unlink(missing_ok=True)
    return killed


def outputs(twin: Twin) -> dict[str, Any]:
    """Every stack output, resolved to twin names: ``{"MlopsData.IncomingBucketName": "..."}``."""
    found = {}
    for stack in twin.assembly.stacks.values():
        for key, out in stack.template.get("Outputs", {}).items():
            found[f"{stack.name}.{key}"] = twin.assembly.resolve(out["Value"], stack.name)
    return found


def serve(cdk_out: Path, workdir: Path, port: int, time_scale: float, iam: bool = True) -> int:
    logging.basicConfig(
        filename=workdir / "logs" / "twin.log",
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    orphans = reap_orphans(workdir)
    if orphans:
        logging.warning("killed %d processes left running by a twin that died: %s", len(orphans), orphans)
    twin = Twin(cdk_out, workdir, port=port, time_scale=time_scale, iam=iam)
    report = twin.start()
    state = {
        "pid": os.getpid(),
        "endpoint": twin.endpoint,
        "time_scale": time_scale,
        "iam": "enforced" if iam else "off",
        "cdk_out": str(cdk_out.resolve()),
        "started_at": time.time(),
        "state_machines": {m.name: m.arn for m in twin.state_machines.values()},
        "functions": sorted(twin.functions),
        "outputs": outputs(twin),
        "report": report.to_dict(),
    }
    tmp = workdir / (STATE_FILE + ".tmp")
    tmp.write_text(json.dumps(state, indent=2, default=str))
    tmp.replace(workdir / STATE_FILE)

    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    while not stopping.wait(1.0):
        twin.tick()
    logging.info("stopping")
    twin.stop()
    (workdir / STATE_FILE).unlink(missing_ok=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the local twin until SIGTERM.")
    parser.add_argument("--cdk-out", type=Path, required=True)
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--time-scale", type=float, default=1.0)
    parser.add_argument("--iam", choices=("on", "off"), default="on", help="off: IAM not enforced (debugging only)")
    args = parser.parse_args(argv)
    (args.workdir / "logs").mkdir(parents=True, exist_ok=True)
    return serve(args.cdk_out, args.workdir, args.port, args.time_scale, iam=args.iam == "on")


if __name__ == "__main__":
    sys.exit(main())
