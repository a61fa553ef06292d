"""Model serving on the twin: SageMaker's inference handler contract, variants and capture.

A loaded model is the script-mode source dir (``inference.py`` with ``model_fn``,
``input_fn``, ``predict_fn``, ``output_fn``) plus the extracted ``model.tar.gz``,
exactly what the scikit-learn serving container loads. An endpoint routes each
request to a production variant by weight (or the one the caller targets), records
CloudWatch metrics and, when configured, data capture in SageMaker's JSON Lines format.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import random
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

from mlops.twin.cloudwatch.alarms import MetricStore

NAMESPACE = "AWS/SageMaker"


class InvokeError(Exception):
    """An InvokeEndpoint error as the runtime API reports it."""

    def __init__(self, status: int, error_type: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.error_type = error_type
        self.message = message
        self.extra = extra


def _load_module(code_dir: Path, program: str) -> ModuleType:
    path = code_dir / program
    if not path.is_file():
        raise FileNotFoundError(f"inference entry point {program} not found in the model's source dir")
    # A unique module name per model: two variants never share module state.
    spec = importlib.util.spec_from_file_location(f"_twin_inference_{uuid.uuid4().hex}", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@dataclass
class LoadedModel:
    name: str
    model_dir: Path
    code_dir: Path
    program: str = "inference.py"
    _module: ModuleType | None = None
    _model: Any = None

    def load(self) -> LoadedModel:
        self._module = _load_module(self.code_dir, self.program)
        self._model = self._module.model_fn(str(self.model_dir))
        return self

    def handle(self, body: bytes, content_type: str, accept: str) -> tuple[bytes, str]:
        module = self._module
        assert module is not None, "model not loaded"
        data = module.input_fn(body.decode("utf-8"), content_type)
        prediction = module.predict_fn(data, self._model)
        out = module.output_fn(prediction, accept)
        if isinstance(out, tuple):  # (body, content type) is allowed by the serving toolkit
            out, accept = out
        return (out.encode() if isinstance(out, str) else bytes(out)), accept


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

    def set_endpoint(self, endpoint: Endpoint) -> None:
        self.endpoints[endpoint.name] = endpoint

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
            out, out_type = variant.model.handle(body, content_type, accept or "application/json")
        except Exception as exc:  # the container answered with an error: ModelError, as SageMaker reports it
            self.metrics.put(NAMESPACE, "Invocation5XXErrors", 1, dimensions=dims, timestamp=now)
            self.metrics.put(NAMESPACE, "Invocation4XXErrors", 0, dimensions=dims, timestamp=now)
            message = f"{type(exc).__name__}: {exc}"
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
