"""Static checks of a state machine definition.

Two kinds of finding, kept apart:

- **errors**: what CreateStateMachine refuses (``InvalidDefinition``), as
  :class:`~mlops.twin.stepfunctions.asl.diagnostics.Diagnostic`; the twin refuses to load
  an assembly holding such a definition, as CloudFormation would fail the deploy;
- **unsupported**: valid in AWS, but not run by the twin (JSONata, variables, Distributed
  Map readers/writers); an execution reaching them fails with ``States.Runtime``.

The field tables follow the Amazon States Language specification and the AWS state
reference pages (JSONPath query language): every field a state type does not list is
refused with "Field '<name>' is not supported" at the state, as AWS does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mlops.twin.stepfunctions.asl import choice, diagnostics, intrinsics, paths, payload
from mlops.twin.stepfunctions.asl.diagnostics import Diagnostic, InvalidDefinition
from mlops.twin.stepfunctions.asl.errors import ALL

STATE_TYPES = ("Pass", "Task", "Choice", "Wait", "Succeed", "Fail", "Parallel", "Map")
_TRANSITIONING = frozenset({"Pass", "Task", "Wait", "Parallel", "Map"})
_MAX_INT = 99_999_999  # the documented ceiling of IntervalSeconds, MaxAttempts, TimeoutSeconds...

_COMMON = {"Type", "Comment", "QueryLanguage", "Assign"}
_IO = {"InputPath", "OutputPath"}
_FLOW = {"Next", "End"}
_RESULTS = {"Parameters", "ResultSelector", "ResultPath", "Retry", "Catch"}
FIELDS: dict[str, frozenset[str]] = {
    "Pass": frozenset(_COMMON | _IO | _FLOW | {"Parameters", "Result", "ResultPath"}),
    "Task": frozenset(
        _COMMON
        | _IO
        | _FLOW
        | _RESULTS
        | {"Resource", "TimeoutSeconds", "TimeoutSecondsPath", "HeartbeatSeconds", "HeartbeatSecondsPath"}
        | {"Credentials"}
    ),
    "Choice": frozenset(_COMMON | _IO | {"Choices", "Default"}),
    "Wait": frozenset(_COMMON | _IO | _FLOW | {"Seconds", "Timestamp", "SecondsPath", "TimestampPath"}),
    "Succeed": frozenset({"Type", "Comment", "QueryLanguage"} | _IO),
    "Fail": frozenset({"Type", "Comment", "QueryLanguage", "Error", "Cause", "ErrorPath", "CausePath"}),
    "Parallel": frozenset(_COMMON | _IO | _FLOW | _RESULTS | {"Branches"}),
    "Map": frozenset(
        _COMMON
        | _IO
        | _FLOW
        | _RESULTS
        | {"Iterator", "ItemProcessor", "ItemsPath", "ItemSelector", "ItemReader", "ItemBatcher", "ResultWriter"}
        | {"MaxConcurrency", "MaxConcurrencyPath", "Label"}
        | {"ToleratedFailurePercentage", "ToleratedFailurePercentagePath"}
        | {"ToleratedFailureCount", "ToleratedFailureCountPath"}
    ),
}
_REQUIRED = {"Task": ["Resource"], "Choice": ["Choices"], "Parallel": ["Branches"]}
# Fields of the JSONata query language: refused under JSONPath, with their own message.
_JSONATA_ONLY = frozenset({"Arguments", "Output", "Items"})
_ROOT_FIELDS = frozenset({"Comment", "StartAt", "States", "Version", "TimeoutSeconds", "QueryLanguage"})
_BRANCH_FIELDS = frozenset({"Comment", "StartAt", "States"})
_PROCESSOR_FIELDS = frozenset({"Comment", "StartAt", "States", "ProcessorConfig"})
_RETRIER_FIELDS = frozenset(
    {"ErrorEquals", "IntervalSeconds", "MaxAttempts", "BackoffRate", "MaxDelaySeconds", "JitterStrategy", "Comment"}
)
_CATCHER_FIELDS = frozenset({"ErrorEquals", "Next", "ResultPath", "Comment", "Assign"})
_TWIN_UNSUPPORTED_MAP = ("ItemReader", "ResultWriter", "ItemBatcher")


@dataclass
class Findings:
    errors: list[Diagnostic] = field(default_factory=list)  # CreateStateMachine refuses these
    unsupported: list[str] = field(default_factory=list)  # AWS runs these, the twin does not
    names: dict[str, str] = field(default_factory=dict)  # state name -> first location (unique machine-wide)


def check(definition: Any) -> Findings:
    found = Findings()
    _machine(definition, "", found, fields=_ROOT_FIELDS)
    return found


def ensure_valid(definition: Any) -> Findings:
    """The findings, or :class:`InvalidDefinition` with every error, as CreateStateMachine answers."""
    found = check(definition)
    if found.errors:
        raise InvalidDefinition(found.errors)
    return found


def validate(definition: Any) -> list[str]:
    """Every finding as text: AWS refusals first, then what the twin does not run."""
    found = check(definition)
    return [str(d) for d in found.errors] + found.unsupported


# -- machines (the root, a Parallel branch, a Map processor) --------------------------------
def _machine(machine: Any, where: str, found: Findings, *, fields: frozenset[str]) -> None:
    if not isinstance(machine, dict):
        found.errors.append(diagnostics.invalid_value(where.rsplit("/", 1)[-1] or "definition", "a JSON object", where))
        return
    _unknown(machine, fields, where, found)
    missing = [name for name in ("StartAt", "States") if name not in machine]
    if missing:
        found.errors.append(diagnostics.required(missing, where))
    if where == "":
        _root_fields(machine, found)
    states = machine.get("States")
    if not isinstance(states, dict) or not states:
        if "States" in machine:
            found.errors.append(diagnostics.invalid_value("States", "a non-empty JSON object", f"{where}/States"))
        return
    start = machine.get("StartAt")
    if "StartAt" in machine and start not in states:
        found.errors.append(
            Diagnostic(diagnostics.MISSING_TRANSITION_TARGET, f"Missing 'StartAt' target: {start}", f"{where}/StartAt")
        )
    for name, state in states.items():
        _state(name, state, states, f"{where}/States/{name}", found)
    _graph(start, states, where, found)


def _root_fields(machine: dict[str, Any], found: Findings) -> None:
    timeout = machine.get("TimeoutSeconds")
    if "TimeoutSeconds" in machine and not _int_in(timeout, 1, _MAX_INT):
        found.errors.append(diagnostics.invalid_value("TimeoutSeconds", "a positive integer", "/TimeoutSeconds"))
    if "Version" in machine and machine["Version"] != "1.0":
        found.errors.append(diagnostics.invalid_value("Version", "'1.0'", "/Version"))
    language = machine.get("QueryLanguage", "JSONPath")
    if language == "JSONata":
        found.unsupported.append("/QueryLanguage: JSONata is not run by the twin")
    elif language != "JSONPath":
        found.errors.append(diagnostics.invalid_value("QueryLanguage", "JSONPath or JSONata", "/QueryLanguage"))


def _graph(start: Any, states: dict[str, Any], where: str, found: Findings) -> None:
    """Transitions land on states of the same scope; a terminal state exists; all are reachable."""
    for name, state in states.items():
        if not isinstance(state, dict):
            continue
        for target, at in _targets(state, f"{where}/States/{name}"):
            if target not in states:
                found.errors.append(
                    Diagnostic(diagnostics.MISSING_TRANSITION_TARGET, f"Missing 'Next' target: {target}", at)
                )
    if not any(_terminal(state) for state in states.values()):
        # As AWS: no location, and it suppresses the reachability walk.
        found.errors.append(Diagnostic(diagnostics.MISSING_END_STATE, "Workflow has no terminal state"))
        return
    if start not in states:
        return
    seen, todo = {start}, [start]
    while todo:
        state = states[todo.pop()]
        for target, _ in _targets(state, "") if isinstance(state, dict) else []:
            if target in states and target not in seen:
                seen.add(target)
                todo.append(target)
    for name in states:
        if name not in seen:
            found.errors.append(
                Diagnostic(
                    diagnostics.MISSING_TRANSITION_TARGET, f'State "{name}" is not reachable.', f"{where}/States/{name}"
                )
            )


def _terminal(state: Any) -> bool:
    return isinstance(state, dict) and (state.get("End") is True or state.get("Type") in ("Succeed", "Fail"))


def _targets(state: dict[str, Any], where: str) -> list[tuple[Any, str]]:
    found = [(state["Next"], f"{where}/Next")] if "Next" in state else []
    if state.get("Type") == "Choice":
        rules = state.get("Choices") if isinstance(state.get("Choices"), list) else []
        found += [
            (r["Next"], f"{where}/Choices[{i}]/Next")
            for i, r in enumerate(rules)
            if isinstance(r, dict) and "Next" in r
        ]
        found += [(state["Default"], f"{where}/Default")] if "Default" in state else []
    catchers = state.get("Catch") if isinstance(state.get("Catch"), list) else []
    found += [
        (c["Next"], f"{where}/Catch[{i}]/Next") for i, c in enumerate(catchers) if isinstance(c, dict) and "Next" in c
    ]
    return found


# -- states ------------------------------------------------------------------------------------
def _state(name: str, state: Any, states: dict[str, Any], where: str, found: Findings) -> None:
    if name in found.names:
        found.errors.append(Diagnostic(diagnostics.DUPLICATE_STATE_NAME, f"Duplicate State name: '{name}'", where))
    found.names.setdefault(name, where)
    if len(name) > 80:
        found.errors.append(Diagnostic(diagnostics.INVALID_STATE_NAME, "State name exceeds 80 characters", where))
    if not isinstance(state, dict):
        found.errors.append(diagnostics.invalid_value(name, "a JSON object", where))
        return
    kind = state.get("Type")
    if kind is None:
        found.errors.append(diagnostics.required(["Type"], where))
        return
    if kind not in STATE_TYPES:
        found.errors.append(diagnostics.invalid_value("Type", "one of " + ", ".join(STATE_TYPES), f"{where}/Type"))
        return
    _unknown(state, FIELDS[kind], where, found)
    missing = [key for key in _REQUIRED.get(kind, []) if key not in state]
    if missing:
        found.errors.append(diagnostics.required(missing, where))
    if kind in _TRANSITIONING and ("Next" in state) == (state.get("End") is True):
        found.errors.append(diagnostics.schema("Exactly one of the fields 'Next' and 'End: true' is required", where))
    if state.get("QueryLanguage", "JSONPath") != "JSONPath":
        found.unsupported.append(f"{where}/QueryLanguage: JSONata is not run by the twin")
    if "Assign" in state:
        found.unsupported.append(f"{where}/Assign: variables are not run by the twin")
    _paths(state, where, found)
    for key in ("Parameters", "ResultSelector", "ItemSelector"):
        if key in state:
            found.errors.extend(_template(state[key], f"{where}/{key}"))
    for key in ("Retry", "Catch"):
        if key in state:
            _handlers(key, state[key], where, found)
    _BY_TYPE.get(kind, lambda s, w, f: None)(state, where, found)


def _unknown(obj: dict[str, Any], allowed: frozenset[str], where: str, found: Findings) -> None:
    for key in obj:
        if key in allowed:
            continue
        if key in _JSONATA_ONLY:
            found.errors.append(diagnostics.jsonata_only(key, where))
        else:
            found.errors.append(diagnostics.not_supported(key, where))


def _paths(state: dict[str, Any], where: str, found: Findings) -> None:
    for key in ("InputPath", "OutputPath"):
        value = state.get(key)
        if key in state and value is not None and (not isinstance(value, str) or paths.validate(value)):
            found.errors.append(diagnostics.invalid_path(key, f"{where}/{key}"))
    if "ResultPath" in state:
        found.errors.extend(_result_path(state["ResultPath"], f"{where}/ResultPath"))


def _result_path(value: Any, where: str) -> list[Diagnostic]:
    """A Reference Path that does not begin with ``$$`` (ASL spec), or null (discard the result)."""
    if value is None:
        return []
    if not isinstance(value, str) or value.startswith("$$") or paths.validate(value, reference=True):
        return [diagnostics.invalid_path("ResultPath", where)]
    return []


def _reference(state: dict[str, Any], key: str, where: str) -> list[Diagnostic]:
    """A ``*Path`` field that must name one value ($ or $$ allowed)."""
    value = state[key]
    if not isinstance(value, str) or paths.validate(value, reference=True):
        return [diagnostics.invalid_path(key, f"{where}/{key}")]
    return []


def _template(template: Any, where: str) -> list[Diagnostic]:
    """Payload template: every ``.$`` value a Path or an intrinsic function; no duplicate names."""
    found: list[Diagnostic] = []
    if isinstance(template, dict):
        stripped = [key[:-2] if key.endswith(".$") else key for key in template]
        for key in sorted({k for k in stripped if stripped.count(k) > 1}):
            found.append(diagnostics.schema(f"The field '{key}' is defined more than once", where))
        for key, value in template.items():
            if key.endswith(".$"):
                if not isinstance(value, str):
                    found.append(diagnostics.invalid_path(key, where))
                elif intrinsics.is_intrinsic(value):
                    if payload.expression_problem(value):
                        expected = "a valid JSONPath or a valid intrinsic function call"
                        found.append(diagnostics.invalid_value(key, expected, where))
                elif paths.validate(value):
                    found.append(diagnostics.invalid_path(key, where))
            else:
                found.extend(_template(value, f"{where}/{key}"))
    elif isinstance(template, list):
        for index, item in enumerate(template):
            found.extend(_template(item, f"{where}[{index}]"))
    return found


# -- Retry / Catch -----------------------------------------------------------------------------
def _handlers(key: str, entries: Any, where: str, found: Findings) -> None:
    if not isinstance(entries, list):
        found.errors.append(diagnostics.invalid_value(key, "an array", f"{where}/{key}"))
        return
    for index, entry in enumerate(entries):
        at = f"{where}/{key}[{index}]"
        if not isinstance(entry, dict):
            found.errors.append(diagnostics.invalid_value(key, "an array of JSON objects", at))
            continue
        _unknown(entry, _RETRIER_FIELDS if key == "Retry" else _CATCHER_FIELDS, at, found)
        names = entry.get("ErrorEquals")
        if names is None:
            found.errors.append(diagnostics.required(["ErrorEquals"], at))
        elif not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
            found.errors.append(diagnostics.invalid_value("ErrorEquals", "a non-empty array of strings", at))
        elif ALL in names and (len(names) > 1 or index != len(entries) - 1):
            kind = "retrier" if key == "Retry" else "catcher"
            found.errors.append(diagnostics.schema(f"States.ALL must appear alone, in the last {kind}", at))
        if key == "Catch":
            if "Next" not in entry:
                found.errors.append(diagnostics.required(["Next"], at))
            if "ResultPath" in entry:
                found.errors.extend(_result_path(entry["ResultPath"], f"{at}/ResultPath"))
            if "Assign" in entry:
                found.unsupported.append(f"{at}/Assign: variables are not run by the twin")
        else:
            found.errors.extend(_retrier(entry, at))


def _retrier(entry: dict[str, Any], where: str) -> list[Diagnostic]:
    found = []
    limits = (("IntervalSeconds", 1, _MAX_INT), ("MaxAttempts", 0, _MAX_INT), ("MaxDelaySeconds", 1, 31_622_400))
    for key, low, high in limits:
        if key in entry and not _int_in(entry[key], low, high):
            found.append(diagnostics.invalid_value(key, f"an integer from {low} to {high}", f"{where}/{key}"))
    rate = entry.get("BackoffRate")
    if "BackoffRate" in entry and (not _number(rate) or rate < 1.0):
        found.append(diagnostics.invalid_value("BackoffRate", "a number >= 1.0", f"{where}/BackoffRate"))
    if entry.get("JitterStrategy", "NONE") not in ("FULL", "NONE"):
        found.append(diagnostics.invalid_value("JitterStrategy", "FULL or NONE", f"{where}/JitterStrategy"))
    return found


# -- per state type ----------------------------------------------------------------------------
def _task(state: dict[str, Any], where: str, found: Findings) -> None:
    resource = state.get("Resource")
    if "Resource" in state and (not isinstance(resource, str) or not resource.startswith("arn:")):
        found.errors.append(
            Diagnostic(diagnostics.INVALID_RESOURCE, f"Invalid resource: {resource}", f"{where}/Resource")
        )
    for key in ("TimeoutSeconds", "HeartbeatSeconds"):
        if key in state and f"{key}Path" in state:
            found.errors.append(diagnostics.schema(f"The fields '{key}' and '{key}Path' are mutually exclusive", where))
        if key in state and not _int_in(state[key], 1, _MAX_INT):
            found.errors.append(diagnostics.invalid_value(key, "a positive integer", f"{where}/{key}"))
        if f"{key}Path" in state:
            found.errors.extend(_reference(state, f"{key}Path", where))
    timeout, heartbeat = state.get("TimeoutSeconds"), state.get("HeartbeatSeconds")
    if _int_in(timeout, 1, _MAX_INT) and _int_in(heartbeat, 1, _MAX_INT) and heartbeat >= timeout:
        found.errors.append(
            diagnostics.schema("HeartbeatSeconds must be smaller than TimeoutSeconds", f"{where}/HeartbeatSeconds")
        )
    if "Credentials" in state:
        found.unsupported.append(f"{where}/Credentials: cross-account task credentials are not run by the twin")


def _choice(state: dict[str, Any], where: str, found: Findings) -> None:
    rules = state.get("Choices")
    if "Choices" in state and (not isinstance(rules, list) or not rules):
        found.errors.append(diagnostics.invalid_value("Choices", "a non-empty array", f"{where}/Choices"))
        return
    for index, rule in enumerate(rules or []):
        found.errors.extend(choice.problems(rule, f"{where}/Choices[{index}]", top=True))


def _wait(state: dict[str, Any], where: str, found: Findings) -> None:
    given = [k for k in ("Seconds", "Timestamp", "SecondsPath", "TimestampPath") if k in state]
    if len(given) != 1:
        message = "Exactly one of the fields 'Seconds', 'Timestamp', 'SecondsPath' and 'TimestampPath' is required"
        found.errors.append(diagnostics.schema(message, where))
        return
    key, value = given[0], state[given[0]]
    if key.endswith("Path"):
        found.errors.extend(_reference(state, key, where))
    elif key == "Seconds" and not _int_in(value, 0, _MAX_INT):
        found.errors.append(diagnostics.invalid_value(key, "a non-negative integer", f"{where}/{key}"))
    elif key == "Timestamp" and choice.parse_timestamp(value) is None:
        found.errors.append(diagnostics.invalid_value(key, "an RFC 3339 timestamp", f"{where}/{key}"))


def _fail(state: dict[str, Any], where: str, found: Findings) -> None:
    for key in ("Error", "Cause"):
        if key in state and f"{key}Path" in state:
            found.errors.append(diagnostics.schema(f"The fields '{key}' and '{key}Path' are mutually exclusive", where))
        if key in state and not isinstance(state[key], str):
            found.errors.append(diagnostics.invalid_value(key, "a string", f"{where}/{key}"))
        value = state.get(f"{key}Path")
        if f"{key}Path" in state:
            bad = not isinstance(value, str) or (
                payload.expression_problem(value)
                if intrinsics.is_intrinsic(value)
                else paths.validate(value, reference=True)
            )
            if bad:
                found.errors.append(diagnostics.invalid_path(f"{key}Path", f"{where}/{key}Path"))


def _parallel(state: dict[str, Any], where: str, found: Findings) -> None:
    branches = state.get("Branches")
    if "Branches" in state and (not isinstance(branches, list) or not branches):
        found.errors.append(diagnostics.invalid_value("Branches", "a non-empty array", f"{where}/Branches"))
        return
    for index, branch in enumerate(branches or []):
        _machine(branch, f"{where}/Branches[{index}]", found, fields=_BRANCH_FIELDS)


def _map(state: dict[str, Any], where: str, found: Findings) -> None:
    found.unsupported += [f"{where}/{key}: not run by the twin" for key in _TWIN_UNSUPPORTED_MAP if key in state]
    given = [key for key in ("ItemProcessor", "Iterator") if key in state]
    if not given:
        found.errors.append(diagnostics.required(["ItemProcessor"], where))
    elif len(given) > 1:
        found.errors.append(
            diagnostics.schema("The fields 'ItemProcessor' and 'Iterator' are mutually exclusive", where)
        )
    for key in given:
        processor = state[key]
        _machine(processor, f"{where}/{key}", found, fields=_PROCESSOR_FIELDS)
        config = processor.get("ProcessorConfig", {}) if isinstance(processor, dict) else {}
        if not isinstance(config, dict) or config.get("Mode", "INLINE") not in ("INLINE", "DISTRIBUTED"):
            found.errors.append(
                diagnostics.invalid_value("Mode", "INLINE or DISTRIBUTED", f"{where}/{key}/ProcessorConfig/Mode")
            )
    if "ItemsPath" in state:
        found.errors.extend(_reference(state, "ItemsPath", where))
    if "ItemSelector" in state and "Parameters" in state:
        found.errors.append(
            diagnostics.schema("The fields 'ItemSelector' and 'Parameters' are mutually exclusive", where)
        )
    for key, low, high in (("MaxConcurrency", 0, _MAX_INT), ("ToleratedFailureCount", 0, _MAX_INT)):
        if key in state and not _int_in(state[key], low, high):
            found.errors.append(diagnostics.invalid_value(key, "a non-negative integer", f"{where}/{key}"))
    percentage = state.get("ToleratedFailurePercentage")
    if "ToleratedFailurePercentage" in state and (not _number(percentage) or not 0 <= percentage <= 100):
        found.errors.append(
            diagnostics.invalid_value(
                "ToleratedFailurePercentage", "a number from 0 to 100", f"{where}/ToleratedFailurePercentage"
            )
        )
    for key in ("MaxConcurrencyPath", "ToleratedFailureCountPath", "ToleratedFailurePercentagePath"):
        if key in state:
            found.errors.extend(_reference(state, key, where))


_BY_TYPE = {"Task": _task, "Choice": _choice, "Wait": _wait, "Fail": _fail, "Parallel": _parallel, "Map": _map}


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _int_in(value: Any, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high
