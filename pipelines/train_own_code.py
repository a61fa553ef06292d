"""Training entry point of a model that brings its own code (``training.code``): the platform around it.

The source dir holds the model's own files at its root (``own-code.json`` lists them) beside this
program, ``evaluate.py``, the ``mlops`` package and ``vendor/``. This program:

1. runs the model's ``train.py`` with the job's arguments and environment, as script mode would (the
   hyperparameters as ``--name value``, ``SM_MODEL_DIR``, ``SM_CHANNEL_TRAIN``/``VALIDATION``/``CONFIG``,
   ``SM_HPS``...), its output passed through;
2. checks what it left: a model in ``SM_MODEL_DIR``, an ``inference.py`` with the four handlers that
   loads that model and returns one prediction per row of the validation channel, in the platform's
   prediction shape (:mod:`mlops.core.model_code`);
3. copies the model's code into ``SM_MODEL_DIR/code/``, so the model artifact carries the code that
   scores it (as SageMaker's framework repack does), and prints the validation metrics computed through
   the model's own handlers (``validation:<metric>=<value>``, the training job's metric definitions).

A failure (the script's own, or a broken contract) exits non-zero with the message in SageMaker's
failure file, which becomes the job's ``FailureReason`` and the training execution's cause.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Mapping
from pathlib import Path

import vendored  # noqa: F401  (before mlops: puts vendor/, what the image lacks, on sys.path)

from mlops.config import ConfigError
from mlops.core import features as F
from mlops.core.metrics import compute_metrics
from mlops.core.model_code import CODE_DIR, MANIFEST, ContractError, OwnModel, model_dir_problem
from mlops.sagemaker_contract import failure_file, report_failure

HERE = Path(__file__).resolve().parent
TAIL_LINES = 20


def fail(message: str, env: Mapping[str, str], code: int = 1) -> int:
    report_failure(message, failure_file(env), 4096)
    return code


def run_script(program: str, argv: list[str], env: Mapping[str, str]) -> tuple[int, list[str]]:
    """Run the model's script, its stdout and stderr passed through; (exit code, the last stderr lines)."""
    proc = subprocess.Popen(
        [sys.executable, program, *argv], cwd=HERE, env=dict(env), stderr=subprocess.PIPE, text=True, errors="replace"
    )
    tail: deque[str] = deque(maxlen=TAIL_LINES)

    def pump() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            sys.stderr.write(line)
            tail.append(line.rstrip("\n"))

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    code = proc.wait()
    reader.join()
    return code, list(tail)


def check_and_score(model_dir: Path, env: Mapping[str, str]) -> dict[str, float]:
    """The contract, checked on the validation channel through the model's own handlers; its metrics."""
    config = F.read_config(env.get("SM_CHANNEL_CONFIG", "/opt/ml/input/data/config"))
    features = [f.name for f in F.features_of(config)]
    target = config.dataset.target
    data = F.read_csv_dir(
        env.get("SM_CHANNEL_VALIDATION", "/opt/ml/input/data/validation"), "validation", [*features, target]
    )
    y_true = F.prepare_target(data[target], config, "validation")
    model = OwnModel(model_dir, HERE)
    predictions, proba, classes = model.predict(data[features], config)
    try:
        return compute_metrics(config.problem_type, y_true, predictions, proba, classes)
    except ValueError as exc:
        raise ContractError(f"the predictions of inference.py cannot be scored: {exc}") from None


def ship_code(model_dir: Path, files: list[str]) -> None:
    """The model's own files into ``SM_MODEL_DIR/code/``: the artifact carries the code that serves it."""
    dest = model_dir / CODE_DIR
    dest.mkdir()
    for name in files:
        src = HERE / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        elif src.is_file():
            shutil.copy2(src, dest / name)


def main(argv: list[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    env = os.environ if env is None else env
    manifest = json.loads((HERE / MANIFEST).read_text())
    program = manifest["program"]
    model_dir = Path(env.get("SM_MODEL_DIR", "/opt/ml/model"))
    failure = failure_file(env)
    code, tail = run_script(program, sys.argv[1:] if argv is None else argv, env)
    if code != 0:
        if failure.is_file() and failure.read_text(errors="replace").strip():
            return code  # the script's own failure message is the job's FailureReason
        shown = "\n".join(tail) or "(nothing on stderr)"
        return fail(f"{program} exited with code {code}; the end of its stderr:\n{shown}", env, code)
    problem = model_dir_problem(model_dir, program)
    if problem:
        return fail(problem, env)
    try:
        metrics = check_and_score(model_dir, env)
    except (F.DataError, ConfigError) as exc:  # ContractError is a DataError
        return fail(str(exc), env)
    ship_code(model_dir, manifest["files"])
    print(f"{program} wrote a model that inference.py scores; validation metrics through its handlers:")
    for name, value in metrics.items():
        print(f"validation:{name}={value:.6f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
