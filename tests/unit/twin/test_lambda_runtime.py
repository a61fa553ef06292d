"""The twin's Lambda runtime: isolated warm worker processes, layers, errors as AWS reports them, logs."""

from __future__ import annotations

import json
import os
import signal
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mlops.twin.awslambda.runtime import FunctionSpec, InvocationResult, LambdaRuntime

ARN = "arn:aws:lambda:eu-west-1:123456789012:function:{name}"


def write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root


MakeRuntime = Callable[..., LambdaRuntime]


@pytest.fixture
def make_runtime(tmp_path: Path) -> Iterator[MakeRuntime]:
    runtimes: list[LambdaRuntime] = []

    def make(
        name: str,
        files: dict[str, str],
        *,
        handler: str = "handler.handler",
        layers: list[Path] | None = None,
        environment: dict[str, str] | None = None,
        timeout_s: float = 10.0,
        memory_mb: int = 256,
        base_env: dict[str, str] | None = None,
        max_workers: int = 4,
        runtime: str = "python3.14",
    ) -> LambdaRuntime:
        code = write(tmp_path / "code" / name, files)
        spec = FunctionSpec(
            name=name,
            arn=ARN.format(name=name),
            handler=handler,
            code_dir=code,
            layer_dirs=layers or [],
            environment=environment or {},
            timeout_s=timeout_s,
            memory_mb=memory_mb,
            runtime=runtime,
        )
        rt = LambdaRuntime(
            spec,
            base_env=base_env if base_env is not None else {"AWS_ACCESS_KEY_ID": "twin", "TWIN_ENDPOINT": "http://x"},
            log_dir=tmp_path / "logs",
            max_workers=max_workers,
        )
        runtimes.append(rt)
        return rt

    yield make
    for rt in runtimes:
        rt.close()


ECHO = {
    "handler.py": """
        import os

        def handler(event, context):
            return {
                "event": event,
                "function_name": context.function_name,
                "function_version": context.function_version,
                "arn": context.invoked_function_arn,
                "memory": context.memory_limit_in_mb,
                "request_id": context.aws_request_id,
                "log_group": context.log_group_name,
                "log_stream": context.log_stream_name,
                "remaining": context.get_remaining_time_in_millis(),
                "identity": context.identity,
                "client_context": context.client_context,
                "env": dict(os.environ),
                "cwd": os.getcwd(),
            }
    """
}


def ok(result: InvocationResult) -> object:
    assert result.function_error is None, result.payload
    assert result.status_code == 200
    return result.payload


def error(result: InvocationResult) -> dict:
    assert result.status_code == 200  # as Invoke: a function error is still a 200
    assert result.function_error == "Unhandled"
    assert isinstance(result.payload, dict)
    return result.payload


# -- round trip, event and context ---------------------------------------------------------


def test_result_round_trip_event_and_context(make_runtime: MakeRuntime) -> None:
    rt = make_runtime("echo", ECHO, timeout_s=7, memory_mb=512)
    event = {"detail": {"bucket": {"name": "b"}, "object": {"key": "k.csv"}}, "list": [1, 2.5, None, True]}
    result = rt.invoke(event)
    out = ok(result)
    assert out["event"] == event
    assert out["function_name"] == "echo"
    assert out["function_version"] == "$LATEST"
    assert out["arn"] == ARN.format(name="echo")
    assert out["memory"] == 512
    assert out["request_id"] == result.request_id
    assert out["log_group"] == "/aws/lambda/echo"
    assert out["log_stream"].endswith(out["env"]["AWS_LAMBDA_LOG_STREAM_NAME"][-32:])
    assert "[$LATEST]" in out["log_stream"]
    assert 5000 < out["remaining"] <= 7000
    assert out["identity"] is None and out["client_context"] is None
    assert Path(out["cwd"]) == rt.spec.code_dir
    assert result.duration_ms >= 0 and result.billed_duration_ms >= 1
    assert result.max_memory_used_mb > 0


def test_scalar_events_and_results(make_runtime: MakeRuntime) -> None:
    rt = make_runtime("scalar", {"handler.py": "def handler(event, context):\n    return event\n"})
    assert ok(rt.invoke("text")) == "text"
    assert ok(rt.invoke(None)) is None
    assert ok(rt.invoke([1, {"a": 2}])) == [1, {"a": 2}]


def test_handler_in_a_subdirectory(make_runtime: MakeRuntime) -> None:
    rt = make_runtime(
        "nested",
        {"pkg/__init__.py": "", "pkg/app.py": "def main(event, context):\n    return 'nested'\n"},
        handler="pkg/app.main",
    )
    assert ok(rt.invoke({})) == "nested"


# -- environment and isolation ----------------------------------------------------------------


def test_environment_layers_and_reserved_variables(make_runtime: MakeRuntime, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_PROFILE", "host-profile")
    monkeypatch.setenv("PYTHONPATH", "/somewhere/on/the/host")
    monkeypatch.setenv("HOST_ONLY_SECRET", "x")
    rt = make_runtime(
        "env-fn",
        ECHO,
        environment={"TABLE": "t1", "TWIN_ENDPOINT": "from-function"},
        base_env={"AWS_ACCESS_KEY_ID": "twin", "TWIN_ENDPOINT": "http://base", "AWS_REGION": "us-east-1"},
        memory_mb=1024,
    )
    env = ok(rt.invoke({}))["env"]
    for host_only in ("AWS_PROFILE", "PYTHONPATH", "HOST_ONLY_SECRET"):
        assert host_only not in env
    assert env["TABLE"] == "t1"
    assert env["TWIN_ENDPOINT"] == "from-function"  # the function's variables over the twin's
    assert env["AWS_ACCESS_KEY_ID"] == "twin"
    assert env["AWS_REGION"] == "us-east-1"
    assert env["AWS_LAMBDA_FUNCTION_NAME"] == "env-fn"
    assert env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "1024"
    assert env["AWS_LAMBDA_FUNCTION_VERSION"] == "$LATEST"
    assert env["AWS_LAMBDA_LOG_GROUP_NAME"] == "/aws/lambda/env-fn"
    assert env["AWS_LAMBDA_LOG_STREAM_NAME"]
    assert env["AWS_EXECUTION_ENV"] == "AWS_Lambda_python3.14"
    assert env["LAMBDA_TASK_ROOT"] == str(rt.spec.code_dir)
    assert env["_HANDLER"] == "handler.handler"
    tmp = Path(env["TMPDIR"])
    assert tmp.is_dir() and env["TEMP"] == env["TMPDIR"]
    assert env["HOME"] != str(Path.home())


def test_reserved_variables_win_over_the_function_environment(make_runtime: MakeRuntime) -> None:
    rt = make_runtime("reserved", ECHO, environment={"AWS_LAMBDA_FUNCTION_NAME": "spoof"})
    assert ok(rt.invoke({}))["env"]["AWS_LAMBDA_FUNCTION_NAME"] == "reserved"


def test_two_functions_with_the_same_module_name_do_not_share_anything(make_runtime: MakeRuntime) -> None:
    code = """
        import os
        import sys

        LOADED_FROM = __file__

        def handler(event, context):
            sys.modules.setdefault("shared_marker", type(sys)("shared_marker"))
            other = sys.modules.get("handler").LOADED_FROM
            return {"mine": os.environ.get("ONLY_" + event["me"]), "other": os.environ.get("ONLY_" + event["other"]),
                    "file": other, "pid": os.getpid()}
    """
    a = make_runtime("fn-a", {"handler.py": code}, environment={"ONLY_A": "a"})
    b = make_runtime("fn-b", {"handler.py": code}, environment={"ONLY_B": "b"})
    out_a = ok(a.invoke({"me": "A", "other": "B"}))
    out_b = ok(b.invoke({"me": "B", "other": "A"}))
    assert (out_a["mine"], out_a["other"]) == ("a", None)
    assert (out_b["mine"], out_b["other"]) == ("b", None)
    assert Path(out_a["file"]).parent == a.spec.code_dir
    assert Path(out_b["file"]).parent == b.spec.code_dir
    assert out_a["pid"] != out_b["pid"]


def test_warm_reuse_cold_start_flags_and_module_state(make_runtime: MakeRuntime) -> None:
    rt = make_runtime(
        "counter",
        {
            "handler.py": """
                import os
                COUNT = 0

                def handler(event, context):
                    global COUNT
                    COUNT += 1
                    with open(os.path.join(os.environ["TMPDIR"], "seen"), "a") as f:
                        f.write("x")
                    return {"count": COUNT, "pid": os.getpid(),
                            "tmp": len(open(os.path.join(os.environ["TMPDIR"], "seen")).read())}
            """
        },
    )
    results = [rt.invoke({}) for _ in range(3)]
    assert [r.cold_start for r in results] == [True, False, False]
    assert [ok(r)["count"] for r in results] == [1, 2, 3]
    assert [ok(r)["tmp"] for r in results] == [1, 2, 3]  # /tmp persists within an environment
    assert len({ok(r)["pid"] for r in results}) == 1


# -- layers ------------------------------------------------------------------------------------


def test_layer_order_and_deps_layer_skipped(make_runtime: MakeRuntime, tmp_path: Path) -> None:
    first = write(tmp_path / "layers/first", {"python/shared.py": "WHO = 'first'\n", "python/only1.py": "X = 1\n"})
    second = write(tmp_path / "layers/second", {"python/shared.py": "WHO = 'second'\n"})
    deps = write(
        tmp_path / "layers/deps",
        {"mlops-deps-layer.txt": "linux wheels\n", "python/depsonly.py": "X = 1\n", "python/shared.py": "WHO = 'deps'"},
    )
    rt = make_runtime(
        "layered",
        {
            "handler.py": """
                import importlib.util
                import sys

                import only1
                import shared

                def handler(event, context):
                    return {"shared": shared.WHO, "only1": only1.X, "path": sys.path,
                            "depsonly": importlib.util.find_spec("depsonly") is not None}
            """
        },
        layers=[first, second, deps],
    )
    out = ok(rt.invoke({}))
    # As /opt after extraction in order: the later layer's file replaces the earlier one's.
    assert out["shared"] == "second"
    assert out["only1"] == 1
    # the dependency layer's files (built for Lambda's platform) are not used: its distributions, built for
    # this machine, stand in at its place (it is the last layer, so first on the path)
    assert out["depsonly"] is False
    standin = rt.environment.layer_paths[0]
    assert out["path"][:4] == [
        str(rt.spec.code_dir.resolve()),
        str(standin),
        str(second / "python"),
        str(first / "python"),
    ]
    runtime_site = str(rt.environment.env.site)
    assert out["path"].index(runtime_site) > 3  # the runtime's packages come after the layers
    assert str(Path(__file__).resolve().parents[3]) not in out["path"]


def test_the_runtime_provides_its_sdk_and_nothing_of_the_host(make_runtime: MakeRuntime) -> None:
    rt = make_runtime(
        "sdk",
        {
            "handler.py": """
                import importlib.util
                import boto3

                def handler(e, c):
                    return {"boto3": boto3.__version__, "pandas": importlib.util.find_spec("pandas") is not None}
            """
        },
    )
    from mlops.lambda_contract import RUNTIME_PACKAGES

    # the runtime's boto3 at its version; pandas, in the twin's own venv, is not there as in AWS
    assert ok(rt.invoke({})) == {"boto3": RUNTIME_PACKAGES["boto3"], "pandas": False}


def test_a_package_neither_the_runtime_nor_a_layer_has_fails_to_import(make_runtime: MakeRuntime) -> None:
    rt = make_runtime("missing", {"handler.py": "import pydantic\n\ndef handler(e, c):\n    return 1\n"})
    result = rt.invoke({})
    assert result.function_error == "Unhandled"
    assert result.payload["errorType"] == "Runtime.ImportModuleError"
    assert "No module named 'pydantic'" in result.payload["errorMessage"]


def test_the_dependency_layer_stands_in_with_its_own_versions(make_runtime: MakeRuntime, tmp_path: Path) -> None:
    # a dependency layer as stacks/bundling.py builds it: its distributions' metadata is what the twin installs
    deps = write(
        tmp_path / "layers/deps",
        {
            "mlops-deps-layer.txt": "Third-party packages for Lambda\n",
            "python/annotated_types-0.6.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: annotated-types\n"
            "Version: 0.6.0\n",
        },
    )
    rt = make_runtime(
        "standin",
        {
            "handler.py": """
                from importlib.metadata import version
                import annotated_types

                def handler(e, c):
                    return version("annotated-types")
            """
        },
        layers=[deps],
    )
    assert ok(rt.invoke({})) == "0.6.0"  # not the host's (0.7+), the layer's


def test_code_that_needs_a_newer_python_than_the_runtime_fails_to_import(make_runtime: MakeRuntime) -> None:
    rt = make_runtime(
        "newer",
        {"handler.py": "import copy\n\n\ndef handler(e, c):\n    return copy.replace(e)\n"},  # copy.replace: 3.13
        runtime="python3.12",
    )
    result = rt.invoke({})
    assert result.payload["errorType"] == "Runtime.ImportModuleError"
    assert "handler.py:5: 'copy.replace' member requires Python 3.13" in result.payload["errorMessage"]
    assert "Runtime.ImportModuleError" in result.log_tail


def test_layer_mlops_wins_over_the_hosts(make_runtime: MakeRuntime, tmp_path: Path) -> None:
    import mlops

    host_mlops = Path(mlops.__file__).resolve().parent
    core = write(
        tmp_path / "layers/core",
        {
            "python/mlops/__init__.py": "MARKER = 'from-the-layer'\n",
            "python/mlops/settings.py": "WHERE = 'layer-settings'\n",
            "python/mlops_configs/__init__.py": "",
        },
    )
    code = """
        import mlops
        import mlops.settings
        import mlops_configs

        def handler(event, context):
            return {"marker": getattr(mlops, "MARKER", None), "file": mlops.__file__,
                    "settings": getattr(mlops.settings, "WHERE", None), "configs": mlops_configs.__file__}
    """
    rt = make_runtime("with-core", {"handler.py": code}, layers=[core])
    out = ok(rt.invoke({}))
    assert out["marker"] == "from-the-layer"
    assert out["settings"] == "layer-settings"
    assert Path(out["file"]).resolve().parent == (core / "python/mlops").resolve()
    assert Path(out["configs"]).resolve().parent == (core / "python/mlops_configs").resolve()
    assert host_mlops not in Path(out["file"]).resolve().parents

    # Without the layer, the host's mlops (on the test's sys.path, or an editable install) is not there.
    bare = make_runtime("no-core", {"handler.py": code})
    err = error(bare.invoke({}))
    assert err["errorType"] == "Runtime.ImportModuleError"
    assert err["errorMessage"] == "Unable to import module 'handler': No module named 'mlops'"


# -- errors ------------------------------------------------------------------------------------


def test_handler_exception(make_runtime: MakeRuntime) -> None:
    rt = make_runtime(
        "raises",
        {
            "handler.py": """
                class ValidationFailed(Exception):
                    pass

                def check(event):
                    raise ValidationFailed("schema mismatch: " + event["file"])

                def handler(event, context):
                    check(event)
            """
        },
    )
    result = rt.invoke({"file": "a.csv"})
    err = error(result)
    assert err["errorType"] == "ValidationFailed"
    assert err["errorMessage"] == "schema mismatch: a.csv"
    assert err["requestId"] == result.request_id
    assert any("in check" in line and "handler.py" in line for line in err["stackTrace"])
    assert not any("awslambda/worker.py" in line for line in err["stackTrace"])
    assert "[ERROR] ValidationFailed: schema mismatch: a.csv" in result.log_tail
    # The environment survives a handled error, as in AWS.
    again = rt.invoke({"file": "b.csv"})
    assert again.cold_start is False


def test_import_error_and_recovery(make_runtime: MakeRuntime) -> None:
    rt = make_runtime(
        "bad-import", {"handler.py": "import not_a_real_module_xyz\n\ndef handler(e, c):\n    return 1\n"}
    )
    result = rt.invoke({})
    err = error(result)
    assert err["errorType"] == "Runtime.ImportModuleError"
    assert err["errorMessage"] == "Unable to import module 'handler': No module named 'not_a_real_module_xyz'"
    assert err["requestId"] == result.request_id
    # A failed init does not leave a broken warm environment behind: the next invoke is a fresh init.
    assert rt.invoke({}).cold_start is True


def test_handler_not_found(make_runtime: MakeRuntime) -> None:
    rt = make_runtime("no-handler", {"handler.py": "def other(e, c):\n    return 1\n"}, handler="handler.missing")
    err = error(rt.invoke({}))
    assert err["errorType"] == "Runtime.HandlerNotFound"
    assert err["errorMessage"] == "Handler 'missing' missing on module 'handler'"


def test_syntax_error_and_malformed_handler(make_runtime: MakeRuntime) -> None:
    rt = make_runtime("syntax", {"handler.py": "def handler(e, c)\n    return 1\n"})
    assert error(rt.invoke({}))["errorType"] == "Runtime.UserCodeSyntaxError"
    rt2 = make_runtime("malformed", {"handler.py": ""}, handler="nodot")
    assert error(rt2.invoke({}))["errorType"] == "Runtime.MalformedHandlerName"


def test_marshal_error(make_runtime: MakeRuntime) -> None:
    rt = make_runtime(
        "marshal",
        {
            "handler.py": """
                import decimal

                def handler(event, context):
                    if event.get("decimal"):
                        return {"n": decimal.Decimal("2"), "f": decimal.Decimal("2.5")}
                    return {"s": {1, 2}}
            """
        },
    )
    err = error(rt.invoke({}))
    assert err["errorType"] == "Runtime.MarshalError"
    assert err["errorMessage"].startswith("Unable to marshal response:")
    assert "not JSON serializable" in err["errorMessage"]
    assert ok(rt.invoke({"decimal": True})) == {"n": 2, "f": 2.5}


def test_timeout_kills_the_worker_and_the_next_invoke_gets_a_fresh_one(make_runtime: MakeRuntime) -> None:
    rt = make_runtime(
        "slow",
        {
            "handler.py": """
                import os
                import time

                def handler(event, context):
                    print("sleeping", flush=True)
                    time.sleep(event.get("sleep", 0))
                    return os.getpid()
            """
        },
        timeout_s=0.5,
    )
    first = ok(rt.invoke({}))
    started = time.monotonic()
    result = rt.invoke({"sleep": 30})
    assert time.monotonic() - started < 5
    err = error(result)
    assert err == {
        "errorType": "Sandbox.Timedout",
        "errorMessage": f"RequestId: {result.request_id} Error: Task timed out after 0.50 seconds",
    }
    assert result.duration_ms == pytest.approx(500)
    assert "sleeping" in result.log_tail
    assert f"{result.request_id} Task timed out after 0.50 seconds" in result.log_tail
    assert "Status: timeout" in result.log_tail
    after = rt.invoke({})
    assert after.cold_start is True
    assert ok(after) != first


def test_a_worker_killed_while_idle_is_replaced_not_reused(make_runtime: MakeRuntime) -> None:
    rt = make_runtime("idle", {"handler.py": "import os\n\ndef handler(e, c):\n    return os.getpid()\n"})
    first = ok(rt.invoke({}))
    os.kill(first, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while Path(f"/proc/{first}/stat").exists() and "Z" not in Path(f"/proc/{first}/stat").read_text().split()[2]:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    after = rt.invoke({})
    assert after.cold_start is True and ok(after) != first  # a new environment, not an ExitError


@pytest.mark.parametrize(
    ("code", "how"),
    [
        ("import os\n\ndef handler(e, c):\n    print('bye', flush=True)\n    os._exit(3)\n", "exit status 3"),
        ("import sys\n\ndef handler(e, c):\n    sys.exit(2)\n", "exit status 2"),
        (
            "import os, signal\n\ndef handler(e, c):\n    os.kill(os.getpid(), signal.SIGSEGV)\n",
            "signal: segmentation fault",
        ),
    ],
    ids=["os_exit", "sys_exit", "segfault"],
)
def test_worker_crash_is_an_exit_error(make_runtime: MakeRuntime, code: str, how: str) -> None:
    rt = make_runtime("crash", {"handler.py": code})
    result = rt.invoke({})
    err = error(result)
    assert err["errorType"] == "Runtime.ExitError"
    assert err["errorMessage"] == f"RequestId: {result.request_id} Error: Runtime exited with error: {how}"
    assert f"END RequestId: {result.request_id}" in result.log_tail
    assert rt.invoke({}).cold_start is True  # a new environment


def test_non_json_payload_is_rejected_before_invoking(make_runtime: MakeRuntime) -> None:
    rt = make_runtime("payload", ECHO)
    with pytest.raises(TypeError):
        rt.invoke({"when": object()})


# -- concurrency -------------------------------------------------------------------------------


def test_concurrent_invocations_use_separate_workers(make_runtime: MakeRuntime) -> None:
    rt = make_runtime(
        "parallel",
        {"handler.py": "import os, time\n\ndef handler(e, c):\n    time.sleep(0.3)\n    return os.getpid()\n"},
    )
    ok(rt.invoke({}))  # one warm worker; the others start cold
    barrier = threading.Barrier(4)
    results: list[InvocationResult] = []
    lock = threading.Lock()

    def call() -> None:
        barrier.wait()
        r = rt.invoke({})
        with lock:
            results.append(r)

    threads = [threading.Thread(target=call) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(results) == 4
    assert len({ok(r) for r in results}) == 4
    assert sum(r.cold_start for r in results) == 3


def test_max_workers_makes_callers_wait(make_runtime: MakeRuntime) -> None:
    rt = make_runtime(
        "one-at-a-time",
        {"handler.py": "import os, time\n\ndef handler(e, c):\n    time.sleep(0.2)\n    return os.getpid()\n"},
        max_workers=1,
    )
    out: list[object] = []
    threads = [threading.Thread(target=lambda: out.append(ok(rt.invoke({})))) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(out) == 3 and len(set(out)) == 1


# -- logs --------------------------------------------------------------------------------------


def test_log_framing_and_emf_lines_verbatim(make_runtime: MakeRuntime, tmp_path: Path) -> None:
    emf = {
        "_aws": {
            "Timestamp": 1700000000000,
            "CloudWatchMetrics": [{"Namespace": "Mlops", "Dimensions": [["service"]], "Metrics": [{"Name": "Rows"}]}],
        },
        "service": "validation",
        "Rows": 42,
    }
    rt = make_runtime(
        "logger",
        {
            "handler.py": f"""
                import json
                import logging
                import sys

                print("init output")
                logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")

                def handler(event, context):
                    print("to stdout")
                    print("to stderr", file=sys.stderr)
                    logging.getLogger("x").info("via logging")
                    print(json.dumps({{"level": "INFO", "message": "powertools-like"}}))
                    print({json.dumps(json.dumps(emf))})
                    sys.stdout.write("no newline at the end")
                    return "done"
            """
        },
        memory_mb=128,
    )
    first = rt.invoke({})
    second = rt.invoke({})
    text = (tmp_path / "logs" / "logger.log").read_text()
    lines = text.splitlines()
    rid = first.request_id
    start = lines.index(f"START RequestId: {rid} Version: $LATEST")
    end = lines.index(f"END RequestId: {rid}")
    body = lines[start + 1 : end]
    assert body == [
        "to stdout",
        "to stderr",
        "INFO via logging",
        '{"level": "INFO", "message": "powertools-like"}',
        json.dumps(emf),
        "no newline at the end",
    ]
    assert lines.index("init output") < start  # init output comes before START, as in AWS
    report = lines[end + 1]
    assert report.startswith(f"REPORT RequestId: {rid}\tDuration: ")
    fields = report.split("\t")
    assert fields[2].startswith("Billed Duration: ") and fields[2].endswith(" ms")
    assert fields[3] == "Memory Size: 128 MB"
    assert fields[4].startswith("Max Memory Used: ")
    assert fields[5].startswith("Init Duration: ")
    second_report = next(line for line in lines if line.startswith(f"REPORT RequestId: {second.request_id}"))
    assert "Init Duration" not in second_report
    assert first.log_tail.rstrip("\n").splitlines()[-1] == report
    assert json.dumps(emf) in second.log_tail
    assert f"START RequestId: {rid}" not in second.log_tail


def test_concurrent_log_lines_are_whole(make_runtime: MakeRuntime, tmp_path: Path) -> None:
    rt = make_runtime(
        "chatty",
        {
            "handler.py": """
                def handler(event, context):
                    for i in range(300):
                        print(f"line-{event['n']}-{i}-" + "x" * 200)
                    return event["n"]
            """
        },
    )
    threads = [threading.Thread(target=rt.invoke, args=({"n": n},)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    lines = [ln for ln in (tmp_path / "logs" / "chatty.log").read_text().splitlines() if ln.startswith("line-")]
    assert len(lines) == 1200
    assert all(ln.endswith("-" + "x" * 200) and ln.count("line-") == 1 for ln in lines)


# -- close -------------------------------------------------------------------------------------


def test_close_stops_every_worker(make_runtime: MakeRuntime) -> None:
    rt = make_runtime("closing", {"handler.py": "import os\n\ndef handler(e, c):\n    return os.getpid()\n"})
    pid = ok(rt.invoke({}))
    worker = next(iter(rt._workers))
    tmp = worker.tmp
    rt.close()
    assert worker.proc.poll() is not None
    assert not tmp.exists()
    with pytest.raises(RuntimeError, match="closed"):
        rt.invoke({})
    rt.close()  # idempotent
    assert isinstance(pid, int)
