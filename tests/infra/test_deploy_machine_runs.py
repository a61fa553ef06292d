"""The synthesized deploy state machine, run by the twin's ASL engine with recorded tasks.

One deployment per endpoint at a time (issue 9.6): a plan that finds the endpoint's lock
held waits for its turn and plans again; a superseded package is notified and ends
without a failure; the failure path notifies, then lets the lock go; a wait is bounded.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from mlops.twin.stepfunctions.asl import AslEngine
from mlops.twin.stepfunctions.asl.history import entered_states
from stacks.serving_stack import DEPLOY_TIMEOUT, DEPLOY_TURN_S, DEPLOY_TURNS

from .conftest import Synthesized, one
from .test_training_machine_runs import INVALID, THROTTLED, Recorder, _raise, _token

MACHINE_ARN = "arn:aws:states:us-east-1:123456789012:stateMachine:Deploy"
EXECUTION = "arn:aws:states:us-east-1:123456789012:execution:Deploy:deploy-1"
MODEL = "tumor-classifier"
PACKAGE = f"arn:aws:sagemaker:us-east-1:123456789012:model-package/{MODEL}/3"
EVENT = {"detail": {"ModelPackageGroupName": MODEL, "ModelPackageArn": PACKAGE, "ModelApprovalStatus": "Approved"}}
WAIT = {"action": "wait", "holder": "arn:...:execution:Deploy:other", "reason": "endpoint tumor-classifier is busy"}
UPDATE = {
    "action": "update",
    "model": MODEL,
    "package_arn": PACKAGE,
    "endpoint_name": MODEL,
    "model_request": {"ModelName": "m3"},
    "endpoint_config": {"EndpointConfigName": "m3"},
    "update_request": {"EndpointName": MODEL, "EndpointConfigName": "m3"},
}


@pytest.fixture(scope="module")
def definition(synthesized: Synthesized) -> dict[str, Any]:
    _, machine = one(synthesized.template_json("MlopsServing"), "AWS::StepFunctions::StateMachine")
    delimiter, parts = machine["Properties"]["DefinitionString"]["Fn::Join"]
    return json.loads(delimiter.join(p if isinstance(p, str) else _token(p) for p in parts))


def _plans(*answers: dict[str, Any]) -> Callable[[Any], Any]:
    """PlanDeployment's answers in turn (the last one repeats)."""
    left = list(answers)
    return lambda payload: left.pop(0) if len(left) > 1 else left[0]


def _handlers(**overrides: Callable[[Any], Any]) -> dict[str, Callable[[Any], Any]]:
    handlers: dict[str, Callable[[Any], Any]] = {
        "PlanDeployment": _plans(UPDATE),
        "CreateModel": lambda p: {"ModelArn": "arn:model/m3"},
        "CreateEndpointConfig": lambda p: {"EndpointConfigArn": "arn:endpoint-config/m3"},
        "UpdateEndpoint": lambda p: {"EndpointArn": f"arn:endpoint/{MODEL}"},
        "DescribeEndpoint": lambda p: {"EndpointStatus": "InService", "EndpointConfigName": "m3"},
        "RecordDeployment": lambda p: {"status": "deployed", "message": "deployed", "lock_released": True},
        "NotifyDeployment": lambda p: {},
        "NotifySuperseded": lambda p: {},
        "NotifyGaveUp": lambda p: {},
        "NotifyFailure": lambda p: {},
        "ReleaseDeployment": lambda p: {"lock_released": True},
    }
    return {**handlers, **overrides}


def _execute(definition: dict[str, Any], recorder: Recorder) -> Any:
    return AslEngine(recorder, time_scale=0.00001).run(MACHINE_ARN, definition, EVENT, "deploy-1")


def test_a_deployment_that_finds_the_endpoint_locked_waits_its_turn_then_deploys(definition: dict[str, Any]) -> None:
    recorder = Recorder(_handlers(PlanDeployment=_plans(WAIT, WAIT, UPDATE)))
    execution = _execute(definition, recorder)
    assert execution.status == "SUCCEEDED", (execution.error, execution.cause)
    states = entered_states(execution.history)
    assert states.count("WaitForTurn") == 2 and states[-1] == "ModelDeployed"
    plans = recorder.calls["PlanDeployment"]
    # the same execution plans each time: it owns the lock once it gets it
    assert len(plans) == 3 and {p["execution_id"] for p in plans} == {EXECUTION}
    assert plans[0]["detail"] == EVENT["detail"]
    assert len(recorder.calls["UpdateEndpoint"]) == 1 and "ReleaseDeployment" not in recorder.calls
    assert definition["States"]["WaitForTurn"]["Seconds"] == DEPLOY_TURN_S


def test_a_package_superseded_while_it_waited_is_notified_and_not_failed(definition: dict[str, Any]) -> None:
    superseded = {
        "action": "superseded",
        "reason": "serves v4",
        "message": "tumor-classifier v3 not deployed: superseded",
    }
    recorder = Recorder(_handlers(PlanDeployment=_plans(WAIT, superseded)))
    execution = _execute(definition, recorder)
    assert execution.status == "SUCCEEDED" and entered_states(execution.history)[-1] == "DeploymentSuperseded"
    (notice,) = recorder.calls["NotifySuperseded"]
    assert notice["Message"] == superseded["message"]
    assert not {"CreateModel", "RecordDeployment", "ReleaseDeployment"} & set(recorder.calls)


def test_a_duplicate_event_deploys_nothing_and_tells_nobody(definition: dict[str, Any]) -> None:
    recorder = Recorder(_handlers(PlanDeployment=_plans(WAIT, {"action": "skip", "reason": "already serves"})))
    execution = _execute(definition, recorder)
    assert execution.status == "SUCCEEDED" and entered_states(execution.history)[-1] == "NothingToDeploy"
    assert set(recorder.calls) == {"PlanDeployment"}


def test_a_wait_is_bounded_and_notified_before_the_machine_times_out(definition: dict[str, Any]) -> None:
    recorder = Recorder(_handlers(PlanDeployment=_plans(WAIT)))
    execution = _execute(definition, recorder)
    assert execution.status == "FAILED" and execution.error == "DeploymentWaitTimedOut"
    assert execution.cause == WAIT["reason"] and recorder.calls["NotifyGaveUp"][0]["Message"] == WAIT["reason"]
    assert len(recorder.calls["PlanDeployment"]) == DEPLOY_TURNS + 1
    assert DEPLOY_TIMEOUT.to_seconds() * 0.9 > DEPLOY_TURNS * DEPLOY_TURN_S


@pytest.mark.parametrize("failing", ["PlanDeployment", "CreateModel", "UpdateEndpoint", "RecordDeployment"])
def test_every_failure_is_notified_then_lets_the_lock_go(definition: dict[str, Any], failing: str) -> None:
    error = "SageMaker.AmazonSageMakerException" if failing in ("CreateModel", "UpdateEndpoint") else "RuntimeError"
    recorder = Recorder(_handlers(**{failing: _raise(error, INVALID)}))
    execution = _execute(definition, recorder)
    assert execution.status == "FAILED" and execution.error == "DeploymentFailed" and execution.cause == INVALID
    states = entered_states(execution.history)
    assert states[-3:] == ["NotifyFailure", "ReleaseDeployment", "DeploymentFailed"]
    (release,) = recorder.calls["ReleaseDeployment"]
    assert release == {
        "model": MODEL,
        "execution_id": "arn:aws:states:us-east-1:123456789012:execution:Deploy:deploy-1",
    }


def test_a_failed_release_still_fails_with_the_deployments_own_cause(definition: dict[str, Any]) -> None:
    recorder = Recorder(
        _handlers(
            UpdateEndpoint=_raise("SageMaker.AmazonSageMakerException", INVALID), ReleaseDeployment=_raise("X", "y")
        )
    )
    execution = _execute(definition, recorder)
    assert (execution.status, execution.error, execution.cause) == ("FAILED", "DeploymentFailed", INVALID)


def test_a_throttled_update_goes_round_again_under_the_same_lock(definition: dict[str, Any]) -> None:
    ok = _handlers()["UpdateEndpoint"]
    recorder = Recorder(_handlers(UpdateEndpoint=_raise("SageMaker.AmazonSageMakerException", THROTTLED, 1, ok)))
    execution = _execute(definition, recorder)
    assert execution.status == "SUCCEEDED" and len(recorder.calls["UpdateEndpoint"]) == 2
    assert len(recorder.calls["PlanDeployment"]) == 1 and "ReleaseDeployment" not in recorder.calls
