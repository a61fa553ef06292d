"""Model serving on the twin: SageMaker's inference handler contract, variants and capture.

A loaded model is the script-mode source dir (``inference.py`` with ``model_fn``,
``input_fn``, ``predict_fn``, ``output_fn``) plus the extracted ``model.tar.gz``,
exactly what the framework's serving container loads, served the way it serves them:
worker processes (one per vCPU, ``SAGEMAKER_MODEL_SERVER_WORKERS`` overrides) running on
the image's Python and packages plus the source dir's ``requirements.txt``, never in the
twin's own process. An endpoint routes each request to a production variant by weight
(or the one the caller targets), records CloudWatch metrics and, when configured, data
capture in SageMaker's JSON Lines format.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import random
import select
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mlops.twin import pycompat
from mlops.twin.cloudwatch.alarms import MetricStore
from mlops.twin.pyenvs import EnvironmentBuildError, RequirementsError, job_environment, requirements_environment
from mlops.twin.sagemaker.images import ImageEnvironment, UnknownImage, environment_for_uri

NAMESPACE = "AWS/SageMaker"
WORKER_SCRIPT = Path(__file__).with_name("model_worker.py")
INVOCATION_TIMEOUT_S = 60.0  # SageMaker real-time endpoints: the container must answer within 60 s
LOAD_TIMEOUT_S = 600.0  # a worker's import and model_fn (the container's startup health check limit)


class InvokeError(Exception):
    """An InvokeEndpoint error as the runtime API reports it."""

    def __init__(self, status: int, error_type: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.error_type = error_type
        self.message = message
        self.extra = extra


class ModelLoadError(Exception):
    """The model server could not start: the message says why (image, requirements, the handler's error)."""


class ModelRetired(ModelLoadError):
    """The model was closed: traffic moved to another fleet after the request was routed here."""


class HandlerError(Exception):
    """The model's handler raised: the message is ``Type: message`` as the worker reported it."""


class ModelTimeout(Exception):
    """The container did not answer within the invocation time limit."""


def _read_into(fd: int, buf: bytearray, deadline: float) -> None:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise TimeoutError
    try:
        ready, _, _ = select.select([fd], [], [], remaining)
        chunk = os.read(fd, 1 << 16) if ready else None
    except (OSError, ValueError):  # the worker was killed and its pipe closed under the request
        raise EOFError from None
    if chunk is None:
        raise TimeoutError
    if not chunk:
        raise EOFError
    buf += chunk


class _ModelWorker:
    """One model-server worker process (:mod:`.model_worker`) and its side of the pipe protocol."""

    def __init__(self, model: LoadedModel) -> None:
        self.model = model
        self.proc = subprocess.Popen(
            [str(model.python), "-u", str(WORKER_SCRIPT)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=model.log_handle(),
            cwd=str(model.code_dir),
            env=model.worker_environment(),
            start_new_session=True,
        )
        self._buf = bytearray()

    def call(self, header: dict[str, Any], body: bytes, timeout_s: float) -> tuple[dict[str, Any], bytes]:
        """Send a request, return the reply; EOFError if the process died, TimeoutError past the limit."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        if body:
            header = {**header, "n": len(body)}
        try:
            self.proc.stdin.write(json.dumps(header).encode() + b"\n" + body)
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError, ValueError):
            raise EOFError from None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout_s
        while (end := self._buf.find(b"\n")) < 0:
            _read_into(fd, self._buf, deadline)
        reply = json.loads(bytes(self._buf[:end]))
        del self._buf[: end + 1]
        size = int(reply.get("n", 0))
        while len(self._buf) < size:
            _read_into(fd, self._buf, deadline)
        out = bytes(self._buf[:size])
        del self._buf[:size]
        return reply, out

    def kill(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)
        for stream in (self.proc.stdin, self.proc.stdout):
            with contextlib.suppress(OSError, ValueError):
                if stream is not None:
                    stream.close()


class LoadedModel:
    """A model served as the framework image's model server serves it: worker processes, one per vCPU.

    ``load()`` does what the serving container does at start: the source dir checked against the image's
    Python, its ``requirements.txt`` installed by the image's pip (a cached layer), then ``workers``
    processes on the image's environment each import the entry point and call ``model_fn``. Each request
    goes to an idle worker (waiting for one when all are busy); a worker that dies is replaced.
    """

    def __init__(
        self,
        name: str,
        model_dir: Path,
        code_dir: Path,
        program: str = "inference.py",
        *,
        image_uri: str,
        workers: int | None = None,
        environment: dict[str, str] | None = None,
        env_dir: Path | None = None,
        log_path: Path | None = None,
        timeout_s: float = INVOCATION_TIMEOUT_S,
    ) -> None:
        self.name = name
        self.model_dir = Path(model_dir).resolve()
        self.code_dir = Path(code_dir).resolve()
        self.program = program
        self.image_uri = image_uri
        self.environment = dict(environment or {})
        configured = self.environment.get("SAGEMAKER_MODEL_SERVER_WORKERS")
        self.workers = int(configured) if configured else workers or os.cpu_count() or 1
        self.env_dir = Path(env_dir) if env_dir else None  # default: a directory of its own, removed at close
        self.log_path = Path(log_path) if log_path else self.model_dir.parent / "model-server.log"
        self.timeout_s = timeout_s
        self.python: Path | None = None
        self.image: ImageEnvironment | None = None
        self._log: Any = None
        self._cond = threading.Condition()
        self._idle: list[_ModelWorker] = []
        self._all: set[_ModelWorker] = set()
        self._busy = 0
        self._replacing = 0  # workers being started in place of dead ones
        self._closed = False
        self._own_env_dir = False

    # -- start --------------------------------------------------------------------------
    def log_handle(self) -> Any:
        if self._log is None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log = self.log_path.open("ab", buffering=0)
        return self._log

    def worker_environment(self) -> dict[str, str]:
        assert self.image is not None and self.python is not None
        env = {k: v for k, v in os.environ.items() if k in ("HOME", "TMPDIR", "TZ")}
        env["PATH"] = os.pathsep.join([str(self.python.parent), str(self.image.env.bin), "/usr/bin", "/bin"])
        env.update(PYTHONUNBUFFERED="1", PYTHONDONTWRITEBYTECODE="1", PYTHONIOENCODING="UTF-8")
        env.update(LANG="C.UTF-8", LC_ALL="C.UTF-8", PYTHONPATH=str(self.code_dir), SM_MODEL_DIR=str(self.model_dir))
        env.update(self.environment)
        return env

    def _note(self, line: str) -> None:
        self.log_handle().write(f"[twin] {line}\n".encode())

    def load(self) -> LoadedModel:
        try:
            self.image = environment_for_uri(self.image_uri)
        except (UnknownImage, EnvironmentBuildError) as exc:
            raise ModelLoadError(str(exc)) from None
        self._note(f"image {self.image_uri}: {self.image.describe()}")
        layers = [self.image.env]
        found = pycompat.newer_python_needed(self.code_dir, self.image.spec.python, self.image.env.interpreter)
        if found:
            raise ModelLoadError(pycompat.describe(found, f"the image's Python {self.image.spec.python}"))
        requirements = self.code_dir / "requirements.txt"
        if requirements.is_file():
            try:
                layers.insert(0, requirements_environment(self.image.env, requirements))
            except RequirementsError as exc:
                self.log_handle().write(exc.output.encode())
                tail = " ".join(exc.output.strip().splitlines()[-3:])
                raise ModelLoadError(f"failed to install required packages (requirements.txt): {tail}") from None
        if self.env_dir is None:
            self.env_dir = Path(tempfile.mkdtemp(prefix="server-env-", dir=self.model_dir.parent))
            self._own_env_dir = True
        elif self.env_dir.exists():
            shutil.rmtree(self.env_dir)
        self.python = job_environment(self.env_dir, layers).python
        with ThreadPoolExecutor(self.workers) as pool:  # the workers load side by side, as the server's do
            started = list(pool.map(lambda _: self._start_worker(), range(self.workers)))
        errors = [error for error in started if isinstance(error, str)]
        if errors:
            self.close()
            raise ModelLoadError(errors[0])
        self._note(f"{self.workers} worker(s) serving {self.program}")
        return self

    def _start_worker(self) -> _ModelWorker | str:
        """A started worker with the model loaded, in the pool; or the reason it failed."""
        worker = _ModelWorker(self)
        header = {"op": "load", "program": self.program, "code_dir": str(self.code_dir)}
        header["model_dir"] = str(self.model_dir)
        try:
            reply, _ = worker.call(header, b"", LOAD_TIMEOUT_S)
        except (EOFError, TimeoutError) as exc:
            worker.kill()
            how = "did not load the model in time" if isinstance(exc, TimeoutError) else "exited while loading"
            return f"the model server's worker {how} (see {self.log_path})"
        if not reply.get("ok"):
            worker.kill()
            return str(reply.get("error"))
        with self._cond:
            if self._closed:
                worker.kill()
                return "the model was closed while starting"
            self._all.add(worker)
            self._idle.append(worker)
            self._cond.notify()
        return worker

    # -- requests -----------------------------------------------------------------------
    def _acquire(self, deadline: float) -> _ModelWorker:
        with self._cond:
            while not self._idle:
                if self._closed:
                    raise ModelRetired(f"model {self.name} was stopped")
                if not self._all and not self._replacing:
                    raise ModelLoadError(f"model {self.name} has no running worker")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise ModelTimeout("no model-server worker became free within the invocation time limit")
                self._cond.wait(remaining)
            self._busy += 1
            return self._idle.pop()

    def _release(self, worker: _ModelWorker, healthy: bool) -> None:
        with self._cond:
            self._busy -= 1
            if healthy and not self._closed:
                self._idle.append(worker)
            else:
                self._all.discard(worker)
            self._cond.notify_all()
        if not healthy:
            worker.kill()
            if not self._closed:  # as the model server does: a new worker takes the dead one's place
                with self._cond:
                    self._replacing += 1
                threading.Thread(target=self._replace_worker, daemon=True, name=f"model-worker-{self.name}").start()

    def _replace_worker(self) -> None:
        try:
            self._start_worker()
        finally:
            with self._cond:
                self._replacing -= 1
                self._cond.notify_all()

    def handle(self, body: bytes, content_type: str, accept: str) -> tuple[bytes, str]:
        deadline = time.monotonic() + self.timeout_s
        worker = self._acquire(deadline)
        healthy = False
        try:
            header = {"op": "invoke", "content_type": content_type, "accept": accept}
            reply, out = worker.call(header, body, max(deadline - time.monotonic(), 0.001))
            healthy = True
        except TimeoutError:
            raise ModelTimeout(
                f"the model did not answer within {self.timeout_s:.0f} s (the worker was stopped and is replaced)"
            ) from None
        except EOFError:
            raise HandlerError(f"the model-server worker exited: {worker.proc.poll()} (see {self.log_path})") from None
        finally:
            self._release(worker, healthy)
        if not reply.get("ok"):
            raise HandlerError(str(reply.get("error")))
        return out, str(reply.get("content_type") or accept)

    # -- stop ---------------------------------------------------------------------------
    def close(self) -> None:
        with self._cond:
            self._closed = True
            workers = list(self._all)
            self._all.clear()
            self._idle.clear()
            self._cond.notify_all()
        for worker in workers:
            worker.kill()
        if self._own_env_dir and self.env_dir is not None:
            shutil.rmtree(self.env_dir, ignore_errors=True)
        if self._log is not None:
            with contextlib.suppress(OSError):
                self._log.close()
            self._log = None

    def retire(self, drain_s: float = 30.0) -> None:
        """Close once the requests in flight are done (a fleet that traffic has moved away from)."""

        def wait_then_close() -> None:
            deadline = time.monotonic() + drain_s
            with self._cond:
                while self._busy and time.monotonic() < deadline:
                    self._cond.wait(0.2)
            self.close()

        threading.Thread(target=wait_then_close, daemon=True, name=f"retire-{self.name}").start()


@dataclass
class Variant:
    name: str
    model: LoadedModel
    weight: float = 1.0
    model_package_arn: str | None = None


@dataclass
class CaptureConfig:
    destination: str  # s3://bucket/prefix
    sampling_percentage: int = 100
    capture_input: bool = True
    capture_output: bool = True


@dataclass
class Endpoint:
    name: str
    variants: list[Variant]
    capture: CaptureConfig | None = None
    config_name: str = ""
    status: str = "InService"
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def pick(self, target: str | None) -> Variant:
        if target:
            for v in self.variants:
                if v.name == target:
                    return v
            raise InvokeError(400, "ValidationError", f"Target variant {target!r} not found for endpoint {self.name}.")
        live = [v for v in self.variants if v.weight > 0]
        if not live:
            raise InvokeError(400, "ValidationError", f"Endpoint {self.name} has no variant with traffic.")
        return random.choices(live, weights=[v.weight for v in live])[0]


class CaptureWriter:
    """Buffers captured records per endpoint/variant and writes them as JSON Lines objects."""

    def __init__(self, put_object: Callable[[str, str, bytes], None], flush_every: int = 200) -> None:
        self.put_object = put_object
        self.flush_every = flush_every
        self._buffers: dict[tuple[str, str, str], list[str]] = {}
        self._lock = threading.Lock()

    def add(self, capture: CaptureConfig, endpoint: str, variant: str, record: dict[str, Any]) -> None:
        key = (capture.destination, endpoint, variant)
        with self._lock:
            buf = self._buffers.setdefault(key, [])
            buf.append(json.dumps(record, separators=(",", ":")))
            full = len(buf) >= self.flush_every
        if full:
            self.flush(key)

    def flush(self, only: tuple[str, str, str] | None = None) -> int:
        written = 0
        with self._lock:
            keys = [only] if only else list(self._buffers)
            batches = {k: self._buffers.pop(k) for k in keys if self._buffers.get(k)}
        for (destination, endpoint, variant), lines in batches.items():
            now = datetime.now(UTC)
            bucket, _, prefix = destination[5:].partition("/")
            key = (
                f"{prefix.strip('/')}/{endpoint}/{variant}/{now:%Y/%m/%d/%H}/"
                f"{now:%M-%S-%f}-{uuid.uuid4().hex[:8]}.jsonl"
            ).lstrip("/")
            self.put_object(bucket, key, ("\n".join(lines) + "\n").encode())
            written += len(lines)
        return written


def _encoding(content_type: str) -> str:
    if "csv" in content_type:
        return "CSV"
    if "json" in content_type:
        return "JSON"
    return "BASE64"


def _captured(body: bytes, content_type: str, mode: str) -> dict[str, Any]:
    encoding = _encoding(content_type)
    data = base64.b64encode(body).decode() if encoding == "BASE64" else body.decode("utf-8", errors="replace")
    return {"observedContentType": content_type, "mode": mode, "data": data, "encoding": encoding}


class EndpointRuntime:
    """The data plane of every endpoint on the twin."""

    def __init__(self, metrics: MetricStore, capture: CaptureWriter, clock: Callable[[], float] = time.time) -> None:
        self.metrics = metrics
        self.clock = clock
        self.capture = capture
        self.endpoints: dict[str, Endpoint] = {}
        self._lock = threading.Lock()

    def set_endpoint(self, endpoint: Endpoint) -> None:
        """Serve ``endpoint``; models of the fleet it replaces that no endpoint uses any more are retired."""
        with self._lock:
            old = self.endpoints.get(endpoint.name)
            self.endpoints[endpoint.name] = endpoint
            live = {id(v.model) for e in self.endpoints.values() for v in e.variants}
        for variant in old.variants if old else []:
            if id(variant.model) not in live:
                live.add(id(variant.model))
                variant.model.retire()

    def remove_endpoint(self, name: str) -> None:
        """Stop serving ``name`` (it was deleted); its models that no endpoint uses any more are retired."""
        with self._lock:
            old = self.endpoints.pop(name, None)
            live = {id(v.model) for e in self.endpoints.values() for v in e.variants}
        for variant in old.variants if old else []:
            if id(variant.model) not in live:
                live.add(id(variant.model))
                variant.model.retire()

    def close(self) -> None:
        """Stop every model server (the twin is stopping)."""
        with self._lock:
            models = {id(v.model): v.model for e in self.endpoints.values() for v in e.variants}
            self.endpoints.clear()
        for model in models.values():
            model.close()

    def invoke(
        self,
        name: str,
        body: bytes,
        content_type: str,
        accept: str,
        *,
        target_variant: str | None = None,
        inference_id: str | None = None,
    ) -> tuple[bytes, str, str]:
        """Returns (body, content type, variant name); raises InvokeError."""
        started = time.perf_counter()
        endpoint = self.endpoints.get(name)
        if endpoint is None:
            raise InvokeError(400, "ValidationError", f"Endpoint {name} of account 000000000000 not found.")
        variant = endpoint.pick(target_variant)
        dims = {"EndpointName": name, "VariantName": variant.name}
        now = self.clock()
        self.metrics.put(NAMESPACE, "Invocations", 1, dimensions=dims, timestamp=now)
        model_started = time.perf_counter()
        try:
            try:
                out, out_type = variant.model.handle(body, content_type, accept or "application/json")
            except ModelRetired:  # routed just before an update moved the traffic: the new fleet answers
                endpoint = self.endpoints.get(name) or endpoint
                variant = endpoint.pick(target_variant)
                dims = {"EndpointName": name, "VariantName": variant.name}
                out, out_type = variant.model.handle(body, content_type, accept or "application/json")
        except InvokeError:  # the variant asked for left with the update: the request's own error
            raise
        except Exception as exc:  # the container answered with an error: ModelError, as SageMaker reports it
            self.metrics.put(NAMESPACE, "Invocation5XXErrors", 1, dimensions=dims, timestamp=now)
            self.metrics.put(NAMESPACE, "Invocation4XXErrors", 0, dimensions=dims, timestamp=now)
            message = str(exc) if isinstance(exc, (HandlerError, ModelTimeout)) else f"{type(exc).__name__}: {exc}"
            raise InvokeError(
                424,
                "ModelError",
                f'Received server error (500) from primary with message "{message}".',
                OriginalStatusCode=500,
                OriginalMessage=message,
                LogStreamArn=f"arn:aws:logs:us-east-1:000000000000:log-group:/aws/sagemaker/Endpoints/{name}",
            ) from None
        model_us = (time.perf_counter() - model_started) * 1e6
        self.metrics.put(NAMESPACE, "Invocation5XXErrors", 0, dimensions=dims, timestamp=now)
        self.metrics.put(NAMESPACE, "Invocation4XXErrors", 0, dimensions=dims, timestamp=now)
        self.metrics.put(NAMESPACE, "ModelLatency", model_us, dimensions=dims, timestamp=now)
        capture = endpoint.capture
        if capture and random.uniform(0, 100) < capture.sampling_percentage:
            record: dict[str, Any] = {"captureData": {}, "eventVersion": "0"}
            if capture.capture_input:
                record["captureData"]["endpointInput"] = _captured(body, content_type, "INPUT")
            if capture.capture_output:
                record["captureData"]["endpointOutput"] = _captured(out, out_type, "OUTPUT")
            record["eventMetadata"] = {
                "eventId": str(uuid.uuid4()),
                "inferenceTime": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                **({"inferenceId": inference_id} if inference_id else {}),
            }
            self.capture.add(capture, name, variant.name, record)
        overhead_us = (time.perf_counter() - started) * 1e6 - model_us
        self.metrics.put(NAMESPACE, "OverheadLatency", overhead_us, dimensions=dims, timestamp=now)
        return out, out_type, variant.name
