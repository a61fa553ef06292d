"""The EventBridge API of the twin: the assembly's rules and targets as its bus runs them;
``PutEvents`` publishes through the twin (``route``), so the rules really fire."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from mlops.twin.api import ApiError, Call, not_implemented, page
from mlops.twin.events.bus import DEFAULT_BUS, MAX_PUT_EVENTS_ENTRIES, EventBus, Rule

MAX_ENTRIES_BYTES = 256 * 1024  # the total size of one PutEvents request's entries
TARGET_MEMBERS = (
    "RoleArn",
    "KinesisParameters",
    "RunCommandParameters",
    "EcsParameters",
    "BatchParameters",
    "SqsParameters",
    "HttpParameters",
    "RedshiftDataParameters",
    "SageMakerPipelineParameters",
    "DeadLetterConfig",
    "RetryPolicy",
    "AppSyncParameters",
)


def _bus_name(value: str | None) -> str:
    bus = value or DEFAULT_BUS
    return bus.rsplit("event-bus/", 1)[-1] if bus.startswith("arn:") else bus


def _entry_size(entry: dict[str, Any]) -> int:
    """The size EventBridge counts for an entry (its calculation of PutEvents entry size)."""
    size = 14 if entry.get("Time") else 0
    size += len(str(entry.get("Source", "")).encode()) + len(str(entry.get("DetailType", "")).encode())
    size += len(str(entry.get("Detail", "")).encode())
    size += sum(len(str(r).encode()) for r in entry.get("Resources") or [])
    return size


class EventsApi:
    service = "events"

    def __init__(self, bus: EventBus, route: Callable[[dict[str, Any], str], None]) -> None:
        self.bus = bus
        self.route = route  # (event, bus name): how a published event enters the twin

    def operations(self) -> set[str]:
        return {"ListRules", "DescribeRule", "ListTargetsByRule", "PutEvents"}

    def handle(self, call: Call) -> dict[str, Any]:
        handler = {
            "ListRules": self._list_rules,
            "DescribeRule": self._describe_rule,
            "ListTargetsByRule": self._list_targets_by_rule,
            "PutEvents": self._put_events,
        }.get(call.operation)
        if handler is None:
            raise not_implemented(self.service, call.operation)
        return handler(call.params)

    # -- rules ----------------------------------------------------------------------------------
    def _rule(self, name: str, bus: str | None) -> Rule:
        bus_name = _bus_name(bus)
        for rule in self.bus.rules(bus_name):
            if rule.name == name:
                return rule
        raise ApiError("ResourceNotFoundException", f"Rule {name} does not exist on EventBus {bus_name}.")

    def _rule_shape(self, rule: Rule) -> dict[str, Any]:
        shape: dict[str, Any] = {
            "Name": rule.name,
            "Arn": rule.arn,
            "State": rule.state,
            "EventBusName": rule.bus_name,
        }
        if rule.event_pattern is not None:
            shape["EventPattern"] = json.dumps(rule.event_pattern)
        if rule.schedule_expression:
            shape["ScheduleExpression"] = rule.schedule_expression
        if rule.description:
            shape["Description"] = rule.description
        if rule.role_arn:
            shape["RoleArn"] = rule.role_arn
        return shape

    @staticmethod
    def _limit(params: dict[str, Any]) -> int:
        limit = params.get("Limit")
        if limit is not None and not 1 <= int(limit) <= 100:
            raise ApiError("ValidationException", f"Value '{limit}' at 'limit' failed to satisfy constraint: 1..100")
        return int(limit or 100)

    def _list_rules(self, params: dict[str, Any]) -> dict[str, Any]:
        prefix = params.get("NamePrefix") or ""
        rules = sorted(
            (r for r in self.bus.rules(_bus_name(params.get("EventBusName"))) if r.name.startswith(prefix)),
            key=lambda r: r.name,
        )
        chosen, token = page(
            rules,
            params.get("NextToken"),
            self._limit(params),
            bad_token=ApiError("ValidationException", "The NextToken is not valid."),
        )
        return {"Rules": [self._rule_shape(r) for r in chosen], **({"NextToken": token} if token else {})}

    def _describe_rule(self, params: dict[str, Any]) -> dict[str, Any]:
        rule = self._rule(params["Name"], params.get("EventBusName"))
        return self._rule_shape(rule) | {"CreatedBy": self.bus.account}

    def _list_targets_by_rule(self, params: dict[str, Any]) -> dict[str, Any]:
        rule = self._rule(params["Rule"], params.get("EventBusName"))
        targets = []
        for target in rule.targets:
            shape: dict[str, Any] = {"Id": target.id, "Arn": target.arn}
            if target.input is not None:
                shape["Input"] = target.input
            if target.input_path:
                shape["InputPath"] = target.input_path
            if target.input_transformer:
                shape["InputTransformer"] = target.input_transformer
            shape |= {k: target.properties[k] for k in TARGET_MEMBERS if k in target.properties}
            targets.append(shape)
        chosen, token = page(
            targets,
            params.get("NextToken"),
            self._limit(params),
            bad_token=ApiError("ValidationException", "The NextToken is not valid."),
        )
        return {"Targets": chosen, **({"NextToken": token} if token else {})}

    # -- PutEvents --------------------------------------------------------------------------------
    def _put_events(self, params: dict[str, Any]) -> dict[str, Any]:
        if params.get("EndpointId"):
            raise not_implemented(self.service, "PutEvents to a global endpoint (EndpointId)")
        entries = [dict(e) for e in params.get("Entries") or []]
        if not 1 <= len(entries) <= MAX_PUT_EVENTS_ENTRIES:
            raise ApiError(
                "ValidationException",
                f"1 validation error detected: Value '[PutEventsRequestEntry]' at 'entries' failed to satisfy "
                f"constraint: Member must have length less than or equal to {MAX_PUT_EVENTS_ENTRIES}",
            )
        total = sum(_entry_size(e) for e in entries)
        if total > MAX_ENTRIES_BYTES:
            raise ApiError("ValidationException", "Total size of the entries in the request is over the limit.")
        results = self.bus.put_events(entries, self.route)
        return {"FailedEntryCount": sum(1 for r in results if "ErrorCode" in r), "Entries": results}
