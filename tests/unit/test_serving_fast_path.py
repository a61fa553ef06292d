"""The serving fast path gives exactly what the general path gives, and falls back on bad cells."""

from __future__ import annotations

import pandas as pd
import pytest
from pandas.testing import assert_frame_equal

from examples.generate_data import generate
from mlops.core import features as F
from mlops.settings import model_config


@pytest.mark.parametrize("model", ["tumor-classifier", "diabetes-progression"])
def test_typed_rows_equal_prepare_features(model: str) -> None:
    config = model_config(model)
    features = F.features_of(config)
    frame = generate(model, "good", 50, seed=3)[[f.name for f in features]]
    cells = frame.astype(object).where(frame.notna(), "").astype(str).values.tolist()  # as CSV text
    fast = F.typed_rows(cells, features)
    slow = F.prepare_features(pd.DataFrame(cells, columns=frame.columns).replace("", float("nan")), features)
    assert fast is not None
    assert_frame_equal(fast, slow, check_dtype=True)


def test_a_cell_that_does_not_parse_falls_back() -> None:
    features = F.features_of(model_config("tumor-classifier"))
    row = ["clinic-a"] + ["1.5"] * (len(features) - 1)
    row[2] = "twelve"
    assert F.typed_rows([row], features) is None
    with pytest.raises(F.DataError, match="non-numeric value"):
        F.prepare_features(pd.DataFrame([row], columns=[f.name for f in features]), features)


def test_classifier_labels_are_the_most_probable_class() -> None:
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.pipeline import Pipeline

    x = pd.DataFrame({"a": [0.0, 1.0, 2.0, 3.0] * 10})
    y = ["no", "no", "yes", "yes"] * 10
    pipeline = Pipeline([("model", RandomForestClassifier(n_estimators=5, random_state=0))]).fit(x, y)
    labels, proba = F.predict(pipeline, x)
    assert list(labels) == list(pipeline.predict(x)) and proba is not None and proba.shape == (40, 2)
