"""The synthesized training state machine, run by the twin's ASL engine with recorded tasks.

Each test fails if its fix is reverted: RecordFailure after a failed PrepareTraining
(issue 8.8), the spot StoppingCondition (8.10), retries only for throttled SageMaker
creations (8.12), and the routes of the prepare step's outcomes (issue 9).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import pytest

from mlops.services.training import stopping_condition
from mlops.twin.stepfunctions.asl import AslEngine, TaskFailed
from mlops.twin.stepfunctions.asl.history import entered_states

from .conftest import Synthesized, one

ACCOUNT, REGION = "123456789012", "us-east-1"
MACHINE_ARN = f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:Training"
MODEL = "tumor-classifier"
THROTTLED = (
    "Rate exceeded (Service: AmazonSageMaker; Status Code: 400; Error Code: ThrottlingException; "
    "Request ID: 0b6f; Proxy: null)"
)
INVALID = (
    "1 validation error detected: Value 'x' at 'resourceConfig.instanceType' failed to satisfy constraint "
    "(Service: AmazonSageMaker; Status Code: 400; Error Code: ValidationException; Request ID: 1c7a; Proxy: null)"
)


def _token(value: dict[str, Any]) -> str:
    """A CloudFormation token of the definition as the deployed value would read."""
    if "Ref" in value:
        return {"AWS::Partition": "aws", "AWS::Region": REGION, "AWS::AccountId": ACCOUNT}.get(
            value["Ref"], f"ref-{value['Ref']}"
        )
    if "Fn::GetAtt" in value:
        logical_id, _ = value["Fn::GetAtt"]
        return f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{logical_id}"
    return "token"


@pytest.fixture(scope="module")
def definition(synthesized: Synthesized) -> dict[str, Any]:
    _, machine = one(synthesized.template_json("MlopsTraining"), "AWS::StepFunctions::StateMachine")
    delimiter, parts = machine["Properties"]["DefinitionString"]["Fn::Join"]
    return json.loads(delimiter.join(p if isinstance(p, str) else _token(p) for p in parts))


def _run(prepare_output: dict[str, Any] | None = None, **overrides: Any) -> dict[str, Any]:
    resources = {
        "instance_type": "ml.m5.large",
        "instance_count": 1,
        "volume_size_gb": 30,
        "max_runtime_seconds": 3600,
        "use_spot": False,
        "stopping_condition": stopping_condition(3600, False),
    }
    run = {
        "status": "ready",
        "model": MODEL,
        "run_id": "tumor-classifier-20261124-100000-abcd",
        "training_job_name": "tumor-classifier-20261124-100000-abcd",
        "processing_job_name": "tumor-classifier-20261124-100000-abcd-eval",
        "image_uri": "img",
        "code_uri": "s3://assets/model-code.tar.gz",  # the model's source dir: prepare picks it per model
        "hyperparameters": {"n_estimators": "150"},
        "channels": {n: f"s3://a/run/{n}/" for n in ("train", "validation", "test", "config", "champion")},
        "output_uri": "s3://a/run/output",
        "evaluation_uri": "s3://a/run/evaluation",
        "resources": resources,
    }
    return {**run, **(prepare_output or {}), **overrides}


class Recorder:
    """Task dispatcher: calls by state name, answers from handlers, raises TaskFailed when told to."""

    def __init__(self, handlers: dict[str, Callable[[Any], Any]]) -> None:
        self.handlers = handlers
        self.calls: dict[str, list[Any]] = defaultdict(list)

    def __call__(self, resource: str, parameters: Any, ctx: Any) -> Any:
        self.calls[ctx.state_name].append(parameters)
        handler = self.handlers.get(ctx.state_name)
        if handler is None:
            raise AssertionError(f"unexpected task {ctx.state_name} ({resource})")
        return handler(parameters)


def _ok_job(kind: str) -> Callable[[Any], Any]:
    def run(params: dict[str, Any]) -> dict[str, Any]:
        name = params["TrainingJobName" if kind == "training" else "ProcessingJobName"]
        out = {"TrainingJobName": name, "TrainingJobArn": f"arn:training-job/{name}"}
        if kind == "training":
            return {**out, "ModelArtifacts": {"S3ModelArtifacts": "s3://a/m.tar.gz"}, "FinalMetricDataList": []}
        return {"ProcessingJobName": name, "ProcessingJobArn": f"arn:processing-job/{name}"}

    return run


def _raise(error: str, cause: str, times: int | None = None, then: Callable[[Any], Any] | None = None) -> Any:
    left = [times]

    def handler(params: Any) -> Any:
        if left[0] is None or left[0] > 0:
            if left[0] is not None:
                left[0] -= 1
            raise TaskFailed(error, cause)
        assert then is not None
        return then(params)

    return handler


def _happy(**overrides: Callable[[Any], Any]) -> dict[str, Callable[[Any], Any]]:
    handlers: dict[str, Callable[[Any], Any]] = {
        "PrepareTraining": lambda p: _run(),
        "TrainModel": _ok_job("training"),
        "EvaluateModel": _ok_job("processing"),
        "ApplyGate": lambda p: {"passed": True, "approval_status": "Approved"},
        "RegisterModel": lambda p: {"model_package_arn": "arn:pkg/1", "approval_status": "Approved"},
        "RecordOutcome": lambda p: {"follow_up": None},
        "RecordFailure": lambda p: {"follow_up": None},
    }
    return {**handlers, **overrides}


def _execute(definition: dict[str, Any], recorder: Recorder, payload: dict[str, Any] | None = None) -> Any:
    engine = AslEngine(recorder, time_scale=0.0001)
    return engine.run(MACHINE_ARN, definition, payload or {"model": MODEL, "dataset_version": "v1"}, "run-1")


def test_a_failed_prepare_is_recorded_and_ends_with_its_cause(definition: dict[str, Any]) -> None:
    """Issue 8.8: RecordFailure must not read "$.run", which a failed PrepareTraining never wrote."""
    cause = json.dumps({"errorMessage": "no validated dataset for model 'tumor-classifier'"})
    recorder = Recorder(_happy(PrepareTraining=_raise("LookupError", cause)))
    execution = _execute(definition, recorder, {"model": MODEL, "trigger": "alarm"})
    assert execution.status == "FAILED", (execution.error, execution.cause)
    assert execution.error == "TrainingFailed" and execution.cause.startswith("LookupError: ")
    (payload,) = recorder.calls["RecordFailure"]
    assert payload["status"] == "failed" and payload["state"]["model"] == MODEL
    assert payload["state"]["error"] == {"Error": "LookupError", "Cause": cause}
    assert payload["execution_id"].endswith(":run-1") and payload["state_machine_arn"] == MACHINE_ARN


@pytest.mark.parametrize("use_spot", [False, True])
def test_the_training_request_carries_prepares_stopping_condition(definition: dict[str, Any], use_spot: bool) -> None:
    """Issue 8.10: managed spot training needs MaxWaitTimeInSeconds >= MaxRuntimeInSeconds."""
    run = _run(
        resources={
            **_run()["resources"],
            "use_spot": use_spot,
            "stopping_condition": stopping_condition(3600, use_spot),
        }
    )
    recorder = Recorder(_happy(PrepareTraining=lambda p: run))
    assert _execute(definition, recorder).status == "SUCCEEDED"
    (request,) = recorder.calls["TrainModel"]
    assert request["EnableManagedSpotTraining"] is use_spot
    condition = request["StoppingCondition"]
    assert condition["MaxRuntimeInSeconds"] == 3600
    if use_spot:
        assert condition["MaxWaitTimeInSeconds"] >= condition["MaxRuntimeInSeconds"]
    else:
        assert "MaxWaitTimeInSeconds" not in condition


def test_the_jobs_run_the_image_and_source_dir_prepare_chose_for_the_model(definition: dict[str, Any]) -> None:
    recorder = Recorder(_happy(PrepareTraining=lambda p: _run(image_uri="xgb:3.2-0")))
    assert _execute(definition, recorder).status == "SUCCEEDED"
    (train,) = recorder.calls["TrainModel"]
    (evaluate,) = recorder.calls["EvaluateModel"]
    assert train["AlgorithmSpecification"]["TrainingImage"] == evaluate["AppSpecification"]["ImageUri"] == "xgb:3.2-0"
    (code,) = [i for i in evaluate["ProcessingInputs"] if i["InputName"] == "code"]
    assert code["S3Input"]["S3Uri"] == "s3://assets/model-code.tar.gz"


@pytest.mark.parametrize("job", ["TrainModel", "EvaluateModel"])
def test_a_throttled_creation_is_retried_with_the_same_name(definition: dict[str, Any], job: str) -> None:
    kind = "training" if job == "TrainModel" else "processing"
    recorder = Recorder(_happy(**{job: _raise("SageMaker.AmazonSageMakerException", THROTTLED, 2, _ok_job(kind))}))
    execution = _execute(definition, recorder)
    assert execution.status == "SUCCEEDED", (execution.error, execution.cause)
    names = [c["TrainingJobName" if kind == "training" else "ProcessingJobName"] for c in recorder.calls[job]]
    assert len(names) == 3 and len(set(names)) == 1
    states = entered_states(execution.history)
    assert states.count(f"{job}Backoff") == 2 and "RecordFailure" not in states


def test_throttling_retries_give_up_after_five(definition: dict[str, Any]) -> None:
    recorder = Recorder(_happy(TrainModel=_raise("SageMaker.AmazonSageMakerException", THROTTLED)))
    execution = _execute(definition, recorder)
    assert execution.status == "FAILED" and "ThrottlingException" in execution.cause
    assert len(recorder.calls["TrainModel"]) == 6  # the first try and five retries
    assert len(recorder.calls["RecordFailure"]) == 1


@pytest.mark.parametrize("job", ["TrainModel", "EvaluateModel"])
def test_a_validation_error_is_not_retried(definition: dict[str, Any], job: str) -> None:
    """Issue 8.12: a ValidationException under the same error name fails at once."""
    recorder = Recorder(_happy(**{job: _raise("SageMaker.AmazonSageMakerException", INVALID)}))
    execution = _execute(definition, recorder)
    assert execution.status == "FAILED" and execution.error == "TrainingFailed"
    assert "ValidationException" in execution.cause
    assert len(recorder.calls[job]) == 1 and len(recorder.calls["RecordFailure"]) == 1


@pytest.mark.parametrize(
    ("status", "end"),
    [("queued", "TrainingQueued"), ("busy", "TrainingSkipped"), ("skipped", "TrainingSkipped")],
)
def test_runs_that_do_not_train_end_quietly(definition: dict[str, Any], status: str, end: str) -> None:
    recorder = Recorder(_happy(PrepareTraining=lambda p: {"status": status, "model": MODEL, "reason": "why"}))
    execution = _execute(definition, recorder)
    assert execution.status == "SUCCEEDED" and entered_states(execution.history)[-1] == end
    assert "TrainModel" not in recorder.calls


def test_an_alarm_with_nothing_new_is_announced(definition: dict[str, Any]) -> None:
    """Issue 9.7: "drift detected, no new labelled data" goes out as an event (the serving stack notifies it)."""
    outcome = {"status": "no_new_data", "model": MODEL, "trigger": "alarm", "reason": "drift detected, no new ..."}
    recorder = Recorder(_happy(PrepareTraining=lambda p: outcome, NotifyRetrainNotNeeded=lambda p: {"Entries": []}))
    execution = _execute(definition, recorder, {"model": MODEL, "trigger": "alarm"})
    assert execution.status == "SUCCEEDED" and entered_states(execution.history)[-1] == "RetrainNotNeeded"
    (request,) = recorder.calls["NotifyRetrainNotNeeded"]
    (entry,) = request["Entries"]
    assert entry["Source"] == "mlops.training" and entry["DetailType"] == "Retrain Not Needed"
    assert entry["Detail"] == outcome
