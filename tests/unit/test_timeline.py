"""The app's timeline: the wall clock in AWS, the twin's published clock on the twin."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from mlops import timeline
from mlops.twin.clock import TwinClock


def test_without_a_twin_clock_it_is_the_wall_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(timeline.TWIN_CLOCK_ENV, raising=False)
    before = time.time()
    assert before <= timeline.now() <= time.time()


def test_the_twin_clock_file_is_followed_and_reread_when_it_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = tmp_path / "clock.json"
    wall = time.time()
    timeline.publish(clock, timeline.ClockMapping(real=wall - 10, twin=2_000_000_000.0, scale=0.01))
    monkeypatch.setenv(timeline.TWIN_CLOCK_ENV, str(clock))
    first = timeline.now()
    assert 2_000_000_000 + 1000 <= first < 2_000_000_000 + 1100  # 10 wall seconds = 1000 twin seconds
    timeline.publish(clock, timeline.ClockMapping(real=time.time(), twin=3_000_000_000.0, scale=1.0))
    assert 3_000_000_000 <= timeline.now() < 3_000_000_000 + 5
    assert timeline.utcnow().year == 2065


@pytest.mark.parametrize("content", [None, "not json", '{"real": 1, "twin": 2}', '{"real": 1, "twin": 2, "scale": 0}'])
def test_an_unreadable_twin_clock_is_an_error_not_the_wall_clock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: str | None
) -> None:
    clock = tmp_path / "clock.json"
    if content is not None:
        clock.write_text(content)
    monkeypatch.setenv(timeline.TWIN_CLOCK_ENV, str(clock))
    with pytest.raises(timeline.ClockError, match=timeline.TWIN_CLOCK_ENV):
        timeline.now()


def test_the_twin_clock_publishes_its_own_time() -> None:
    twin = TwinClock(time_scale=0.01)
    mapping = twin.mapping()
    assert mapping.scale == 0.01
    assert abs(mapping.at(time.time()) - twin.now()) < 1.0
