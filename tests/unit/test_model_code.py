"""The contract between the platform and a model's own code (mlops.core.model_code): what it accepts, and
the messages that say what was expected."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlops.config import load_config
from mlops.core.model_code import ContractError, OwnModel, load_handlers, model_dir_problem, parse_predictions

from ..conftest import ROOT

WINE = load_config(ROOT / "configs" / "wine-cultivar.yaml")
DIABETES = load_config(ROOT / "configs" / "diabetes-progression.yaml")


def _body(items: list) -> str:
    return json.dumps({"predictions": items})


def test_classifier_predictions_become_labels_and_probabilities_in_class_order() -> None:
    items = [{"label": 2, "probabilities": {"0": 0.1, "1": 0.2, "2": 0.7}}, {"label": "0", "probabilities": {"0": 1}}]
    labels, proba, classes = parse_predictions((_body(items), "application/json"), 2, WINE)
    assert labels == [2, 0] and classes == [0, 1, 2]
    np.testing.assert_allclose(proba, [[0.1, 0.2, 0.7], [1.0, 0.0, 0.0]])
    assert parse_predictions(_body([{"label": 1}]), 1, WINE) == ([1], None, None)  # no probabilities: no roc_auc
    assert parse_predictions(_body([{"value": 3}]).encode(), 1, DIABETES) == ([3.0], None, None)


@pytest.mark.parametrize(
    ("out", "rows", "expected"),
    [
        (_body([{"label": 1}]), 3, "inference.py returned 1 predictions for 3 rows; output_fn must return one"),
        ("not json", 1, "output_fn(prediction, 'application/json') did not return JSON; expected {\"predictions\""),
        (json.dumps([1, 2]), 2, 'output_fn(prediction, \'application/json\') must return {"predictions": [{"label"'),
        (_body([{"class": 1}]), 1, 'prediction 0 is {\'class\': 1}; expected {"predictions": [{"label"'),
    ],
)
def test_predictions_of_the_wrong_shape_say_what_was_expected(out: str, rows: int, expected: str) -> None:
    with pytest.raises(ContractError) as info:
        parse_predictions(out, rows, WINE)
    assert expected in str(info.value)


def test_handlers_are_checked_when_inference_py_is_loaded(tmp_path: Path) -> None:
    with pytest.raises(ContractError, match=r"the model's code has no inference\.py"):
        load_handlers(tmp_path)
    (tmp_path / "inference.py").write_text("def model_fn(d):\n    return d\n")
    with pytest.raises(ContractError, match=r"inference.py has no input_fn, predict_fn, output_fn; the platform"):
        load_handlers(tmp_path)
    (tmp_path / "inference.py").write_text("import no_such_module_x9\n")
    with pytest.raises(ContractError, match=r"inference\.py failed to import: ModuleNotFoundError"):
        load_handlers(tmp_path)


def test_a_model_is_scored_through_its_own_handlers(tmp_path: Path) -> None:
    code = tmp_path / "code"
    code.mkdir()
    (code / "inference.py").write_text(
        "import io, json\nimport pandas as pd\n"
        "def model_fn(d):\n    return 'always-one'\n"
        "def input_fn(body, ct):\n    return pd.read_csv(io.StringIO(body))\n"
        "def predict_fn(data, model):\n    return [1] * len(data)\n"
        "def output_fn(p, accept):\n    return json.dumps({'predictions': [{'label': x} for x in p]}), accept\n"
    )
    frame = pd.DataFrame({"alcohol": [12.0, 13.0], "hue": [1.0, 0.9]})
    assert OwnModel(tmp_path).predict(frame, WINE) == ([1, 1], None, None)
    assert model_dir_problem(tmp_path) is not None and "code/ into SM_MODEL_DIR" in str(model_dir_problem(tmp_path))
    empty = tmp_path / "empty"
    empty.mkdir()
    assert model_dir_problem(empty) == (
        "train.py wrote nothing to SM_MODEL_DIR (/opt/ml/model); a training script must save its model there"
    )
