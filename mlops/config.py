"""Model configs: one YAML file per model, loaded into typed, validated objects.

A config declares everything a model needs once: its dataset contract, training
settings, approval gate, endpoint and monitoring. The CDK app, the Lambdas, the
SageMaker scripts and the local twin all read the same objects.

Invalid configs are rejected with one line per problem, each naming the file and
the field path (``dataset.columns[2].min``), so a user can fix them without
reading this module. Every field carries a description: ``docs/config-reference.md``
is generated from this schema (``python -m mlops.config_reference``).
"""

from __future__ import annotations

import json
import math
import re
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from mlops.core.types import DEFAULT_NA_VALUES, ColumnType, TypeMismatch, allowed_values

__all__ = ["ColumnType", "ConfigError", "DatasetContract", "ModelConfig", "load_config", "load_configs"]

MODEL_NAME_RE = r"^[a-z][a-z0-9-]{1,38}[a-z0-9]$"


class ConfigError(ValueError):
    """A model config is missing, unreadable or violates the schema."""

    def __init__(self, source: str, problems: list[str]):
        self.source = source
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"invalid model config {source}:\n{lines}")

    def lines(self) -> list[str]:
        """One line per problem, each naming the file and the field: what a command prints, no traceback."""
        return [f"{self.source}: {p}" for p in self.problems]


class FieldProblems(ValueError):
    """Raised by a model validator: problems located at paths below the model (``("columns", 2, "min")``)."""

    def __init__(self, problems: list[tuple[tuple[str | int, ...], str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(msg for _, msg in problems))


def _raise(problems: list[tuple[tuple[str | int, ...], str]]) -> None:
    if problems:
        raise FieldProblems(problems)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


class ProblemType(StrEnum):
    BINARY = "binary_classification"
    MULTICLASS = "multiclass_classification"
    REGRESSION = "regression"

    @property
    def is_classification(self) -> bool:
        return self is not ProblemType.REGRESSION


class Column(_Strict):
    """One column of the dataset: its type and the rules every value must follow."""

    name: Annotated[str, Field(min_length=1, max_length=128)]
    """Column name, as in the CSV header, the Parquet schema or the JSON Lines keys."""
    type: ColumnType
    """Value type; see "Column types" below for what each accepts."""
    nullable: bool = False
    """Whether missing values (see `na_values`) are allowed."""
    min: float | None = None
    """Smallest allowed value (int and float columns)."""
    max: float | None = None
    """Largest allowed value (int and float columns)."""
    allowed: list[str | int | bool] | None = None
    """The only values allowed (int, string and bool columns); int columns with `allowed` are categorical features."""
    unique: bool = False
    """No two rows may hold the same value (missing values excepted)."""
    feature: bool = True
    """Whether the model sees the column; `false` for ids and other columns the model must not use."""

    @model_validator(mode="after")
    def _check_rules(self) -> Column:
        problems: list[tuple[tuple[str | int, ...], str]] = []
        numeric = self.type.is_numeric
        for bound in ("min", "max"):
            if getattr(self, bound) is not None and not numeric:
                problems.append(((bound,), f"min/max apply to int and float columns, not {self.type.value}"))
        if self.min is not None and self.max is not None and self.min > self.max:
            problems.append((("min",), f"min ({self.min:g}) is greater than max ({self.max:g})"))
        if self.allowed is not None:
            if self.type is ColumnType.FLOAT:
                problems.append((("allowed",), "allowed values apply to int, string and bool columns, not float"))
            elif not self.allowed:
                problems.append((("allowed",), "allowed must list at least one value"))
            else:
                for i, value in enumerate(self.allowed):
                    try:
                        allowed_values(self.type, [value])
                    except TypeMismatch:
                        problems.append((("allowed", i), f"{value!r} is not a value of type {self.type.value}"))
        _raise(problems)
        return self


class DatasetContract(_Strict):
    """What a dataset must be: its columns and the rules for its rows and files."""

    delimiter: Annotated[str, Field(min_length=1, max_length=1)] = ","
    """Field delimiter of CSV uploads (other formats are detected by content and ignore it)."""
    encoding: Literal["utf-8"] = "utf-8"
    """Text encoding of CSV and JSON Lines uploads (a UTF-8 byte order mark is accepted)."""
    na_values: list[str] = Field(default=list(DEFAULT_NA_VALUES))
    """Texts that mean "missing" in any column, matched exactly (R exports: `["", "NA"]`).
    In int, float and bool columns a blank cell is missing as well, and so is `NaN`/`nan` in int and
    float columns."""
    target: str
    """The column the model predicts."""
    missing_target: Literal["fail", "drop"] = "fail"
    """Rows whose target is missing: `fail` rejects the dataset (a null violation), `drop` leaves those
    rows out of the validated data and the profile and counts them in the report (`rows_dropped`)."""
    columns: Annotated[list[Column], Field(min_length=2)]
    """Every column of the dataset, in any order; uploads must have exactly these columns."""
    min_rows: Annotated[int, Field(ge=1)] = 1
    """Fewest data rows (after dropped rows) a dataset may have."""
    max_rows: Annotated[int, Field(ge=1)] | None = None
    """Most data rows a dataset may have (no limit when unset)."""
    max_bytes: Annotated[int, Field(ge=1)] = 5 * 1024**3
    """Largest upload in bytes (all parts together for a multi-part dataset), checked before reading."""
    allow_duplicate_rows: bool = False
    """Whether two rows may be identical in every column."""
    commit_timeout_minutes: Annotated[int, Field(ge=1, le=1440)] = 60
    """How long part files of a multi-part dataset wait for their `_SUCCESS` marker or `_manifest.json`
    before the dataset is reported incomplete."""

    @model_validator(mode="after")
    def _check_columns(self) -> DatasetContract:
        problems: list[tuple[tuple[str | int, ...], str]] = []
        names = [c.name for c in self.columns]
        for i, name in enumerate(names):
            if name in names[:i]:
                problems.append((("columns", i, "name"), f"duplicate column names: {name}"))
        if self.target not in names:
            problems.append((("target",), f"target {self.target!r} is not one of the columns ({', '.join(names)})"))
        else:
            index = names.index(self.target)
            if self.columns[index].nullable:
                problems.append(
                    (
                        ("columns", index, "nullable"),
                        f"the target {self.target!r} must not be nullable; to drop rows whose target is "
                        "missing, set dataset.missing_target: drop",
                    )
                )
        if self.max_rows is not None and self.max_rows < self.min_rows:
            problems.append((("max_rows",), f"max_rows ({self.max_rows}) is less than min_rows ({self.min_rows})"))
        if self.target in names and not self.features:
            problems.append((("columns",), "no feature columns: every column other than the target has feature: false"))
        _raise(problems)
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

    def column_index(self, name: str) -> int:
        return self.column_names.index(name)


class Algorithm(StrEnum):
    RANDOM_FOREST = "random_forest"
    GRADIENT_BOOSTING = "gradient_boosting"
    LOGISTIC_REGRESSION = "logistic_regression"
    LINEAR_REGRESSION = "linear_regression"
    RIDGE = "ridge"


class Framework(StrEnum):
    """The SageMaker framework image a model's jobs and endpoint run on (sagemaker-core's framework names)."""

    SKLEARN = "sklearn"
    XGBOOST = "xgboost"


# Container versions the platform runs, per framework (sagemaker-core's image URI names); the twin holds
# each one's package set (mlops/twin/sagemaker/images.py). Unset `framework_version`: the scikit-learn
# container matching the installed scikit-learn, or the first version listed here.
FRAMEWORK_VERSIONS: dict[Framework, tuple[str, ...]] = {
    Framework.SKLEARN: ("1.9-0",),
    Framework.XGBOOST: ("3.2-0",),
}
CODE_DIR_RE = r"^pipelines/[a-z0-9][a-z0-9_.-]*$"


CLASSIFIERS = {Algorithm.RANDOM_FOREST, Algorithm.GRADIENT_BOOSTING, Algorithm.LOGISTIC_REGRESSION}
REGRESSORS = {Algorithm.RANDOM_FOREST, Algorithm.GRADIENT_BOOSTING, Algorithm.LINEAR_REGRESSION, Algorithm.RIDGE}


class Split(_Strict):
    """How the validated data is split (seeded, per row) before training."""

    validation: Annotated[float, Field(gt=0, lt=0.5)] = 0.15
    """Share of rows in the validation split (training metrics)."""
    test: Annotated[float, Field(gt=0, lt=0.5)] = 0.15
    """Share of rows in the test split (evaluation and the gate, candidate and champion alike)."""
    seed: int = 42
    """Seed of the split and of the estimator's `random_state`."""


class Training(_Strict):
    """The SageMaker training job."""

    algorithm: Algorithm | None = None
    """The platform's estimator; it must fit the problem type (see "Algorithms"). Leave it out when the model
    brings its own code (`code`)."""
    code: Annotated[str, Field(pattern=CODE_DIR_RE)] | None = None
    """The model's own code directory (`pipelines/<dir>`, relative to the project): `train.py` (SageMaker
    script mode), `inference.py` (`model_fn`, `input_fn`, `predict_fn`, `output_fn`) and optionally a pinned
    `requirements.txt`, vendored at synth. See the README's "Bring your own model code"."""
    framework: Framework = Framework.SKLEARN
    """SageMaker framework image the jobs and the endpoint run on: `sklearn` or `xgboost` (script mode;
    `xgboost` needs `code`)."""
    framework_version: str | None = None
    """Container version of `framework` (sklearn: `1.9-0`, xgboost: `3.2-0`); unset: the platform's default
    (for sklearn, the container matching the installed scikit-learn)."""
    hyperparameters: dict[str, str | int | float | bool] = Field(default_factory=dict)
    """Estimator parameters (scikit-learn names; unknown names fail the training job), or, with `code`, the
    hyperparameters `train.py` receives as `--name value` arguments."""
    instance_type: Annotated[str, Field(pattern=r"^ml\.[a-z0-9]+\.[a-z0-9]+$")] = "ml.m5.large"
    """SageMaker training instance type."""
    instance_count: Annotated[int, Field(ge=1, le=20)] = 1
    """Number of training instances."""
    volume_size_gb: Annotated[int, Field(ge=1, le=512)] = 30
    """EBS volume per training instance, in GB."""
    max_runtime_seconds: Annotated[int, Field(ge=60, le=432000)] = 3600
    """Stopping condition of the training job."""
    use_spot: bool = False
    """Managed spot training (waits up to twice `max_runtime_seconds`)."""
    split: Split = Field(default_factory=Split)
    """Train/validation/test split."""

    @model_validator(mode="after")
    def _check_code(self) -> Training:
        problems: list[tuple[tuple[str | int, ...], str]] = []
        if self.algorithm is None and self.code is None:
            problems.append(
                (
                    ("algorithm",),
                    "set training.algorithm (a platform estimator) or training.code (own code)",
                )
            )
        if self.algorithm is not None and self.code is not None:
            problems.append(
                (("algorithm",), "a model with its own code (training.code) takes no platform algorithm; remove it")
            )
        if self.framework is not Framework.SKLEARN and self.code is None:
            problems.append(
                (
                    ("framework",),
                    f"the platform's estimators run on the sklearn image; framework {self.framework.value} needs "
                    "training.code (the model's own train.py)",
                )
            )
        versions = FRAMEWORK_VERSIONS[self.framework]
        if self.framework_version is not None and self.framework_version not in versions:
            problems.append(
                (
                    ("framework_version",),
                    f"{self.framework.value} {self.framework_version!r} is not a version the platform runs; "
                    f"use one of {list(versions)}",
                )
            )
        _raise(problems)
        return self


CLASSIFICATION_METRICS = {"accuracy", "f1", "roc_auc", "log_loss", "precision", "recall"}
REGRESSION_METRICS = {"rmse", "mae", "r2"}
LOWER_IS_BETTER = {"log_loss", "rmse", "mae"}


class Threshold(_Strict):
    """Bounds a metric must meet for the candidate to pass the gate."""

    min: float | None = None
    """The metric must be at least this."""
    max: float | None = None
    """The metric must be at most this."""

    @model_validator(mode="after")
    def _one_bound(self) -> Threshold:
        if self.min is None and self.max is None:
            raise ValueError("a threshold needs min or max")
        return self


class Gate(_Strict):
    """When a trained candidate may be registered as approved."""

    primary_metric: str
    """Metric the candidate is compared with the champion on (see "Metrics" for the names)."""
    thresholds: dict[str, Threshold] = Field(default_factory=dict)
    """Metric name → bounds the candidate must meet."""
    champion_tolerance: Annotated[float, Field(ge=0)] = 0.0
    """How much worse than the champion (on the primary metric, same test rows) the candidate may be."""


class Approval(StrEnum):
    AUTO = "auto"
    MANUAL = "manual"


class Serverless(_Strict):
    """Serverless endpoint settings (`endpoint.kind: serverless`)."""

    memory_mb: Literal[1024, 2048, 3072, 4096, 5120, 6144] = 2048
    """Memory of each serverless worker."""
    max_concurrency: Annotated[int, Field(ge=1, le=200)] = 5
    """Most concurrent invocations."""


class Autoscaling(_Strict):
    """Instance endpoint autoscaling on invocations per instance."""

    min_instances: Annotated[int, Field(ge=1)] = 1
    """Fewest instances."""
    max_instances: Annotated[int, Field(ge=1)] = 2
    """Most instances."""
    target_invocations_per_instance: Annotated[int, Field(ge=1)] = 100
    """Target tracking value (invocations per instance per minute)."""


class Canary(_Strict):
    """Blue/green canary traffic shifting of endpoint updates."""

    percent: Annotated[int, Field(ge=1, le=99)] = 10
    """Share of traffic the new variant takes first."""
    wait_seconds: Annotated[int, Field(ge=0, le=3600)] = 300
    """How long the canary runs (watched by the 5XX and latency alarms) before all traffic moves."""


class Endpoint(_Strict):
    """The SageMaker endpoint the approved model is deployed to.

    Serverless endpoints take neither data capture nor deployment guardrails on SageMaker
    (Serverless Inference's feature exclusions): `data_capture_percent` defaults to 0 for them
    and `canary` is refused, so a serverless model has no drift or quality monitoring.
    An update of an instance endpoint with one instance shifts all traffic at once (blue/green,
    the canary's wait as the baking period, watched by the rollback alarms): SageMaker takes
    a canary of at most half the variant's instances."""

    kind: Literal["instance", "serverless"] = "instance"
    """Instance-backed or serverless endpoint (serverless endpoints have no data capture on AWS)."""
    instance_type: Annotated[str, Field(pattern=r"^ml\.[a-z0-9]+\.[a-z0-9]+$")] = "ml.m5.large"
    """Instance type (instance endpoints)."""
    initial_instance_count: Annotated[int, Field(ge=1)] = 1
    """Instances at creation (instance endpoints)."""
    serverless: Serverless = Field(default_factory=Serverless)
    """Serverless settings."""
    autoscaling: Autoscaling = Field(default_factory=Autoscaling)
    """Autoscaling (instance endpoints)."""
    data_capture_percent: Annotated[int, Field(ge=0, le=100)] = 100
    """Share of requests captured for drift monitoring (instance endpoints; 0, the default, for serverless)."""
    canary: Canary | None = None
    """Canary deployment of updates (instance endpoints, where it defaults to the section's defaults;
    used from two instances, see above). None for serverless endpoints."""

    @model_validator(mode="before")
    @classmethod
    def _serverless_defaults(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        if data.get("kind") == "serverless":
            return data if "data_capture_percent" in data else {**data, "data_capture_percent": 0}
        return data if data.get("canary") is not None else {**data, "canary": {}}

    @model_validator(mode="after")
    def _check_kind(self) -> Endpoint:
        problems: list[tuple[tuple[str | int, ...], str]] = []
        if self.kind == "serverless":
            if self.data_capture_percent > 0:
                problems.append(
                    (
                        ("data_capture_percent",),
                        "serverless endpoints have no data capture on SageMaker; set it to 0 (no drift "
                        "monitoring) or use kind: instance",
                    )
                )
            if self.canary is not None:
                problems.append(
                    (
                        ("canary",),
                        "serverless endpoints take no deployment guardrails on SageMaker (an update shifts all "
                        "traffic at once); remove canary or use kind: instance",
                    )
                )
        elif self.canary_instances * 2 > self.initial_instance_count >= 2:
            problems.append(
                (
                    ("canary", "percent"),
                    f"{self.canary.percent}% of {self.initial_instance_count} instances is {self.canary_instances} "
                    "instance(s); SageMaker takes a canary of at most half the variant's instances",
                )
            )
        _raise(problems)
        return self

    @property
    def canary_instances(self) -> int:
        """Instances the canary takes: SageMaker rounds a capacity percentage up to whole instances."""
        if self.canary is None:
            return 0
        return math.ceil(self.initial_instance_count * self.canary.percent / 100)

    @property
    def uses_canary(self) -> bool:
        """Whether updates go by canary (else all at once): instance endpoints of two instances or more."""
        return self.kind == "instance" and self.initial_instance_count >= 2


class Alarms(_Strict):
    """CloudWatch alarm thresholds."""

    drift_psi: Annotated[float, Field(gt=0)] = 0.2
    """PSI from which a feature counts as drifted."""
    drifted_feature_share: Annotated[float, Field(gt=0, le=1)] = 0.3
    """Share of drifted features that sets off the drift alarm."""
    quality_metric_threshold: float | None = None
    """Bound of the primary metric on labelled captured requests (quality alarm; none when unset)."""
    error_5xx_rate: Annotated[float, Field(gt=0, le=1)] = 0.05
    """Share of 5XX responses that sets off the 5XX alarm."""
    latency_p99_ms: Annotated[float, Field(gt=0)] = 500
    """p99 model latency that sets off the latency alarm."""
    evaluation_periods: Annotated[int, Field(ge=1)] = 3
    """Periods each alarm evaluates."""
    datapoints_to_alarm: Annotated[int, Field(ge=1)] = 2
    """Breaching datapoints among them that set an alarm off."""


class Monitoring(_Strict):
    """Drift and quality monitoring, and retraining."""

    schedule_minutes: Annotated[int, Field(ge=1, le=1440)] = 60
    """How often the monitor compares captured data with the training profile."""
    retrain_cooldown_minutes: Annotated[int, Field(ge=0)] = 360
    """Minimum time between alarm-triggered retrains."""
    retrain_with_labelled_capture: bool = True
    """Whether a retrain adds captured requests that have ground-truth labels to the data."""
    alarms: Alarms = Field(default_factory=Alarms)
    """Alarm thresholds."""


class ModelConfig(_Strict):
    """A model: its dataset contract, training, gate, approval, endpoint and monitoring."""

    name: Annotated[str, Field(pattern=MODEL_NAME_RE)]
    """Model name; must equal the file name (`configs/<name>.yaml`) and names its S3 prefixes and endpoint."""
    description: str = ""
    """Free text."""
    problem_type: ProblemType
    """What the model predicts (see "Problem types")."""
    dataset: DatasetContract
    """The dataset contract."""
    training: Training
    """Training job settings."""
    gate: Gate
    """Approval gate."""
    approval: Approval = Approval.AUTO
    """`auto`: a candidate that passes the gate is approved (and deployed); `manual`: it waits for a person."""
    endpoint: Endpoint = Field(default_factory=Endpoint)
    """Endpoint settings."""
    monitoring: Monitoring = Field(default_factory=Monitoring)
    """Monitoring settings."""

    @model_validator(mode="after")
    def _check_consistency(self) -> ModelConfig:
        problems: list[tuple[tuple[str | int, ...], str]] = []
        allowed = REGRESSORS if self.problem_type is ProblemType.REGRESSION else CLASSIFIERS
        if self.training.algorithm is not None and self.training.algorithm not in allowed:
            problems.append(
                (
                    ("training", "algorithm"),
                    f"{self.training.algorithm.value!r} does not fit problem_type {self.problem_type.value!r}; "
                    f"use one of {sorted(a.value for a in allowed)}",
                )
            )
        metrics = self.metric_names
        if self.gate.primary_metric not in metrics:
            problems.append((("gate", "primary_metric"), self._metric_problem(self.gate.primary_metric)))
        for name in self.gate.thresholds:
            if name not in metrics:
                problems.append((("gate", "thresholds", name), self._metric_problem(name)))
        target = self.dataset.target_column
        where = ("dataset", "columns", self.dataset.column_index(target.name), "type")
        if self.problem_type.is_classification and target.type is ColumnType.FLOAT:
            problems.append((where, f"target {target.name!r} is float but problem_type is {self.problem_type.value}"))
        if self.problem_type is ProblemType.REGRESSION and not target.type.is_numeric:
            problems.append((where, f"target {target.name!r} must be int or float for regression"))
        if self.monitoring.alarms.quality_metric_threshold is not None and self.endpoint.data_capture_percent == 0:
            problems.append(
                (
                    ("monitoring", "alarms", "quality_metric_threshold"),
                    "the quality alarm needs captured requests, and endpoint.data_capture_percent is 0"
                    + (" (serverless endpoints have no data capture)" if self.endpoint.kind == "serverless" else "")
                    + "; remove it or capture requests",
                )
            )
        if self.problem_type is ProblemType.BINARY and target.allowed is not None and len(target.allowed) != 2:
            problems.append(
                (
                    ("dataset", "columns", self.dataset.column_index(target.name), "allowed"),
                    f"binary target {target.name!r} must allow exactly two values, got {target.allowed}",
                )
            )
        _raise(problems)
        return self

    def _metric_problem(self, name: str) -> str:
        kind = self.problem_type.value
        return f"gate metric {name!r} is not reported for {kind}; use one of {sorted(self.metric_names)}"

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


def _problems(exc: ValidationError) -> list[str]:
    """One line per problem, each at the field it is about."""
    problems = []
    for err in exc.errors():
        found = (err.get("ctx") or {}).get("error")
        if isinstance(found, FieldProblems):
            problems += [f"{_format_loc((*err['loc'], *path))}: {msg}" for path, msg in found.problems]
            continue
        msg = re.sub(r"^Value error, ", "", err["msg"])
        problems.append(f"{_format_loc(err['loc'])}: {msg}")
    return list(dict.fromkeys(problems))


def parse_config(data: Any, source: str = "<config>") -> ModelConfig:
    """Validate an already-parsed mapping; raise ConfigError listing every problem."""
    if not isinstance(data, dict):
        raise ConfigError(source, [f"expected a mapping at the top level, got {type(data).__name__}"])
    try:
        return ModelConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(source, _problems(exc)) from None


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
