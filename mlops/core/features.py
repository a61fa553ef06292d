"""Features, data loading and the scikit-learn pipeline, shared by train, evaluate and inference.

Raw values are coerced to the config's column types *outside* the fitted pipeline, so
the pickled model is pure scikit-learn and loads anywhere; the same coercion runs at
training, evaluation and serving time, by the rules of ``mlops.core.types`` (the ones
validation applies), so ``1``, ``"1"`` and ``1.0`` in an ``int`` categorical column are
one category everywhere, and ``yes`` is a boolean everywhere or nowhere.

Feature kinds: ``string`` and ``bool`` columns, and ``int`` columns with ``allowed``
values (codes such as sex), are categorical (most-frequent impute + one-hot, unknown
categories ignored); other ``int``/``float`` columns are numeric (median impute, plus
standard scaling for the linear models).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import (
    GradientBoostingClassifier,
    GradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from mlops.config import Algorithm, ModelConfig, ProblemType
from mlops.core import types as T
from mlops.core.types import DEFAULT_NA_VALUES, ColumnType, TypeMismatch

NUMERIC, CATEGORICAL = "numeric", "categorical"
LINEAR = {Algorithm.LOGISTIC_REGRESSION, Algorithm.LINEAR_REGRESSION, Algorithm.RIDGE}
ESTIMATORS: dict[tuple[Algorithm, bool], type[BaseEstimator]] = {
    (Algorithm.RANDOM_FOREST, True): RandomForestClassifier,
    (Algorithm.RANDOM_FOREST, False): RandomForestRegressor,
    (Algorithm.GRADIENT_BOOSTING, True): GradientBoostingClassifier,
    (Algorithm.GRADIENT_BOOSTING, False): GradientBoostingRegressor,
    (Algorithm.LOGISTIC_REGRESSION, True): LogisticRegression,
    (Algorithm.LINEAR_REGRESSION, False): LinearRegression,
    (Algorithm.RIDGE, False): Ridge,
}
# defaults that differ from scikit-learn's, still overridable by hyperparameters
BASE_PARAMS: dict[type[BaseEstimator], dict[str, Any]] = {LogisticRegression: {"max_iter": 1000}}
CSV_SUFFIXES = (".csv", ".csv.gz")


class DataError(ValueError):
    """Input data or hyperparameters the job cannot use; the message is meant for the user."""


@dataclass(frozen=True)
class Feature:
    name: str
    type: str  # a ColumnType value
    kind: str  # NUMERIC or CATEGORICAL
    na_values: tuple[str, ...] = DEFAULT_NA_VALUES  # the contract's: what means "missing" in requests too

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["na_values"] = list(self.na_values)
        return out

    @property
    def column_type(self) -> ColumnType:
        return ColumnType(self.type)


def features_of(config: ModelConfig) -> list[Feature]:
    out = []
    na_values = tuple(config.dataset.na_values)
    for column in config.dataset.features:
        categorical = column.type in (ColumnType.STRING, ColumnType.BOOL) or (
            column.type is ColumnType.INT and column.allowed is not None
        )
        out.append(Feature(column.name, column.type.value, CATEGORICAL if categorical else NUMERIC, na_values))
    return out


def features_from_metadata(metadata: dict[str, Any]) -> list[Feature]:
    return [
        Feature(f["name"], f["type"], f["kind"], tuple(f.get("na_values", DEFAULT_NA_VALUES)))
        for f in metadata["features"]
    ]


# -- reading -----------------------------------------------------------------------------
def read_config(config_dir: str | Path) -> ModelConfig:
    from mlops.config import parse_config

    path = Path(config_dir) / "model-config.json"
    if not path.is_file():
        raise DataError(f"model config not found: {path} (the config channel must hold model-config.json)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"model config {path} is not valid JSON: {exc}") from None
    return parse_config(data, str(path))


def csv_files(directory: str | Path, label: str) -> list[Path]:
    directory = Path(directory)
    if not directory.is_dir():
        raise DataError(f"{label} data directory not found: {directory}")
    files = sorted(
        p for p in directory.rglob("*") if p.is_file() and p.name.endswith(CSV_SUFFIXES) and not p.name.startswith(".")
    )
    if not files:
        raise DataError(f"no CSV files in the {label} data directory {directory}")
    return files


def read_csv_dir(directory: str | Path, label: str, required: list[str]) -> pd.DataFrame:
    """All CSV files of a channel, concatenated; each must have a header holding the ``required`` columns."""
    frames = []
    for path in csv_files(directory, label):
        try:  # canonical CSV (mlops.core.canonical): only an empty field is missing; "NA" is text
            frame = pd.read_csv(path, keep_default_na=False, na_values=[""])
        except pd.errors.EmptyDataError:
            raise DataError(f"{label} file {path.name} is empty (no header row)") from None
        except (pd.errors.ParserError, UnicodeDecodeError) as exc:
            raise DataError(f"{label} file {path.name} is not readable CSV: {exc}") from None
        missing = [c for c in required if c not in frame.columns]
        if missing:
            found = ", ".join(map(str, frame.columns[:20]))
            raise DataError(f"{label} file {path.name} is missing column(s) {', '.join(missing)} (found: {found})")
        frames.append(frame)
    data = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    if data.empty:
        raise DataError(f"{label} data has a header but no rows ({len(frames)} file(s) in {directory})")
    return data


# -- coercion (the rules of mlops.core.types) -----------------------------------------------
def _wrong(name: str, values: pd.Series, bad: pd.Series, column_type: ColumnType) -> DataError:
    samples = ", ".join(repr(v) for v in pd.unique(values[bad].astype(str))[:5])
    what = "non-numeric value(s)" if column_type is ColumnType.FLOAT else f"value(s) that are not {column_type.value}s"
    return DataError(f"column {name!r}: {int(bad.sum())} {what} (type {column_type.value}), e.g. {samples}")


def _numeric(values: pd.Series, name: str, column_type: ColumnType = ColumnType.FLOAT,
             na_values: tuple[str, ...] = DEFAULT_NA_VALUES) -> pd.Series:  # fmt: skip
    """Float values (NaN where missing) of an int or float column; raises DataError naming wrong values."""
    if pd.api.types.is_bool_dtype(values):
        raise _wrong(name, values, values.notna(), column_type)
    if pd.api.types.is_numeric_dtype(values):  # what pandas reads from canonical CSV: checked vectorised
        numbers = values.astype(float)
        bad = np.isinf(numbers)
        if column_type is ColumnType.INT:
            bad |= numbers.notna() & ((numbers != np.round(numbers)) | (numbers.abs() >= 2**53))
        if bad.any():
            raise _wrong(name, values, bad, column_type)
        return numbers

    def one(value: Any) -> float:
        typed = T.parse_value(column_type, value, na_values)
        return np.nan if typed is None else float(typed)

    try:
        return values.astype(object).map(one).astype(float)
    except TypeMismatch:
        bad = values.astype(object).map(lambda v: not _fits(column_type, v, na_values)).astype(bool)
        raise _wrong(name, values, bad, column_type) from None


def _fits(column_type: ColumnType, value: Any, na_values: tuple[str, ...]) -> bool:
    try:
        T.parse_value(column_type, value, na_values)
    except TypeMismatch:
        return False
    return True


def _category_value(value: Any, column_type: str, na_values: tuple[str, ...] = DEFAULT_NA_VALUES) -> Any:
    """A categorical cell as its category text (NaN when missing); a value not of the type is kept as text
    (an unknown category the one-hot encoder ignores)."""
    kind = ColumnType(column_type)
    if value is pd.NA:
        return np.nan
    try:
        typed = T.parse_value(kind, value, na_values)
    except TypeMismatch:
        return str(value)
    return np.nan if typed is None else T.category_text(kind, typed)


def _categorical(values: pd.Series, column_type: str, na_values: tuple[str, ...] = DEFAULT_NA_VALUES) -> pd.Series:
    if column_type == ColumnType.INT and pd.api.types.is_integer_dtype(values) and not values.isna().any():
        return values.astype(str).astype(object)  # the common case, vectorised
    return values.astype(object).map(lambda v: _category_value(v, column_type, na_values)).astype(object)


def typed_rows(rows: list[list[str]], features: list[Feature]) -> pd.DataFrame | None:
    """Rows of CSV cells (features in model order) as the typed frame ``prepare_features`` makes.

    The serving fast path: plain Python per cell instead of several pandas passes per column,
    which dominate the cost of a one-row request. ``None`` when a cell does not parse, so
    that the caller takes ``prepare_features`` and its precise error message.
    """
    columns: dict[str, list[Any]] = {f.name: [] for f in features}
    try:
        for row in rows:
            for feature, cell in zip(features, row, strict=True):
                if feature.kind == NUMERIC:
                    typed = T.parse_value(feature.column_type, cell, feature.na_values)
                    columns[feature.name].append(np.nan if typed is None else float(typed))
                else:
                    columns[feature.name].append(_category_value(cell, feature.type, feature.na_values))
    except TypeMismatch:
        return None
    return pd.DataFrame(
        {f.name: pd.Series(columns[f.name], dtype=float if f.kind == NUMERIC else object) for f in features}
    )


def prepare_features(frame: pd.DataFrame, features: list[Feature]) -> pd.DataFrame:
    """The feature columns in model order, coerced to their kinds; raises DataError naming what is wrong."""
    missing = [f.name for f in features if f.name not in frame.columns]
    if missing:
        expected = ", ".join(f.name for f in features)
        raise DataError(f"missing feature(s): {', '.join(missing)} (the model expects: {expected})")
    columns = {
        f.name: _numeric(frame[f.name], f.name, f.column_type, f.na_values)
        if f.kind == NUMERIC
        else _categorical(frame[f.name], f.type, f.na_values)
        for f in features
    }
    return pd.DataFrame(columns, index=frame.index)


def prepare_target(values: pd.Series, config: ModelConfig, label: str) -> pd.Series:
    name = config.dataset.target
    target_type = config.dataset.target_column.type
    na_values = tuple(config.dataset.na_values)
    nulls = int(values.isna().sum())
    if nulls:
        raise DataError(f"{label} data: target {name!r} has {nulls} empty value(s); every row needs a label")
    if target_type.is_numeric:
        try:
            numbers = _numeric(values, name, target_type, na_values)
        except DataError as exc:
            raise DataError(f"{label} data: target {exc}") from None
        if numbers.isna().any():
            raise DataError(f"{label} data: target {name!r} has missing values; every row needs a label")
        regression = config.problem_type is ProblemType.REGRESSION
        return numbers if regression or target_type is ColumnType.FLOAT else numbers.astype(np.int64)
    if target_type is ColumnType.BOOL:
        return values.map(lambda v: _category_value(v, ColumnType.BOOL, na_values) == "true").astype(bool)
    return values.astype(str)


# -- hyperparameters and pipeline ----------------------------------------------------------
def parse_value(text: Any) -> Any:
    """A hyperparameter as SageMaker passes it (a string) to a Python value: 150, 0.1, True, None, "sqrt"."""
    if not isinstance(text, str):
        return text
    word = text.strip()
    lowered = word.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    try:
        return json.loads(word)
    except json.JSONDecodeError:
        return word.strip('"')


def estimator_class(config: ModelConfig) -> type[BaseEstimator]:
    return ESTIMATORS[(config.training.algorithm, config.problem_type.is_classification)]


def make_estimator(config: ModelConfig, hyperparameters: dict[str, Any]) -> tuple[BaseEstimator, dict[str, Any]]:
    """The estimator with config + override hyperparameters; returns it and the parameters set."""
    cls = estimator_class(config)
    valid = set(cls().get_params())
    unknown = sorted(set(hyperparameters) - valid)
    if unknown:
        raise DataError(
            f"unknown hyperparameter(s) for {config.training.algorithm.value} ({cls.__name__}): "
            f"{', '.join(unknown)}; valid: {', '.join(sorted(valid))}"
        )
    params = dict(BASE_PARAMS.get(cls, {}))
    if "random_state" in valid:
        params["random_state"] = config.training.split.seed
    params.update(hyperparameters)
    return cls(**params), params


def make_preprocessor(features: list[Feature], scale: bool) -> ColumnTransformer:
    numeric = [f.name for f in features if f.kind == NUMERIC]
    categorical = [f.name for f in features if f.kind == CATEGORICAL]
    transformers = []
    if numeric:
        steps: list[tuple[str, Any]] = [("impute", SimpleImputer(strategy="median"))]
        if scale:
            steps.append(("scale", StandardScaler()))
        transformers.append((NUMERIC, Pipeline(steps), numeric))
    if categorical:
        encode = OneHotEncoder(handle_unknown="ignore", sparse_output=False)
        steps = [("impute", SimpleImputer(strategy="most_frequent")), ("onehot", encode)]
        transformers.append((CATEGORICAL, Pipeline(steps), categorical))
    return ColumnTransformer(transformers, remainder="drop")


def build_pipeline(
    config: ModelConfig, features: list[Feature], hyperparameters: dict[str, Any]
) -> tuple[Pipeline, dict[str, Any]]:
    estimator, params = make_estimator(config, hyperparameters)
    preprocess = make_preprocessor(features, scale=config.training.algorithm in LINEAR)
    return Pipeline([("preprocess", preprocess), ("model", estimator)]), params


# -- artifacts -------------------------------------------------------------------------------
MODEL_FILE, METADATA_FILE = "model.joblib", "model-metadata.json"


def save_artifacts(model_dir: str | Path, pipeline: Pipeline, metadata: dict[str, Any]) -> None:
    import joblib

    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    joblib.dump(pipeline, model_dir / MODEL_FILE)
    (model_dir / METADATA_FILE).write_text(json.dumps(metadata, indent=2, sort_keys=True), encoding="utf-8")


def load_artifacts(model_dir: str | Path) -> tuple[Pipeline, dict[str, Any]]:
    """The fitted pipeline and its metadata from an (extracted) model dir."""
    import joblib

    model_dir = Path(model_dir)
    for name in (MODEL_FILE, METADATA_FILE):
        if not (model_dir / name).is_file():
            raise DataError(f"{name} not found in model dir {model_dir}")
    metadata = json.loads((model_dir / METADATA_FILE).read_text(encoding="utf-8"))
    return joblib.load(model_dir / MODEL_FILE), metadata


def predict(pipeline: Pipeline, features: pd.DataFrame) -> tuple[np.ndarray, np.ndarray | None]:
    """Predictions and, for classifiers that have them, probabilities with columns in ``classes_`` order.

    Classifiers run once: the label is the most probable class (what their ``predict`` does),
    rather than a second pass through the whole pipeline.
    """
    if hasattr(pipeline, "predict_proba"):
        proba = pipeline.predict_proba(features)
        return np.asarray(pipeline.classes_)[proba.argmax(axis=1)], proba
    return pipeline.predict(features), None


def plain(value: Any) -> Any:
    """numpy scalars and arrays to JSON-safe Python values."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value
