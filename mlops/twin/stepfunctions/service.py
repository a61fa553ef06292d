"""The twin's Step Functions: state machines from the assembly, their executions, on disk.

What AWS keeps for a state machine (name, ARN, definition, role, type, logging and
tracing configuration, creation date) and for an execution (status, input, output,
error and cause, full event history) is kept here, and every execution is persisted
(``store``) while it runs, so the CLI and ``mlops.twin.control`` read it from disk and a
restarted twin still describes it.

AWS executions survive anything that happens to a client; the twin's do not survive the
twin: an execution left RUNNING by a twin that stopped or was killed is ended, when the
next twin starts on the same work directory, as FAILED (``States.Runtime``) with an
ExecutionFailed event saying so. :meth:`StepFunctions.recover` returns those executions,
so whatever they owned (a training lock, for example) can be released by its owner.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlops.twin.stepfunctions.asl import AslEngine, Diagnostic, Execution, InvalidDefinition, TaskContext, validation
from mlops.twin.stepfunctions.asl.history import now_iso
from mlops.twin.stepfunctions.store import ExecutionStore
from mlops.twin.stepfunctions.tasks import is_supported_task

if TYPE_CHECKING:
    from mlops.twin.assembly import Assembly, Resource

log = logging.getLogger("mlops.twin.stepfunctions")

INTERRUPTED_ERROR = "States.Runtime"
INTERRUPTED_CAUSE = "the local twin stopped while this execution was running (AWS would have continued it)"
_FLUSH_S = 0.2  # progress writes of a running execution are at most this far behind


class StateMachineDoesNotExist(KeyError):
    """No state machine with that ARN (a KeyError: callers of Twin.start_execution catch it)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class StateMachineRejected(ValueError):
    """A definition CreateStateMachine refuses: the twin refuses the assembly, as a deploy would fail."""

    def __init__(self, name: str, path: str, error: InvalidDefinition) -> None:
        self.name, self.path, self.error = name, path, error
        super().__init__(
            f"state machine {name} ({path}): CreateStateMachine would fail with InvalidDefinition: {error}"
        )


@dataclass(frozen=True)
class StateMachine:
    name: str
    arn: str
    definition: dict[str, Any]  # parsed
    path: str = ""  # construct path, for messages
    definition_text: str = ""  # as CreateStateMachine received it (DescribeStateMachine returns it)
    role_arn: str = ""
    type: str = "STANDARD"
    logging_configuration: dict[str, Any] = field(default_factory=dict)  # API shape (level, ...)
    tracing_configuration: dict[str, Any] = field(default_factory=dict)  # API shape (enabled)
    creation_date: datetime = field(default_factory=lambda: datetime.now(UTC))


def task_resources(states: dict[str, Any]) -> list[tuple[str, str]]:
    """Every (state name, Resource) of Task states, including inside Parallel and Map."""
    found = []
    for name, state in states.items():
        if not isinstance(state, dict):
            continue
        if state.get("Type") == "Task":
            found.append((name, state.get("Resource", "")))
        for branch in state.get("Branches", []):
            found += task_resources(branch.get("States", {}))
        processor = state.get("ItemProcessor") or state.get("Iterator")
        if processor:
            found += task_resources(processor.get("States", {}))
    return found


class StepFunctions:
    def __init__(
        self,
        workdir: Path,
        dispatcher: Callable[[str, Any, TaskContext], Any],
        *,
        time_scale: float = 1.0,
        busy: Callable[[], AbstractContextManager[Any]] | None = None,
        on_status: Callable[[Execution], None] | None = None,
    ) -> None:
        """``busy`` is entered when an execution starts and left when it ends (Twin.wait_idle);
        ``on_status`` is told when an execution starts and when it ends (status-change events)."""
        self.on_status = on_status
        self.engine = AslEngine(dispatcher, time_scale=time_scale, on_change=self._changed)
        self.store = ExecutionStore(Path(workdir) / "executions")
        self.machines: dict[str, StateMachine] = {}  # by ARN
        self._busy = busy
        self._dirty: dict[str, Execution] = {}
        self._dirty_lock = threading.Condition()
        threading.Thread(target=self._flush_loop, name="sfn-store", daemon=True).start()

    # -- state machines ----------------------------------------------------------------
    def create_state_machine(
        self,
        name: str,
        arn: str,
        definition: str,
        *,
        role_arn: str = "",
        type: str = "STANDARD",
        logging_configuration: dict[str, Any] | None = None,
        tracing_configuration: dict[str, Any] | None = None,
        path: str = "",
    ) -> tuple[StateMachine, list[tuple[str, str]]]:
        """CreateStateMachine: the machine and what in it the twin does not run, as
        (state, problem) pairs; :class:`StateMachineRejected` when AWS would refuse it."""
        try:
            parsed = json.loads(definition)
        except ValueError as exc:
            error = InvalidDefinition([Diagnostic("INVALID_JSON_DESCRIPTION", f"Invalid JSON: {exc}")])
            raise StateMachineRejected(name, path, error) from None
        try:
            findings = validation.ensure_valid(parsed)
        except InvalidDefinition as exc:
            raise StateMachineRejected(name, path, exc) from None
        machine = StateMachine(
            name=name,
            arn=arn,
            definition=parsed,
            path=path,
            definition_text=definition,
            role_arn=role_arn,
            type=type,
            logging_configuration=logging_configuration or {"level": "OFF", "includeExecutionData": False},
            tracing_configuration=tracing_configuration or {"enabled": False},
        )
        self.machines[arn] = machine
        unsupported = [("(definition)", problem) for problem in findings.unsupported]
        unsupported += [
            (state, resource)
            for state, resource in task_resources(parsed.get("States", {}))
            if not is_supported_task(resource)
        ]
        return machine, unsupported

    def create_from_assembly(self, assembly: Assembly, res: Resource) -> tuple[StateMachine, list[tuple[str, str]]]:
        """An ``AWS::StepFunctions::StateMachine`` resource, as CloudFormation creates it."""
        props = assembly.resolve(res.properties, res.stack)
        definition = props.get("DefinitionString")
        if definition is None:
            definition = json.dumps(props.get("Definition", {}))
        for key, value in props.get("DefinitionSubstitutions", {}).items():
            definition = definition.replace("${" + key + "}", str(value))
        return self.create_state_machine(
            res.physical_id,
            res.arn,
            definition,
            role_arn=str(props.get("RoleArn", "")),
            type=str(props.get("StateMachineType", "STANDARD")),
            logging_configuration=_logging(props.get("LoggingConfiguration")),
            tracing_configuration={"enabled": bool((props.get("TracingConfiguration") or {}).get("Enabled", False))},
            path=res.path,
        )

    def state_machine(self, name_or_arn: str) -> StateMachine:
        for machine in self.machines.values():
            if name_or_arn in (machine.arn, machine.name) or machine.path.startswith(name_or_arn + "/"):
                return machine
        known = [m.name for m in self.machines.values()]
        raise StateMachineDoesNotExist(f"no state machine {name_or_arn!r}; known: {known}")

    # -- executions ----------------------------------------------------------------------
    def start_execution(self, arn: str, payload: Any, name: str | None = None) -> Execution:
        """StartExecution; ExecutionAlreadyExists for a name taken (unless running with the same input)."""
        machine = self.machines.get(arn)
        if machine is None:
            raise StateMachineDoesNotExist(f"state machine {arn} is not in the assembly")
        guard = self._busy() if self._busy else None
        if guard is not None:
            guard.__enter__()  # before the execution exists: wait_idle cannot miss it
        try:
            execution, started = self.engine.start(arn, machine.definition, payload, name or str(uuid.uuid4()))
        except BaseException:
            if guard is not None:
                guard.__exit__(None, None, None)
            raise
        if not started:  # an idempotent repeat of a running execution: it has its finisher already
            if guard is not None:
                guard.__exit__(None, None, None)
            return execution
        self.store.save(execution, durable=True)
        # as it started: a quick execution may already have ended by now
        self._status(
            dataclasses.replace(execution, status="RUNNING", stop_date=None, output=None, error=None, cause=None)
        )
        threading.Thread(target=self._finish, args=(execution, guard), name="sfn-finish", daemon=True).start()
        return execution

    def _status(self, execution: Execution) -> None:
        if self.on_status is not None:
            try:
                self.on_status(execution)
            except Exception:  # a listener's failure must not fail the execution
                log.exception("status-change listener failed for %s", execution.arn)

    def _finish(self, execution: Execution, guard: AbstractContextManager[Any] | None) -> None:
        try:
            execution.wait()
            self.store.save(execution, durable=True)
            self._status(execution)
        finally:
            if guard is not None:
                guard.__exit__(None, None, None)

    def stop_execution(self, execution_arn: str, error: str = "", cause: str = "") -> Execution:
        return self.engine.stop(execution_arn, error, cause)  # the finisher persists the end

    def describe_execution(self, execution_arn: str) -> Execution:
        return self.engine.describe(execution_arn)

    def list_executions(self, state_machine_arn: str | None = None) -> list[Execution]:
        """Newest first."""
        return self.engine.list_executions(state_machine_arn)

    # -- durability ------------------------------------------------------------------------
    def recover(self) -> list[Execution]:
        """Load the executions recorded in the work directory; those left RUNNING by a twin
        that is gone are ended as FAILED (with an ExecutionFailed event) and returned."""
        interrupted = []
        for execution in self.store.load_all():
            if execution.status == "RUNNING":
                _fail_interrupted(execution)
                self.store.save(execution, durable=True)
                interrupted.append(execution)
                log.warning("execution %s was running when the last twin stopped: FAILED", execution.arn)
            self.engine.adopt(execution)
        return interrupted

    def flush(self) -> None:
        """Write every pending progress record now."""
        with self._dirty_lock:
            pending, self._dirty = list(self._dirty.values()), {}
        for execution in pending:
            self.store.save(execution)

    def _changed(self, execution: Execution) -> None:
        with self._dirty_lock:
            self._dirty[execution.arn] = execution
            self._dirty_lock.notify()

    def _flush_loop(self) -> None:
        while True:
            with self._dirty_lock:
                while not self._dirty:
                    self._dirty_lock.wait()
            threading.Event().wait(_FLUSH_S)  # coalesce a burst of events into one write
            try:
                self.flush()
            except OSError as exc:  # a full disk must not kill the writer
                log.warning("could not persist executions: %s", exc)


def _fail_interrupted(execution: Execution) -> None:
    last = execution.history[-1]["id"] if execution.history else 0
    execution.history.append(
        {
            "id": last + 1,
            "previousEventId": last,
            "timestamp": now_iso(),
            "type": "ExecutionFailed",
            "executionFailedEventDetails": {"error": INTERRUPTED_ERROR, "cause": INTERRUPTED_CAUSE},
        }
    )
    execution.status = "FAILED"
    execution.error, execution.cause = INTERRUPTED_ERROR, INTERRUPTED_CAUSE
    execution.stop_date = now_iso()
    execution._done.set()


def _logging(config: Any) -> dict[str, Any]:
    """CloudFormation's LoggingConfiguration as DescribeStateMachine's loggingConfiguration."""
    config = config or {}
    destinations = [
        {"cloudWatchLogsLogGroup": {"logGroupArn": str(d.get("CloudWatchLogsLogGroup", {}).get("LogGroupArn", ""))}}
        for d in config.get("Destinations", [])
        if isinstance(d, dict)
    ]
    result: dict[str, Any] = {
        "level": str(config.get("Level", "OFF")),
        "includeExecutionData": bool(config.get("IncludeExecutionData", False)),
    }
    if destinations:
        result["destinations"] = destinations
    return result


__all__ = [
    "INTERRUPTED_CAUSE",
    "INTERRUPTED_ERROR",
    "StateMachine",
    "StateMachineDoesNotExist",
    "StateMachineRejected",
    "StepFunctions",
    "task_resources",
]
