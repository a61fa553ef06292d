"""The twin's Lambda: each function runs in warm worker processes, one per execution environment.

A worker (:mod:`mlops.twin.awslambda.worker`) is a separate, isolated Python process (``python -I``) with
the function's code directory first on ``sys.path``, then its layers, then the packages the Lambda
runtime provides, on the runtime's Python (:mod:`.environments`: the dependency layer, built for Lambda's
platform, is replaced by the same distributions built for this machine). Nothing of the twin's own venv
is importable, and its environment variables are built from scratch: nothing of the host's leaks in.
Workers stay warm between invocations; one is started when all are busy, up to ``max_workers``.
Everything a handler prints lands in ``<log_dir>/<function>.log`` between the ``START``/``END``/``REPORT``
lines CloudWatch Logs shows for Lambda.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import math
import os
import select
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlops.twin import pycompat
from mlops.twin.awslambda.environments import FunctionEnvironment, function_environment, is_deps_layer
from mlops.twin.awslambda.worker import MARK

WORKER_SCRIPT = Path(__file__).with_name("worker.py")
# The twin's own project: its ``mlops`` must never stand in for a layer's copy inside a worker.
PROJECT_ROOT = Path(__file__).resolve().parents[2]
INIT_LIMIT_S = 10.0  # AWS's limit for the init phase (after which it retries init within the invoke timeout)
LOG_TAIL_BYTES = 4096
MARK_GRACE_S = 5.0  # how long to wait for the log pipe to catch up with a response


@dataclass(frozen=True)
class FunctionSpec:
    name: str
    arn: str
    handler: str  # "module.func" or "pkg/module.func", relative to code_dir
    code_dir: Path
    layer_dirs: list[Path]
    environment: dict[str, str]
    timeout_s: float
    memory_mb: int
    runtime: str  # e.g. "python3.14"


@dataclass
class InvocationResult:
    status_code: int
    payload: Any
    function_error: str | None
    log_tail: str
    duration_ms: float
    billed_duration_ms: int
    max_memory_used_mb: int
    request_id: str
    cold_start: bool


class _Capture(list[str]):
    """The log lines of one invocation, with the log stream (the worker's) they go to."""

    def __init__(self, stream: str) -> None:
        super().__init__()
        self.stream = stream


class _WorkerGone(Exception):
    """The worker process exited (or closed its pipe) while we were waiting for it."""


class _Worker:
    """One execution environment: the process, its log forwarder, and its /tmp."""

    def __init__(self, rt: LambdaRuntime) -> None:
        self.rt = rt
        self.tmp = Path(tempfile.mkdtemp(prefix=f"lambda-{rt.spec.name[:40]}-"))
        today = dt.datetime.now(dt.UTC).strftime("%Y/%m/%d")
        self.log_stream = f"{today}/[$LATEST]{uuid.uuid4().hex}"
        self.initialized = False
        self.alive = True
        self.killed_by_us = False
        self._buf = bytearray()
        self._cond = threading.Condition()
        self._marks: set[str] = set()
        self._eof = False
        self._capture: list[str] | None = None
        try:
            self.proc = subprocess.Popen(
                [str(rt.environment.python), "-I", "-u", "-X", "utf8", str(WORKER_SCRIPT)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=rt.worker_environment(self.tmp, self.log_stream),
                cwd=str(rt.spec.code_dir),
                start_new_session=True,  # its own process group: a timeout kills the handler's children too
            )
        except BaseException:
            shutil.rmtree(self.tmp, ignore_errors=True)
            raise
        self.pid = self.proc.pid
        self._pump = threading.Thread(target=self._forward_log, name=f"lambda-log-{self.pid}", daemon=True)
        self._pump.start()

    # -- log pipe -----------------------------------------------------------------------
    def _forward_log(self) -> None:
        assert self.proc.stderr is not None
        mark = MARK.encode()
        for raw in iter(self.proc.stderr.readline, b""):
            at = raw.find(mark)
            text = raw if at < 0 else raw[:at]
            if text:
                self._emit(text.rstrip(b"\r\n").decode("utf-8", errors="replace"))
            if at >= 0:
                token = raw[at + len(mark) :].strip().decode("utf-8", errors="replace")
                with self._cond:
                    self._marks.add(token)
                    self._cond.notify_all()
        with self._cond:
            self._eof = True
            self._cond.notify_all()

    def _emit(self, line: str) -> None:
        self.rt.write_log(line, self._capture, self.log_stream)

    def wait_mark(self, token: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._cond:
            while token not in self._marks and not self._eof:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
            found = token in self._marks
            self._marks.discard(token)
            return found

    def wait_log_eof(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not self._eof and (remaining := deadline - time.monotonic()) > 0:
                self._cond.wait(remaining)

    # -- protocol ----------------------------------------------------------------------
    def send(self, message: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(json.dumps(message).encode() + b"\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError, ValueError) as exc:
            raise _WorkerGone() from exc

    def recv(self, deadline: float) -> dict[str, Any] | None:
        """The next response, or None when ``deadline`` (monotonic) passes first."""
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        while (end := self._buf.find(b"\n")) < 0:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            try:
                ready, _, _ = select.select([fd], [], [], remaining)
            except (OSError, ValueError) as exc:
                raise _WorkerGone() from exc
            if not ready:
                continue
            try:
                chunk = os.read(fd, 1 << 16)
            except OSError as exc:
                raise _WorkerGone() from exc
            if not chunk:
                raise _WorkerGone()
            self._buf += chunk
        line = bytes(self._buf[:end])
        del self._buf[: end + 1]
        return json.loads(line)

    # -- lifecycle ---------------------------------------------------------------------
    def exit_description(self) -> str:
        """How the process ended, in the words of AWS's ``Runtime exited with error: ...``."""
        try:
            code = self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            return "unknown"
        if code < 0:
            try:
                name = signal.strsignal(-code) or f"signal {-code}"
            except ValueError:
                name = f"signal {-code}"
            return f"signal: {name.lower()}"
        return f"exit status {code}"

    def kill(self) -> None:
        self.alive = False
        if self.proc.poll() is None:
            self.killed_by_us = True
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)
        self.wait_log_eof(1.0)
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            with contextlib.suppress(OSError, ValueError):
                if stream is not None:
                    stream.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


class LambdaRuntime:
    """Runs one Lambda function's invocations in up to ``max_workers`` warm worker processes."""

    def __init__(self, spec: FunctionSpec, *, base_env: dict[str, str], log_dir: Path, max_workers: int = 4) -> None:
        if max_workers < 1:
            raise ValueError("max_workers must be at least 1")
        self.spec = spec
        self.base_env = dict(base_env)
        self.max_workers = max_workers
        self.log_dir = Path(log_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.log_dir / f"{spec.name}.log"
        self.log_group = f"/aws/lambda/{spec.name}"
        # CloudWatch Logs: called with (log group, log stream, line) for every line written.
        self.log_sink: Callable[[str, str, str], None] | None = None
        self._log_lock = threading.Lock()
        self._log_fd = os.open(self.log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._cond = threading.Condition()
        self._workers: set[_Worker] = set()
        self._idle: list[_Worker] = []
        self._closed = False
        self.environment: FunctionEnvironment = function_environment(spec.runtime, spec.code_dir, spec.layer_dirs)
        self.sys_path = self._sys_path()

    # -- setup -------------------------------------------------------------------------
    def _sys_path(self) -> list[str]:
        # Lambda's order: /var/task, the layers (/opt/python/lib/pythonX/site-packages, /opt/python), then
        # the runtime's own packages (the interpreter's site-packages, after these).
        return [str(Path(self.spec.code_dir).resolve())] + [str(p) for p in self.environment.layer_paths]

    def _unimportable(self) -> str | None:
        """Why the code cannot import on the runtime's Python (it needs a newer one), if it cannot."""
        problems = self.environment.code_problems
        return pycompat.describe(problems, f"the runtime's Python ({self.spec.runtime})") if problems else None

    def worker_environment(self, tmp: Path, log_stream: str) -> dict[str, str]:
        spec = self.spec
        layers = [d for d in spec.layer_dirs if not is_deps_layer(d)]
        path = [str(self.environment.python.parent), *(str(b) for b in self.environment.layer_bins)]
        env = {
            "PATH": os.pathsep.join([*path, "/usr/local/bin", "/usr/bin", "/bin"]),
            "HOME": str(tmp),  # not the host's: no ~/.aws/config or credentials may leak in
            "LANG": "C.UTF-8",
            "TMPDIR": str(tmp),
            "TEMP": str(tmp),
            "TMP": str(tmp),
            "TZ": ":UTC",
        }
        libs = [str(Path(d) / "lib") for d in layers]
        if os.environ.get("LD_LIBRARY_PATH"):  # if the host's Python itself needs it
            libs.append(os.environ["LD_LIBRARY_PATH"])
        if libs:
            env["LD_LIBRARY_PATH"] = os.pathsep.join(libs)
        env.update(self.base_env)
        env.update(spec.environment)
        region = spec.arn.split(":")[3] if spec.arn.count(":") >= 6 else ""
        if region:
            env.setdefault("AWS_REGION", region)
            env.setdefault("AWS_DEFAULT_REGION", env["AWS_REGION"])
        env.update(
            {
                "AWS_LAMBDA_FUNCTION_NAME": spec.name,
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory_mb),
                "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
                "AWS_LAMBDA_LOG_GROUP_NAME": self.log_group,
                "AWS_LAMBDA_LOG_STREAM_NAME": log_stream,
                "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
                "AWS_EXECUTION_ENV": f"AWS_Lambda_{spec.runtime}",
                "LAMBDA_TASK_ROOT": str(spec.code_dir),
                "_HANDLER": spec.handler,
            }
        )
        return env

    # -- logs --------------------------------------------------------------------------
    def write_log(self, line: str, capture: list[str] | None = None, stream: str | None = None) -> None:
        data = (line + "\n").encode("utf-8", errors="replace")
        with self._log_lock:
            if capture is not None:
                capture.append(line)
            if self._log_fd >= 0:
                os.write(self._log_fd, data)  # O_APPEND, one write per whole line
            if self.log_sink is not None:
                self.log_sink(self.log_group, stream or getattr(capture, "stream", ""), line)

    # -- pool --------------------------------------------------------------------------
    def _acquire(self) -> _Worker:
        dead: list[_Worker] = []
        try:
            with self._cond:
                while True:
                    if self._closed:
                        raise RuntimeError(f"Lambda runtime for {self.spec.name} is closed")
                    while self._idle:
                        worker = self._idle.pop()  # the most recently used: the warmest
                        if worker.proc.poll() is None:
                            return worker
                        # it died while idle (killed from outside): Lambda starts a new environment
                        self._workers.discard(worker)
                        dead.append(worker)
                    if len(self._workers) < self.max_workers:
                        worker = _Worker(self)
                        self._workers.add(worker)
                        return worker
                    self._cond.wait()
        finally:
            for worker in dead:
                worker.kill()  # collects its exit status and closes its pipes

    def _release(self, worker: _Worker) -> None:
        with self._cond:
            keep = worker.alive and not self._closed
            if keep:
                self._idle.append(worker)
            else:
                self._workers.discard(worker)
            self._cond.notify()
        if not keep:
            worker.kill()

    # -- invoke ------------------------------------------------------------------------
    def invoke(self, payload: Any) -> InvocationResult:
        """Invoke the function synchronously (``RequestResponse``); thread-safe."""
        event = json.loads(json.dumps(payload))  # the event a handler gets is plain JSON
        worker = self._acquire()
        try:
            return self._run(worker, str(uuid.uuid4()), event)
        finally:
            self._release(worker)

    def _context_info(self, worker: _Worker) -> dict[str, Any]:
        return {
            "function_name": self.spec.name,
            "function_version": "$LATEST",
            "invoked_function_arn": self.spec.arn,
            "memory_limit_in_mb": self.spec.memory_mb,
            "log_group_name": self.log_group,
            "log_stream_name": worker.log_stream,
        }

    def _run(self, worker: _Worker, rid: str, event: Any) -> InvocationResult:
        spec = self.spec
        capture = _Capture(worker.log_stream)
        worker._capture = capture
        cold = not worker.initialized
        init_ms: float | None = None
        outcome: dict[str, Any] | None = None
        status: str | None = None  # REPORT's Status for a failed environment
        duration_ms = 0.0
        max_mem = 0
        try:
            if cold:
                self.write_log(f"INIT_START Runtime Version: {spec.runtime.replace('python', 'python:')}", capture)
                started = time.monotonic()
                try:
                    worker.send(
                        {
                            "op": "init",
                            "handler": spec.handler,
                            "sys_path": self.sys_path,
                            "hide_roots": [str(PROJECT_ROOT)],
                            "unimportable": self._unimportable(),
                        }
                    )
                    resp = worker.recv(started + INIT_LIMIT_S + spec.timeout_s)
                except _WorkerGone:
                    resp, status = None, "error"
                init_ms = (time.monotonic() - started) * 1000
                if resp is None and status is None:
                    status = "timeout"
                elif resp is not None:
                    worker.wait_mark("init", MARK_GRACE_S)
                    init_ms = float(resp.get("init_ms", init_ms))
                    if not resp["ok"]:
                        # As AWS: a failed init fails this invoke and the next one starts a fresh environment.
                        outcome = {"ok": False, "error": {**resp["error"], "requestId": rid}}
                        worker.alive = False
                    else:
                        worker.initialized = True
            self.write_log(f"START RequestId: {rid} Version: $LATEST", capture)
            if outcome is None and status is None:
                started = time.monotonic()
                deadline_ms = time.time() * 1000 + spec.timeout_s * 1000
                try:
                    worker.send(
                        {
                            "op": "invoke",
                            "request_id": rid,
                            "event": event,
                            "deadline_ms": deadline_ms,
                            "context": self._context_info(worker),
                        }
                    )
                    outcome = worker.recv(started + spec.timeout_s)
                    if outcome is None:
                        status = "timeout"
                except _WorkerGone:
                    status = "error"
                duration_ms = (time.monotonic() - started) * 1000
                if outcome is not None:
                    worker.wait_mark(rid, MARK_GRACE_S)
                    duration_ms = float(outcome.get("duration_ms", duration_ms))
                    max_mem = int(outcome.get("max_memory_mb", 0))
            error_type = None
            if status == "timeout":
                worker.kill()
                limit = spec.timeout_s
                duration_ms = limit * 1000
                stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
                self.write_log(f"{stamp} {rid} Task timed out after {limit:.2f} seconds", capture)
                error_type = "Sandbox.Timedout"
                outcome = {
                    "ok": False,
                    "error": {
                        "errorType": error_type,
                        "errorMessage": f"RequestId: {rid} Error: Task timed out after {limit:.2f} seconds",
                    },
                }
            elif status == "error":
                worker.alive = False
                how = worker.exit_description()
                worker.wait_log_eof(MARK_GRACE_S)
                error_type = "Runtime.ExitError"
                message = f"RequestId: {rid} Error: Runtime exited with error: {how}"
                self.write_log(message, capture)
                self.write_log(error_type, capture)
                outcome = {"ok": False, "error": {"errorType": error_type, "errorMessage": message}}
            assert outcome is not None
            if not outcome["ok"] and error_type is None and not worker.alive:
                status, error_type = "error", str(outcome["error"].get("errorType"))
            billed = max(1, math.ceil(duration_ms))
            report = (
                f"REPORT RequestId: {rid}\tDuration: {duration_ms:.2f} ms\tBilled Duration: {billed} ms"
                f"\tMemory Size: {spec.memory_mb} MB\tMax Memory Used: {max_mem} MB"
            )
            if cold and init_ms is not None:
                report += f"\tInit Duration: {init_ms:.2f} ms"
            if status:
                report += f"\tStatus: {status}"
                if error_type:
                    report += f"\tError Type: {error_type}"
            self.write_log(f"END RequestId: {rid}", capture)
            self.write_log(report, capture)
        finally:
            worker._capture = None
        ok = bool(outcome["ok"])
        tail = ("\n".join(capture) + "\n").encode("utf-8")[-LOG_TAIL_BYTES:].decode("utf-8", errors="ignore")
        return InvocationResult(
            status_code=200,
            payload=outcome.get("result") if ok else outcome["error"],
            function_error=None if ok else "Unhandled",
            log_tail=tail,
            duration_ms=duration_ms,
            billed_duration_ms=billed,
            max_memory_used_mb=max_mem,
            request_id=rid,
            cold_start=cold,
        )

    # -- shutdown ----------------------------------------------------------------------
    def close(self) -> None:
        """Stop every worker (a running invocation ends as ``Runtime.ExitError``); idempotent."""
        with self._cond:
            self._closed = True
            workers = list(self._workers)
            self._workers.clear()
            self._idle.clear()
            self._cond.notify_all()
        for worker in workers:
            worker.kill()
        with self._log_lock:
            if self._log_fd >= 0:
                os.close(self._log_fd)
                self._log_fd = -1

    def __enter__(self) -> LambdaRuntime:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
