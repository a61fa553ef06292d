"""Model metrics shared by training, evaluation and model-quality monitoring.

Names are exactly ``mlops.config.CLASSIFICATION_METRICS`` / ``REGRESSION_METRICS`` so
that gate thresholds in a config, ``evaluation.json`` and CloudWatch all agree.

- binary: ``f1``/``precision``/``recall`` are for the positive class (the last of the
  sorted classes: 1, True, or the alphabetically last label); ``roc_auc`` and
  ``log_loss`` use the predicted probabilities.
- multiclass: ``f1``/``precision``/``recall`` are macro averages; ``roc_auc`` is
  one-vs-rest, macro averaged.
- regression: ``rmse``, ``mae``, ``r2``.

scikit-learn is imported where the full metric set is computed (training and evaluation
jobs), not at import time: the Lambda layer does not ship it, and the model monitor needs
only ``serving_quality``, which is plain numpy.

A metric that is undefined for the data (ROC AUC when the labels hold one class,
probability metrics without probabilities) is left out rather than reported as NaN:
the gate then says "roc_auc was not reported", which is the honest answer.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from mlops.config import CLASSIFICATION_METRICS, LOWER_IS_BETTER, REGRESSION_METRICS, ProblemType

__all__ = [
    "LOWER_IS_BETTER",
    "METRIC_DESCRIPTIONS",
    "compute_metrics",
    "confusion",
    "is_better",
    "metric_definitions",
    "metric_names",
    "model_quality_statistics",
    "no_worse",
    "residual_summary",
    "sagemaker_metric_definitions",
]

METRIC_DESCRIPTIONS = {
    "accuracy": "share of rows whose predicted label is the true label",
    "f1": "F1 score (binary: positive class; multiclass: macro average)",
    "precision": "precision (binary: positive class; multiclass: macro average)",
    "recall": "recall (binary: positive class; multiclass: macro average)",
    "roc_auc": "area under the ROC curve from predicted probabilities (multiclass: one-vs-rest, macro)",
    "log_loss": "cross-entropy of the predicted probabilities",
    "rmse": "root mean squared error, in target units",
    "mae": "mean absolute error, in target units",
    "r2": "coefficient of determination",
}
# SageMaker MetricDefinitions regex for one "name=value" line printed by train.py
NUMBER_REGEX = r"([-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)"


def metric_names(problem_type: str | ProblemType) -> list[str]:
    names = REGRESSION_METRICS if ProblemType(problem_type) is ProblemType.REGRESSION else CLASSIFICATION_METRICS
    return sorted(names)


def is_better(metric: str, a: float, b: float) -> bool:
    """True when ``a`` is strictly better than ``b`` for ``metric``."""
    return a < b if metric in LOWER_IS_BETTER else a > b


def no_worse(metric: str, candidate: float, reference: float, tolerance: float = 0.0) -> bool:
    """True when ``candidate`` is at most ``tolerance`` worse than ``reference``."""
    if metric in LOWER_IS_BETTER:
        return candidate <= reference + tolerance
    return candidate >= reference - tolerance


def metric_definitions(problem_type: str | ProblemType) -> dict[str, dict[str, Any]]:
    """Direction and meaning of each metric reported for a problem type."""
    return {
        name: {"higher_is_better": name not in LOWER_IS_BETTER, "description": METRIC_DESCRIPTIONS[name]}
        for name in metric_names(problem_type)
    }


def sagemaker_metric_definitions(problem_type: str | ProblemType, prefix: str = "validation") -> list[dict[str, str]]:
    """``AlgorithmSpecification.MetricDefinitions`` for the ``<prefix>:<metric>=<value>`` lines of train.py."""
    return [
        {"Name": f"{prefix}:{name}", "Regex": f"{prefix}:{name}={NUMBER_REGEX}"} for name in metric_names(problem_type)
    ]


def _positive_index(classes: Sequence[Any]) -> int:
    return len(classes) - 1


def _classification(
    problem_type: ProblemType, y_true: np.ndarray, y_pred: np.ndarray, y_proba: np.ndarray | None, classes: list[Any]
) -> dict[str, float]:
    from sklearn import metrics as skm

    binary = problem_type is ProblemType.BINARY
    if binary:
        average: dict[str, Any] = {"average": "binary", "pos_label": classes[_positive_index(classes)]}
    else:
        average = {"average": "macro", "labels": classes}
    out = {
        "accuracy": skm.accuracy_score(y_true, y_pred),
        "f1": skm.f1_score(y_true, y_pred, zero_division=0, **average),
        "precision": skm.precision_score(y_true, y_pred, zero_division=0, **average),
        "recall": skm.recall_score(y_true, y_pred, zero_division=0, **average),
    }
    if y_proba is None:
        return out
    y_proba = np.asarray(y_proba, dtype=float)
    out["log_loss"] = skm.log_loss(y_true, y_proba, labels=classes)
    present = set(np.unique(y_true).tolist())
    if binary and len(present) == 2:
        out["roc_auc"] = skm.roc_auc_score(y_true == classes[_positive_index(classes)], y_proba[:, -1])
    elif not binary and present == set(classes):
        out["roc_auc"] = skm.roc_auc_score(y_true, y_proba, multi_class="ovr", average="macro", labels=classes)
    return out


def _regression(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    from sklearn import metrics as skm

    out = {
        "rmse": math.sqrt(skm.mean_squared_error(y_true, y_pred)),
        "mae": skm.mean_absolute_error(y_true, y_pred),
    }
    if len(y_true) >= 2:
        out["r2"] = skm.r2_score(y_true, y_pred)
    return out


def compute_metrics(
    problem_type: str | ProblemType,
    y_true: Sequence[Any] | np.ndarray,
    y_pred: Sequence[Any] | np.ndarray,
    y_proba: Sequence[Sequence[float]] | np.ndarray | None = None,
    classes: Sequence[Any] | None = None,
) -> dict[str, float]:
    """Metrics for one set of predictions; ``y_proba`` columns follow ``classes`` (sorted labels by default)."""
    kind = ProblemType(problem_type)
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if len(y_true) == 0:
        raise ValueError("cannot compute metrics on zero rows")
    if len(y_true) != len(y_pred):
        raise ValueError(f"{len(y_true)} true values but {len(y_pred)} predictions")
    if kind is ProblemType.REGRESSION:
        found = _regression(y_true.astype(float), y_pred.astype(float))
    else:
        labels = list(classes) if classes is not None else sorted(set(y_true.tolist()) | set(y_pred.tolist()))
        if y_proba is not None and np.shape(y_proba) != (len(y_true), len(labels)):
            raise ValueError(f"probabilities have shape {np.shape(y_proba)}, expected ({len(y_true)}, {len(labels)})")
        found = _classification(kind, y_true, y_pred, None if y_proba is None else np.asarray(y_proba), labels)
    return {k: float(v) for k, v in sorted(found.items()) if math.isfinite(float(v))}


def quality_metric_name(problem_type: str | ProblemType) -> str:
    return "rmse" if ProblemType(problem_type) is ProblemType.REGRESSION else "accuracy"


def serving_quality(problem_type: str | ProblemType, y_true: Sequence[Any], y_pred: Sequence[Any]) -> tuple[str, float]:
    """The model-quality metric of live traffic: accuracy for classifiers, RMSE for regressors.

    Same definitions as ``compute_metrics`` (a test holds them equal), in numpy alone.
    """
    truth, pred = np.asarray(y_true), np.asarray(y_pred)
    if len(truth) == 0 or len(truth) != len(pred):
        raise ValueError(f"need as many predictions as labels, and at least one (got {len(truth)}, {len(pred)})")
    name = quality_metric_name(problem_type)
    if name == "rmse":
        return name, float(math.sqrt(np.mean((truth.astype(float) - pred.astype(float)) ** 2)))
    return name, float(np.mean(truth == pred))


def confusion(y_true: Sequence[Any], y_pred: Sequence[Any], classes: Sequence[Any]) -> dict[str, Any]:
    """Confusion matrix: ``matrix[i][j]`` counts rows of true label ``labels[i]`` predicted as ``labels[j]``."""
    from sklearn import metrics as skm

    labels = list(classes)
    matrix = skm.confusion_matrix(np.asarray(y_true), np.asarray(y_pred), labels=labels)
    return {"labels": _plain(labels), "matrix": matrix.astype(int).tolist()}


def residual_summary(y_true: Sequence[float], y_pred: Sequence[float]) -> dict[str, float]:
    """Summary of ``y_true - y_pred``."""
    residuals = np.asarray(y_true, dtype=float) - np.asarray(y_pred, dtype=float)
    p05, p50, p95 = np.percentile(residuals, [5, 50, 95])
    return {
        "mean": float(residuals.mean()),
        "std": float(residuals.std()),
        "p05": float(p05),
        "p50": float(p50),
        "p95": float(p95),
        "max_abs": float(np.abs(residuals).max()),
    }


def model_quality_statistics(
    problem_type: str | ProblemType, metrics: dict[str, float], matrix: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The metrics as a SageMaker Model Monitor model-quality statistics block.

    Key ``binary_classification_metrics`` / ``multiclass_classification_metrics`` /
    ``regression_metrics`` holding ``{"<metric>": {"value": v, "standard_deviation": "NaN"}}``
    and, for classifiers, ``confusion_matrix`` as ``{"<true>": {"<predicted>": count}}``.
    Model Monitor's own names are added as aliases (``auc`` for roc_auc, ``mse``).
    """
    kind = ProblemType(problem_type)
    block: dict[str, Any] = {k: {"value": v, "standard_deviation": "NaN"} for k, v in metrics.items()}
    if "roc_auc" in metrics:
        block["auc"] = block["roc_auc"]
    if "rmse" in metrics:
        block["mse"] = {"value": metrics["rmse"] ** 2, "standard_deviation": "NaN"}
    if matrix is not None:
        labels = [str(label) for label in matrix["labels"]]
        block["confusion_matrix"] = {
            t: {p: count for p, count in zip(labels, row, strict=True)}
            for t, row in zip(labels, matrix["matrix"], strict=True)
        }
    key = {
        ProblemType.BINARY: "binary_classification_metrics",
        ProblemType.MULTICLASS: "multiclass_classification_metrics",
        ProblemType.REGRESSION: "regression_metrics",
    }[kind]
    return {key: block}


def _plain(values: Sequence[Any]) -> list[Any]:
    """numpy scalars to Python values (JSON-safe)."""
    return [v.item() if isinstance(v, np.generic) else v for v in values]
