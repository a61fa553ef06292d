"""The README's demo command, run as a person runs it, again and again in one work directory (issue 14).

- a second run continues the story and ends with a newer version serving;
- a demo killed during training, then run again, ends with a version serving;
- a retrain the alarm cannot run (its cooldown claimed by another retrain) stops the demo within
  seconds with the skip reason and the next step, and no traceback.

Each demo is the ``mlops local demo`` command in its own process, on a copy of the app.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from mlops.demo import Executions
from mlops.platform import Platform
from mlops.twin import control

from .conftest import copy_app

pytestmark = [pytest.mark.e2e, pytest.mark.demo]
MODEL = "tumor-classifier"
ROWS = 1500
STAGE_TIMEOUT_S = 420
# twice the README's speed: the retrain cooldown a run waits out after the last one is 54 s, not 108
TIME_SCALE = "0.0025"
SERVING = re.compile(r"now serves version (\d+)")


@dataclass
class Demo:
    """One ``mlops local demo`` process; its output read line by line as it comes."""

    process: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for_line(self, text: str, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not any(text in line for line in self.lines):
            assert self.process.poll() is None or self.reader.is_alive(), f"the demo ended first:\n{self.output}"
            assert time.monotonic() < deadline, f"no line with {text!r} within {timeout_s} s:\n{self.output}"
            time.sleep(0.2)

    def finish(self, timeout_s: float = 3 * STAGE_TIMEOUT_S) -> int:
        code = self.process.wait(timeout=timeout_s)
        self.reader.join(timeout=10)
        return code


def start_demo(app: Path, workdir: Path) -> Demo:
    mlops = Path(sys.executable).with_name("mlops")
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb", "PYTHONUNBUFFERED": "1"}
    command = [
        str(mlops), "local", "demo", "--workdir", str(workdir), "--cdk-out", str(app / "cdk.out"),
        "--port", "0", "--rows", str(ROWS), "--timeout", str(STAGE_TIMEOUT_S), "--time-scale", TIME_SCALE,
    ]  # fmt: skip
    process = subprocess.Popen(
        command, cwd=app, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )  # fmt: skip
    return Demo(process)


def run_demo(app: Path, workdir: Path) -> Demo:
    demo = start_demo(app, workdir)
    code = demo.finish()
    assert code == 0, demo.output[-6000:]
    assert "Traceback" not in demo.output
    return demo


def serving_after(demo: Demo) -> int:
    found = SERVING.findall(demo.output)
    assert found, demo.output[-3000:]
    return int(found[-1])


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_app(tmp_path_factory.mktemp("demo") / "app")


@pytest.fixture(scope="module")
def story(app: Path) -> Iterator[tuple[Path, Demo]]:
    """A work directory where the demo has run once, to its end."""
    workdir = app.parent / "story"
    try:
        yield workdir, run_demo(app, workdir)
    finally:
        control.stop(workdir)


def test_a_second_run_continues_the_story_to_a_newer_version(app: Path, story: tuple[Path, Demo]) -> None:
    workdir, first = story
    second = run_demo(app, workdir)
    assert "this run continues the story (run 2)" in second.output
    assert serving_after(second) > serving_after(first)


def _skipped_alarm_retrain(watch: Executions) -> bool:
    return any(r.end_state == "TrainingSkipped" for r in watch.ended(lambda r: r.input.get("trigger") == "alarm"))


def _watch(check: Callable[[], bool], stop: threading.Event, seen: list[float]) -> None:
    while not stop.is_set():
        try:
            if check():
                seen.append(time.monotonic())
                return
        except Exception:  # the twin busy or between states: look again
            pass
        time.sleep(0.5)


def test_a_retrain_the_alarm_cannot_run_stops_the_demo_at_once(app: Path, story: tuple[Path, Demo]) -> None:
    workdir, _ = story
    demo = start_demo(app, workdir)
    try:
        # After the demo has waited out any cooldown, another retrain claims the window.
        demo.wait_for_line("drifted requests with inference ids", timeout_s=3 * STAGE_TIMEOUT_S)
        handle = control.status(workdir)
        assert handle is not None
        watch = Executions(Platform.twin(handle.endpoint), "training", datetime.now(UTC) - timedelta(seconds=5))
        claim = {"started_at": control.twin_now(workdir), "started": "now", "execution_id": "test", "alarm": "test"}
        handle.client().put_object(
            Bucket=handle.bucket("artifacts"), Key=f"monitoring/{MODEL}/retrain.json", Body=json.dumps(claim).encode()
        )
        stop, seen = threading.Event(), []
        skipped = threading.Thread(
            target=_watch,
            args=(lambda: _skipped_alarm_retrain(watch), stop, seen),
            daemon=True,
        )
        skipped.start()
        code = demo.finish(timeout_s=STAGE_TIMEOUT_S + 60)
        ended = time.monotonic()
        stop.set()
        skipped.join(timeout=10)
    finally:
        if demo.process.poll() is None:
            os.killpg(demo.process.pid, signal.SIGKILL)
    assert code == 1, demo.output[-4000:]
    assert "the demo stopped: the alarm's retrain ended in TrainingSkipped: retrain cooldown" in demo.output
    assert "next: the whole story: mlops executions" in demo.output
    assert "Traceback" not in demo.output
    assert seen, "the demo stopped before the skipped retrain was visible"
    assert ended - seen[0] <= 10, f"the demo stopped {ended - seen[0]:.1f} s after the retrain was skipped"


def test_a_demo_killed_during_training_runs_again_to_a_serving_version(app: Path) -> None:
    workdir = app.parent / "killed"
    try:
        demo = start_demo(app, workdir)
        try:
            demo.wait_for_line("6. validated data", timeout_s=STAGE_TIMEOUT_S)
            time.sleep(2)  # the training job is under way
        finally:
            os.killpg(demo.process.pid, signal.SIGKILL)
            demo.finish(timeout_s=30)
        assert control.status(workdir) is not None, "the twin is a daemon of its own: the kill leaves it running"
        again = run_demo(app, workdir)
        assert serving_after(again) >= 1
    finally:
        control.stop(workdir)
