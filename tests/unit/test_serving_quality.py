"""The monitor's numpy-only quality metric agrees with the full metric set of evaluation."""

from __future__ import annotations

import numpy as np
import pytest

from mlops.config import ProblemType
from mlops.core.metrics import compute_metrics, serving_quality


@pytest.mark.parametrize("kind", [ProblemType.BINARY, ProblemType.MULTICLASS])
def test_accuracy_matches(kind: ProblemType) -> None:
    rng = np.random.default_rng(1)
    classes = 2 if kind is ProblemType.BINARY else 4
    truth, pred = rng.integers(0, classes, 500), rng.integers(0, classes, 500)
    name, value = serving_quality(kind, truth, pred)
    assert name == "accuracy" and value == pytest.approx(compute_metrics(kind, truth, pred)["accuracy"])


def test_rmse_matches() -> None:
    rng = np.random.default_rng(2)
    truth, pred = rng.normal(100, 20, 500), rng.normal(100, 20, 500)
    name, value = serving_quality(ProblemType.REGRESSION, truth, pred)
    assert name == "rmse" and value == pytest.approx(compute_metrics(ProblemType.REGRESSION, truth, pred)["rmse"])


def test_mismatched_or_empty_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="as many predictions as labels"):
        serving_quality(ProblemType.BINARY, [1, 0], [1])
    with pytest.raises(ValueError, match="at least one"):
        serving_quality(ProblemType.REGRESSION, [], [])
