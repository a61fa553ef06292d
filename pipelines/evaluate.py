"""SageMaker processing entry point: evaluate a candidate (and the champion) on hold-out data.

Arguments (defaults are the processing job's local paths):

- ``--model-dir`` (``/opt/ml/processing/model``): the candidate's ``model.tar.gz`` as the
  training job wrote it (an already extracted model dir also works).

Each model, candidate and champion alike, is scored on the same test rows through its own inference
code: a model that carries ``code/inference.py`` (a model with its own code, ``mlops.core.model_code``)
through its ``model_fn``/``input_fn``/``predict_fn``/``output_fn``, a model of the platform's estimators
through the platform's (``model.joblib``).
- ``--test-dir`` (``/opt/ml/processing/test``): CSV file(s) with a header, features and target.
- ``--config-dir`` (``/opt/ml/processing/config``): ``model-config.json``.
- ``--champion-dir`` (``/opt/ml/processing/champion``): the approved model's ``model.tar.gz``;
  absent, empty or holding only a marker (``NO_CHAMPION``) means "no champion yet".
- ``--output-dir`` (``/opt/ml/processing/evaluation``): gets ``evaluation.json``.

``evaluation.json``::

    {
      "problem_type": "binary_classification", "model": "tumor-classifier", "rows": 1234,
      "primary_metric": "roc_auc",
      "candidate": {"accuracy": 0.97, "f1": ..., ...},        # names as mlops.config.*_METRICS
      "champion": {...} | null,                                # same metrics, same test rows
      "champion_error": "..." | null,                          # why a champion could not be scored
      "comparison": {"metric", "candidate", "champion", "delta", "candidate_better"} | null,
      "confusion_matrix": {"labels": [0, 1], "matrix": [[tn, fp], [fn, tp]]},   # classification
      "residuals": {"mean", "std", "p05", "p50", "p95", "max_abs"},             # regression
      "metric_definitions": {"roc_auc": {"higher_is_better": true, "description": "..."}, ...},
      "version": 0.0, "dataset": {"item_count": 1234, "evaluation_time": "..."},
      "binary_classification_metrics" | "multiclass_classification_metrics" | "regression_metrics": {
          "<metric>": {"value": v, "standard_deviation": "NaN"}, ..., "confusion_matrix": {...}}
    }

The last three keys follow SageMaker Model Monitor's model-quality statistics layout,
so the file can be registered as the model package's ``ModelQuality.Statistics`` as is.
``matrix[i][j]`` counts rows whose true label is ``labels[i]`` predicted as ``labels[j]``;
residuals are ``y_true - y_pred``.

On bad input the job exits 1 with the message on stderr and in ``/opt/ml/output/message``
(SageMaker's ``ExitMessage`` file for processing jobs; ``$SM_OUTPUT_MESSAGE`` overrides it,
and a non-default ``--output-dir`` under ``.../processing/`` maps it to ``.../output/message``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tarfile
import tempfile
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import vendored  # noqa: F401  (before mlops: puts vendor/, what the image lacks, on sys.path)

from mlops.config import ConfigError, ModelConfig, ProblemType
from mlops.core import features as F
from mlops.core.metrics import (
    compute_metrics,
    confusion,
    is_better,
    metric_definitions,
    model_quality_statistics,
    residual_summary,
)
from mlops.core.model_code import ContractError, OwnModel, has_own_code
from mlops.sagemaker_contract import report_failure

PROCESSING = "/opt/ml/processing"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Evaluate a candidate model (and the champion) on test data.")
    parser.add_argument("--model-dir", default=f"{PROCESSING}/model")
    parser.add_argument("--test-dir", default=f"{PROCESSING}/test")
    parser.add_argument("--config-dir", default=f"{PROCESSING}/config")
    parser.add_argument("--champion-dir", default=f"{PROCESSING}/champion")
    parser.add_argument("--output-dir", default=f"{PROCESSING}/evaluation")
    return parser.parse_args(argv)


def extract_model(source: Path, dest: Path) -> Path | None:
    """The model's dir: ``source`` itself (model.joblib or the model's own ``code/``), or ``model.tar.gz``
    unpacked into ``dest``."""
    if (source / F.MODEL_FILE).is_file() or has_own_code(source):
        return source
    archives = sorted(source.glob("*.tar.gz")) if source.is_dir() else []
    if not archives:
        return None
    dest.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(archives[0]) as tar:
            tar.extractall(dest, filter="data")
    except (tarfile.TarError, OSError) as exc:
        raise F.DataError(f"{archives[0]} is not a readable model archive: {exc}") from None
    return dest


def score(pipeline: Any, metadata: dict[str, Any], data: pd.DataFrame, y_true: pd.Series) -> dict[str, Any]:
    features = F.features_from_metadata(metadata)
    x = F.prepare_features(data, features)
    predictions, proba = F.predict(pipeline, x)
    classes = metadata.get("classes")
    metrics = compute_metrics(metadata["problem_type"], y_true, predictions, proba, classes)
    return {"metrics": metrics, "predictions": predictions, "classes": classes}


def score_own(model_dir: Path, config: ModelConfig, data: pd.DataFrame, y_true: pd.Series) -> dict[str, Any]:
    """A model that carries its own code (``code/inference.py``), scored through its own handlers."""
    features = [f.name for f in F.features_of(config)]
    predictions, proba, classes = OwnModel(model_dir).predict(data[features], config)
    try:
        metrics = compute_metrics(config.problem_type, y_true, predictions, proba, classes)
    except ValueError as exc:
        raise ContractError(f"the predictions of inference.py cannot be scored: {exc}") from None
    return {"metrics": metrics, "predictions": predictions, "classes": classes}


def score_any(model_dir: Path, config: ModelConfig, data: pd.DataFrame, y_true: pd.Series) -> dict[str, Any]:
    """Any model, through its own inference code: the model's ``code/``, or the platform's estimators'."""
    if has_own_code(model_dir):
        return score_own(model_dir, config, data, y_true)
    pipeline, metadata = F.load_artifacts(model_dir)
    return score(pipeline, metadata, data, y_true)


def score_champion(
    source: Path, work: Path, config: ModelConfig, data: pd.DataFrame, y_true: pd.Series
) -> tuple[dict | None, str | None]:
    """(metrics, None), (None, None) when there is no champion, or (None, reason) when it cannot be scored.

    A champion that cannot score this data (e.g. the contract gained a feature) must not
    block every future training, so it is reported rather than raised.
    """
    if not source.is_dir():
        return None, None
    model_dir = extract_model(source, work)
    if model_dir is None:
        return None, None
    try:
        return score_any(model_dir, config, data, y_true)["metrics"], None
    except Exception as exc:
        return None, f"{type(exc).__name__}: {exc}"


def comparison(metric: str, candidate: dict[str, float], champion: dict[str, float] | None) -> dict | None:
    if not champion or metric not in champion or metric not in candidate:
        return None
    cand, champ = candidate[metric], champion[metric]
    return {
        "metric": metric,
        "candidate": cand,
        "champion": champ,
        "delta": cand - champ,
        "candidate_better": is_better(metric, cand, champ),
    }


def evaluate(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    config: ModelConfig = F.read_config(args.config_dir)
    model_dir = extract_model(Path(args.model_dir), work / "candidate")
    if model_dir is None:
        raise F.DataError(f"no model.tar.gz or {F.MODEL_FILE} in the model dir {args.model_dir}")
    target = config.dataset.target
    own = has_own_code(model_dir)
    loaded = None if own else F.load_artifacts(model_dir)
    features = F.features_of(config) if loaded is None else F.features_from_metadata(loaded[1])
    data = F.read_csv_dir(args.test_dir, "test", [*(f.name for f in features), target])
    y_true = F.prepare_target(data[target], config, "test")
    candidate = score_own(model_dir, config, data, y_true) if loaded is None else score(*loaded, data, y_true)
    champion, champion_error = score_champion(Path(args.champion_dir), work / "champion", config, data, y_true)
    if champion_error:
        print(f"WARNING: champion not evaluated: {champion_error}", file=sys.stderr)
    primary = config.gate.primary_metric
    result: dict[str, Any] = {
        "model": config.name,
        "problem_type": config.problem_type.value,
        "rows": len(data),
        "primary_metric": primary,
        "candidate": candidate["metrics"],
        "champion": champion,
        "champion_error": champion_error,
        "comparison": comparison(primary, candidate["metrics"], champion),
        "metric_definitions": metric_definitions(config.problem_type),
        "version": 0.0,
        "dataset": {"item_count": len(data), "evaluation_time": datetime.now(UTC).isoformat(timespec="seconds")},
    }
    matrix = None
    if config.problem_type is ProblemType.REGRESSION:
        result["residuals"] = residual_summary(y_true, candidate["predictions"])
    else:
        matrix = confusion(y_true, candidate["predictions"], candidate["classes"])
        result["confusion_matrix"] = matrix
    result.update(model_quality_statistics(config.problem_type, candidate["metrics"], matrix))
    return result


def message_file(output_dir: str) -> Path:
    if os.environ.get("SM_OUTPUT_MESSAGE"):
        return Path(os.environ["SM_OUTPUT_MESSAGE"])
    out = Path(output_dir)
    if out.parent.name == "processing":  # <root>/processing/<output> -> <root>/output/message
        return out.parent.parent / "output" / "message"
    return Path("/opt/ml/output/message")


def fail(message: str, output_dir: str, code: int) -> int:
    report_failure(message, message_file(output_dir), 1024)
    return code


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        with tempfile.TemporaryDirectory(prefix="evaluate-") as tmp:
            result = evaluate(args, Path(tmp))
    except (F.DataError, ConfigError) as exc:
        return fail(str(exc), args.output_dir, 1)
    except Exception as exc:
        traceback.print_exc()
        return fail(f"{type(exc).__name__}: {exc}", args.output_dir, 2)
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "evaluation.json").write_text(json.dumps(F.plain(result), indent=2), encoding="utf-8")
    champion = result["champion"]
    print(
        f"evaluated {result['rows']} rows; candidate {result['primary_metric']}="
        f"{result['candidate'].get(result['primary_metric'])}"
        + (f", champion {champion.get(result['primary_metric'])}" if champion else ", no champion")
    )
    for name, value in result["candidate"].items():
        print(f"test:{name}={value:.6f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
