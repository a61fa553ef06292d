"""The contract between the platform and a model's own code, and the checks that enforce it.

A model with its own code (``training.code``) brings ``train.py`` (SageMaker script mode) and
``inference.py`` (the serving container's handlers). The platform scores such a model only through
those handlers, as its endpoint will: ``model_fn(model_dir)`` once, then for a batch of rows
``input_fn(body, "text/csv")`` (the feature columns, header row first), ``predict_fn(data, model)`` and
``output_fn(prediction, "application/json")``, whose body must be the platform's prediction shape:
``{"predictions": [{"label": ..., "probabilities": {"<class>": p, ...}}, ...]}`` for classifiers
(``probabilities`` optional; ``roc_auc`` and ``log_loss`` need them) or ``[{"value": x}, ...]`` for
regression, one per input row, in order. The endpoint's captured responses carry the same shape, which
drift and quality monitoring read.

The model artifact carries its inference code in ``code/`` (as SageMaker's framework repack puts it in
``model.tar.gz``), so a later candidate's evaluation scores this model, as champion, with its own code.
Every break of the contract raises :class:`ContractError` with what was expected.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from itertools import count
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pandas as pd

from mlops.config import ColumnType, ModelConfig, ProblemType
from mlops.core.features import DataError
from mlops.naming import OWN_CODE_PROGRAM

HANDLERS = ("model_fn", "input_fn", "predict_fn", "output_fn")
CODE_DIR = "code"  # in the model artifact: the model's inference code
INFERENCE = "inference.py"
MANIFEST = "own-code.json"  # in the source dir: the program and the model's own files
PROGRAM = OWN_CODE_PROGRAM  # the training job's entry point: runs the model's train.py and checks it
SIGNATURES = "model_fn(model_dir), input_fn(body, content_type), predict_fn(data, model), output_fn(prediction, accept)"
_modules = count()


class ContractError(DataError):
    """The model's own code broke the platform's contract; the message says what was expected."""


def has_own_code(model_dir: Path) -> bool:
    return (model_dir / CODE_DIR).is_dir()


def model_dir_problem(model_dir: Path, program: str = "train.py") -> str | None:
    """What is wrong with what ``program`` left in ``SM_MODEL_DIR``, or None."""
    shown = "/opt/ml/model"
    if not model_dir.is_dir() or not any(model_dir.iterdir()):
        return f"{program} wrote nothing to SM_MODEL_DIR ({shown}); a training script must save its model there"
    if (model_dir / CODE_DIR).exists():
        return (
            f"{program} wrote {CODE_DIR}/ into SM_MODEL_DIR ({shown}); that name is the platform's: it puts the "
            "model's inference code there. Save the model under another name"
        )
    return None


def load_handlers(code_dir: Path) -> ModuleType:
    """``inference.py`` of ``code_dir`` imported as a module of its own, checked for the four handlers."""
    path = code_dir / INFERENCE
    if not path.is_file():
        raise ContractError(
            f"the model's code has no {INFERENCE}; the platform evaluates and serves a model through its "
            f"handlers: {SIGNATURES}"
        )
    if str(code_dir) not in sys.path:
        sys.path.insert(0, str(code_dir))  # its own helper modules and vendored packages
    spec = importlib.util.spec_from_file_location(f"_model_inference_{next(_modules)}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        raise ContractError(f"{INFERENCE} failed to import: {type(exc).__name__}: {exc}") from exc
    missing = [name for name in HANDLERS if not callable(getattr(module, name, None))]
    if missing:
        raise ContractError(
            f"{INFERENCE} has no {', '.join(missing)}; the platform evaluates and serves a model through {SIGNATURES}"
        )
    return module


class OwnModel:
    """A model loaded through its own ``model_fn``, scored through its own handlers."""

    def __init__(self, model_dir: Path, code_dir: Path | None = None) -> None:
        self.module = load_handlers(code_dir or model_dir / CODE_DIR)
        try:
            self.model = self.module.model_fn(str(model_dir))
        except Exception as exc:
            raise ContractError(f"model_fn({str(model_dir)!r}) failed: {type(exc).__name__}: {exc}") from exc

    def predict(self, features: pd.DataFrame, config: ModelConfig) -> tuple[list[Any], np.ndarray | None, list | None]:
        """(labels or values, probabilities in ``classes`` order or None, classes or None) for every row."""
        body = features.to_csv(index=False)
        try:
            data = self.module.input_fn(body, "text/csv")
            prediction = self.module.predict_fn(data, self.model)
            out = self.module.output_fn(prediction, "application/json")
        except Exception as exc:
            raise ContractError(
                f"{INFERENCE} failed on {len(features)} rows of text/csv (a header row, then the feature columns "
                f"{', '.join(features.columns)}): {type(exc).__name__}: {exc}"
            ) from exc
        return parse_predictions(out, len(features), config)


def parse_predictions(out: Any, rows: int, config: ModelConfig) -> tuple[list[Any], np.ndarray | None, list | None]:
    body = out[0] if isinstance(out, tuple) else out
    if isinstance(body, (bytes, bytearray)):
        body = bytes(body).decode("utf-8", errors="replace")
    expected = (
        '{"predictions": [{"value": <number>}, ...]}'
        if config.problem_type is ProblemType.REGRESSION
        else '{"predictions": [{"label": <class>, "probabilities": {"<class>": <p>, ...}}, ...]}'
    )
    try:
        payload = json.loads(body) if isinstance(body, str) else body
    except json.JSONDecodeError:
        raise ContractError(
            f"output_fn(prediction, 'application/json') did not return JSON; expected {expected}"
        ) from None
    items = payload.get("predictions") if isinstance(payload, dict) else None
    if not isinstance(items, list):
        raise ContractError(f"output_fn(prediction, 'application/json') must return {expected}")
    if len(items) != rows:
        raise ContractError(
            f"{INFERENCE} returned {len(items)} predictions for {rows} rows; output_fn must return one prediction "
            "per input row, in order"
        )
    key = "value" if config.problem_type is ProblemType.REGRESSION else "label"
    bad = next((i for i, item in enumerate(items) if not isinstance(item, dict) or key not in item), None)
    if bad is not None:
        raise ContractError(f"prediction {bad} is {items[bad]!r}; expected {expected}")
    if config.problem_type is ProblemType.REGRESSION:
        return [float(item["value"]) for item in items], None, None
    target = config.dataset.target_column
    labels = [_label(item["label"], target.type) for item in items]
    if not all(isinstance(item.get("probabilities"), dict) for item in items):
        return labels, None, None
    classes = sorted({_label(k, target.type) for item in items for k in item["probabilities"]})
    proba = np.array([[float(item["probabilities"].get(str(c), 0.0)) for c in classes] for item in items])
    return labels, proba, classes


def _label(value: Any, column_type: ColumnType) -> Any:
    """A label as the target column's type (JSON object keys are strings)."""
    if column_type is ColumnType.INT:
        return int(value)
    if column_type is ColumnType.BOOL:
        return value if isinstance(value, bool) else str(value).lower() in ("true", "1", "yes", "t", "y")
    return str(value)
