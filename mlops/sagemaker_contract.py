"""SageMaker's training-job contract: the ``SM_*`` environment a script-mode job sees.

One definition for the twin's job runner, the benchmarks and the tests, so that
``pipelines/train.py`` is always run the way SageMaker runs it.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path


def training_env(
    ml: Path, channels: Sequence[str], hyperparameters: Mapping[str, str] | None = None, program: str = "train.py"
) -> dict[str, str]:
    """The variables for a job whose ``/opt/ml`` is ``ml`` (channels in ``ml/input/data/<name>``)."""
    env = {
        "SM_MODEL_DIR": str(ml / "model"),
        "SM_OUTPUT_DATA_DIR": str(ml / "output" / "data"),
        "SM_OUTPUT_DIR": str(ml / "output"),
        "SM_INPUT_DIR": str(ml / "input"),
        "SM_INPUT_CONFIG_DIR": str(ml / "input" / "config"),
        "SM_CHANNELS": json.dumps(list(channels)),
        "SM_HPS": json.dumps(dict(hyperparameters or {})),
        "SM_USER_ENTRY_POINT": program,
        "SM_CURRENT_HOST": "algo-1",
        "SM_HOSTS": json.dumps(["algo-1"]),
        "SM_NUM_CPUS": str(os.cpu_count() or 1),
        "SM_NUM_GPUS": "0",
        "SM_OUTPUT_FAILURE": str(ml / "output" / "failure"),
    }
    env.update({f"SM_CHANNEL_{channel.upper()}": str(ml / "input" / "data" / channel) for channel in channels})
    return env


def failure_file(env: Mapping[str, str]) -> Path:
    """Where a training job writes why it failed: SageMaker reads it into the job's FailureReason."""
    if env.get("SM_OUTPUT_FAILURE"):
        return Path(env["SM_OUTPUT_FAILURE"])
    if env.get("SM_OUTPUT_DIR"):
        return Path(env["SM_OUTPUT_DIR"]) / "failure"
    return Path("/opt/ml/output/failure")


def report_failure(message: str, path: Path, limit: int) -> None:
    """Say why a job failed on stderr and in ``path`` (its first ``limit`` characters), the file SageMaker
    reads into the job's failure reason; without a writable ``path`` (no /opt/ml outside a container),
    stderr still has it."""
    print(f"ERROR: {message}", file=sys.stderr, flush=True)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(message[:limit], encoding="utf-8")
    except OSError as exc:
        print(f"(could not write {path}: {exc})", file=sys.stderr)
