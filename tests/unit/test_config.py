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
    wine = configs["wine-cultivar"]
    assert wine.problem_type is ProblemType.MULTICLASS and wine.training.algorithm is None
    assert (wine.training.code, wine.training.framework, wine.training.framework_version) == (
        "pipelines/wine-cultivar",
        "xgboost",
        "3.2-0",
    )
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
        (lambda d: d["dataset"]["columns"][2].update(min=100), "dataset.columns[2].min: min (100) is greater than max"),
        (lambda d: d["dataset"]["columns"][1].update(min=1), "dataset.columns[1].min: min/max apply to int and float"),
        (lambda d: d["dataset"]["columns"][3].update(type="decimal"), "dataset.columns[3].type: Input should be"),
        (lambda d: d["dataset"].update(target="nope"), "dataset.target: target 'nope' is not one of the columns"),
        (
            lambda d: d["dataset"]["columns"].append({"name": "clinic", "type": "string"}),
            "dataset.columns[13].name: duplicate column names: clinic",
        ),
        (lambda d: d["training"].update(algorithm="ridge"), "training.algorithm: 'ridge' does not fit problem_type"),
        (lambda d: d["gate"].update(primary_metric="rmse"), "gate.primary_metric: gate metric 'rmse' is not reported"),
        (lambda d: d["gate"]["thresholds"].update(mae={"max": 1}), "gate.thresholds.mae: gate metric 'mae' is not"),
        (
            lambda d: d["dataset"]["columns"][12].update(nullable=True),
            "dataset.columns[12].nullable: the target 'diagnosis' must not be nullable; to drop rows",
        ),
        (
            lambda d: d["dataset"]["columns"][12].update(type="float", allowed=None),
            "dataset.columns[12].type: target 'diagnosis' is float but problem_type is binary_classification",
        ),
        (lambda d: d["dataset"]["columns"][12].update(allowed=[0, "x"]), "dataset.columns[12].allowed[1]: 'x' is not"),
        (lambda d: d["dataset"].update(missing_target="ignore"), "dataset.missing_target: Input should be 'fail'"),
        (lambda d: d["gate"]["thresholds"].update(f1={}), "gate.thresholds.f1: a threshold needs min or max"),
        (lambda d: d["dataset"].update(min_rows=10, max_rows=5), "max_rows (5) is less than min_rows (10)"),
        (lambda d: d["dataset"]["columns"][-1].update(allowed=[0, 1, 2]), "columns[12].allowed: binary target"),
        (lambda d: d.update(approval="sometimes"), "approval: Input should be 'auto' or 'manual'"),
        (lambda d: d["endpoint"].update(instance_type="m5.large"), "endpoint.instance_type: String should match"),
        (
            lambda d: d["endpoint"].update(kind="serverless"),
            "endpoint.data_capture_percent: serverless endpoints have no data capture on SageMaker",
        ),
        (
            lambda d: d["endpoint"].update(kind="serverless", data_capture_percent=0),
            "endpoint.canary: serverless endpoints take no deployment guardrails on SageMaker",
        ),
        (
            lambda d: d["endpoint"].update(initial_instance_count=3, canary={"percent": 50}),
            "endpoint.canary.percent: 50% of 3 instances is 2 instance(s); SageMaker takes a canary of at most half",
        ),
        (
            lambda d: d["endpoint"].update(data_capture_percent=0),
            "monitoring.alarms.quality_metric_threshold: the quality alarm needs captured requests",
        ),
        # a model's own code (issue 11)
        (lambda d: d["training"].pop("algorithm"), "training.algorithm: set training.algorithm (a platform estimator)"),
        (
            lambda d: d["training"].update(code="pipelines/mine"),
            "training.algorithm: a model with its own code (training.code) takes no platform algorithm",
        ),
        (
            lambda d: d["training"].update(framework="xgboost"),
            "training.framework: the platform's estimators run on the sklearn image; framework xgboost needs",
        ),
        (lambda d: d["training"].update(framework="tensorflow"), "training.framework: Input should be 'sklearn'"),
        (
            lambda d: d["training"].update(framework_version="0.23-1"),
            "training.framework_version: sklearn '0.23-1' is not a version the platform runs; use one of ['1.9-0']",
        ),
        (lambda d: d["training"].update(code="/etc/x", algorithm=None), "training.code: String should match pattern"),
    ],
)
def test_invalid_configs_name_the_field_and_rule(mutate, expected: str) -> None:
    problems = _problems(mutate)
    assert any(expected in p for p in problems), problems


def test_serverless_defaults_to_no_capture_and_one_instance_to_all_at_once() -> None:
    serverless = copy.deepcopy(DEMO)
    serverless["endpoint"] = {"kind": "serverless"}
    del serverless["monitoring"]["alarms"]["quality_metric_threshold"]
    config = parse_config(serverless, "demo.yaml")
    assert config.endpoint.data_capture_percent == 0 and not config.endpoint.uses_canary
    one = copy.deepcopy(DEMO)
    one["endpoint"]["initial_instance_count"] = 1  # a 10% canary of one instance: updates go all at once
    assert not parse_config(one, "demo.yaml").endpoint.uses_canary
    assert parse_config(DEMO, "demo.yaml").endpoint.uses_canary  # the shipped two instances


def test_no_problem_is_located_at_the_top_level() -> None:
    def many(d: dict) -> None:
        d["training"]["algorithm"] = "ridge"
        d["gate"]["primary_metric"] = "rmse"
        d["dataset"]["columns"][1]["nullable"] = "maybe"

    problems = _problems(many)
    assert problems and not any("(top level)" in p for p in problems), problems
    assert any(p.startswith("dataset.columns[1].nullable: Input should be a valid boolean") for p in problems)


def test_config_error_prints_one_line_per_problem(tmp_path: Path) -> None:
    data = copy.deepcopy(DEMO)
    data["dataset"]["columns"][12]["nullable"] = True
    data["training"]["instance_count"] = 0
    path = tmp_path / "tumor-classifier.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.lines() == [
        f"{path}: dataset.columns[12].nullable: the target 'diagnosis' must not be nullable; to drop rows whose "
        "target is missing, set dataset.missing_target: drop",
        f"{path}: training.instance_count: Input should be greater than or equal to 1",
    ]


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


def test_synth_prints_config_errors_without_a_traceback(tmp_path: Path) -> None:
    """`cdk synth` runs app.py: a broken config is one line per problem, naming the field, exit 1."""
    import os
    import shutil
    import subprocess
    import sys

    shutil.copy(ROOT / "app.py", tmp_path / "app.py")
    (tmp_path / "configs").mkdir()
    data = copy.deepcopy(DEMO)
    data["dataset"]["columns"][1]["nullable"] = "sometimes"
    (tmp_path / "configs" / "tumor-classifier.yaml").write_text(yaml.safe_dump(data))
    from mlops.synth import jsii_env

    env = {**os.environ, **jsii_env(), "PYTHONPATH": str(ROOT)}  # as mlops.synth runs it: no Node banner
    done = subprocess.run([sys.executable, "app.py"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [
        f"{tmp_path / 'configs' / 'tumor-classifier.yaml'}: dataset.columns[1].nullable: "
        "Input should be a valid boolean, unable to interpret input"
    ]
