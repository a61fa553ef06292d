"""A model with its own code (issue 11) in the stacks: its source dir, its framework image, the prepare
step's per-model settings, and synth's refusal of a code directory that breaks the contract."""

from __future__ import annotations

import json
import re
from importlib import resources as pkg_resources
from pathlib import Path
from typing import Any

import pytest

from mlops import env_names as E
from mlops.config import FRAMEWORK_VERSIONS, ConfigError, Framework, load_configs
from mlops.services.training import TrainingSettings
from mlops.twin.sagemaker import images
from stacks.sagemaker_code import check_own_code, container_version, own_code_hash, own_code_problems

from ..conftest import ROOT
from .conftest import Synthesized, resources

CONFIGS = load_configs(ROOT / "configs")
WINE = CONFIGS["wine-cultivar"]


@pytest.fixture(scope="module")
def training(synthesized: Synthesized) -> dict[str, Any]:
    return synthesized.template_json("MlopsTraining")


def _prepare_env(training: dict[str, Any]) -> dict[str, Any]:
    (prepare,) = [
        r["Properties"]
        for r in resources(training, "AWS::Lambda::Function").values()
        if r["Properties"].get("Handler") == "handler.prepare"
    ]
    return prepare["Environment"]["Variables"]


def test_every_framework_version_is_one_sagemaker_core_publishes_and_the_twin_runs() -> None:
    for framework, versions in FRAMEWORK_VERSIONS.items():
        config = json.loads(
            pkg_resources.files("sagemaker.core").joinpath(f"image_uri_config/{framework}.json").read_text()
        )
        for version in versions:
            assert version in config["training"]["versions"] and version in config["inference"]["versions"]
            assert images.spec_for(str(framework), version).python == "3.12"
    assert container_version(Framework.SKLEARN, None) in FRAMEWORK_VERSIONS[Framework.SKLEARN]


def test_prepare_gets_the_own_code_models_source_dir_and_xgboost_image(training: dict[str, Any]) -> None:
    env = _prepare_env(training)
    text = json.dumps(env[E.MODEL_CODE])
    assert "wine-cultivar" in text and "tumor-classifier" not in text  # the platform's models use CODE_URI
    parts = env[E.MODEL_CODE]["Fn::Join"][1]
    (code_hash,) = re.findall(r'"code_hash":"([0-9a-f]{64})"', "".join(p for p in parts if isinstance(p, str)))
    (code_uri,) = [part["Fn::Sub"] for part in parts if isinstance(part, dict) and "Fn::Sub" in part]
    # the lineage's code hash names the model's own asset
    assert code_uri.endswith((f"/{code_hash}.zip", f"/{code_hash}.tar.gz"))
    (mapping,) = [v for k, v in training["Mappings"].items() if k.startswith("XgboostImage320")]
    assert mapping["us-east-1"]["uri"] == "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:3.2-0"
    assert "XgboostImage320Training" in text


def test_the_job_role_pulls_only_the_framework_images_the_models_use(training: dict[str, Any]) -> None:
    pulls = [
        s
        for r in resources(training, "AWS::IAM::Policy").values()
        for s in r["Properties"]["PolicyDocument"]["Statement"]
        if "ecr:BatchGetImage" in json.dumps(s.get("Action"))
    ]
    (statement,) = pulls
    text = json.dumps(statement["Resource"])
    assert "repository/sagemaker-scikit-learn" in text and "repository/sagemaker-xgboost" in text


def test_the_code_hash_changes_with_the_models_code_and_image(tmp_path: Path) -> None:
    root = tmp_path / "app"
    for pattern in ("pipelines/*.py", "pipelines/requirements.txt", "pipelines/wine-cultivar/*.py"):
        for src in ROOT.glob(pattern):
            dest = root / src.relative_to(ROOT)
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(src.read_bytes())
    first = own_code_hash(WINE, root)
    assert own_code_hash(WINE, root) == first
    (root / "pipelines" / "wine-cultivar" / "train.py").write_text("# changed\n")
    assert own_code_hash(WINE, root) != first


def test_synth_refuses_a_code_directory_that_breaks_the_contract(tmp_path: Path) -> None:
    code = tmp_path / "pipelines" / "wine-cultivar"
    code.mkdir(parents=True)
    (code / "train.py").write_text("")
    (code / "evaluate.py").write_text("")
    assert own_code_problems(WINE, tmp_path) == [
        "training.code: pipelines/wine-cultivar has no inference.py; the platform evaluates and serves the model "
        "through its model_fn/input_fn/predict_fn/output_fn",
        "training.code: pipelines/wine-cultivar holds evaluate.py, name(s) the platform uses in the source dir",
    ]
    with pytest.raises(ConfigError) as info:
        check_own_code("wine-cultivar", WINE, tmp_path / "nowhere")
    assert info.value.lines() == [
        "configs/wine-cultivar.yaml: training.code: pipelines/wine-cultivar is not a directory of the project"
    ]
    assert own_code_problems(WINE) == []


def test_prepare_picks_each_models_code_and_image() -> None:
    env = {
        "VALIDATED_BUCKET": "v",
        "ARTIFACTS_BUCKET": "a",
        "CODE_URI": "s3://assets/platform.tar.gz",
        "CODE_HASH": "p",
        "TRAINING_IMAGE_URI": "sklearn:1.9-0",
        E.MODEL_CODE: json.dumps(
            {"wine-cultivar": {"code_uri": "s3://assets/w.tar.gz", "code_hash": "w", "image_uri": "xgb:3.2-0"}}
        ),
    }
    settings = TrainingSettings.from_env(env)
    wine = settings.code_for(WINE)
    assert (wine.code_uri, wine.code_hash, wine.image_uri, wine.program) == (
        "s3://assets/w.tar.gz",
        "w",
        "xgb:3.2-0",
        "train_own_code.py",
    )
    tumor = settings.code_for(CONFIGS["tumor-classifier"])
    assert (tumor.code_uri, tumor.image_uri, tumor.program) == (
        "s3://assets/platform.tar.gz",
        "sklearn:1.9-0",
        "train.py",
    )
    with pytest.raises(RuntimeError, match="MODEL_CODE has no source dir for wine-cultivar"):
        TrainingSettings.from_env({**env, E.MODEL_CODE: "{}"}).code_for(WINE)
