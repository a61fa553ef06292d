"""Static checks of a state machine definition (what CreateStateMachine would reject, plus
features the twin does not run)."""

from __future__ import annotations

from typing import Any

from mlops.twin.stepfunctions.asl import choice, intrinsics, paths, payload
from mlops.twin.stepfunctions.asl.errors import ALL

STATE_TYPES = frozenset({"Pass", "Task", "Choice", "Wait", "Succeed", "Fail", "Parallel", "Map"})
_TRANSITIONING = frozenset({"Pass", "Task", "Wait", "Parallel", "Map"})
_UNSUPPORTED_MAP_FIELDS = ("ItemReader", "ResultWriter", "ItemBatcher")


def validate(definition: Any, where: str = "") -> list[str]:
    if not isinstance(definition, dict):
        return [f"{where or '/'}: the definition must be an object"]
    states = definition.get("States")
    if not isinstance(states, dict) or not states:
        return [f"{where}/States: must be a non-empty object"]
    found: list[str] = []
    start = definition.get("StartAt")
    if start not in states:
        found.append(f"{where}/StartAt: {start!r} is not a state")
    timeout = definition.get("TimeoutSeconds")
    if timeout is not None and (not isinstance(timeout, int) or isinstance(timeout, bool) or timeout <= 0):
        found.append(f"{where}/TimeoutSeconds: must be a positive integer")
    for name, state in states.items():
        found.extend(_state(name, state, states, f"{where}/States/{name}"))
    found.extend(_unreachable(start, states, where))
    return found


def _targets(state: dict[str, Any]) -> list[str]:
    targets = [state["Next"]] if "Next" in state else []
    targets += [rule["Next"] for rule in state.get("Choices", []) if isinstance(rule, dict) and "Next" in rule]
    targets += [state["Default"]] if "Default" in state else []
    targets += [c["Next"] for c in state.get("Catch", []) if isinstance(c, dict) and "Next" in c]
    return targets


def _unreachable(start: Any, states: dict[str, Any], where: str) -> list[str]:
    if start not in states:
        return []
    seen, todo = {start}, [start]
    while todo:
        state = states[todo.pop()]
        for target in _targets(state) if isinstance(state, dict) else []:
            if target in states and target not in seen:
                seen.add(target)
                todo.append(target)
    return [f"{where}/States/{name}: state is unreachable" for name in states if name not in seen]


def _state(name: str, state: Any, states: dict[str, Any], where: str) -> list[str]:
    if not isinstance(state, dict):
        return [f"{where}: a state must be an object"]
    kind = state.get("Type")
    if kind not in STATE_TYPES:
        return [f"{where}/Type: unknown state type {kind!r}"]
    found: list[str] = []
    if len(name) > 80:
        found.append(f"{where}: state names are limited to 80 characters")
    for target in _targets(state):
        if target not in states:
            found.append(f"{where}: transition to unknown state {target!r}")
    if kind in _TRANSITIONING:
        if ("Next" in state) == (state.get("End") is True):
            found.append(f"{where}: needs exactly one of Next or End: true")
    elif "Next" in state or "End" in state:
        found.append(f"{where}: a {kind} state cannot have Next or End")
    for key in ("InputPath", "OutputPath"):
        if state.get(key) is not None:
            problem = paths.validate(state[key]) if isinstance(state[key], str) else "must be a path or null"
            if problem:
                found.append(f"{where}/{key}: {problem}")
    if state.get("ResultPath") is not None:
        found.extend(_reference(state["ResultPath"], f"{where}/ResultPath"))
    for key in ("Parameters", "ResultSelector", "ItemSelector"):
        if key in state:
            found.extend(payload.problems(state[key], f"{where}/{key}"))
    found.extend(_error_handling(state, where))
    found.extend(_BY_TYPE.get(kind, lambda s, w: [])(state, where))
    return found


def _reference(path: Any, where: str) -> list[str]:
    problem = paths.validate(path, reference=True) if isinstance(path, str) else "must be a path string"
    return [f"{where}: {problem}"] if problem else []


def _error_handling(state: dict[str, Any], where: str) -> list[str]:
    found: list[str] = []
    for field in ("Retry", "Catch"):
        entries = state.get(field)
        if entries is None:
            continue
        if state["Type"] not in ("Task", "Parallel", "Map"):
            found.append(f"{where}/{field}: only Task, Parallel and Map states can have {field}")
        if not isinstance(entries, list):
            found.append(f"{where}/{field}: must be an array")
            continue
        for index, entry in enumerate(entries):
            at = f"{where}/{field}[{index}]"
            names = entry.get("ErrorEquals") if isinstance(entry, dict) else None
            if not isinstance(names, list) or not names:
                found.append(f"{at}/ErrorEquals: must be a non-empty array")
                continue
            if ALL in names and (len(names) > 1 or index != len(entries) - 1):
                found.append(f"{at}: States.ALL must appear alone and in the last {field[:-1].lower()}er")
            if field == "Catch":
                if "Next" not in entry:
                    found.append(f"{at}: a catcher needs Next")
                if entry.get("ResultPath") is not None:
                    found.extend(_reference(entry["ResultPath"], f"{at}/ResultPath"))
            else:
                found.extend(_retrier(entry, at))
    return found


def _retrier(entry: dict[str, Any], where: str) -> list[str]:
    found = []
    for key, low in (("IntervalSeconds", 1), ("MaxAttempts", 0), ("MaxDelaySeconds", 1)):
        value = entry.get(key)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < low):
            found.append(f"{where}/{key}: must be an integer >= {low}")
    rate = entry.get("BackoffRate")
    if rate is not None and (not isinstance(rate, int | float) or rate < 1.0):
        found.append(f"{where}/BackoffRate: must be a number >= 1.0")
    if entry.get("JitterStrategy", "NONE") not in ("FULL", "NONE"):
        found.append(f"{where}/JitterStrategy: must be FULL or NONE")
    return found


def _task(state: dict[str, Any], where: str) -> list[str]:
    found = [] if isinstance(state.get("Resource"), str) else [f"{where}/Resource: required string"]
    for key in ("TimeoutSeconds", "HeartbeatSeconds"):
        if key in state and f"{key}Path" in state:
            found.append(f"{where}: {key} and {key}Path are mutually exclusive")
        value = state.get(key)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value <= 0):
            found.append(f"{where}/{key}: must be a positive integer")
        if f"{key}Path" in state:
            found.extend(_reference(state[f"{key}Path"], f"{where}/{key}Path"))
    return found


def _choice(state: dict[str, Any], where: str) -> list[str]:
    rules = state.get("Choices")
    if not isinstance(rules, list) or not rules:
        return [f"{where}/Choices: must be a non-empty array"]
    found: list[str] = []
    for index, rule in enumerate(rules):
        found.extend(choice.problems(rule, f"{where}/Choices[{index}]", top=True))
    return found


def _wait(state: dict[str, Any], where: str) -> list[str]:
    given = [k for k in ("Seconds", "Timestamp", "SecondsPath", "TimestampPath") if k in state]
    if len(given) != 1:
        return [f"{where}: needs exactly one of Seconds, Timestamp, SecondsPath, TimestampPath"]
    key, value = given[0], state[given[0]]
    if key.endswith("Path"):
        return _reference(value, f"{where}/{key}")
    if key == "Seconds" and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
        return [f"{where}/Seconds: must be a non-negative integer"]
    if key == "Timestamp" and choice.parse_timestamp(value) is None:
        return [f"{where}/Timestamp: must be an RFC 3339 timestamp"]
    return []


def _fail(state: dict[str, Any], where: str) -> list[str]:
    found: list[str] = []
    for key in ("Error", "Cause"):
        if key in state and f"{key}Path" in state:
            found.append(f"{where}: {key} and {key}Path are mutually exclusive")
        if f"{key}Path" in state:
            value = state[f"{key}Path"]
            problem = payload.expression_problem(value)
            if problem is None and not intrinsics.is_intrinsic(value):
                problem = paths.validate(value, reference=True)
            if problem:
                found.append(f"{where}/{key}Path: {problem}")
    return found


def _parallel(state: dict[str, Any], where: str) -> list[str]:
    branches = state.get("Branches")
    if not isinstance(branches, list) or not branches:
        return [f"{where}/Branches: must be a non-empty array"]
    found: list[str] = []
    for index, branch in enumerate(branches):
        found.extend(validate(branch, f"{where}/Branches[{index}]"))
    return found


def _map(state: dict[str, Any], where: str) -> list[str]:
    found = [f"{where}/{key}: not supported by the twin" for key in _UNSUPPORTED_MAP_FIELDS if key in state]
    processor = state.get("ItemProcessor", state.get("Iterator"))
    if processor is None:
        return [*found, f"{where}: needs ItemProcessor (or Iterator)"]
    found.extend(validate(processor, f"{where}/ItemProcessor"))
    mode = (processor.get("ProcessorConfig") or {}).get("Mode", "INLINE") if isinstance(processor, dict) else None
    if mode not in ("INLINE", "DISTRIBUTED"):
        found.append(f"{where}/ItemProcessor/ProcessorConfig/Mode: must be INLINE or DISTRIBUTED")
    if "ItemsPath" in state:
        found.extend(_reference(state["ItemsPath"], f"{where}/ItemsPath"))
    if "ItemSelector" in state and "Parameters" in state:
        found.append(f"{where}: ItemSelector and Parameters are mutually exclusive")
    concurrency = state.get("MaxConcurrency")
    if concurrency is not None and (type(concurrency) is not int or concurrency < 0):
        found.append(f"{where}/MaxConcurrency: must be a non-negative integer")
    percentage = state.get("ToleratedFailurePercentage")
    if percentage is not None and (not isinstance(percentage, int | float) or not 0 <= percentage <= 100):
        found.append(f"{where}/ToleratedFailurePercentage: must be between 0 and 100")
    return found


_BY_TYPE = {"Task": _task, "Choice": _choice, "Wait": _wait, "Fail": _fail, "Parallel": _parallel, "Map": _map}
