"""The Step Functions API the twin serves (``stepfunctions``, protocol ``json``).

Results are shaped as botocore's output shapes (``datetime`` timestamps, ``*EventDetails``
members of HistoryEvent); errors carry the codes of the service model. Served: the
operations in :data:`OPERATIONS`; every other one answers ``not_implemented``.

Pagination tokens are opaque to clients and tied to the query they came from: executions
page by their (start date, ARN) position, so executions started between two pages do not
shift the next one; history pages by event id, as events are append-only.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from mlops.twin.api import ApiError, Call, not_implemented
from mlops.twin.stepfunctions.asl import Execution, ExecutionAlreadyExists, ExecutionDoesNotExist
from mlops.twin.stepfunctions.service import StateMachine, StateMachineDoesNotExist, StepFunctions

OPERATIONS = frozenset(
    {
        "ListStateMachines",
        "DescribeStateMachine",
        "StartExecution",
        "StopExecution",
        "ListExecutions",
        "DescribeExecution",
        "GetExecutionHistory",
    }
)
STATUSES = ("RUNNING", "SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED", "PENDING_REDRIVE")
DEFAULT_PAGE = 100  # maxResults 0 or absent
MAX_PAGE = 1000
MAX_INPUT_BYTES = 256 * 1024
_ARN = re.compile(r"^arn:aws[a-z-]*:states:[a-z0-9-]+:\d{12}:(?P<kind>[a-zA-Z]+):(?P<rest>.+)$")
# AWS: 1-80 characters, none of: whitespace, < > { } [ ], ? *, " # % \ ^ | ~ ` $ & , ; : /, control characters.
_BAD_NAME = re.compile(r"[\s<>{}\[\]?*\"#%\\^|~`$&,;:/\x00-\x1f\x7f-\x9f]")
_DATA_KEYS = ("input", "output")  # dropped when includeExecutionData is false (parameters is required)


class StepFunctionsApi:
    """``ServiceApi`` for Step Functions: ``StepFunctionsApi(twin.stepfunctions)``."""

    service = "stepfunctions"

    def __init__(self, sfn: StepFunctions) -> None:
        self.sfn = sfn
        self._handlers: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
            name: getattr(self, "_" + re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()) for name in OPERATIONS
        }

    def operations(self) -> set[str]:
        return set(OPERATIONS)

    def handle(self, call: Call) -> dict[str, Any]:
        handler = self._handlers.get(call.operation)
        if handler is None:
            raise not_implemented(self.service, call.operation)
        return handler(call.params)

    # -- state machines ---------------------------------------------------------------------
    def _list_state_machines(self, params: dict[str, Any]) -> dict[str, Any]:
        machines = sorted(self.sfn.machines.values(), key=lambda m: m.name)
        page, token = _page(machines, params, "ListStateMachines", key=lambda m: [m.name])
        result: dict[str, Any] = {
            "stateMachines": [
                {"stateMachineArn": m.arn, "name": m.name, "type": m.type, "creationDate": _time(m.creation_date)}
                for m in page
            ]
        }
        return _with_token(result, token)

    def _describe_state_machine(self, params: dict[str, Any]) -> dict[str, Any]:
        machine = self._machine(params.get("stateMachineArn"))
        return {
            "stateMachineArn": machine.arn,
            "name": machine.name,
            "status": "ACTIVE",
            "definition": machine.definition_text,
            "roleArn": machine.role_arn,
            "type": machine.type,
            "creationDate": _time(machine.creation_date),
            "loggingConfiguration": machine.logging_configuration,
            "tracingConfiguration": machine.tracing_configuration,
        }

    # -- executions -------------------------------------------------------------------------
    def _start_execution(self, params: dict[str, Any]) -> dict[str, Any]:
        machine = self._machine(params.get("stateMachineArn"))
        name = params.get("name")
        if name is not None and (not isinstance(name, str) or not 1 <= len(name) <= 80 or _BAD_NAME.search(name)):
            raise ApiError("InvalidName", f"Invalid Name: '{name}'")
        text = params.get("input")
        if text is None:
            text = "{}"
        if len(str(text).encode()) > MAX_INPUT_BYTES:
            raise ApiError(
                "InvalidExecutionInput", "Invalid State Machine Execution Input: 'input exceeds 262144 bytes'"
            )
        try:
            payload = json.loads(text)
        except (TypeError, ValueError) as exc:
            raise ApiError("InvalidExecutionInput", f"Invalid State Machine Execution Input: '{exc}'") from None
        try:
            execution = self.sfn.start_execution(machine.arn, payload, name)
        except ExecutionAlreadyExists as exc:
            raise ApiError("ExecutionAlreadyExists", str(exc)) from None
        return {"executionArn": execution.arn, "startDate": _time(execution.start_date)}

    def _stop_execution(self, params: dict[str, Any]) -> dict[str, Any]:
        execution = self._execution(params.get("executionArn"))
        error, cause = params.get("error") or "", params.get("cause") or ""
        if len(error) > 256 or len(cause) > 32768:
            raise ApiError("ValidationException", "error is limited to 256 characters and cause to 32768")
        if execution.status == "RUNNING":
            execution = self.sfn.stop_execution(execution.arn, error, cause)
        return {"stopDate": _time(execution.stop_date)}

    def _list_executions(self, params: dict[str, Any]) -> dict[str, Any]:
        if params.get("mapRunArn"):
            raise ApiError("ResourceNotFound", "Map Runs (Distributed Map) are not run by the local twin")
        if not params.get("stateMachineArn"):
            raise ApiError("ValidationException", "Must provide a StateMachine ARN or MapRun ARN")
        machine = self._machine(params["stateMachineArn"])
        if machine.type == "EXPRESS":
            raise ApiError(
                "StateMachineTypeNotSupported", "This operation is not supported by this type of state machine"
            )
        status = params.get("statusFilter")
        if status is not None and status not in STATUSES:
            raise ApiError(
                "ValidationException",
                f"1 validation error detected: Value '{status}' at 'statusFilter' "
                f"failed to satisfy constraint: Member must satisfy enum value set: {list(STATUSES)}",
            )
        executions = [e for e in self.sfn.list_executions(machine.arn) if status is None or e.status == status]
        executions.sort(key=lambda e: (e.start_date, e.arn), reverse=True)
        page, token = _page(
            executions, params, "ListExecutions", key=lambda e: [e.start_date, e.arn], query=[machine.arn, status]
        )
        return _with_token({"executions": [_list_item(e) for e in page]}, token)

    def _describe_execution(self, params: dict[str, Any]) -> dict[str, Any]:
        execution = self._execution(params.get("executionArn"))
        result: dict[str, Any] = {
            "executionArn": execution.arn,
            "stateMachineArn": execution.state_machine_arn,
            "name": execution.name,
            "status": execution.status,
            "startDate": _time(execution.start_date),
            "input": _text(execution.input),
            "inputDetails": {"included": True},
        }
        if execution.stop_date:
            result["stopDate"] = _time(execution.stop_date)
        if execution.status == "SUCCEEDED":
            result["output"] = _text(execution.output)
            result["outputDetails"] = {"included": True}
        if execution.error is not None:
            result["error"] = execution.error
        if execution.cause is not None:
            result["cause"] = execution.cause
        return result

    def _get_execution_history(self, params: dict[str, Any]) -> dict[str, Any]:
        execution = self._execution(params.get("executionArn"))
        events = list(execution.history)  # a copy: a running execution appends to it
        if params.get("reverseOrder"):
            events.reverse()
        page, token = _page(
            events,
            params,
            "GetExecutionHistory",
            key=lambda e: [e["id"]],
            query=[execution.arn, bool(params.get("reverseOrder"))],
        )
        include_data = params.get("includeExecutionData", True) is not False
        machine = self.sfn.machines.get(execution.state_machine_arn)
        return _with_token({"events": [_event(e, include_data, machine) for e in page]}, token)

    # -- lookups ----------------------------------------------------------------------------
    def _machine(self, arn: Any) -> StateMachine:
        _check_arn(arn, "stateMachine")
        machine = self.sfn.machines.get(arn)
        if machine is None:
            raise ApiError("StateMachineDoesNotExist", f"State Machine Does Not Exist: '{arn}'")
        return machine

    def _execution(self, arn: Any) -> Execution:
        _check_arn(arn, "execution")
        try:
            return self.sfn.describe_execution(arn)
        except (ExecutionDoesNotExist, StateMachineDoesNotExist):
            raise ApiError("ExecutionDoesNotExist", f"Execution Does Not Exist: '{arn}'") from None


def _check_arn(arn: Any, kind: str) -> None:
    if not isinstance(arn, str) or not arn:
        raise ApiError("InvalidArn", f"Invalid Arn: '{arn}'")
    match = _ARN.match(arn)
    if match is None:
        raise ApiError("InvalidArn", f"Invalid Arn: 'Invalid ARN prefix: {arn}'")
    if match["kind"] != kind:
        raise ApiError("InvalidArn", f"Invalid Arn: 'Resource type not valid in this context: {match['kind']}'")


def _time(value: str | datetime | None) -> datetime:
    """A timestamp at the millisecond precision of the API (so a wire round trip loses nothing)."""
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def _text(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), default=str)


def _list_item(execution: Execution) -> dict[str, Any]:
    item: dict[str, Any] = {
        "executionArn": execution.arn,
        "stateMachineArn": execution.state_machine_arn,
        "name": execution.name,
        "status": execution.status,
        "startDate": _time(execution.start_date),
    }
    if execution.stop_date:
        item["stopDate"] = _time(execution.stop_date)
    return item


def _event(event: dict[str, Any], include_data: bool, machine: StateMachine | None) -> dict[str, Any]:
    """A twin history event as botocore's HistoryEvent."""
    out: dict[str, Any] = {
        "timestamp": _time(event["timestamp"]),
        "type": event["type"],
        "id": event["id"],
        "previousEventId": event.get("previousEventId", 0),
    }
    for key, value in event.items():
        if key.endswith("EventDetails") and isinstance(value, dict):
            details = dict(value)
            if not include_data:
                for data_key in _DATA_KEYS:
                    details.pop(data_key, None)
            if key == "executionStartedEventDetails" and machine is not None and machine.role_arn:
                details["roleArn"] = machine.role_arn
            out[key] = details
    return out


# -- pagination ---------------------------------------------------------------------------------
def _page(
    items: list[Any], params: dict[str, Any], operation: str, *, key: Callable[[Any], list[Any]], query: Any = None
) -> tuple[list[Any], str | None]:
    """One page of ``items`` (already in order) and the token of the next, if any."""
    size = params.get("maxResults") or DEFAULT_PAGE
    if not isinstance(size, int) or isinstance(size, bool) or not 0 <= size <= MAX_PAGE:
        raise ApiError("ValidationException", f"maxResults must be between 0 and {MAX_PAGE}")
    fingerprint = hashlib.sha256(json.dumps([operation, query], default=str).encode()).hexdigest()[:16]
    start = 0
    if params.get("nextToken"):
        after = _decode(params["nextToken"], fingerprint)
        keys = [key(item) for item in items]
        start = keys.index(after) + 1 if after in keys else _position(keys, after)
    page = items[start : start + size]
    more = start + size < len(items)
    return page, _encode(fingerprint, key(page[-1])) if more and page else None


def _position(keys: list[list[Any]], after: list[Any]) -> int:
    """Where a page resumes when its last item is gone: the first key past ``after`` in list order."""
    if len(keys) < 2:
        return len(keys)
    descending = keys[0] > keys[-1]
    for index, current in enumerate(keys):
        if (current < after) if descending else (current > after):
            return index
    return len(keys)


def _encode(fingerprint: str, after: list[Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps({"q": fingerprint, "after": after}).encode()).decode()


def _decode(token: Any, fingerprint: str) -> list[Any]:
    try:
        data = json.loads(base64.urlsafe_b64decode(str(token).encode()))
        if data["q"] == fingerprint and isinstance(data["after"], list):
            return data["after"]
    except (binascii.Error, ValueError, KeyError, TypeError):
        pass
    raise ApiError("InvalidToken", f"Invalid Token: '{token}'")


def _with_token(result: dict[str, Any], token: str | None) -> dict[str, Any]:
    if token:
        result["nextToken"] = token
    return result
