from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from mlops.config import ConfigError, ProblemType, load_config, load_configs, parse_config

from ..conftest import ROOT

DEMO = yaml.safe_load((ROOT / "configs" / "tumor-classifier.yaml").read_text())


def test_shipped_configs_load_with_both_problem_types() -> None:
    configs = load_configs(ROOT / "configs")
    assert configs["tumor-classifier"].problem_type is ProblemType.BINARY
    assert configs["diabetes-progression"].problem_type is ProblemType.REGRESSION
    tumor = configs["tumor-classifier"]
    assert tumor.dataset.target == "diagnosis"
    assert "record_id" not in [c.name for c in tumor.dataset.features]
    assert "diagnosis" not in [c.name for c in tumor.dataset.features]


def _problems(mutate) -> list[str]:
    data = copy.deepcopy(DEMO)
    mutate(data)
    with pytest.raises(ConfigError) as info:
        parse_config(data, "demo.yaml")
    assert "demo.yaml" in str(info.value)
    return info.value.problems


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda d: d.update(name="Bad_Name"), "name: String should match pattern"),
        (lambda d: d.update(extra_field=1), "extra_field: Extra inputs are not permitted"),
        (lambda d: d["dataset"]["columns"][2].update(min=100), "columns[2]: min (100) is greater than max (60)"),
        (lambda d: d["dataset"]["columns"][1].update(min=1), "min/max apply to int and float columns, not string"),
        (lambda d: d["dataset"]["columns"][3].update(type="decimal"), "dataset.columns[3].type: Input should be"),
        (lambda d: d["dataset"].update(target="nope"), "target 'nope' is not one of the columns"),
        (lambda d: d["dataset"]["columns"].append({"name": "clinic", "type": "string"}), "duplicate column names"),
        (lambda d: d["training"].update(algorithm="ridge"), "does not fit problem_type 'binary_classification'"),
        (lambda d: d["gate"].update(primary_metric="rmse"), "gate metric 'rmse' is not reported"),
        (lambda d: d["gate"]["thresholds"].update(f1={}), "gate.thresholds.f1: a threshold needs min or max"),
        (lambda d: d["dataset"].update(min_rows=10, max_rows=5), "max_rows (5) is less than min_rows (10)"),
        (lambda d: d["dataset"]["columns"][-1].update(allowed=[0, 1, 2]), "must allow exactly two values"),
        (lambda d: d.update(approval="sometimes"), "approval: Input should be 'auto' or 'manual'"),
        (lambda d: d["endpoint"].update(instance_type="m5.large"), "endpoint.instance_type: String should match"),
    ],
)
def test_invalid_configs_name_the_field_and_rule(mutate, expected: str) -> None:
    problems = _problems(mutate)
    assert any(expected in p for p in problems), problems


def test_every_problem_is_listed_not_just_the_first() -> None:
    def two_mistakes(d: dict) -> None:
        d["bogus"] = True
        d["training"]["instance_count"] = 0

    problems = _problems(two_mistakes)
    assert len(problems) == 2
    assert any(p.startswith("training.instance_count:") for p in problems)


def test_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "missing.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(broken)
    latin = tmp_path / "latin.yaml"
    latin.write_bytes("name: caf\xe9\n".encode("latin-1"))
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(latin)
    renamed = tmp_path / "other-name.yaml"
    renamed.write_text(yaml.safe_dump(DEMO))
    with pytest.raises(ConfigError, match="must match the file name 'other-name'"):
        load_config(renamed)
    with pytest.raises(ConfigError, match="no model configs"):
        load_configs(tmp_path / "empty-dir-that-has-none")
