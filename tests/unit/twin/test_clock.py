"""One timeline across restarts and time scales, seen by the twin and by the processes it starts."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mlops.twin.clock import TwinClock


def test_a_restart_at_another_time_scale_keeps_every_record_its_age(tmp_path: Path) -> None:
    fast = TwinClock(0.001, state_dir=tmp_path)  # 1000x: a real 50 ms is 50 twin seconds
    recorded = fast.now()  # e.g. a cooldown claimed by an alarm-triggered retrain
    time.sleep(0.05)
    fast.checkpoint()
    age_at_stop = json.loads((tmp_path / "clock.json").read_text())["twin"] - recorded
    assert age_at_stop >= 50

    slow = TwinClock(1.0, state_dir=tmp_path)  # restarted at real speed
    age_after = slow.now() - recorded
    # the record is exactly as old as it was, plus the real time since the checkpoint: never younger,
    # and never years older because the last run's clock ran fast
    assert age_at_stop - 1 <= age_after <= age_at_stop + 2


def test_twin_time_starts_at_the_wall_clock_without_a_timeline(tmp_path: Path) -> None:
    assert abs(TwinClock(0.01, state_dir=tmp_path).now() - time.time()) < 1


def test_an_unreadable_timeline_starts_a_new_one(tmp_path: Path) -> None:
    (tmp_path / "clock.json").write_text("{not json")
    assert abs(TwinClock(1.0, state_dir=tmp_path).now() - time.time()) < 1


def test_scale_must_be_positive() -> None:
    with pytest.raises(ValueError):
        TwinClock(0)


def test_a_child_process_sees_the_twin_timeline(tmp_path: Path) -> None:
    clock = TwinClock(0.01, state_dir=tmp_path)
    time.sleep(0.05)  # 5 twin seconds ahead of the wall clock
    code = (
        "import json, time, datetime\n"
        "from mlops.twin import timeshim\n"
        "real = time.time(); timeshim.install()\n"
        "now = datetime.datetime.now(datetime.UTC)\n"
        "print(json.dumps({'time': time.time(), 'real': real, 'now': now.timestamp(),"
        " 'is_dt': isinstance(datetime.datetime.fromisoformat('2020-01-01'), datetime.datetime)}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env={**clock.env()}, capture_output=True, text=True, check=True
    ).stdout
    seen = json.loads(out)
    expected = clock.now()
    assert seen["time"] - seen["real"] > 4  # ahead of the wall clock by the twin's lead
    assert abs(seen["time"] - expected) < 30 and abs(seen["now"] - expected) < 30
    assert seen["is_dt"]
