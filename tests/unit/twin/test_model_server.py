"""The endpoint's model server: worker processes on the image's environment, like SageMaker's (issue 9)."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlops.twin.cloudwatch.alarms import MetricStore
from mlops.twin.sagemaker.serving import (
    CaptureWriter,
    Endpoint,
    EndpointRuntime,
    HandlerError,
    InvokeError,
    LoadedModel,
    Variant,
)
from tests.unit.twin import SKLEARN_IMAGE

INFERENCE = """
import json, os, sys, time
def model_fn(model_dir):
    return {"pid": os.getpid()}
def input_fn(body, content_type):
    return json.loads(body)
def predict_fn(data, model):
    if data.get("crash"):
        os._exit(3)
    time.sleep(data.get("sleep", 0))
    print("predicting", data)  # a handler's prints go to the log, not into the protocol
    return {"pid": model["pid"], "python": sys.version.split()[0]}
def output_fn(prediction, accept):
    return json.dumps(prediction), "application/json"
"""


@pytest.fixture
def model(tmp_path: Path) -> Iterator[LoadedModel]:
    code, model_dir = tmp_path / "code", tmp_path / "model"
    code.mkdir()
    model_dir.mkdir()
    (code / "inference.py").write_text(INFERENCE)
    loaded = LoadedModel("m", model_dir, code, image_uri=SKLEARN_IMAGE, workers=2, log_path=tmp_path / "server.log")
    yield loaded.load()
    loaded.close()


def _call(model: LoadedModel, payload: dict) -> dict:
    body, content_type = model.handle(json.dumps(payload).encode(), "application/json", "application/json")
    assert content_type == "application/json"
    return json.loads(body)


def test_workers_run_on_the_images_python_and_serve_requests_side_by_side(model: LoadedModel) -> None:
    answers: list[dict] = []
    threads = [threading.Thread(target=lambda: answers.append(_call(model, {"sleep": 1.5}))) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({a["pid"] for a in answers}) == 2  # two workers, each with the model loaded
    assert all(a["python"].startswith("3.12.") and a["pid"] != os.getpid() for a in answers)
    assert "predicting" in model.log_path.read_text()


def test_a_worker_that_dies_fails_its_request_and_is_replaced(model: LoadedModel) -> None:
    with pytest.raises(HandlerError, match="worker exited"):
        _call(model, {"crash": True})
    pids = {_call(model, {})["pid"] for _ in range(20)}
    assert pids  # still serving, on the surviving worker and its replacement
    deadline = threading.Event()
    for _ in range(300):
        if len(model._all) == 2:
            break
        deadline.wait(0.1)
    assert len(model._all) == 2


def test_workers_default_to_one_per_cpu_and_the_container_setting_wins(tmp_path: Path) -> None:
    code = tmp_path / "code"
    assert LoadedModel("a", tmp_path, code, image_uri=SKLEARN_IMAGE).workers == (os.cpu_count() or 1)
    configured = LoadedModel(
        "b", tmp_path, code, image_uri=SKLEARN_IMAGE, environment={"SAGEMAKER_MODEL_SERVER_WORKERS": "3"}
    )
    assert configured.workers == 3


def test_a_replaced_fleet_is_retired_once_its_requests_are_done(model: LoadedModel, tmp_path: Path) -> None:
    runtime = EndpointRuntime(MetricStore(), CaptureWriter(lambda b, k, body: None))
    runtime.set_endpoint(Endpoint("ep", [Variant("AllTraffic", model)]))
    out, _, _ = runtime.invoke("ep", b"{}", "application/json", "application/json")
    assert json.loads(out)["python"].startswith("3.12.")
    runtime.set_endpoint(Endpoint("ep", []))  # traffic moved away from the old fleet
    for _ in range(100):
        if model._closed:
            break
        threading.Event().wait(0.1)
    assert model._closed and not model._all
    with pytest.raises(InvokeError, match="no variant with traffic"):
        runtime.invoke("ep", b"{}", "application/json", "application/json")


def test_a_request_in_flight_when_the_model_stops_fails_as_a_worker_exit(model: LoadedModel) -> None:
    """The twin stopping closes the workers under running requests: the request gets the model server's
    error (a transform job then ends interrupted). When the pipe is closed just as the request reads it,
    the OS says "bad file descriptor", which the reader reports the same way (seen once under load)."""
    raised: list[BaseException] = []

    def call() -> None:
        try:
            _call(model, {"sleep": 5})
        except BaseException as exc:  # reported below
            raised.append(exc)

    thread = threading.Thread(target=call)
    thread.start()
    for _ in range(100):
        if model._busy:
            break
        threading.Event().wait(0.05)
    threading.Event().wait(0.3)  # the worker is inside predict_fn
    model.close()
    thread.join(timeout=30)
    assert len(raised) == 1 and isinstance(raised[0], HandlerError), raised
