"""The CloudWatch Logs API of the twin, read from its :class:`~mlops.twin.logs.store.LogStore`."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from typing import Any

from mlops.twin.api import ApiError, Call, not_implemented, page
from mlops.twin.logs.filter import FilterPatternError, compile_pattern
from mlops.twin.logs.store import GroupInfo, LogEvent, LogStore

MAX_EVENTS = 10_000
MAX_BYTES = 1_048_576
EVENT_OVERHEAD = 26  # bytes CloudWatch Logs counts per event on top of the message
TOKEN_DIGITS = 56  # GetLogEvents tokens look like AWS's: "f/" + 56 digits


def _invalid(message: str) -> ApiError:
    return ApiError("InvalidParameterException", message)


def _group_missing() -> ApiError:
    return ApiError("ResourceNotFoundException", "The specified log group does not exist.")


class LogsApi:
    service = "logs"

    def __init__(self, store: LogStore, *, account: str, region: str) -> None:
        self.store = store
        self.account = account
        self.region = region

    def operations(self) -> set[str]:
        return {"DescribeLogGroups", "DescribeLogStreams", "GetLogEvents", "FilterLogEvents"}

    def handle(self, call: Call) -> dict[str, Any]:
        method = getattr(self, "_" + re.sub(r"(?<!^)(?=[A-Z])", "_", call.operation).lower(), None)
        if method is None:
            raise not_implemented(self.service, call.operation)
        return method(call.params)

    # -- helpers ----------------------------------------------------------------------------
    def _arn(self, group: str) -> str:
        return f"arn:aws:logs:{self.region}:{self.account}:log-group:{group}"

    def _group_name(self, params: dict[str, Any]) -> str:
        name, identifier = params.get("logGroupName"), params.get("logGroupIdentifier")
        if name and identifier:
            raise _invalid("LogGroup name and LogGroup ARN are mutually exclusive parameters.")
        if identifier and identifier.startswith("arn:"):
            parts = identifier.split(":log-group:", 1)
            if len(parts) != 2 or parts[0] != f"arn:aws:logs:{self.region}:{self.account}":
                raise _invalid(f"Invalid logGroupIdentifier: {identifier}")
            identifier = parts[1].removesuffix(":*")
        group = name or identifier
        if not group:
            raise _invalid("Either logGroupName or logGroupIdentifier is required.")
        if self.store.group(group) is None:
            raise _group_missing()
        return str(group)

    @staticmethod
    def _limit(params: dict[str, Any], default: int, maximum: int) -> int:
        limit = params.get("limit")
        if limit is None:
            return default
        if not 1 <= int(limit) <= maximum:
            raise _invalid(
                f"1 validation error detected: Value '{limit}' at 'limit' failed to satisfy constraint: "
                f"Member must have value between 1 and {maximum}"
            )
        return int(limit)

    # -- DescribeLogGroups ----------------------------------------------------------------------
    def _describe_log_groups(self, params: dict[str, Any]) -> dict[str, Any]:
        prefix, pattern = params.get("logGroupNamePrefix"), params.get("logGroupNamePattern")
        if prefix and pattern:
            raise _invalid("LogGroup name prefix and LogGroup name pattern are mutually exclusive parameters.")
        identifiers = params.get("logGroupIdentifiers")
        if identifiers and (prefix or pattern):
            raise _invalid("logGroupIdentifiers cannot be used with a name prefix or pattern.")
        if params.get("logGroupClass") not in (None, "STANDARD"):
            groups: list[GroupInfo] = []  # every group of the twin is of the STANDARD class
        else:
            groups = self.store.groups()
        if prefix:
            groups = [g for g in groups if g.name.startswith(prefix)]
        if pattern:
            groups = [g for g in groups if pattern.lower() in g.name.lower()]
        if identifiers:
            wanted = {i.removesuffix(":*").split(":log-group:")[-1] for i in identifiers}
            groups = [g for g in groups if g.name in wanted]
        chosen, token = page(
            groups,
            params.get("nextToken"),
            self._limit(params, 50, 50),
            bad_token=_invalid("The specified nextToken is invalid."),
        )
        return {"logGroups": [self._group_shape(g) for g in chosen], **({"nextToken": token} if token else {})}

    def _group_shape(self, group: GroupInfo) -> dict[str, Any]:
        shape: dict[str, Any] = {
            "logGroupName": group.name,
            "creationTime": group.creation_time,
            "metricFilterCount": 0,
            "arn": self._arn(group.name) + ":*",
            "logGroupArn": self._arn(group.name),
            "storedBytes": 0,
            "logGroupClass": "STANDARD",
        }
        if group.retention_days is not None:
            shape["retentionInDays"] = group.retention_days
        if group.kms_key_id:
            shape["kmsKeyId"] = group.kms_key_id
        return shape

    # -- DescribeLogStreams ---------------------------------------------------------------------
    def _describe_log_streams(self, params: dict[str, Any]) -> dict[str, Any]:
        group = self._group_name(params)
        prefix = params.get("logStreamNamePrefix")
        order = params.get("orderBy") or "LogStreamName"
        if order == "LastEventTime" and prefix:
            raise _invalid("Cannot order by LastEventTime with a logStreamNamePrefix.")
        rows = []
        for name, created in self.store.streams(group).items():
            if prefix and not name.startswith(prefix):
                continue
            events = self.store.events(group, name)
            row: dict[str, Any] = {
                "logStreamName": name,
                "creationTime": created,
                "arn": f"{self._arn(group)}:log-stream:{name}",
                "storedBytes": 0,
            }
            if events:
                row |= {
                    "firstEventTimestamp": min(e.timestamp for e in events),
                    "lastEventTimestamp": max(e.timestamp for e in events),
                    "lastIngestionTime": events[-1].ingestion_time,
                }
            rows.append(row)
        if order == "LastEventTime":
            rows.sort(key=lambda r: (r.get("lastEventTimestamp", 0), r["logStreamName"]))
        else:
            rows.sort(key=lambda r: r["logStreamName"])
        if params.get("descending"):
            rows.reverse()
        chosen, token = page(
            rows,
            params.get("nextToken"),
            self._limit(params, 50, 50),
            bad_token=_invalid("The specified nextToken is invalid."),
        )
        return {"logStreams": chosen, **({"nextToken": token} if token else {})}

    # -- GetLogEvents ---------------------------------------------------------------------------
    def _get_log_events(self, params: dict[str, Any]) -> dict[str, Any]:
        group = self._group_name(params)
        stream = str(params["logStreamName"])
        if stream not in self.store.streams(group):
            raise ApiError("ResourceNotFoundException", "The specified log stream does not exist.")
        every = self.store.events(group, stream)
        start, end = params.get("startTime"), params.get("endTime")
        window = [e for e in every if (start is None or e.timestamp >= start) and (end is None or e.timestamp < end)]
        limit = self._limit(params, MAX_EVENTS, MAX_EVENTS)
        token = params.get("nextToken")
        if token:
            direction, position = self._read_token(token)
        else:
            direction, position = ("f", 0) if params.get("startFromHead") else ("b", len(every))
        if direction == "f":
            chosen = _fit([e for e in window if e.index >= position], limit, from_end=False)
            forward = chosen[-1].index + 1 if chosen else position
            backward = chosen[0].index if chosen else position
        else:
            chosen = _fit([e for e in window if e.index < position], limit, from_end=True)
            forward = chosen[-1].index + 1 if chosen else position
            backward = chosen[0].index if chosen else position
        return {
            "events": [
                {"timestamp": e.timestamp, "message": e.message, "ingestionTime": e.ingestion_time} for e in chosen
            ],
            "nextForwardToken": f"f/{forward:0{TOKEN_DIGITS}d}",
            "nextBackwardToken": f"b/{backward:0{TOKEN_DIGITS}d}",
        }

    @staticmethod
    def _read_token(token: str) -> tuple[str, int]:
        direction, _, digits = token.partition("/")
        if direction not in ("f", "b") or not digits.isdigit():
            raise _invalid("The specified nextToken is invalid.")
        return direction, int(digits)

    # -- FilterLogEvents ------------------------------------------------------------------------
    def _filter_log_events(self, params: dict[str, Any]) -> dict[str, Any]:
        group = self._group_name(params)
        names, prefix = params.get("logStreamNames"), params.get("logStreamNamePrefix")
        if names and prefix:
            raise _invalid("logStreamNames and logStreamNamePrefix are mutually exclusive parameters.")
        try:
            matches = compile_pattern(params.get("filterPattern"))
        except FilterPatternError as exc:
            raise _invalid(str(exc)) from None
        streams = [
            s for s in self.store.streams(group) if (not names or s in names) and (not prefix or s.startswith(prefix))
        ]
        start, end = params.get("startTime"), params.get("endTime")
        found: list[tuple[str, LogEvent]] = []
        for stream in streams:
            for event in self.store.events(group, stream):
                if start is not None and event.timestamp < start:
                    continue
                if end is not None and event.timestamp > end:
                    continue
                found.append((stream, event))
        found.sort(key=lambda item: (item[1].timestamp, item[0], item[1].index))
        after = self._after(params.get("nextToken"))
        if after is not None:
            found = [item for item in found if (item[1].timestamp, item[0], item[1].index) > after]
        limit = self._limit(params, MAX_EVENTS, MAX_EVENTS)
        events: list[dict[str, Any]] = []
        used, last, complete = 0, None, True
        for stream, event in found:
            key = (event.timestamp, stream, event.index)
            if matches(event.message):
                size = len(event.message.encode()) + EVENT_OVERHEAD
                if len(events) >= limit or used + size > MAX_BYTES:
                    complete = False
                    break
                used += size
                events.append(
                    {
                        "logStreamName": stream,
                        "timestamp": event.timestamp,
                        "message": event.message,
                        "ingestionTime": event.ingestion_time,
                        "eventId": _event_id(group, stream, event.index),
                    }
                )
            last = key
        result: dict[str, Any] = {"events": events}
        if not complete and last is not None:
            result["nextToken"] = base64.urlsafe_b64encode(json.dumps(list(last)).encode()).decode()
        return result

    @staticmethod
    def _after(token: str | None) -> tuple[int, str, int] | None:
        if not token:
            return None
        try:
            ts, stream, index = json.loads(base64.urlsafe_b64decode(token.encode()))
            return int(ts), str(stream), int(index)
        except (ValueError, TypeError):
            raise _invalid("The specified nextToken is invalid.") from None


def _fit(events: list[LogEvent], limit: int, *, from_end: bool) -> list[LogEvent]:
    """At most ``limit`` events and 1 MB, from the start or from the end of ``events``."""
    ordered = reversed(events) if from_end else iter(events)
    chosen, used = [], 0
    for event in ordered:
        size = len(event.message.encode()) + EVENT_OVERHEAD
        if len(chosen) >= limit or used + size > MAX_BYTES:
            break
        chosen.append(event)
        used += size
    return list(reversed(chosen)) if from_end else chosen


def _event_id(group: str, stream: str, index: int) -> str:
    digest = int.from_bytes(hashlib.sha256(f"{group}\0{stream}".encode()).digest()[:8], "big")
    return f"{digest:020d}{index:036d}"
