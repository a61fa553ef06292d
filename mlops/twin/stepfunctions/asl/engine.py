"""AslEngine: starts, tracks, stops and validates executions."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from mlops.twin.stepfunctions.asl import validation
from mlops.twin.stepfunctions.asl.errors import ExecutionAlreadyExists, ExecutionDoesNotExist, StatesError
from mlops.twin.stepfunctions.asl.execution import Execution, execution_arn
from mlops.twin.stepfunctions.asl.history import History, now_iso, to_json
from mlops.twin.stepfunctions.asl.interpreter import Cancelled, Cursor, Dispatcher, Interpreter, Scope
from mlops.twin.stepfunctions.asl.timing import ExecutionClock

# Called with the execution after each history event (the service persists it from there).
OnChange = Callable[[Execution], None]


class _Run:
    """Live bookkeeping of one execution."""

    def __init__(self, execution: Execution, time_scale: float, on_change: OnChange | None = None) -> None:
        self.execution = execution
        self.history = History(execution.history, (lambda: on_change(execution)) if on_change else None)
        self.scope = Scope()
        self.lock = threading.Lock()
        self.clock = ExecutionClock(time_scale)
        self.timeout: float | None = None  # the definition's TimeoutSeconds


class AslEngine:
    def __init__(self, dispatcher: Dispatcher, time_scale: float = 1.0, on_change: OnChange | None = None) -> None:
        self.dispatcher = dispatcher
        self.time_scale = time_scale
        self.on_change = on_change
        self._runs: dict[str, _Run] = {}
        self._lock = threading.Lock()

    def validate(self, definition: dict[str, Any]) -> list[str]:
        return validation.validate(definition)

    def start_execution(self, state_machine_arn: str, definition: dict[str, Any], input: Any, name: str) -> Execution:
        return self.start(state_machine_arn, definition, input, name)[0]

    def start(
        self, state_machine_arn: str, definition: dict[str, Any], input: Any, name: str
    ) -> tuple[Execution, bool]:
        """StartExecution: (the execution, whether this call started it)."""
        arn = execution_arn(state_machine_arn, name)
        with self._lock:
            existing = self._runs.get(arn)
            if existing is not None:
                execution = existing.execution
                # AWS idempotency: same name and same input while running returns the execution.
                if execution.status == "RUNNING" and to_json(execution.input) == to_json(input):
                    return execution, False
                raise ExecutionAlreadyExists(f"Execution Already Exists: '{arn}'")
            execution = Execution(arn=arn, name=name, state_machine_arn=state_machine_arn, input=input)
            execution.start_date = now_iso()
            run = _Run(execution, self.time_scale, self.on_change)
            self._runs[arn] = run
        run.history.add("ExecutionStarted", 0, {"input": to_json(input)})
        problems = validation.validate(definition)
        machine_name = state_machine_arn.rsplit(":", 1)[-1]
        context = {
            "Execution": {"Id": arn, "Input": input, "Name": name, "StartTime": execution.start_date},
            "StateMachine": {"Id": state_machine_arn, "Name": machine_name},
        }
        interpreter = Interpreter(self.dispatcher, self.time_scale, run.history, context, run.scope, run.clock)
        timeout = definition.get("TimeoutSeconds") if isinstance(definition, dict) else None
        if timeout and not problems:
            run.timeout = float(timeout)
            threading.Thread(
                target=self._watch, args=(run, float(timeout)), name=f"asl-timeout-{name}", daemon=True
            ).start()
        threading.Thread(
            target=self._execute, args=(run, interpreter, definition, problems), name=f"asl-{name}", daemon=True
        ).start()
        return execution, True

    def _execute(self, run: _Run, interpreter: Interpreter, definition: dict[str, Any], problems: list[str]) -> None:
        try:
            if problems:
                raise StatesError("States.Runtime", "Invalid state machine definition: " + "; ".join(problems))
            output = interpreter.run_machine(definition, run.execution.input, run.scope, Cursor(1))
        except Cancelled:
            return  # stop() or the execution timeout already recorded the outcome
        except StatesError as err:
            self._complete(run, "FAILED", error=err.error, cause=err.cause)
        except Exception as exc:  # an engine bug must not leave the execution RUNNING forever
            self._complete(run, "FAILED", error="States.Runtime", cause=f"{type(exc).__name__}: {exc}")
        else:
            if run.timeout is not None and run.clock.elapsed() > run.timeout:
                # Past the deadline when it ended: AWS would have timed it out (the watcher may lag).
                self._complete(run, "TIMED_OUT", error="States.Timeout", cause="The execution timed out")
            else:
                self._complete(run, "SUCCEEDED", output=output)

    def _complete(
        self, run: _Run, status: str, *, output: Any = None, error: str | None = None, cause: str | None = None
    ) -> bool:
        with run.lock:
            execution = run.execution
            if execution.status != "RUNNING":
                return False
            run.scope.cancel()
            last = len(execution.history)
            if status == "SUCCEEDED":
                run.history.add("ExecutionSucceeded", last, {"output": to_json(output)})
            else:
                kind = {"FAILED": "ExecutionFailed", "TIMED_OUT": "ExecutionTimedOut", "ABORTED": "ExecutionAborted"}
                # As AWS: a stop without a reason has empty details, not empty strings.
                details = {k: v for k, v in (("error", error), ("cause", cause)) if v is not None}
                run.history.add(kind[status], last, details)
            execution.output, execution.error, execution.cause = output, error, cause
            execution.stop_date = now_iso()
            execution.status = status
            execution._done.set()
        run.clock.changed.set()  # ends the timeout watch
        return True

    def _watch(self, run: _Run, timeout: float) -> None:
        """Times the execution out once it has run ``timeout`` seconds as AWS counts them (timing)."""
        clock = run.clock
        while not run.execution.wait(0):
            clock.changed.clear()
            remaining = clock.real_seconds_until(timeout)
            if remaining <= 0:
                self._complete(run, "TIMED_OUT", error="States.Timeout", cause="The execution timed out")
                return
            clock.changed.wait(min(remaining, 1.0))

    def run(self, state_machine_arn: str, definition: dict[str, Any], input: Any, name: str) -> Execution:
        execution = self.start_execution(state_machine_arn, definition, input, name)
        execution.wait()
        return execution

    def describe(self, execution_arn: str) -> Execution:
        with self._lock:
            run = self._runs.get(execution_arn)
        if run is None:
            raise ExecutionDoesNotExist(execution_arn)
        return run.execution

    def adopt(self, execution: Execution) -> None:
        """Track an execution recorded by an earlier twin (ended): describable, and its name taken."""
        if execution.status == "RUNNING":
            raise ValueError(f"execution {execution.arn} is RUNNING: end it before adopting it")
        with self._lock:
            self._runs.setdefault(execution.arn, _Run(execution, self.time_scale))

    def list_executions(self, state_machine_arn: str | None = None) -> list[Execution]:
        with self._lock:
            executions = [r.execution for r in self._runs.values()]
        if state_machine_arn is not None:
            executions = [e for e in executions if e.state_machine_arn == state_machine_arn]
        return sorted(executions, key=lambda e: e.start_date, reverse=True)

    def stop(self, execution_arn: str, error: str = "", cause: str = "") -> Execution:
        run = self._runs.get(execution_arn)
        if run is None:
            raise ExecutionDoesNotExist(execution_arn)
        self._complete(run, "ABORTED", error=error or None, cause=cause or None)
        return run.execution
