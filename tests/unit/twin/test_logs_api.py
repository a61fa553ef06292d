"""The CloudWatch Logs API of the twin: every Lambda line in its log group, one stream per worker process,
read as GetLogEvents, FilterLogEvents and ``aws logs tail`` read them."""

from __future__ import annotations

import json
import re
import threading
import time
from typing import Any

import pytest
from botocore.exceptions import ClientError

from mlops.twin.logs.filter import FilterPatternError, compile_pattern
from mlops.twin.runtime import Twin
from tests.unit.twin.mini_app import aws_cli, aws_json

STREAM_NAME = re.compile(r"^\d{4}/\d{2}/\d{2}/\[\$LATEST\][0-9a-f]{32}$")


def _echo(twin: Twin) -> tuple[str, str]:
    name = next(n for n in twin.functions if "EchoFn" in n)
    return name, twin.functions[name].log_group


def _invoke(twin: Twin, payload: Any) -> dict[str, Any]:
    got = twin.client("lambda").invoke(FunctionName=_echo(twin)[0], Payload=json.dumps(payload))
    return dict(json.loads(got["Payload"].read()))


def test_log_groups_are_the_assembly_s_and_the_default_lambda_ones(mini_twin: Twin) -> None:
    mini_twin.client("lambda").invoke(FunctionName="mini-plain", Payload=b"{}")
    groups = {g["logGroupName"]: g for g in mini_twin.client("logs").describe_log_groups()["logGroups"]}
    _, echo_group = _echo(mini_twin)
    assert groups[echo_group]["retentionInDays"] == 7  # AWS::Logs::LogGroup, named by the function's LoggingConfig
    assert groups[echo_group]["arn"].endswith(f":log-group:{echo_group}:*")
    assert "/aws/lambda/mini-plain" in groups  # created by the function's first write, as Lambda does
    assert "/aws/lambda/" + _echo(mini_twin)[0] not in groups
    prefixed = mini_twin.client("logs").describe_log_groups(logGroupNamePrefix="/aws/lambda/")["logGroups"]
    assert [g["logGroupName"] for g in prefixed] == ["/aws/lambda/mini-plain"]


def test_one_stream_per_worker_named_as_in_aws(mini_twin: Twin) -> None:
    results: list[dict[str, Any]] = []
    threads = [threading.Thread(target=lambda i=i: results.append(_invoke(mini_twin, {"worker": i}))) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    _, group = _echo(mini_twin)
    streams = mini_twin.client("logs").describe_log_streams(logGroupName=group)["logStreams"]
    names = {s["logStreamName"] for s in streams}
    assert all(STREAM_NAME.match(n) for n in names), names
    assert {r["stream"] for r in results} <= names and len(names) >= 2  # concurrent invocations: several workers
    for stream in streams:
        assert stream["firstEventTimestamp"] <= stream["lastEventTimestamp"] <= stream["lastIngestionTime"]
    newest = mini_twin.client("logs").describe_log_streams(
        logGroupName=group, orderBy="LastEventTime", descending=True, limit=1
    )["logStreams"]
    assert newest[0]["lastEventTimestamp"] == max(s["lastEventTimestamp"] for s in streams)


def test_get_log_events_reads_an_invocation_from_its_stream(mini_twin: Twin) -> None:
    marker = f"m{time.time_ns()}"
    result = _invoke(mini_twin, {"marker": marker})
    logs = mini_twin.client("logs")
    events = logs.get_log_events(logGroupName=result["group"], logStreamName=result["stream"], startFromHead=True)
    messages = [e["message"] for e in events["events"]]
    mine = next(i for i, m in enumerate(messages) if marker in m)
    assert messages[mine] == "echo " + json.dumps({"marker": marker})
    assert messages[mine - 1].startswith("START RequestId: ") and messages[mine + 1].startswith("END RequestId: ")
    assert messages[mine + 2].startswith("REPORT RequestId: ") and "Billed Duration" in messages[mine + 2]
    # Paging with the forward token until it repeats (how SDK paginators and `aws logs get-log-events` stop).
    seen, token = [], None
    while True:
        kwargs = {"nextToken": token} if token else {"startFromHead": True}
        page = logs.get_log_events(logGroupName=result["group"], logStreamName=result["stream"], limit=2, **kwargs)
        seen += [e["message"] for e in page["events"]]
        if page["nextForwardToken"] == token:
            break
        token = page["nextForwardToken"]
    assert seen == messages
    latest = logs.get_log_events(logGroupName=result["group"], logStreamName=result["stream"], limit=1)
    assert [e["message"] for e in latest["events"]] == messages[-1:]
    with pytest.raises(ClientError) as caught:
        logs.get_log_events(logGroupName=result["group"], logStreamName="2020/01/01/[$LATEST]nope")
    assert caught.value.response["Error"]["Code"] == "ResourceNotFoundException"


def test_filter_log_events_with_patterns(mini_twin: Twin) -> None:
    marker = f"m{time.time_ns()}"
    _invoke(mini_twin, {"marker": marker, "errors": 4})
    logs = mini_twin.client("logs")
    _, group = _echo(mini_twin)

    def messages(pattern: str) -> list[str]:
        found = logs.filter_log_events(logGroupName=group, filterPattern=pattern)["events"]
        return [e["message"] for e in found]

    assert messages(f'"{marker}" echo') == ["echo " + json.dumps({"errors": 4, "marker": marker})]
    assert all("START" not in m for m in messages(f'"{marker}" -START'))
    assert any("REPORT" in m for m in messages("?REPORT ?nothing-like-this"))
    emf = messages('{ $.Errors >= 4 && $.service = "echo" }')
    assert emf and all(json.loads(m)["Errors"] >= 4 for m in emf)
    assert messages("%Billed Duration: [0-9]+ ms%") == [m for m in messages("REPORT") if "Billed Duration" in m]
    with pytest.raises(ClientError) as caught:
        logs.filter_log_events(logGroupName=group, filterPattern="[ip, user]")
    assert caught.value.response["Error"]["Code"] == "InvalidParameterException"
    assert "space-delimited" in caught.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as caught:
        logs.filter_log_events(logGroupName="no-such-group")
    assert caught.value.response["Error"]["Code"] == "ResourceNotFoundException"


def test_tailing_as_aws_logs_tail_does(mini_twin: Twin) -> None:
    """`aws logs tail` (CLI v2) pages FilterLogEvents (interleaved, from a start time), then with --follow
    asks again from the newest timestamp seen, dropping event ids it already printed."""
    _, group = _echo(mini_twin)
    logs = mini_twin.client("logs")
    since = int(time.time() * 1000) - 1
    _invoke(mini_twin, {"tail": 1})
    shown: dict[str, str] = {}
    paginator = logs.get_paginator("filter_log_events")
    for page in paginator.paginate(logGroupName=group, interleaved=True, startTime=since):
        shown |= {e["eventId"]: e["message"] for e in page["events"]}
    assert any('"tail": 1' in m for m in shown.values())
    newest = max(
        e["timestamp"] for page in paginator.paginate(logGroupName=group, startTime=since) for e in page["events"]
    )
    _invoke(mini_twin, {"tail": 2})
    follow = logs.filter_log_events(logGroupName=group, interleaved=True, startTime=newest)["events"]
    fresh = [e["message"] for e in follow if e["eventId"] not in shown]
    assert any('"tail": 2' in m for m in fresh) and not any('"tail": 1' in m for m in fresh)
    assert [e["timestamp"] for e in follow] == sorted(e["timestamp"] for e in follow)


def test_paging_filter_log_events(mini_twin: Twin) -> None:
    _, group = _echo(mini_twin)
    logs = mini_twin.client("logs")
    everything = [e["eventId"] for e in logs.filter_log_events(logGroupName=group)["events"]]
    paged, token = [], None
    while True:
        page = logs.filter_log_events(logGroupName=group, limit=3, **({"nextToken": token} if token else {}))
        paged += [e["eventId"] for e in page["events"]]
        token = page.get("nextToken")
        if not token:
            break
    assert paged[: len(everything)] == everything and len(set(paged)) == len(paged)


def test_the_cli_reads_logs(mini_twin: Twin) -> None:
    marker = f"m{time.time_ns()}"
    result = _invoke(mini_twin, {"cli": marker})
    groups = aws_json(mini_twin, "logs", "describe-log-groups")["logGroups"]
    assert result["group"] in [g["logGroupName"] for g in groups]
    found = aws_json(mini_twin, "logs", "filter-log-events", "--log-group-name", result["group"],
                     "--filter-pattern", f'"{marker}"')["events"]  # fmt: skip
    assert [e["logStreamName"] for e in found] == [result["stream"]]
    events = aws_json(mini_twin, "logs", "get-log-events", "--log-group-name", result["group"],
                      "--log-stream-name", result["stream"], "--start-from-head")["events"]  # fmt: skip
    assert any(marker in e["message"] for e in events)
    done = aws_cli(mini_twin, "logs", "put-log-events", "--log-group-name", result["group"], "--log-stream-name",
                   "s", "--log-events", "timestamp=1,message=x", check=False)  # fmt: skip
    assert done.returncode != 0 and "logs:PutLogEvents is not implemented by the local twin" in done.stderr


@pytest.mark.parametrize(
    ("pattern", "line", "hit"),
    [
        ("", "anything", True),
        ("ERROR", "[ERROR] boom", True),
        ("ERROR", "error", False),  # case-sensitive
        ("ERROR Exception", "ERROR without the other", False),
        ('"with space"', "a line with space in it", True),
        ("?ERROR ?WARN", "WARN: disk", True),
        ("-DEBUG", "DEBUG noise", False),
        ("%[0-9]{3} ms%", "took 250 ms", True),
        ('{ $.level = "ERR*" }', '{"level": "ERROR"}', True),
        ("{ $.a.b[1] = 2 }", '{"a": {"b": [1, 2]}}', True),
        ("{ $.n > 3 || $.flag IS TRUE }", '{"n": 1, "flag": true}', True),
        ("{ $.missing NOT EXISTS }", "{}", True),
        ("{ $.n > 3 }", "not json", False),
    ],
)
def test_filter_patterns(pattern: str, line: str, hit: bool) -> None:
    assert compile_pattern(pattern)(line) is hit


@pytest.mark.parametrize("pattern", ["[a, b]", "{ $.a = }", "bad(term", '{ $.a > "x" }'])
def test_bad_filter_patterns_are_refused(pattern: str) -> None:
    with pytest.raises(FilterPatternError):
        compile_pattern(pattern)
