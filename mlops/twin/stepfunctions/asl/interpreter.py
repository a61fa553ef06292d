"""Runs one execution: the state loop, per-state data flow, Retry/Catch, Parallel and Map."""

from __future__ import annotations

import contextlib
import json
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from mlops.twin.stepfunctions.asl import choice, paths, payload, retry
from mlops.twin.stepfunctions.asl.errors import (
    DATA_LIMIT_EXCEEDED,
    EXCEED_TOLERATED_FAILURE_THRESHOLD,
    NO_CHOICE_MATCHED,
    RUNTIME,
    TIMEOUT,
    StatesError,
)
from mlops.twin.stepfunctions.asl.history import History, now_iso, split_resource, to_json
from mlops.twin.stepfunctions.asl.timing import ExecutionClock, scaled

PAYLOAD_LIMIT = 256 * 1024  # bytes of UTF-8 JSON, the Step Functions quota
_POLL = 0.05  # real seconds between cancellation checks while waiting


@dataclass(frozen=True)
class TaskContext:
    execution_arn: str
    state_name: str
    timeout_s: float | None
    heartbeat_s: float | None
    task_token: str | None


Dispatcher = Callable[[str, Any, TaskContext], Any]


class Cancelled(Exception):
    """The execution was stopped/timed out, or a sibling branch/iteration failed."""


class Scope:
    """Cancellation for the execution (root) and for each Parallel/Map fan-out."""

    def __init__(self, parent: Scope | None = None) -> None:
        self.parent = parent
        self.event = threading.Event()

    def cancel(self) -> None:
        self.event.set()

    def cancelled(self) -> bool:
        scope: Scope | None = self
        while scope is not None:
            if scope.event.is_set():
                return True
            scope = scope.parent
        return False

    def check(self) -> None:
        if self.cancelled():
            raise Cancelled()


class Cursor:
    """The previousEventId chain of one thread of control (execution, branch, iteration)."""

    def __init__(self, last: int) -> None:
        self.last = last


def _check_size(value: Any, what: str) -> None:
    size = len(json.dumps(value, default=str).encode())
    if size > PAYLOAD_LIMIT:
        raise StatesError(DATA_LIMIT_EXCEEDED, f"The {what} has a size of {size} bytes, over the {PAYLOAD_LIMIT} limit")


def _runtime_path(data: Any, path: str, field: str) -> Any:
    try:
        return paths.get(data, path)
    except (paths.PathNotFound, paths.PathSyntaxError) as exc:
        raise StatesError(RUNTIME, f"Invalid path {path!r} for {field}: no results in {to_json(data)[:200]}") from exc


def _select(data: Any, state: dict[str, Any], key: str) -> Any:
    """InputPath / OutputPath: absent = $, null = {}."""
    if key not in state:
        return data
    if state[key] is None:
        return {}
    return _runtime_path(data, state[key], key)


def _place(raw: Any, result: Any, result_path: Any, has_key: bool) -> Any:
    """ResultPath: absent = $ (result replaces input), null = input unchanged."""
    if not has_key:
        return result
    if result_path is None:
        return raw
    return paths.assign(raw, result_path, result)


class Interpreter:
    def __init__(
        self,
        dispatcher: Dispatcher,
        time_scale: float,
        history: History,
        context: dict[str, Any],
        root: Scope,
        clock: ExecutionClock | None = None,
    ) -> None:
        self.dispatcher = dispatcher
        self.time_scale = time_scale
        self.history = history
        self.base_context = context  # Execution and StateMachine parts of $$
        self.root = root
        self.clock = clock or ExecutionClock(time_scale)
        parts = context["Execution"]["Id"].split(":")
        self.region = parts[3] if len(parts) > 3 else ""

    # -- plumbing ----------------------------------------------------------------------
    def event(self, cursor: Cursor, kind: str, details: dict[str, Any] | None = None) -> int:
        cursor.last = self.history.add(kind, cursor.last, details)
        return cursor.last

    def sleep(self, twin_seconds: float, scope: Scope) -> None:
        """Waits ``twin_seconds`` scaled by time_scale (a Wait state, a retry interval), waking
        early on cancellation; on the main path the wait counts unscaled (see ``timing``)."""
        deadline = time.monotonic() + scaled(twin_seconds, self.time_scale)
        with self.clock.waiting(twin_seconds) if scope is self.root else contextlib.nullcontext():
            while True:
                scope.check()
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return
                scope.event.wait(min(remaining, _POLL))

    def context(self, name: str, entered: str, retry_count: int = 0, **extra: Any) -> dict[str, Any]:
        return {
            **self.base_context,
            "State": {"Name": name, "EnteredTime": entered, "RetryCount": retry_count},
            **extra,
        }

    # -- state loop --------------------------------------------------------------------
    def run_machine(self, machine: dict[str, Any], data: Any, scope: Scope, cursor: Cursor) -> Any:
        states = machine["States"]
        name: str | None = machine["StartAt"]
        while name is not None:
            scope.check()
            data, name = self.run_state(name, states[name], data, scope, cursor)
        return data

    def run_state(
        self, name: str, state: dict[str, Any], raw: Any, scope: Scope, cursor: Cursor
    ) -> tuple[Any, str | None]:
        kind = state["Type"]
        entered = now_iso()
        self.event(cursor, f"{kind}StateEntered", {"name": name, "input": to_json(raw)})
        if kind in ("Task", "Parallel", "Map"):
            output, next_name = self._with_handlers(name, state, raw, scope, cursor, entered)
        else:
            handler = getattr(self, f"_{kind.lower()}")
            output, next_name = handler(name, state, raw, scope, cursor, entered)
        _check_size(output, f"output of state {name!r}")
        self.event(cursor, f"{kind}StateExited", {"name": name, "output": to_json(output)})
        return output, next_name

    @staticmethod
    def _next(state: dict[str, Any]) -> str | None:
        return None if state.get("End") else state.get("Next")

    # -- Retry / Catch -----------------------------------------------------------------
    def _with_handlers(
        self, name: str, state: dict[str, Any], raw: Any, scope: Scope, cursor: Cursor, entered: str
    ) -> tuple[Any, str | None]:
        body = getattr(self, f"_{state['Type'].lower()}")
        retriers: list[dict[str, Any]] = state.get("Retry", [])
        attempts = [0] * len(retriers)
        retry_count = 0
        while True:
            try:
                return body(name, state, raw, scope, cursor, entered, retry_count)
            except StatesError as err:
                index = retry.find(retriers, err.error)
                if index is not None and attempts[index] < retry.max_attempts(retriers[index]):
                    self.sleep(retry.delay(retriers[index], attempts[index]), scope)
                    attempts[index] += 1
                    retry_count += 1
                    continue
                catchers: list[dict[str, Any]] = state.get("Catch", [])
                caught = retry.find(catchers, err.error)
                if caught is None:
                    raise
                catcher = catchers[caught]
                error_output = {"Error": err.error, "Cause": err.cause}
                output = _place(raw, error_output, catcher.get("ResultPath"), "ResultPath" in catcher)
                return output, catcher["Next"]

    def _finish(self, state: dict[str, Any], raw: Any, result: Any, context: dict[str, Any]) -> Any:
        """ResultSelector -> ResultPath -> OutputPath."""
        if "ResultSelector" in state:
            result = payload.render(state["ResultSelector"], result, context)
        output = _place(raw, result, state.get("ResultPath"), "ResultPath" in state)
        return _select(output, state, "OutputPath")

    def _effective_input(self, state: dict[str, Any], raw: Any, context: dict[str, Any]) -> Any:
        """InputPath -> Parameters."""
        data = _select(raw, state, "InputPath")
        if "Parameters" in state:
            data = payload.render(state["Parameters"], data, context)
            _check_size(data, "input after Parameters")
        return data

    # -- simple states -----------------------------------------------------------------
    def _pass(self, name: str, state: dict[str, Any], raw: Any, scope: Scope, cursor: Cursor, entered: str):
        context = self.context(name, entered)
        result = state["Result"] if "Result" in state else self._effective_input(state, raw, context)
        if "Result" in state:
            _select(raw, state, "InputPath")  # still validated, as in AWS
        output = _place(raw, result, state.get("ResultPath"), "ResultPath" in state)
        return _select(output, state, "OutputPath"), self._next(state)

    def _succeed(self, name: str, state: dict[str, Any], raw: Any, scope: Scope, cursor: Cursor, entered: str):
        return _select(_select(raw, state, "InputPath"), state, "OutputPath"), None

    def _fail(self, name: str, state: dict[str, Any], raw: Any, scope: Scope, cursor: Cursor, entered: str):
        context = self.context(name, entered)
        values = {}
        for key in ("Error", "Cause"):
            if f"{key}Path" in state:
                value = payload.expression(state[f"{key}Path"], raw, context, field=f"{key}Path", error=RUNTIME)
                if not isinstance(value, str):
                    raise StatesError(RUNTIME, f"{key}Path of state {name!r} must resolve to a string")
                values[key] = value
            else:
                values[key] = state.get(key, "")
        raise StatesError(values["Error"], values["Cause"])

    def _choice(self, name: str, state: dict[str, Any], raw: Any, scope: Scope, cursor: Cursor, entered: str):
        data = _select(raw, state, "InputPath")
        context = self.context(name, entered)
        target = next((rule["Next"] for rule in state["Choices"] if choice.evaluate(rule, data, context)), None)
        target = target or state.get("Default")
        if target is None:
            raise StatesError(NO_CHOICE_MATCHED, f"No Matches! in Choice state {name!r}")
        return _select(data, state, "OutputPath"), target

    def _wait(self, name: str, state: dict[str, Any], raw: Any, scope: Scope, cursor: Cursor, entered: str):
        data = _select(raw, state, "InputPath")
        if "Seconds" in state or "SecondsPath" in state:
            seconds = state.get("Seconds")
            if seconds is None:
                seconds = _runtime_path(data, state["SecondsPath"], "SecondsPath")
            if not isinstance(seconds, int | float) or isinstance(seconds, bool) or seconds < 0:
                raise StatesError(RUNTIME, f"Wait state {name!r}: seconds must be a non-negative number")
        else:
            stamp = state.get("Timestamp")
            if stamp is None:
                stamp = _runtime_path(data, state["TimestampPath"], "TimestampPath")
            when = choice.parse_timestamp(stamp)
            if when is None:
                raise StatesError(RUNTIME, f"Wait state {name!r}: {stamp!r} is not an RFC 3339 timestamp")
            seconds = (when - datetime.now(UTC)).total_seconds()
        self.sleep(seconds, scope)
        return _select(data, state, "OutputPath"), self._next(state)

    # -- Task --------------------------------------------------------------------------
    def _seconds(self, state: dict[str, Any], raw: Any, key: str) -> float | None:
        if key in state:
            return float(state[key])
        if f"{key}Path" in state:
            value = _runtime_path(raw, state[f"{key}Path"], f"{key}Path")
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise StatesError(RUNTIME, f"{key}Path must resolve to a positive integer")
            return float(value)
        return None

    def _task(
        self, name: str, state: dict[str, Any], raw: Any, scope: Scope, cursor: Cursor, entered: str, retries: int
    ):
        resource: str = state["Resource"]
        token = str(uuid.uuid4()) if resource.endswith(".waitForTaskToken") else None
        extra = {"Task": {"Token": token}} if token else {}
        context = self.context(name, entered, retries, **extra)
        params = self._effective_input(state, raw, context)
        timeout = self._seconds(state, raw, "TimeoutSeconds")
        heartbeat = self._seconds(state, raw, "HeartbeatSeconds")
        kind, short = split_resource(resource)
        ids = {"resourceType": kind, "resource": short}
        scheduled = {**ids, "region": self.region, "parameters": to_json(params)}
        if timeout is not None:
            scheduled["timeoutInSeconds"] = int(timeout)
        if heartbeat is not None:
            scheduled["heartbeatInSeconds"] = int(heartbeat)
        self.event(cursor, "TaskScheduled", scheduled)
        self.event(cursor, "TaskStarted", ids)
        task_context = TaskContext(context["Execution"]["Id"], name, timeout, heartbeat, token)
        try:
            result = self._dispatch(resource, params, task_context, timeout, scope)
            _check_size(result, f"result of task {name!r}")
        except StatesError as err:
            kind_event = "TaskTimedOut" if err.error == TIMEOUT else "TaskFailed"
            self.event(cursor, kind_event, {"error": err.error, "cause": err.cause, **ids})
            raise
        self.event(cursor, "TaskSucceeded", {**ids, "output": to_json(result)})
        return self._finish(state, raw, result, context), self._next(state)

    def _dispatch(self, resource: str, params: Any, ctx: TaskContext, timeout: float | None, scope: Scope) -> Any:
        # The dispatcher runs in its own daemon thread so a Task timeout, StopExecution or a
        # failing sibling branch can stop *waiting* for it. Python cannot kill the thread: an
        # abandoned call keeps running in the background and its result is discarded.
        # The timeout bounds real work, so it is real seconds whatever the time scale (timing).
        box: dict[str, Any] = {}
        done = threading.Event()

        def call() -> None:
            try:
                box["result"] = self.dispatcher(resource, params, ctx)
            except BaseException as exc:
                box["error"] = exc
            finally:
                done.set()

        threading.Thread(target=call, name=f"asl-task-{ctx.state_name}", daemon=True).start()
        deadline = None if timeout is None else time.monotonic() + timeout
        while not done.is_set():
            scope.check()
            wait = _POLL if deadline is None else min(_POLL, deadline - time.monotonic())
            if wait <= 0:
                raise StatesError(TIMEOUT, f"Task {ctx.state_name!r} timed out after {timeout:g} seconds")
            done.wait(wait)
        error = box.get("error")
        if error is None:
            return box.get("result")
        if isinstance(error, StatesError):
            raise StatesError(error.error, error.cause)
        if not isinstance(error, Exception):
            raise error
        # Like an unhandled exception in a Lambda function: the class name is the error.
        raise StatesError(type(error).__name__, str(error))

    # -- Parallel ----------------------------------------------------------------------
    def _parallel(
        self, name: str, state: dict[str, Any], raw: Any, scope: Scope, cursor: Cursor, entered: str, retries: int
    ):
        context = self.context(name, entered, retries)
        data = self._effective_input(state, raw, context)
        branches = state["Branches"]
        started = self.event(cursor, "ParallelStateStarted")
        results: list[Any] = [None] * len(branches)
        failures: list[StatesError] = []
        lock = threading.Lock()
        fan_out = Scope(scope)

        def run_branch(index: int) -> None:
            try:
                results[index] = self.run_machine(branches[index], data, fan_out, Cursor(started))
            except StatesError as err:
                with lock:
                    failures.append(err)
                fan_out.cancel()
            except Cancelled:
                pass

        threads = [threading.Thread(target=run_branch, args=(i,), daemon=True) for i in range(len(branches))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        scope.check()
        if failures:
            first = failures[0]
            self.event(cursor, "ParallelStateFailed", {"error": first.error, "cause": first.cause})
            raise StatesError(first.error, first.cause)
        self.event(cursor, "ParallelStateSucceeded")
        return self._finish(state, raw, results, context), self._next(state)

    # -- Map ---------------------------------------------------------------------------
    def _number(self, state: dict[str, Any], data: Any, key: str, default: float) -> float:
        if key in state:
            return state[key]
        if f"{key}Path" in state:
            value = _runtime_path(data, state[f"{key}Path"], f"{key}Path")
            if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
                raise StatesError(RUNTIME, f"{key}Path must resolve to a non-negative number")
            return value
        return default

    def _map(
        self, name: str, state: dict[str, Any], raw: Any, scope: Scope, cursor: Cursor, entered: str, retries: int
    ):
        context = self.context(name, entered, retries)
        data = _select(raw, state, "InputPath")
        items = _runtime_path(data, state.get("ItemsPath", "$"), "ItemsPath")
        if not isinstance(items, list):
            raise StatesError(RUNTIME, f"Map state {name!r}: ItemsPath must select an array")
        processor = state.get("ItemProcessor", state.get("Iterator"))
        selector = state.get("ItemSelector", state.get("Parameters"))
        concurrency = int(self._number(state, data, "MaxConcurrency", 0)) or len(items) or 1
        has_count = "ToleratedFailureCount" in state or "ToleratedFailureCountPath" in state
        has_percent = "ToleratedFailurePercentage" in state or "ToleratedFailurePercentagePath" in state
        tolerance = has_count or has_percent  # without either, the first failed iteration fails the Map
        max_count = self._number(state, data, "ToleratedFailureCount", 0) if has_count else float("inf")
        max_percent = self._number(state, data, "ToleratedFailurePercentage", 0) if has_percent else 100.0
        started = self.event(cursor, "MapStateStarted", {"length": len(items)})
        results: list[Any] = [None] * len(items)
        failures: list[StatesError] = []
        lock = threading.Lock()
        fan_out = Scope(scope)

        def exceeded() -> bool:
            count = len(failures)
            if not tolerance:
                return count > 0
            return count > max_count or (bool(items) and count * 100.0 / len(items) > max_percent)

        def iterate(index: int, item: Any) -> None:
            if fan_out.cancelled():
                return
            iteration_cursor = Cursor(started)
            try:
                item_input = item
                if selector is not None:
                    item_context = {**context, "Map": {"Item": {"Index": index, "Value": item}}}
                    item_input = payload.render(selector, data, item_context)
                self.event(iteration_cursor, "MapIterationStarted", {"name": name, "index": index})
                results[index] = self.run_machine(processor, item_input, fan_out, iteration_cursor)
                self.event(iteration_cursor, "MapIterationSucceeded", {"name": name, "index": index})
            except StatesError as err:
                self.event(iteration_cursor, "MapIterationFailed", {"name": name, "index": index})
                with lock:
                    failures.append(err)
                    results[index] = {"Error": err.error, "Cause": err.cause}
                    if exceeded():
                        fan_out.cancel()
            except Cancelled:
                pass

        with ThreadPoolExecutor(max_workers=min(concurrency, max(len(items), 1)), thread_name_prefix="asl-map") as pool:
            for index, item in enumerate(items):
                pool.submit(iterate, index, item)
        scope.check()
        if exceeded():
            if tolerance:
                error = StatesError(
                    EXCEED_TOLERATED_FAILURE_THRESHOLD,
                    f"Map state {name!r}: {len(failures)} of {len(items)} iterations failed, "
                    "over the tolerated failure threshold",
                )
            else:
                error = StatesError(failures[0].error, failures[0].cause)
            self.event(cursor, "MapStateFailed", {"error": error.error, "cause": error.cause})
            raise error
        self.event(cursor, "MapStateSucceeded")
        return self._finish(state, raw, results, context), self._next(state)
