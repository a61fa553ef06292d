"""The twin, started from the synthesized app in its own process, as `mlops local up` does."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlops.synth import synthesize
from mlops.twin import control

from ..conftest import ROOT

# What the app is built from; copied so that a test can change stack code safely.
# Twin seconds pass 100x faster: schedules, Wait states, alarm periods (not Lambda or job run times).
TIME_SCALE = 0.01
APP_FILES = ("app.py", "cdk.json", "stacks", "functions", "mlops", "configs", "pipelines", "examples")


def copy_app(dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    for name in APP_FILES:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        elif src.is_file():
            shutil.copy2(src, dest / name)
    if (ROOT / ".wheelhouse").is_dir():
        (dest / ".wheelhouse").symlink_to(ROOT / ".wheelhouse")
    return dest


@pytest.fixture(scope="session")
def cdk_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("assembly") / "cdk.out"
    synthesize(ROOT, out)
    return out


@pytest.fixture
def twin(cdk_out: Path, tmp_path: Path) -> Iterator[control.TwinHandle]:
    workdir = tmp_path / "twin"
    handle = control.start(cdk_out, workdir, port=0, time_scale=TIME_SCALE)
    try:
        yield handle
    finally:
        control.stop(workdir)
