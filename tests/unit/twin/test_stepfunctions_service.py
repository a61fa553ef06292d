"""The twin's Step Functions service: machines from the assembly, executions kept on disk,
refused definitions, and executions that outlive (or not) the twin that ran them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from mlops.twin.assembly import Assembly
from mlops.twin.stepfunctions.asl import ExecutionAlreadyExists
from mlops.twin.stepfunctions.service import (
    INTERRUPTED_CAUSE,
    StateMachineDoesNotExist,
    StateMachineRejected,
    StepFunctions,
)

ROOT = Path(__file__).resolve().parents[3]
ACCOUNT, REGION = "000000000000", "us-east-1"
FN = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:fn"
TASK = {"StartAt": "T", "States": {"T": {"Type": "Task", "Resource": FN, "End": True}}}


def machine_arn(name: str) -> str:
    return f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:{name}"


class Blocker:
    """A task dispatcher whose calls wait for release()."""

    def __init__(self) -> None:
        self.event = threading.Event()

    def __call__(self, resource, params, ctx):
        self.event.wait(10)
        return {"done": params}

    def release(self) -> None:
        self.event.set()


def service(workdir: Path, dispatcher=lambda r, p, c: {"ok": p}, **kwargs) -> StepFunctions:
    sfn = StepFunctions(workdir, dispatcher, time_scale=0.001, **kwargs)
    sfn.create_state_machine("M", machine_arn("M"), json.dumps(TASK), role_arn=f"arn:aws:iam::{ACCOUNT}:role/r")
    return sfn


def record(workdir: Path, name: str, machine: str = "M") -> dict:
    return json.loads((workdir / "executions" / machine / f"{name}.json").read_text())


def wait_until(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


# -- state machines ----------------------------------------------------------------------------
def test_definition_aws_refuses_stops_creation_naming_machine_and_problem(tmp_path):
    sfn = StepFunctions(tmp_path, lambda *a: None)
    bad = {**TASK, "States": {"T": {**TASK["States"]["T"], "ResultPath": "$$.Execution"}}}
    with pytest.raises(StateMachineRejected) as info:
        sfn.create_state_machine("Bad", machine_arn("Bad"), json.dumps(bad), path="App/Bad/Resource")
    message = str(info.value)
    assert message.startswith(
        "state machine Bad (App/Bad/Resource): CreateStateMachine would fail with InvalidDefinition"
    )
    assert "Invalid State Machine Definition: 'SCHEMA_VALIDATION_FAILED" in message
    assert "at /States/T/ResultPath'" in message
    assert info.value.error.diagnostics[0].location == "/States/T/ResultPath"
    assert sfn.machines == {}
    with pytest.raises(StateMachineRejected, match="INVALID_JSON_DESCRIPTION"):
        sfn.create_state_machine("Torn", machine_arn("Torn"), '{"StartAt":')


def test_what_the_twin_does_not_run_is_reported_not_refused(tmp_path):
    sfn = StepFunctions(tmp_path, lambda *a: None)
    definition = {
        "StartAt": "T",
        "States": {"T": {"Type": "Task", "Resource": "arn:aws:states:::sqs:sendMessage", "End": True}},
    }
    machine, unsupported = sfn.create_state_machine("Q", machine_arn("Q"), json.dumps(definition))
    assert unsupported == [("T", "arn:aws:states:::sqs:sendMessage")] and sfn.machines[machine.arn] is machine


def _assembly(tmp_path: Path, properties: dict) -> Assembly:
    template = {"Resources": {"Machine1A": {"Type": "AWS::StepFunctions::StateMachine", "Properties": properties}}}
    (tmp_path / "App.template.json").write_text(json.dumps(template))
    manifest = {
        "artifacts": {"App": {"type": "aws:cloudformation:stack", "properties": {"templateFile": "App.template.json"}}}
    }
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    return Assembly(tmp_path)


def test_machine_from_the_assembly_keeps_what_describe_state_machine_returns(tmp_path):
    properties = {
        "StateMachineName": "Pipeline",
        "DefinitionString": json.dumps(
            {"StartAt": "P", "States": {"P": {"Type": "Pass", "Result": "${Greeting}", "End": True}}}
        ),
        "DefinitionSubstitutions": {"Greeting": "hello"},
        "RoleArn": f"arn:aws:iam::{ACCOUNT}:role/PipelineRole",
        "LoggingConfiguration": {
            "Destinations": [{"CloudWatchLogsLogGroup": {"LogGroupArn": "arn:aws:logs:us-east-1:0:log-group:g:*"}}],
            "IncludeExecutionData": True,
            "Level": "ALL",
        },
        "TracingConfiguration": {"Enabled": True},
    }
    asm = _assembly(tmp_path, properties)
    (res,) = asm.resources("AWS::StepFunctions::StateMachine")
    sfn = StepFunctions(tmp_path / "work", lambda *a: None)
    machine, unsupported = sfn.create_from_assembly(asm, res)
    assert unsupported == []
    assert (machine.name, machine.arn) == ("Pipeline", machine_arn("Pipeline"))
    assert machine.definition["States"]["P"]["Result"] == "hello" and '"hello"' in machine.definition_text
    assert machine.role_arn == f"arn:aws:iam::{ACCOUNT}:role/PipelineRole" and machine.type == "STANDARD"
    assert machine.logging_configuration == {
        "level": "ALL",
        "includeExecutionData": True,
        "destinations": [{"cloudWatchLogsLogGroup": {"logGroupArn": "arn:aws:logs:us-east-1:0:log-group:g:*"}}],
    }
    assert machine.tracing_configuration == {"enabled": True} and machine.creation_date.tzinfo is not None
    assert sfn.state_machine("Pipeline") is machine and sfn.state_machine(machine.arn) is machine
    with pytest.raises(KeyError):
        sfn.state_machine("Nope")


# -- executions ----------------------------------------------------------------------------------
def test_execution_is_persisted_at_start_while_running_and_at_the_end(tmp_path):
    blocker = Blocker()
    sfn = service(tmp_path, blocker)
    execution = sfn.start_execution(machine_arn("M"), {"x": 1}, "run-1")
    first = record(tmp_path, "run-1")
    assert (
        first["status"] == "RUNNING"
        and first["input"] == {"x": 1}
        and first["history"][0]["type"] == "ExecutionStarted"
    )
    # Progress is written while it runs (a few hundred ms behind at most).
    wait_until(lambda: [e["type"] for e in record(tmp_path, "run-1")["history"]][-1] == "TaskStarted")
    blocker.release()
    assert execution.wait(5)
    wait_until(lambda: record(tmp_path, "run-1")["status"] == "SUCCEEDED")
    final = record(tmp_path, "run-1")
    assert final["output"] == {"done": {"x": 1}} and final["history"][-1]["type"] == "ExecutionSucceeded"
    assert final == json.loads(json.dumps(execution.to_dict()))
    assert not list((tmp_path / "executions").rglob("*.tmp"))


def test_busy_guard_spans_the_execution(tmp_path):
    events = []

    @contextmanager
    def busy():
        events.append("enter")
        yield
        events.append("exit")

    blocker = Blocker()
    sfn = service(tmp_path, blocker, busy=busy)
    execution = sfn.start_execution(machine_arn("M"), {}, "b")
    assert events == ["enter"]
    assert sfn.start_execution(machine_arn("M"), {}, "b") is execution  # idempotent repeat: no second guard
    assert events == ["enter", "enter", "exit"]
    blocker.release()
    wait_until(lambda: events.count("exit") == 2)


def test_start_errors(tmp_path):
    sfn = service(tmp_path)
    with pytest.raises(StateMachineDoesNotExist):
        sfn.start_execution(machine_arn("Nope"), {})
    sfn.start_execution(machine_arn("M"), {"a": 1}, "once").wait(5)
    with pytest.raises(ExecutionAlreadyExists):
        sfn.start_execution(machine_arn("M"), {"a": 1}, "once")


def test_stop_execution_is_persisted(tmp_path):
    blocker = Blocker()
    sfn = service(tmp_path, blocker)
    execution = sfn.start_execution(machine_arn("M"), {}, "s")
    sfn.stop_execution(execution.arn, "Operator", "not needed")
    wait_until(lambda: record(tmp_path, "s")["status"] == "ABORTED")
    assert record(tmp_path, "s")["history"][-1]["executionAbortedEventDetails"] == {
        "error": "Operator",
        "cause": "not needed",
    }
    blocker.release()


# -- executions that outlive their twin ------------------------------------------------------------
def test_recover_fails_executions_left_running_and_returns_them(tmp_path):
    blocker = Blocker()
    first = service(tmp_path, blocker)
    running = first.start_execution(machine_arn("M"), {"model": "m1"}, "left-running")
    first.start_execution(machine_arn("M"), {}, "second-running")
    wait_until(lambda: record(tmp_path, "left-running")["history"][-1]["type"] == "TaskStarted")
    # A second twin on the same work directory (the first one is gone).
    second = service(tmp_path)
    interrupted = second.recover()
    assert sorted(e.name for e in interrupted) == ["left-running", "second-running"]
    stored = record(tmp_path, "left-running")
    assert (stored["status"], stored["error"], stored["cause"]) == ("FAILED", "States.Runtime", INTERRUPTED_CAUSE)
    last = stored["history"][-1]
    assert last["type"] == "ExecutionFailed" and last["previousEventId"] == stored["history"][-2]["id"]
    assert last["executionFailedEventDetails"] == {"error": "States.Runtime", "cause": INTERRUPTED_CAUSE}
    assert stored["stop_date"]
    # The new twin describes it and keeps its name taken, as AWS keeps names for 90 days.
    assert second.describe_execution(running.arn).status == "FAILED"
    with pytest.raises(ExecutionAlreadyExists):
        second.start_execution(machine_arn("M"), {"model": "m1"}, "left-running")
    assert second.recover() == []  # nothing left running: recovery is idempotent
    blocker.release()


def test_recover_skips_unreadable_records(tmp_path, caplog):
    (tmp_path / "executions" / "M").mkdir(parents=True)
    (tmp_path / "executions" / "M" / "torn.json").write_text('{"arn": "x", "na')
    sfn = service(tmp_path)
    assert sfn.recover() == []
    assert "torn.json" in caplog.text


CHILD = """
import json, sys, threading, time
from pathlib import Path
from mlops.twin.stepfunctions.service import StepFunctions
definition = {{"StartAt": "W", "States": {{"W": {{"Type": "Map", "ItemsPath": "$.items", "MaxConcurrency": 4,
    "ItemProcessor": {{"StartAt": "P", "States": {{"P": {{"Type": "Pass", "Next": "T"}},
        "T": {{"Type": "Task", "Resource": "{fn}", "End": True}}}}}}, "End": True}}}}}}
sfn = StepFunctions(Path(sys.argv[1]), lambda r, p, c: time.sleep(0.002) or p, time_scale=0.001)
sfn.create_state_machine("M", "{arn}", json.dumps(definition))
sfn.start_execution("{arn}", {{"items": list(range(5000))}}, "busy")
print("started", flush=True)
time.sleep(60)
"""


def test_kill_9_at_any_moment_leaves_a_readable_record(tmp_path):
    # A child twin writes a fast-growing history; killed with SIGKILL mid-writes, its record
    # must still parse, and the next twin ends the execution as FAILED.
    script = CHILD.format(fn=FN, arn=machine_arn("M"))
    proc = subprocess.Popen(
        [sys.executable, "-c", script, str(tmp_path)], stdout=subprocess.PIPE, cwd=ROOT, env={**os.environ}
    )
    try:
        assert proc.stdout.readline().strip() == b"started"
        path = tmp_path / "executions" / "M" / "busy.json"
        wait_until(lambda: len(json.loads(path.read_text())["history"]) > 200)
        time.sleep(0.15)  # land the kill among progress writes
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    stored = json.loads(path.read_text())  # never a torn file
    assert stored["status"] == "RUNNING" and len(stored["history"]) > 200
    (interrupted,) = service(tmp_path).recover()
    assert interrupted.name == "busy" and record(tmp_path, "busy")["status"] == "FAILED"


# -- the Twin on top of the service -------------------------------------------------------------------
def _twin(tmp_path: Path, definition: dict):
    from mlops.twin.runtime import Twin

    properties = {
        "StateMachineName": "Pipeline",
        "DefinitionString": json.dumps(definition),
        "RoleArn": "arn:aws:iam::0:role/r",
    }
    cdk_out = tmp_path / "cdk.out"
    cdk_out.mkdir()
    return Twin(_assembly(cdk_out, properties).dir, tmp_path / "work", time_scale=0.001)


def test_twin_refuses_to_start_with_a_definition_aws_refuses(tmp_path):
    bad = {"StartAt": "P", "States": {"P": {"Type": "Pass", "TimeoutSeconds": 5, "End": True}}}
    twin = _twin(tmp_path, bad)
    try:
        with pytest.raises(StateMachineRejected) as info:
            twin.start()
    finally:
        twin.stop()
    assert "state machine Pipeline (" in str(info.value)
    assert "SCHEMA_VALIDATION_FAILED: Field 'TimeoutSeconds' is not supported at /States/P" in str(info.value)


def test_twin_delegates_and_reports_interrupted_executions(tmp_path):
    definition = {"StartAt": "P", "States": {"P": {"Type": "Pass", "Result": "ok", "End": True}}}
    left = tmp_path / "work" / "executions" / "Pipeline" / "left.json"
    left.parent.mkdir(parents=True)
    arn = machine_arn("Pipeline")
    when = "2024-01-01T00:00:00+00:00"
    started = {"id": 1, "previousEventId": 0, "timestamp": when, "type": "ExecutionStarted"}
    execution_arn = arn.replace("stateMachine", "execution") + ":left"
    stored = {"arn": execution_arn, "name": "left", "state_machine_arn": arn, "status": "RUNNING", "input": {}}
    left.write_text(json.dumps({**stored, "start_date": when, "history": [started]}))
    twin = _twin(tmp_path, definition)
    try:
        twin.start()
        assert [e.name for e in twin.interrupted_executions] == ["left"]
        assert twin.state_machine("Pipeline").arn == arn and arn in twin.state_machines
        execution = twin.start_execution(arn, {"x": 1}, "fresh")
        assert twin.wait_idle(timeout_s=10, settle_s=0.05) and execution.output == "ok"
        assert record(tmp_path / "work", "fresh", "Pipeline")["status"] == "SUCCEEDED"
        assert {e.name for e in twin.engine.list_executions()} == {"left", "fresh"}
    finally:
        twin.stop()


def test_start_execution_task_reports_api_errors_as_the_integration_names_them(tmp_path):
    from mlops.twin.stepfunctions.asl import StatesError
    from mlops.twin.stepfunctions.tasks import TaskDispatcher

    sfn = service(tmp_path)
    sfn.start_execution(machine_arn("M"), {}, "child").wait(5)

    from types import SimpleNamespace

    from mlops.twin.iam import Unenforced

    parent = machine_arn("Parent")

    class Twin:  # what the dispatcher needs of the twin: start executions, the caller's role, IAM
        start_execution = staticmethod(sfn.start_execution)
        state_machines = {parent: SimpleNamespace(role_arn="arn:aws:iam::123456789012:role/ParentRole")}
        iam = Unenforced()

    dispatch = TaskDispatcher(Twin())
    ctx = SimpleNamespace(execution_arn=parent.replace(":stateMachine:", ":execution:") + ":run-1")
    resource = "arn:aws:states:::states:startExecution"
    for arn, name, error in [
        (machine_arn("M"), "child", "StepFunctions.ExecutionAlreadyExistsException"),
        (machine_arn("Nope"), None, "StepFunctions.StateMachineDoesNotExistException"),
    ]:
        with pytest.raises(StatesError) as info:
            dispatch(resource, {"StateMachineArn": arn, "Name": name, "Input": {"x": 1}}, ctx)
        assert info.value.error == error


def test_status_listeners_hear_each_start_and_end(tmp_path):
    heard: list[tuple[str, str]] = []
    sfn = service(tmp_path, on_status=lambda e: heard.append((e.name, e.status)))
    sfn.start_execution(machine_arn("M"), {"x": 1}, "run-1").wait(5)
    wait_until(lambda: len(heard) == 2)
    assert heard == [("run-1", "RUNNING"), ("run-1", "SUCCEEDED")]


def test_the_twin_sends_execution_status_change_events_also_for_interrupted_runs(tmp_path):
    definition = {"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}}
    left = tmp_path / "work" / "executions" / "Pipeline" / "left.json"
    left.parent.mkdir(parents=True)
    arn = machine_arn("Pipeline").replace(f":{ACCOUNT}:", ":0:")
    when = "2024-01-01T00:00:00+00:00"
    started = {"id": 1, "previousEventId": 0, "timestamp": when, "type": "ExecutionStarted"}
    stored = {"arn": arn.replace("stateMachine", "execution") + ":left", "name": "left", "status": "RUNNING"}
    left.write_text(
        json.dumps({**stored, "state_machine_arn": arn, "input": {}, "start_date": when, "history": [started]})
    )
    twin = _twin(tmp_path, definition)
    sent: list[dict] = []
    try:
        twin.start()
        twin.bus.emit = lambda event, bus="default": sent.append(event)  # what goes onto the bus from here on
        twin._execution_status(twin.interrupted_executions[0])
        twin.start_execution(twin.state_machine("Pipeline").arn, {"x": 1}, "fresh")
        assert twin.wait_idle(timeout_s=10, settle_s=0.05)
    finally:
        twin.stop()
    changes = [(e["detail"]["name"], e["detail"]["status"]) for e in sent]
    assert changes == [("left", "FAILED"), ("fresh", "RUNNING"), ("fresh", "SUCCEEDED")]
    failed = sent[0]
    assert failed["source"] == "aws.states" and failed["detail-type"] == "Step Functions Execution Status Change"
    assert failed["detail"]["stopDate"] > failed["detail"]["startDate"] == 1704067200000
    assert sent[2]["detail"]["output"] is not None and failed["detail"]["output"] is None
