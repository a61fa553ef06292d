"""The training Lambda handlers on moto: events parsed, clients reused, events not logged by default."""

from __future__ import annotations

import importlib.util
import json
import sys
from types import SimpleNamespace
from typing import Any

import pytest

from ..conftest import ROOT
from .training_support import MODEL, Machine, training_world, validated

ENV = {
    "VALIDATED_BUCKET": "validated-bkt",
    "ARTIFACTS_BUCKET": "artifacts-bkt",
    "CAPTURE_BUCKET": "capture-bkt",
    "INCOMING_BUCKET": "incoming-bkt",
    "CODE_URI": "s3://assets-bkt/code.tar.gz",
    "CODE_HASH": "abc123",
    "TRAINING_IMAGE_URI": "img:1",
}
CONTEXT = SimpleNamespace(
    function_name="fn",
    function_version="$LATEST",
    memory_limit_in_mb=512,
    invoked_function_arn="arn:aws:lambda:us-east-1:123456789012:function:fn",
    aws_request_id="req-1",
)


def _load(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Import the handler module as Lambda does: by name, with the function's environment already set."""
    spec = importlib.util.spec_from_file_location("training_handler", ROOT / "functions" / "training" / "handler.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def handler(s3: Any, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, Machine]:
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("POWERTOOLS_LOGGER_LOG_EVENT", raising=False)
    _, machine = training_world(s3)
    return _load(monkeypatch), machine


def test_clients_are_made_once_and_reused(handler: tuple[Any, Machine]) -> None:
    module, _ = handler
    assert module._steps() is module._steps()
    assert module._steps().s3 is module.s3 and module._steps().sfn is module.stepfunctions


def _logged(module: Any, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """What the handler's logger is asked to log at INFO, as text."""
    seen: list[str] = []
    monkeypatch.setattr(module.logger, "info", lambda msg, *args, **kw: seen.append(json.dumps(msg, default=str)))
    return seen


def test_events_are_not_logged_unless_asked(
    handler: tuple[Any, Machine], s3: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    module, machine = handler
    seen = _logged(module, monkeypatch)
    event = validated(s3, "20261124T100000Z-secret")
    payload = {"dataset": event, "model": MODEL, "execution_id": machine.run("e1"), "state_machine_arn": machine.arn}
    assert module.prepare(payload, CONTEXT)["status"] == "ready"
    assert not any(event["sha256"] in line for line in seen)  # the event's data stays out of the log

    monkeypatch.setenv("POWERTOOLS_LOGGER_LOG_EVENT", "true")  # unless the function's environment asks
    logging = _load(monkeypatch)
    seen = _logged(logging, monkeypatch)
    other = validated(s3, "20261124T110000Z-logged", seed=5)
    logging.prepare({**payload, "dataset": other, "execution_id": machine.run("e2")}, CONTEXT)
    assert any(other["sha256"] in line for line in seen)


def test_record_failure_after_a_failed_prepare(handler: tuple[Any, Machine], s3: Any) -> None:
    """Issue 8.8: the failed execution's state has no "run"; finish still reports and lets go."""
    module, machine = handler
    execution = machine.run("broken")
    error = {"Error": "LookupError", "Cause": '{"errorMessage": "no validated dataset"}'}
    state = {"model": MODEL, "trigger": "alarm", "error": error}
    event = {"state": state, "status": "failed", "execution_id": execution, "state_machine_arn": machine.arn}
    result = module.finish(event, CONTEXT)
    assert result["status"] == "failed" and result["error"] == error
    report = s3.get_object(Bucket="artifacts-bkt", Key=f"training/{MODEL}/failed-broken/report.json")
    assert json.loads(report["Body"].read())["error"] == error


def test_record_failure_names_the_missing_model(handler: tuple[Any, Machine]) -> None:
    module, machine = handler
    event = {"state": {"error": {}}, "status": "failed", "execution_id": machine.run("x")}
    with pytest.raises(ValueError, match="names no model"):
        module.finish(event, CONTEXT)


def test_reap_reads_the_status_change_event(handler: tuple[Any, Machine], s3: Any) -> None:
    module, machine = handler
    holder = machine.run("holder")
    payload = {"dataset": validated(s3, "20261124T100000Z-aaaa"), "model": MODEL, "execution_id": holder}
    run = module.prepare({**payload, "state_machine_arn": machine.arn}, CONTEXT)
    machine.end(holder)
    event = {
        "version": "0",
        "id": "315c1398-40ff-a850-213b-158f73e60175",
        "detail-type": "Step Functions Execution Status Change",
        "source": "aws.states",
        "account": "123456789012",
        "time": "2026-11-24T10:05:00Z",
        "region": "us-east-1",
        "resources": [holder],
        "detail": {
            "executionArn": holder,
            "stateMachineArn": machine.arn,
            "name": "holder",
            "status": "ABORTED",
            "startDate": 1764000000000,
            "stopDate": 1764000300000,
            "input": json.dumps({"model": MODEL, "dataset_version": "20261124T100000Z-aaaa"}),
            "output": None,
        },
    }
    result = module.reap(event, CONTEXT)
    assert result["dead_run_recorded"] is True and result["model"] == MODEL
    fate = json.loads(
        s3.get_object(Bucket="artifacts-bkt", Key=f"fates/{MODEL}/20261124T100000Z-aaaa.json")["Body"].read()
    )
    assert fate["state"] == "failed" and fate["run_id"] == run["run_id"]
