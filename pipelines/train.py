"""SageMaker training entry point (scikit-learn framework container, script mode).

Contract (the same in AWS and on the twin):

- ``SM_CHANNEL_TRAIN``, ``SM_CHANNEL_VALIDATION``: dirs with one or more CSV files
  (header row; the config's feature columns and target, other columns ignored).
- ``SM_CHANNEL_CONFIG``: dir holding ``model-config.json`` (``ModelConfig.model_dump(mode="json")``).
- Hyperparameters as ``--key value`` arguments (and/or ``SM_HPS`` JSON); they override the
  config's ``training.hyperparameters``; a name the estimator does not have is an error.
- ``SM_MODEL_DIR``: gets ``model.joblib`` (a fitted scikit-learn Pipeline) and
  ``model-metadata.json`` (features, target, classes, hyperparameters, metrics, versions).
- ``SM_OUTPUT_DATA_DIR``: gets ``training-report.json`` (the metadata, for the job's output.tar.gz).
- stdout: one ``validation:<metric>=<value>`` line per validation metric (for
  ``MetricDefinitions``; see ``mlops.core.metrics.sagemaker_metric_definitions``).
- On bad input: exit code 1, the message on stderr and in the failure file that
  SageMaker turns into ``FailureReason`` (``/opt/ml/output/failure``; ``$SM_OUTPUT_FAILURE``
  or ``$SM_OUTPUT_DIR/failure`` when set). Unexpected errors exit 2 the same way.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import traceback
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import sklearn
import vendored  # noqa: F401  (before mlops: puts vendor/, what the image lacks, on sys.path)

from mlops.config import ConfigError, ModelConfig
from mlops.core import features as F
from mlops.core.metrics import compute_metrics
from mlops.sagemaker_contract import failure_file, report_failure


def parse_cli_hyperparameters(argv: list[str]) -> dict[str, Any]:
    """``--key value`` / ``--key=value`` pairs as SageMaker passes hyperparameters."""
    out: dict[str, Any] = {}
    i = 0
    while i < len(argv):
        arg = argv[i]
        if not arg.startswith("--") or len(arg) == 2:
            raise F.DataError(f"unexpected argument {arg!r}: hyperparameters come as --name value")
        key, sep, value = arg[2:].partition("=")
        if not sep:
            if i + 1 >= len(argv):
                raise F.DataError(f"hyperparameter --{key} has no value")
            value = argv[i + 1]
            i += 1
        out[key] = F.parse_value(value)
        i += 1
    return out


def hyperparameters(config: ModelConfig, argv: list[str], env: Mapping[str, str]) -> tuple[dict, dict]:
    """(all hyperparameters, the overrides given to the job); ``sagemaker_*`` keys are the toolkit's, not ours."""
    overrides: dict[str, Any] = {}
    if env.get("SM_HPS"):
        try:
            overrides.update({k: F.parse_value(v) for k, v in json.loads(env["SM_HPS"]).items()})
        except (json.JSONDecodeError, AttributeError):
            raise F.DataError(f"SM_HPS is not a JSON object: {env['SM_HPS'][:200]!r}") from None
    overrides.update(parse_cli_hyperparameters(argv))
    overrides = {k: v for k, v in overrides.items() if not k.startswith("sagemaker_")}
    return {**config.training.hyperparameters, **overrides}, overrides


def channel(env: Mapping[str, str], name: str) -> Path:
    var = f"SM_CHANNEL_{name.upper()}"
    if not env.get(var):
        raise F.DataError(
            f"input channel {name!r} is missing ({var} is not set); the job needs channels train, validation and config"
        )
    path = Path(env[var])
    if not path.is_dir():
        raise F.DataError(f"input channel {name!r} directory does not exist: {path}")
    return path


def fit(config: ModelConfig, params: dict[str, Any], frame_x: Any, y: Any) -> tuple[Any, dict[str, Any]]:
    pipeline, used = F.build_pipeline(config, F.features_of(config), params)
    try:
        pipeline.fit(frame_x, y)
    except ValueError as exc:  # includes scikit-learn's InvalidParameterError for bad hyperparameter values
        raise F.DataError(f"training {F.estimator_class(config).__name__} failed: {exc}") from None
    return pipeline, used


def train(argv: list[str], env: Mapping[str, str]) -> dict[str, Any]:
    train_dir, validation_dir = channel(env, "train"), channel(env, "validation")
    config = F.read_config(channel(env, "config"))
    params, overrides = hyperparameters(config, argv, env)
    features = F.features_of(config)
    target = config.dataset.target
    required = [f.name for f in features] + [target]
    frames = {
        label: F.read_csv_dir(d, label, required) for label, d in (("train", train_dir), ("validation", validation_dir))
    }
    x_train = F.prepare_features(frames["train"], features)
    y_train = F.prepare_target(frames["train"][target], config, "train")
    if config.problem_type.is_classification and y_train.nunique() < 2:
        raise F.DataError(f"train data: target {target!r} has one class ({y_train.iloc[0]!r}); need at least two")
    pipeline, used = fit(config, params, x_train, y_train)

    x_valid = F.prepare_features(frames["validation"], features)
    y_valid = F.prepare_target(frames["validation"][target], config, "validation")
    predictions, proba = F.predict(pipeline, x_valid)
    classes = F.plain(pipeline.classes_) if config.problem_type.is_classification else None
    metrics = compute_metrics(config.problem_type, y_valid, predictions, proba, classes)

    metadata = {
        "model": config.name,
        "problem_type": config.problem_type.value,
        "target": target,
        "target_type": config.dataset.target_column.type.value,
        "features": [f.to_dict() for f in features],
        "classes": classes,
        "positive_class": classes[-1] if config.problem_type.value == "binary_classification" else None,
        "algorithm": config.training.algorithm.value,
        "estimator": type(pipeline.named_steps["model"]).__name__,
        "hyperparameters": F.plain(used),
        "hyperparameter_overrides": F.plain(overrides),
        "training_rows": len(x_train),
        "validation_rows": len(x_valid),
        "validation_metrics": metrics,
        "primary_metric": config.gate.primary_metric,
        "sklearn_version": sklearn.__version__,
        "numpy_version": np.__version__,
        "python_version": platform.python_version(),
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "model_file": F.MODEL_FILE,
    }
    F.save_artifacts(env.get("SM_MODEL_DIR", "/opt/ml/model"), pipeline, metadata)
    output_dir = Path(env.get("SM_OUTPUT_DATA_DIR", "/opt/ml/output/data"))
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "training-report.json").write_text(json.dumps(metadata, indent=2), encoding="utf-8")
    return metadata


def fail(message: str, env: Mapping[str, str], code: int) -> int:
    report_failure(message, failure_file(env), 4096)
    return code


def main(argv: list[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    env = os.environ if env is None else env
    try:
        metadata = train(sys.argv[1:] if argv is None else argv, env)
    except (F.DataError, ConfigError) as exc:
        return fail(str(exc), env, 1)
    except Exception as exc:
        traceback.print_exc()
        return fail(f"{type(exc).__name__}: {exc}", env, 2)
    print(
        f"trained {metadata['estimator']} on {metadata['training_rows']} rows "
        f"(validation {metadata['validation_rows']} rows)"
    )
    for name, value in metadata["validation_metrics"].items():
        print(f"validation:{name}={value:.6f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
