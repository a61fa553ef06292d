"""The twin's runtime API driven by boto3's sagemaker-runtime client, as applications use it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

from mlops.twin.cloudwatch.alarms import MetricStore
from mlops.twin.gateway import Gateway
from mlops.twin.iam import Principals
from mlops.twin.sagemaker.runtime_api import RuntimeApi
from mlops.twin.sagemaker.serving import CaptureConfig, CaptureWriter, Endpoint, EndpointRuntime, LoadedModel, Variant
from tests.unit.twin import SKLEARN_IMAGE

INFERENCE = """
import json
def model_fn(model_dir):
    return json.load(open(model_dir + "/model.json"))
def input_fn(body, content_type):
    if content_type == "text/csv":
        return [float(x) for x in body.strip().split(",")]
    if content_type == "application/json":
        return json.loads(body)["values"]
    raise ValueError("unsupported content type " + content_type)
def predict_fn(data, model):
    if model["broken"]:
        raise RuntimeError("model is broken")
    return [x * model["factor"] for x in data]
def output_fn(prediction, accept):
    return json.dumps({"predictions": prediction})
"""


def _model(tmp: Path, name: str, factor: float, broken: bool = False) -> LoadedModel:
    code, model = tmp / name / "code", tmp / name / "model"
    code.mkdir(parents=True)
    model.mkdir(parents=True)
    (code / "inference.py").write_text(INFERENCE)
    (model / "model.json").write_text(json.dumps({"factor": factor, "broken": broken}))
    return LoadedModel(name, model, code, image_uri=SKLEARN_IMAGE, workers=1).load()


@pytest.fixture
def twin_endpoint(tmp_path: Path) -> Iterator[tuple[object, EndpointRuntime, MetricStore, list]]:
    metrics, written = MetricStore(), []
    runtime = EndpointRuntime(metrics, CaptureWriter(lambda b, k, body: written.append((b, k, body)), flush_every=2))
    runtime.set_endpoint(
        Endpoint(
            "ep",
            [
                Variant("blue", _model(tmp_path, "blue", 2.0), 1.0),
                Variant("green", _model(tmp_path, "green", 3.0, True), 0.0),
            ],
            capture=CaptureConfig("s3://capture-bkt/datacapture"),
        )
    )
    server = Gateway(Principals("123456789012"))
    server.mount_wsgi("sagemaker-runtime", RuntimeApi(runtime))
    url = server.start()
    client = boto3.client(
        "sagemaker-runtime",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="x",
        aws_secret_access_key="y",
        config=Config(retries={"max_attempts": 1}),
    )
    yield client, runtime, metrics, written
    server.stop()
    runtime.close()


def test_invoke_csv_and_json_through_boto3(twin_endpoint) -> None:
    client, _runtime, metrics, written = twin_endpoint
    out = client.invoke_endpoint(EndpointName="ep", ContentType="text/csv", Body=b"1,2", InferenceId="req-1")
    assert json.loads(out["Body"].read()) == {"predictions": [2.0, 4.0]}
    assert out["InvokedProductionVariant"] == "blue"  # green has weight 0
    out = client.invoke_endpoint(EndpointName="ep", ContentType="application/json", Body=json.dumps({"values": [5]}))
    assert json.loads(out["Body"].read()) == {"predictions": [10.0]}
    (bucket, key, body) = written[0]  # two records: the buffer flushed
    assert bucket == "capture-bkt" and key.startswith("datacapture/ep/blue/") and key.endswith(".jsonl")
    first = json.loads(body.decode().splitlines()[0])
    assert first["captureData"]["endpointInput"] == {
        "observedContentType": "text/csv",
        "mode": "INPUT",
        "data": "1,2",
        "encoding": "CSV",
    }
    assert first["eventMetadata"]["inferenceId"] == "req-1"
    assert metrics.values(
        ("AWS/SageMaker", "Invocations", (("EndpointName", "ep"), ("VariantName", "blue"))), 0, 2e10
    ) == [1, 1]


def test_model_errors_and_unknown_endpoints_surface_as_the_api_does(twin_endpoint) -> None:
    client, _runtime, metrics, _ = twin_endpoint
    with pytest.raises(client.exceptions.ModelError) as info:
        client.invoke_endpoint(EndpointName="ep", ContentType="text/csv", Body=b"1", TargetVariant="green")
    assert "model is broken" in info.value.response["Error"]["Message"]
    assert info.value.response["OriginalStatusCode"] == 500
    errors = metrics.values(
        ("AWS/SageMaker", "Invocation5XXErrors", (("EndpointName", "ep"), ("VariantName", "green"))), 0, 2e10
    )
    assert errors == [1]
    with pytest.raises(client.exceptions.ModelError, match="unsupported content type"):
        client.invoke_endpoint(EndpointName="ep", ContentType="text/plain", Body=b"x")
    with pytest.raises(client.exceptions.ValidationError, match="Endpoint missing of account"):
        client.invoke_endpoint(EndpointName="missing", ContentType="text/csv", Body=b"1")


def test_a_request_routed_just_before_an_update_is_answered_by_the_new_fleet(twin_endpoint, tmp_path: Path) -> None:
    _client, runtime, _metrics, _written = twin_endpoint
    old = runtime.endpoints["ep"]
    new = Endpoint("ep", [Variant("next", _model(tmp_path, "next", 5.0), 1.0)])
    real_handle = old.variants[0].model.handle

    def update_then_handle(*args: object) -> tuple[bytes, str]:
        # the update lands between routing and the worker: the old fleet is closed under the request
        runtime.set_endpoint(new)
        old.variants[0].model.close()
        return real_handle(*args)

    old.variants[0].model.handle = update_then_handle  # type: ignore[method-assign]
    body, _type, variant = runtime.invoke("ep", b"1", "text/csv", "application/json")
    assert (json.loads(body), variant) == ({"predictions": [5.0]}, "next")
