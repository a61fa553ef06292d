"""The Lambda API of the twin, driven with boto3 and the AWS CLI: the assembly's functions, really invoked."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import time
import urllib.request
import zipfile
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from mlops.twin.runtime import Twin
from tests.unit.twin.mini_app import aws_cli, aws_json


def _echo(twin: Twin) -> str:
    return next(name for name in twin.functions if "EchoFn" in name)


def test_list_functions_describes_the_assembly(mini_twin: Twin) -> None:
    functions = {f["FunctionName"]: f for f in mini_twin.client("lambda").list_functions()["Functions"]}
    echo = functions[_echo(mini_twin)]
    assert set(functions) == {_echo(mini_twin), "mini-plain"}
    assert echo["Runtime"] == "python3.12" and echo["Handler"] == "handler.handler"
    assert echo["Timeout"] == 10 and echo["MemorySize"] == 256 and echo["Description"] == "echoes its event"
    assert echo["Environment"] == {"Variables": {"GREETING": "hi"}}  # the template's, not the twin's credentials
    assert echo["LoggingConfig"]["LogGroup"].startswith("MiniApp-EchoLogs-")
    assert echo["TracingConfig"] == {"Mode": "Active"} and echo["State"] == "Active"
    assert echo["Role"].startswith("arn:aws:iam::000000000000:role/MiniApp-FnRole-")
    assert functions["mini-plain"]["LoggingConfig"]["LogGroup"] == "/aws/lambda/mini-plain"
    page = mini_twin.client("lambda").list_functions(MaxItems=1)
    rest = mini_twin.client("lambda").list_functions(Marker=page["NextMarker"])
    assert [f["FunctionName"] for f in page["Functions"] + rest["Functions"]] == sorted(functions)


def test_get_function_code_is_the_asset(mini_twin: Twin) -> None:
    got = mini_twin.client("lambda").get_function(FunctionName=_echo(mini_twin))
    assert got["Tags"] == {"team": "mlops"}
    with urllib.request.urlopen(got["Code"]["Location"]) as response:  # a presigned URL of the twin's S3
        package = response.read()
    digest = base64.b64encode(hashlib.sha256(package).digest()).decode()
    assert digest == got["Configuration"]["CodeSha256"] and len(package) == got["Configuration"]["CodeSize"]
    with zipfile.ZipFile(io.BytesIO(package)) as archive:
        code = archive.read("handler.py").decode()
    assert code == (Path(mini_twin.functions[_echo(mini_twin)].spec.code_dir) / "handler.py").read_text()


@pytest.mark.parametrize("ref", ["nope", "mini-plain:7", "arn:aws:lambda:us-east-1:111111111111:function:mini-plain"])
def test_unknown_functions_are_not_found(mini_twin: Twin, ref: str) -> None:
    with pytest.raises(ClientError) as caught:
        mini_twin.client("lambda").get_function(FunctionName=ref)
    assert caught.value.response["Error"]["Code"] == "ResourceNotFoundException"
    assert "Function not found" in caught.value.response["Error"]["Message"]


def test_invoke_runs_the_handler_and_tails_its_log(mini_twin: Twin) -> None:
    got = mini_twin.client("lambda").invoke(
        FunctionName=f"arn:aws:lambda:us-east-1:000000000000:function:{_echo(mini_twin)}",
        Payload=json.dumps({"n": 1}),
        LogType="Tail",
    )
    result = json.loads(got["Payload"].read())
    assert got["StatusCode"] == 200 and "FunctionError" not in got and got["ExecutedVersion"] == "$LATEST"
    assert result["echo"] == {"n": 1} and result["greeting"] == "hi"
    assert result["group"].startswith("MiniApp-EchoLogs-")  # the group its LoggingConfig names
    tail = base64.b64decode(got["LogResult"]).decode()
    assert 'echo {"n": 1}' in tail and "START RequestId:" in tail and "REPORT RequestId:" in tail


def test_invoke_reports_a_function_error(mini_twin: Twin) -> None:
    got = mini_twin.client("lambda").invoke(FunctionName=_echo(mini_twin), Payload=b'{"fail": true}')
    error = json.loads(got["Payload"].read())
    assert got["StatusCode"] == 200 and got["FunctionError"] == "Unhandled"
    assert error["errorType"] == "ValueError" and error["errorMessage"] == "asked to fail"


def test_invoke_types_and_bad_payloads(mini_twin: Twin) -> None:
    client = mini_twin.client("lambda")
    assert client.invoke(FunctionName="mini-plain", InvocationType="DryRun")["StatusCode"] == 204
    marker = f"async-{time.time_ns()}"
    assert (
        client.invoke(FunctionName="mini-plain", InvocationType="Event", Payload=json.dumps(marker))["StatusCode"]
        == 202
    )
    logs = mini_twin.client("logs")
    deadline = time.monotonic() + 30

    def logged() -> bool:  # the group appears with the function's first log line, as in AWS
        try:
            found = logs.filter_log_events(logGroupName="/aws/lambda/mini-plain", filterPattern=f'"{marker}"')
        except logs.exceptions.ResourceNotFoundException:
            return False
        return bool(found["events"])

    while not logged():
        assert time.monotonic() < deadline, "the asynchronous invocation never ran"
        time.sleep(0.2)
    with pytest.raises(ClientError) as caught:
        client.invoke(FunctionName="mini-plain", Payload=b"{not json")
    assert caught.value.response["Error"]["Code"] == "InvalidRequestContentException"
    with pytest.raises(ClientError) as caught:
        client.invoke(FunctionName="mini-plain", InvocationType="Event", Payload=b'"' + b"x" * (1024 * 1024) + b'"')
    assert caught.value.response["Error"]["Code"] == "RequestTooLargeException"


def test_the_cli_lists_and_invokes(mini_twin: Twin, tmp_path: Path) -> None:
    names = [f["FunctionName"] for f in aws_json(mini_twin, "lambda", "list-functions")["Functions"]]
    assert "mini-plain" in names
    out = tmp_path / "out.json"
    meta = aws_json(
        mini_twin, "lambda", "invoke", "--function-name", "mini-plain", "--payload", '{"k": "v"}',
        "--log-type", "Tail", str(out),
    )  # fmt: skip
    assert meta["StatusCode"] == 200 and json.loads(out.read_text()) == {"k": "v"}
    assert "plain got {'k': 'v'}" in base64.b64decode(meta["LogResult"]).decode()


def test_an_operation_the_twin_does_not_serve_says_so(mini_twin: Twin) -> None:
    with pytest.raises(ClientError) as caught:
        mini_twin.client("lambda").list_aliases(FunctionName="mini-plain")
    error = caught.value.response["Error"]
    assert (
        error["Code"] == "NotImplemented"
        and "lambda:ListAliases is not implemented by the local twin" in error["Message"]
    )
    done = aws_cli(mini_twin, "lambda", "delete-function", "--function-name", "mini-plain", check=False)
    assert done.returncode != 0 and "lambda:DeleteFunction is not implemented by the local twin" in done.stderr
    assert "mini-plain" in mini_twin.functions
