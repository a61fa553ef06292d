"""SageMaker entry points under SageMaker's contract: train.py and evaluate.py as subprocesses
against temp dirs shaped like /opt/ml, inference.py handlers in-process, for both shipped configs."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tarfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from examples.generate_data import generate
from mlops.config import CLASSIFICATION_METRICS, REGRESSION_METRICS, load_config
from mlops.core import features as F
from mlops.core.metrics import compute_metrics, confusion, is_better, no_worse, sagemaker_metric_definitions
from mlops.sagemaker_contract import training_env

ROOT = Path(__file__).resolve().parents[2]
MODELS = {
    # model: (hyperparameter overrides, primary metric, sanity check on validation metrics)
    "tumor-classifier": (["--n_estimators", "40"], "roc_auc", lambda m: m["roc_auc"] > 0.9 and m["f1"] > 0.85),
    "diabetes-progression": (["--n_estimators", "30", "--max_depth", "5"], "rmse", lambda m: m["r2"] > 0.3),
}


@dataclass
class Job:
    model: str
    root: Path
    result: subprocess.CompletedProcess[str]

    @property
    def ml(self) -> Path:
        return self.root / "opt" / "ml"

    @property
    def model_dir(self) -> Path:
        return self.ml / "model"

    @property
    def processing(self) -> Path:
        return self.root / "opt" / "ml" / "processing"


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SM_")}
    env["PYTHONPATH"] = str(ROOT)
    env.update(extra)
    return env


def _write_split(root: Path, model: str, rows: int = 3000, seed: int = 3) -> None:
    data = generate(model, "good", rows, seed)
    n = len(data)
    parts = {"train": data.iloc[: int(n * 0.7)], "validation": data.iloc[int(n * 0.7) : int(n * 0.85)]}
    for name, part in parts.items():
        (root / "opt/ml/input/data" / name).mkdir(parents=True)
        part.to_csv(root / "opt/ml/input/data" / name / "data.csv", index=False)
    test = root / "opt/ml/processing/test"
    test.mkdir(parents=True)
    data.iloc[int(n * 0.85) :].to_csv(test / "data.csv", index=False)
    config = load_config(ROOT / "configs" / f"{model}.yaml").model_dump(mode="json")
    for where in (root / "opt/ml/input/data/config", root / "opt/ml/processing/config"):
        where.mkdir(parents=True)
        (where / "model-config.json").write_text(json.dumps(config))


def _train_env(root: Path, **extra: str) -> dict[str, str]:
    env = training_env(root / "opt" / "ml", ["train", "validation", "config"])
    env.update(extra)
    return _env(**env)


def run_train(root: Path, args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, str(ROOT / "pipelines/train.py"), *args]
    return subprocess.run(cmd, env=env, cwd=root, capture_output=True, text=True, timeout=120)


def run_evaluate(root: Path, *extra: str, champion: Path | None = None) -> subprocess.CompletedProcess[str]:
    p = root / "opt/ml/processing"
    args = ["--model-dir", str(p / "model"), "--test-dir", str(p / "test"), "--config-dir", str(p / "config")]
    args += ["--output-dir", str(p / "evaluation"), *extra]
    if champion is not None:
        args += ["--champion-dir", str(champion)]
    cmd = [sys.executable, str(ROOT / "pipelines/evaluate.py"), *args]
    return subprocess.run(cmd, env=_env(), cwd=root, capture_output=True, text=True, timeout=120)


def tar_model(model_dir: Path, dest_dir: Path) -> Path:
    """model.tar.gz as SageMaker builds it from SM_MODEL_DIR (files at the archive root)."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    archive = dest_dir / "model.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for path in sorted(model_dir.iterdir()):
            tar.add(path, arcname=path.name)
    return archive


@pytest.fixture(scope="module", params=sorted(MODELS))
def trained(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Job:
    model = request.param
    root = tmp_path_factory.mktemp(model)
    _write_split(root, model)
    result = run_train(root, MODELS[model][0], _train_env(root))
    assert result.returncode == 0, result.stderr
    tar_model(root / "opt/ml/model", root / "opt/ml/processing/model")
    return Job(model, root, result)


def _metadata(job: Job) -> dict[str, Any]:
    return json.loads((job.model_dir / "model-metadata.json").read_text())


def _evaluation(job: Job) -> dict[str, Any]:
    return json.loads((job.processing / "evaluation/evaluation.json").read_text())


# -- train.py ----------------------------------------------------------------------------------
def test_train_writes_model_metadata_and_metric_lines(trained: Job) -> None:
    assert (trained.model_dir / "model.joblib").is_file()
    meta = _metadata(trained)
    config = load_config(ROOT / "configs" / f"{trained.model}.yaml")
    assert meta["problem_type"] == config.problem_type.value
    assert meta["target"] == config.dataset.target
    assert [f["name"] for f in meta["features"]] == [c.name for c in config.dataset.features]
    assert "record_id" not in [f["name"] for f in meta["features"]]  # feature: false
    assert meta["training_rows"] == 2100 and meta["validation_rows"] == 450
    assert MODELS[trained.model][2](meta["validation_metrics"]), meta["validation_metrics"]
    # command-line hyperparameters override the config's; the others come from the config
    assert meta["hyperparameters"]["n_estimators"] in (40, 30)
    assert meta["hyperparameters"]["random_state"] == config.training.split.seed
    for key, value in config.training.hyperparameters.items():
        if f"--{key}" not in MODELS[trained.model][0]:
            assert meta["hyperparameters"][key] == value
    printed = dict(line.split("=", 1) for line in trained.result.stdout.splitlines() if line.startswith("validation:"))
    names = {k.removeprefix("validation:") for k in printed}
    assert names == set(meta["validation_metrics"])
    assert (trained.ml / "output/data/training-report.json").is_file()


def test_train_classifier_records_classes_and_categorical_features(trained: Job) -> None:
    meta = _metadata(trained)
    kinds = {f["name"]: f["kind"] for f in meta["features"]}
    if trained.model == "tumor-classifier":
        assert meta["classes"] == [0, 1] and meta["positive_class"] == 1
        assert kinds["clinic"] == "categorical" and kinds["mean_radius"] == "numeric"
        assert meta["estimator"] == "GradientBoostingClassifier"
        assert set(meta["validation_metrics"]) == CLASSIFICATION_METRICS
    else:
        assert meta["classes"] is None
        assert kinds["sex"] == "categorical" and kinds["bmi"] == "numeric"  # int with allowed codes
        assert meta["estimator"] == "RandomForestRegressor"
        assert set(meta["validation_metrics"]) == REGRESSION_METRICS


def _fresh_split(tmp_path: Path) -> Path:
    _write_split(tmp_path, "tumor-classifier", rows=400)
    return tmp_path


def test_train_unknown_hyperparameter_fails_with_failure_file(tmp_path: Path) -> None:
    root = _fresh_split(tmp_path)
    failure = tmp_path / "custom" / "failure"
    result = run_train(
        root, ["--n_estimators", "5", "--bogus_knob", "1"], _train_env(root, SM_OUTPUT_FAILURE=str(failure))
    )
    assert result.returncode == 1
    assert "unknown hyperparameter(s) for gradient_boosting" in result.stderr and "bogus_knob" in result.stderr
    assert "bogus_knob" in failure.read_text()
    assert "Traceback" not in result.stderr
    assert not (root / "opt/ml/model/model.joblib").exists()


def test_train_invalid_hyperparameter_value_fails_readably(tmp_path: Path) -> None:
    root = _fresh_split(tmp_path)
    result = run_train(root, ["--n_estimators", "-3"], _train_env(root))
    assert result.returncode == 1
    message = (root / "opt/ml/output/failure").read_text()
    assert "n_estimators" in message and "GradientBoostingClassifier" in message


def test_train_missing_channel_fails_with_failure_file(tmp_path: Path) -> None:
    root = _fresh_split(tmp_path)
    env = _train_env(root)
    del env["SM_CHANNEL_VALIDATION"]
    result = run_train(root, [], env)
    assert result.returncode == 1
    message = (root / "opt/ml/output/failure").read_text()
    assert "'validation' is missing" in message and "SM_CHANNEL_VALIDATION" in message


def test_train_missing_column_and_empty_data_fail(tmp_path: Path) -> None:
    root = _fresh_split(tmp_path)
    train_csv = root / "opt/ml/input/data/train/data.csv"
    frame = generate("tumor-classifier", "good", 200, 1).drop(columns=["mean_area"])
    frame.to_csv(train_csv, index=False)
    result = run_train(root, [], _train_env(root))
    assert result.returncode == 1
    assert "missing column(s) mean_area" in (root / "opt/ml/output/failure").read_text()

    frame.iloc[:0].assign(mean_area=[]).to_csv(train_csv, index=False)
    result = run_train(root, [], _train_env(root))
    assert result.returncode == 1
    assert "header but no rows" in (root / "opt/ml/output/failure").read_text()


# -- evaluate.py -------------------------------------------------------------------------------
def _weak_champion(job: Job, dest: Path, hyperparameters: dict[str, Any]) -> Path:
    """A deliberately weak model of the same config, saved and tarred like a training job's output."""
    config = load_config(ROOT / "configs" / f"{job.model}.yaml")
    features = F.features_of(config)
    data = F.read_csv_dir(job.ml / "input/data/train", "train", [f.name for f in features])
    x, y = F.prepare_features(data, features), F.prepare_target(data[config.dataset.target], config, "train")
    pipeline, used = F.build_pipeline(config, features, hyperparameters)
    pipeline.fit(x, y)
    meta = {**_metadata(job), "hyperparameters": used}
    F.save_artifacts(dest / "extracted", pipeline, meta)
    return tar_model(dest / "extracted", dest / "champion").parent


def test_evaluate_without_champion(trained: Job) -> None:
    champion = trained.processing / "champion-none"
    champion.mkdir(exist_ok=True)
    (champion / "NO_CHAMPION").write_text("")  # the marker the training step writes
    result = run_evaluate(trained.root, champion=champion)
    assert result.returncode == 0, result.stderr
    ev = _evaluation(trained)
    config = load_config(ROOT / "configs" / f"{trained.model}.yaml")
    assert ev["problem_type"] == config.problem_type.value
    assert ev["rows"] == 450 and ev["dataset"]["item_count"] == 450
    assert ev["primary_metric"] == config.gate.primary_metric
    assert ev["champion"] is None and ev["comparison"] is None and ev["champion_error"] is None
    assert set(ev["metric_definitions"]) == set(config.metric_names)
    assert MODELS[trained.model][2](ev["candidate"]), ev["candidate"]
    if config.problem_type.is_classification:
        assert set(ev["candidate"]) == CLASSIFICATION_METRICS
        cm = ev["confusion_matrix"]
        assert cm["labels"] == [0, 1] and np.array(cm["matrix"]).sum() == 450
        tn, fp, fn, tp = np.array(cm["matrix"]).ravel()
        assert ev["candidate"]["accuracy"] == pytest.approx((tn + tp) / 450)
        assert ev["candidate"]["recall"] == pytest.approx(tp / (tp + fn))
        block = ev["binary_classification_metrics"]
        assert block["auc"]["value"] == ev["candidate"]["roc_auc"]
        assert block["confusion_matrix"]["1"]["1"] == tp and block["confusion_matrix"]["0"]["1"] == fp
        assert "residuals" not in ev
    else:
        assert set(ev["candidate"]) == REGRESSION_METRICS
        res = ev["residuals"]
        assert set(res) == {"mean", "std", "p05", "p50", "p95", "max_abs"}
        assert res["p05"] <= res["p50"] <= res["p95"] and res["max_abs"] >= abs(res["p95"])
        block = ev["regression_metrics"]
        assert block["mse"]["value"] == pytest.approx(ev["candidate"]["rmse"] ** 2)
        assert "confusion_matrix" not in ev
    assert f"test:{config.gate.primary_metric}=" in result.stdout


def test_evaluate_absent_champion_dir_means_no_champion(trained: Job) -> None:
    result = run_evaluate(trained.root, champion=trained.root / "does-not-exist")
    assert result.returncode == 0, result.stderr
    assert _evaluation(trained)["champion"] is None


def test_evaluate_with_champion_scores_both_on_the_same_rows(trained: Job, tmp_path: Path) -> None:
    hps = {"n_estimators": 2, "max_depth": 1}
    champion = _weak_champion(trained, tmp_path, hps)
    result = run_evaluate(trained.root, champion=champion)
    assert result.returncode == 0, result.stderr
    ev = _evaluation(trained)
    metric = ev["primary_metric"]
    assert set(ev["champion"]) == set(ev["candidate"])
    assert is_better(metric, ev["candidate"][metric], ev["champion"][metric])
    cmp = ev["comparison"]
    assert cmp["metric"] == metric and cmp["candidate_better"] is True
    assert cmp["delta"] == pytest.approx(ev["candidate"][metric] - ev["champion"][metric])


def test_evaluate_same_model_as_champion_ties(trained: Job) -> None:
    result = run_evaluate(trained.root, champion=trained.processing / "model")
    assert result.returncode == 0, result.stderr
    ev = _evaluation(trained)
    assert ev["champion"] == ev["candidate"] and ev["comparison"]["delta"] == 0


def test_evaluate_incompatible_champion_is_reported_not_fatal(trained: Job, tmp_path: Path) -> None:
    extracted = tmp_path / "extracted"
    extracted.mkdir()
    for name in ("model.joblib", "model-metadata.json"):
        (extracted / name).write_bytes((trained.model_dir / name).read_bytes())
    meta = json.loads((extracted / "model-metadata.json").read_text())
    meta["features"].append({"name": "retired_column", "type": "float", "kind": "numeric"})
    (extracted / "model-metadata.json").write_text(json.dumps(meta))
    champion = tar_model(extracted, tmp_path / "champion").parent
    result = run_evaluate(trained.root, champion=champion)
    assert result.returncode == 0, result.stderr
    ev = _evaluation(trained)
    assert ev["champion"] is None and "retired_column" in ev["champion_error"]


def test_evaluate_bad_input_exits_with_message(tmp_path: Path) -> None:
    _write_split(tmp_path, "tumor-classifier", rows=300)
    result = run_evaluate(tmp_path)  # no model.tar.gz in the model dir
    assert result.returncode == 1
    message = (tmp_path / "opt/ml/output/message").read_text()  # SageMaker's ExitMessage file
    assert "no model.tar.gz" in message and message in result.stderr


# -- inference.py ------------------------------------------------------------------------------
def _inference_module() -> ModuleType:
    """A fresh module per test, as the serving container (and the twin) imports it: the code dir on sys.path."""
    if str(ROOT / "pipelines") not in sys.path:
        sys.path.append(str(ROOT / "pipelines"))  # its vendored.py (a no-op in a checkout: no vendor/)
    spec = importlib.util.spec_from_file_location(f"_inference_{uuid.uuid4().hex}", ROOT / "pipelines/inference.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _serve(module: ModuleType, model: Any, body: str | bytes, content_type: str, accept: str) -> tuple[str, str]:
    data = module.input_fn(body, content_type)
    return module.output_fn(module.predict_fn(data, model), accept)


@pytest.fixture
def served(trained: Job) -> tuple[ModuleType, Any, Job]:
    module = _inference_module()
    return module, module.model_fn(str(trained.model_dir)), trained


def _rows(job: Job, n: int = 5) -> Any:
    return generate(job.model, "good", n, 99)


def test_inference_csv_with_header_drops_extra_columns(served: tuple[ModuleType, Any, Job]) -> None:
    module, model, job = served
    frame = _rows(job)  # includes the target (and record_id for the tumour model)
    body, kind = _serve(module, model, frame.to_csv(index=False), "text/csv", "application/json")
    assert kind == "application/json"
    predictions = json.loads(body)["predictions"]
    assert len(predictions) == 5
    if job.model == "tumor-classifier":
        for p in predictions:
            assert p["label"] in (0, 1)
            assert set(p["probabilities"]) == {"0", "1"}
            assert sum(p["probabilities"].values()) == pytest.approx(1.0)
            assert p["label"] == int(max(p["probabilities"], key=p["probabilities"].get))
    else:
        assert all(isinstance(p["value"], float) and "probabilities" not in p for p in predictions)


def test_inference_csv_without_header_uses_feature_order(served: tuple[ModuleType, Any, Job]) -> None:
    module, model, job = served
    names = [f["name"] for f in _metadata(job)["features"]]
    frame = _rows(job)
    headed, _ = _serve(module, model, frame.to_csv(index=False), "text/csv", "application/json")
    bare, _ = _serve(
        module, model, frame[names].to_csv(index=False, header=False).encode(), "text/csv; charset=utf-8", "*/*"
    )
    assert json.loads(bare) == json.loads(headed)
    csv_body, kind = _serve(module, model, frame[names].to_csv(index=False, header=False), "text/csv", "text/csv")
    lines = csv_body.strip().splitlines()
    assert kind == "text/csv" and len(lines) == 5
    width = 3 if job.model == "tumor-classifier" else 1  # label, p(0), p(1) | value
    assert all(len(line.split(",")) == width for line in lines)


def test_inference_json_shapes_agree(served: tuple[ModuleType, Any, Job]) -> None:
    module, model, job = served
    records = json.loads(_rows(job).to_json(orient="records"))
    outputs = [
        _serve(module, model, json.dumps({"instances": records}), "application/json", "application/json")[0],
        _serve(module, model, json.dumps(records), "application/json", "application/json")[0],
    ]
    assert json.loads(outputs[0]) == json.loads(outputs[1])
    single, _ = _serve(module, model, json.dumps(records[0]), "application/json", "application/json")
    assert json.loads(single)["predictions"] == json.loads(outputs[0])["predictions"][:1]


def test_inference_errors_are_clear(served: tuple[ModuleType, Any, Job]) -> None:
    module, _, job = served
    frame = _rows(job)
    dropped = "mean_radius" if job.model == "tumor-classifier" else "bmi"
    with pytest.raises(ValueError, match=f"missing feature\\(s\\): {dropped}"):
        module.input_fn(frame.drop(columns=[dropped]).to_csv(index=False), "text/csv")
    records = json.loads(frame.drop(columns=[dropped]).to_json(orient="records"))
    with pytest.raises(ValueError, match=f"missing feature\\(s\\): {dropped}"):
        module.input_fn(json.dumps({"instances": records}), "application/json")
    with pytest.raises(ValueError, match="unsupported content type 'application/x-npy'"):
        module.input_fn(b"\x93NUMPY", "application/x-npy")
    with pytest.raises(ValueError, match="without a header row each row needs"):
        module.input_fn("1,2,3\n", "text/csv")
    bad = frame.astype(object)
    bad.loc[0, dropped] = "n/a"
    with pytest.raises(ValueError, match=f"column '{dropped}': 1 non-numeric"):
        module.input_fn(bad.to_csv(index=False), "text/csv")
    with pytest.raises(ValueError, match="unsupported accept type"):
        module.output_fn({"problem_type": "regression", "predictions": [1.0]}, "application/x-protobuf")


# -- shared metrics ------------------------------------------------------------------------------
def test_metrics_multiclass_binary_edge_cases_and_directions() -> None:
    y = np.array(["a", "b", "c", "a", "b", "c"])
    proba = np.array(
        [[0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6], [0.5, 0.3, 0.2], [0.3, 0.4, 0.3], [0.1, 0.6, 0.3]]
    )
    pred = np.array(["a", "b", "c", "a", "b", "b"])
    m = compute_metrics("multiclass_classification", y, pred, proba, ["a", "b", "c"])
    assert set(m) == CLASSIFICATION_METRICS and m["accuracy"] == pytest.approx(5 / 6)
    assert confusion(y, pred, ["a", "b", "c"])["matrix"] == [[2, 0, 0], [0, 2, 0], [0, 1, 1]]
    # one class present: ROC AUC is undefined and left out, not NaN
    one = compute_metrics("binary_classification", [1, 1], [1, 0], [[0.2, 0.8], [0.6, 0.4]], [0, 1])
    assert "roc_auc" not in one and one["recall"] == 0.5
    assert set(compute_metrics("regression", [1.0, 2.0, 3.0], [1.5, 2.0, 2.5])) == REGRESSION_METRICS
    assert is_better("rmse", 1.0, 2.0) and is_better("roc_auc", 0.9, 0.8) and not is_better("mae", 3, 3)
    assert no_worse("roc_auc", 0.897, 0.9, tolerance=0.005) and not no_worse("rmse", 80, 75, tolerance=1)
    defs = sagemaker_metric_definitions("regression")
    assert {d["Name"] for d in defs} == {"validation:mae", "validation:r2", "validation:rmse"}


def test_categorical_values_agree_across_encodings() -> None:
    config = load_config(ROOT / "configs/diabetes-progression.yaml")
    features = [f for f in F.features_of(config) if f.name in ("sex", "age")]
    import pandas as pd

    frames = [pd.DataFrame({"sex": [1, 2], "age": [50, 60]}), pd.DataFrame({"sex": ["1", "2.0"], "age": ["50", "60"]})]
    prepared = [F.prepare_features(f, features) for f in frames]
    assert prepared[0]["sex"].tolist() == prepared[1]["sex"].tolist() == ["1", "2"]
    assert prepared[1]["age"].tolist() == [50.0, 60.0]
    assert F.parse_value("150") == 150 and F.parse_value("0.1") == 0.1 and F.parse_value("sqrt") == "sqrt"
    assert F.parse_value("true") is True and F.parse_value("None") is None
