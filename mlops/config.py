"""Model configs: one YAML file per model, loaded into typed, validated objects.

A config declares everything a model needs once: its dataset contract, training
settings, approval gate, endpoint and monitoring. The CDK app, the Lambdas, the
SageMaker scripts and the local twin all read the same objects.

Invalid configs are rejected with one line per problem, each naming the file and
the field path (``dataset.columns[2].min``), so a user can fix them without
reading this module.
"""

from __future__ import annotations

import json
import re
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

MODEL_NAME_RE = r"^[a-z][a-z0-9-]{1,38}[a-z0-9]$"


class ConfigError(ValueError):
    """A model config is missing, unreadable or violates the schema."""

    def __init__(self, source: str, problems: list[str]):
        self.source = source
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"invalid model config {source}:\n{lines}")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ProblemType(StrEnum):
    BINARY = "binary_classification"
    MULTICLASS = "multiclass_classification"
    REGRESSION = "regression"

    @property
    def is_classification(self) -> bool:
        return self is not ProblemType.REGRESSION


class ColumnType(StrEnum):
    INT = "int"
    FLOAT = "float"
    STRING = "string"
    BOOL = "bool"


class Column(_Strict):
    name: Annotated[str, Field(min_length=1, max_length=128)]
    type: ColumnType
    nullable: bool = False
    min: float | None = None
    max: float | None = None
    allowed: list[str | int | bool] | None = None
    unique: bool = False
    feature: bool = True  # False for ids and other columns the model must not see

    @model_validator(mode="after")
    def _check_rules(self) -> Column:
        numeric = self.type in (ColumnType.INT, ColumnType.FLOAT)
        if (self.min is not None or self.max is not None) and not numeric:
            raise ValueError(f"min/max apply to int and float columns, not {self.type.value}")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min:g}) is greater than max ({self.max:g})")
        if self.allowed is not None:
            if self.type is ColumnType.FLOAT:
                raise ValueError("allowed values apply to int, string and bool columns, not float")
            if not self.allowed:
                raise ValueError("allowed must list at least one value")
        return self


class DatasetContract(_Strict):
    format: Literal["csv"] = "csv"
    delimiter: Annotated[str, Field(min_length=1, max_length=1)] = ","
    encoding: Literal["utf-8"] = "utf-8"
    target: str
    columns: Annotated[list[Column], Field(min_length=2)]
    min_rows: Annotated[int, Field(ge=1)] = 1
    max_rows: Annotated[int, Field(ge=1)] | None = None
    max_bytes: Annotated[int, Field(ge=1)] = 5 * 1024**3
    allow_duplicate_rows: bool = False

    @model_validator(mode="after")
    def _check_columns(self) -> DatasetContract:
        names = [c.name for c in self.columns]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate column names: {', '.join(dupes)}")
        if self.target not in names:
            raise ValueError(f"target {self.target!r} is not one of the columns ({', '.join(names)})")
        if self.max_rows is not None and self.max_rows < self.min_rows:
            raise ValueError(f"max_rows ({self.max_rows}) is less than min_rows ({self.min_rows})")
        if not self.features:
            raise ValueError("no feature columns: every column other than the target has feature: false")
        return self

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def target_column(self) -> Column:
        return next(c for c in self.columns if c.name == self.target)

    @property
    def features(self) -> list[Column]:
        return [c for c in self.columns if c.feature and c.name != self.target]


class Algorithm(StrEnum):
    RANDOM_FOREST = "random_forest"
    GRADIENT_BOOSTING = "gradient_boosting"
    LOGISTIC_REGRESSION = "logistic_regression"
    LINEAR_REGRESSION = "linear_regression"
    RIDGE = "ridge"


CLASSIFIERS = {Algorithm.RANDOM_FOREST, Algorithm.GRADIENT_BOOSTING, Algorithm.LOGISTIC_REGRESSION}
REGRESSORS = {Algorithm.RANDOM_FOREST, Algorithm.GRADIENT_BOOSTING, Algorithm.LINEAR_REGRESSION, Algorithm.RIDGE}


class Split(_Strict):
    validation: Annotated[float, Field(gt=0, lt=0.5)] = 0.15
    test: Annotated[float, Field(gt=0, lt=0.5)] = 0.15
    seed: int = 42


class Training(_Strict):
    algorithm: Algorithm
    hyperparameters: dict[str, str | int | float | bool] = Field(default_factory=dict)
    instance_type: Annotated[str, Field(pattern=r"^ml\.[a-z0-9]+\.[a-z0-9]+$")] = "ml.m5.large"
    instance_count: Annotated[int, Field(ge=1, le=20)] = 1
    volume_size_gb: Annotated[int, Field(ge=1, le=512)] = 30
    max_runtime_seconds: Annotated[int, Field(ge=60, le=432000)] = 3600
    use_spot: bool = False
    split: Split = Field(default_factory=Split)


CLASSIFICATION_METRICS = {"accuracy", "f1", "roc_auc", "log_loss", "precision", "recall"}
REGRESSION_METRICS = {"rmse", "mae", "r2"}
LOWER_IS_BETTER = {"log_loss", "rmse", "mae"}


class Threshold(_Strict):
    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _one_bound(self) -> Threshold:
        if self.min is None and self.max is None:
            raise ValueError("a threshold needs min or max")
        return self


class Gate(_Strict):
    primary_metric: str
    thresholds: dict[str, Threshold] = Field(default_factory=dict)
    champion_tolerance: Annotated[float, Field(ge=0)] = 0.0


class Approval(StrEnum):
    AUTO = "auto"
    MANUAL = "manual"


class Serverless(_Strict):
    memory_mb: Literal[1024, 2048, 3072, 4096, 5120, 6144] = 2048
    max_concurrency: Annotated[int, Field(ge=1, le=200)] = 5


class Autoscaling(_Strict):
    min_instances: Annotated[int, Field(ge=1)] = 1
    max_instances: Annotated[int, Field(ge=1)] = 2
    target_invocations_per_instance: Annotated[int, Field(ge=1)] = 100


class Canary(_Strict):
    percent: Annotated[int, Field(ge=1, le=99)] = 10
    wait_seconds: Annotated[int, Field(ge=0, le=3600)] = 300


class Endpoint(_Strict):
    kind: Literal["instance", "serverless"] = "instance"
    instance_type: Annotated[str, Field(pattern=r"^ml\.[a-z0-9]+\.[a-z0-9]+$")] = "ml.m5.large"
    initial_instance_count: Annotated[int, Field(ge=1)] = 1
    serverless: Serverless = Field(default_factory=Serverless)
    autoscaling: Autoscaling = Field(default_factory=Autoscaling)
    data_capture_percent: Annotated[int, Field(ge=0, le=100)] = 100
    canary: Canary = Field(default_factory=Canary)


class Alarms(_Strict):
    drift_psi: Annotated[float, Field(gt=0)] = 0.2
    drifted_feature_share: Annotated[float, Field(gt=0, le=1)] = 0.3
    quality_metric_threshold: float | None = None
    error_5xx_rate: Annotated[float, Field(gt=0, le=1)] = 0.05
    latency_p99_ms: Annotated[float, Field(gt=0)] = 500
    evaluation_periods: Annotated[int, Field(ge=1)] = 3
    datapoints_to_alarm: Annotated[int, Field(ge=1)] = 2


class Monitoring(_Strict):
    schedule_minutes: Annotated[int, Field(ge=1, le=1440)] = 60
    retrain_cooldown_minutes: Annotated[int, Field(ge=0)] = 360
    retrain_with_labelled_capture: bool = True
    alarms: Alarms = Field(default_factory=Alarms)


class ModelConfig(_Strict):
    name: Annotated[str, Field(pattern=MODEL_NAME_RE)]
    description: str = ""
    problem_type: ProblemType
    dataset: DatasetContract
    training: Training
    gate: Gate
    approval: Approval = Approval.AUTO
    endpoint: Endpoint = Field(default_factory=Endpoint)
    monitoring: Monitoring = Field(default_factory=Monitoring)

    @model_validator(mode="after")
    def _check_consistency(self) -> ModelConfig:
        allowed = REGRESSORS if self.problem_type is ProblemType.REGRESSION else CLASSIFIERS
        if self.training.algorithm not in allowed:
            raise ValueError(
                f"training.algorithm {self.training.algorithm.value!r} does not fit problem_type "
                f"{self.problem_type.value!r}; use one of {sorted(a.value for a in allowed)}"
            )
        metrics = self.metric_names
        for name in [self.gate.primary_metric, *self.gate.thresholds]:
            if name not in metrics:
                raise ValueError(
                    f"gate metric {name!r} is not reported for {self.problem_type.value}; use one of {sorted(metrics)}"
                )
        target = self.dataset.target_column
        if self.problem_type.is_classification and target.type is ColumnType.FLOAT:
            raise ValueError(f"target {target.name!r} is float but problem_type is {self.problem_type.value}")
        if self.problem_type is ProblemType.REGRESSION and target.type not in (ColumnType.INT, ColumnType.FLOAT):
            raise ValueError(f"target {target.name!r} must be int or float for regression")
        if target.nullable:
            raise ValueError(f"target {target.name!r} must not be nullable")
        if self.problem_type is ProblemType.BINARY and target.allowed is not None and len(target.allowed) != 2:
            raise ValueError(f"binary target {target.name!r} must allow exactly two values, got {target.allowed}")
        return self

    @property
    def metric_names(self) -> set[str]:
        return REGRESSION_METRICS if self.problem_type is ProblemType.REGRESSION else CLASSIFICATION_METRICS

    def to_json(self) -> str:
        return self.model_dump_json()


def _format_loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part.startswith(("function-after", "function-before")) or part in ("str", "int", "bool", "float"):
            continue  # union/validator branches add noise, not location
        else:
            out += f".{part}" if out else part
    return out or "(top level)"


def parse_config(data: Any, source: str = "<config>") -> ModelConfig:
    """Validate an already-parsed mapping; raise ConfigError listing every problem."""
    if not isinstance(data, dict):
        raise ConfigError(source, [f"expected a mapping at the top level, got {type(data).__name__}"])
    try:
        return ModelConfig.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            msg = re.sub(r"^Value error, ", "", err["msg"])
            problems.append(f"{_format_loc(err['loc'])}: {msg}")
        raise ConfigError(source, list(dict.fromkeys(problems))) from None


def load_config(path: str | Path) -> ModelConfig:
    """Load one model config from a YAML (or JSON) file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(str(path), ["file not found"]) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(str(path), [f"not UTF-8 text ({exc.reason} at byte {exc.start})"]) from None
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (yaml.YAMLError, json.JSONDecodeError) as exc:
        raise ConfigError(str(path), [f"not valid YAML/JSON: {exc}"]) from None
    config = parse_config(data, str(path))
    if path.stem != config.name:
        raise ConfigError(str(path), [f"name {config.name!r} must match the file name {path.stem!r}"])
    return config


def load_configs(directory: str | Path) -> dict[str, ModelConfig]:
    """Load every ``*.yaml``/``*.json`` config in a directory, keyed by model name."""
    directory = Path(directory)
    files = sorted([*directory.glob("*.yaml"), *directory.glob("*.yml"), *directory.glob("*.json")])
    if not files:
        raise ConfigError(str(directory), ["no model configs (*.yaml) found"])
    configs: dict[str, ModelConfig] = {}
    for file in files:
        config = load_config(file)
        if config.name in configs:
            raise ConfigError(str(file), [f"model {config.name!r} is already defined by another file"])
        configs[config.name] = config
    return configs
