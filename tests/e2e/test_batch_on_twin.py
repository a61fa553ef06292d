"""Batch scoring on the twin: a file under batch/<model>/ is checked, scored by a batch transform with the
champion the endpoint serves, and written with one prediction per row, equal to the endpoint's.

One twin serves the module: a model is trained and deployed first (as the loop test does), then files
are scored through S3 uploads and the ``mlops batch`` command.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from examples.generate_data import generate, write_csv
from mlops.cli import app
from mlops.core.capture import parse_lines
from mlops.demo import feature_frame, runtime_client, wait_until
from mlops.settings import model_config
from mlops.twin import control
from mlops.twin.stepfunctions.asl.history import entered_states

pytestmark = pytest.mark.e2e
MODEL = "tumor-classifier"
CONFIG = model_config(MODEL)
BATCH_ROWS = 100_000
SAMPLE = 2_000  # rows compared with the endpoint's answers, spread over the whole file


@pytest.fixture(scope="module")
def served(cdk_out: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[control.TwinHandle]:
    """A twin with the model trained and serving on its endpoint."""
    tmp = tmp_path_factory.mktemp("batch")
    handle = control.start(cdk_out, tmp / "twin", port=0, time_scale=0.01)
    try:
        path = write_csv(generate(MODEL, "good", 2000, seed=1), tmp / "train.csv")
        handle.client().upload_file(str(path), handle.bucket("incoming"), f"incoming/{MODEL}/train.csv")
        deployed = wait_until(
            lambda: [e for e in control.load_executions(handle.workdir, "Deploy") if e["status"] != "RUNNING"],
            600,
            "the model's first deployment",
            poll_s=1.0,
        )
        assert deployed[0]["status"] == "SUCCEEDED", deployed[0].get("cause")
        yield handle
    finally:
        control.stop(tmp / "twin")


def _object(handle: control.TwinHandle, uri: str) -> bytes:
    bucket, key = uri.removeprefix("s3://").split("/", 1)
    return bytes(handle.client().get_object(Bucket=bucket, Key=key)["Body"].read())


def _run(handle: control.TwinHandle, key: str) -> dict[str, Any]:
    (execution,) = control.wait_for_executions(handle.workdir, key, machine="Batch", timeout_s=900)
    return execution


def test_a_large_file_gets_one_prediction_per_row_equal_to_the_endpoints(
    served: control.TwinHandle, tmp_path: Path
) -> None:
    frame = generate(MODEL, "good", BATCH_ROWS, seed=5)
    path = tmp_path / "big.parquet"
    frame.to_parquet(path)  # any accepted format: Parquet here, CSV through the CLI below
    key = f"batch/{MODEL}/big.parquet"
    served.client().upload_file(str(path), served.bucket("incoming"), key)
    execution = _run(served, key)
    assert execution["status"] == "SUCCEEDED", execution.get("cause")
    assert entered_states(execution["history"])[-2:] == ["NotifyBatchScored", "BatchScored"]
    result = execution["output"]["result"]
    predictions = list(csv.reader(io.StringIO(_object(served, result["predictions_uri"]).decode())))
    header, rows = predictions[0], predictions[1:]
    # ids and the target pass through, in input order; then the label and one probability per class
    assert header == ["record_id", "diagnosis", "prediction", "probability_0", "probability_1"]
    assert len(rows) == BATCH_ROWS
    assert [int(r[0]) for r in rows] == frame["record_id"].tolist()

    picks = list(range(0, BATCH_ROWS, BATCH_ROWS // SAMPLE))
    sample = feature_frame(frame.iloc[picks], CONFIG)
    answer = runtime_client(served).invoke_endpoint(
        EndpointName=MODEL, ContentType="text/csv", Accept="text/csv", Body=sample.to_csv(header=False, index=False)
    )
    endpoint = list(csv.reader(io.StringIO(answer["Body"].read().decode())))
    assert [rows[i][2:] for i in picks] == endpoint

    report = json.loads(_object(served, result["report_uri"]))
    assert report["status"] == "scored" and report["predicted_rows"] == BATCH_ROWS
    assert report["model_name"].startswith(f"{MODEL}-v1-")  # the model the deploy machine created
    assert report["package_arn"].endswith(f"model-package/{MODEL}/1")
    job = served.client("sagemaker").describe_transform_job(TransformJobName=report["transform_job_name"])
    assert job["TransformJobStatus"] == "Completed"
    assert job["TransformOutput"]["KmsKeyId"] and job["TransformResources"]["VolumeKmsKeyId"]
    assert job["TransformInput"]["SplitType"] == "Line"
    # the scored rows feed drift monitoring as captured requests do
    capture = _object(served, report["capture_uri"]).decode().splitlines()
    features = [c.name for c in CONFIG.dataset.features]
    requests, unreadable = parse_lines(capture, features)
    assert unreadable == 0 and sum(len(r.rows) for r in requests) == BATCH_ROWS
    assert report["capture_uri"].startswith(f"s3://{served.bucket('capture')}/datacapture/{MODEL}/batch/")
    notes = (served.workdir / "notifications.jsonl").read_text()
    assert f"{BATCH_ROWS:,} rows scored" in notes


def test_a_file_missing_a_feature_column_is_refused_with_a_report(served: control.TwinHandle, tmp_path: Path) -> None:
    frame = generate(MODEL, "good", 500, seed=6).drop(columns=["mean_texture"])
    path = write_csv(frame, tmp_path / "no-texture.csv")
    key = f"batch/{MODEL}/no-texture.csv"
    served.client().upload_file(str(path), served.bucket("incoming"), key)
    execution = _run(served, key)
    assert execution["status"] == "FAILED" and execution["error"] == "BatchRefused"
    assert "feature column 'mean_texture' is missing" in execution["cause"]
    listing = served.client().list_objects_v2(Bucket=served.bucket("artifacts"), Prefix=f"batch/{MODEL}/no-texture-")
    [report_key] = [o["Key"] for o in listing["Contents"] if o["Key"].endswith("report.json")]
    report = json.loads(served.client().get_object(Bucket=served.bucket("artifacts"), Key=report_key)["Body"].read())
    assert report["status"] == "refused"
    assert [(p["column"], p["rule"]) for p in report["problems"]] == [("mean_texture", "missing")]
    notes = wait_until(
        lambda: "mean_texture" in (served.workdir / "notifications.jsonl").read_text(), 30, "the refusal's notification"
    )
    assert notes
    assert not any(o["Key"].endswith("predictions.csv") for o in listing["Contents"])


def test_the_cli_scores_a_file_and_says_where_the_results_are(served: control.TwinHandle, tmp_path: Path) -> None:
    path = write_csv(generate(MODEL, "good", 300, seed=7), tmp_path / "small.csv")
    result = CliRunner().invoke(
        app, ["batch", MODEL, str(path), "--workdir", str(served.workdir)], env={"COLUMNS": "250"}
    )
    assert result.exit_code == 0, result.output
    assert "scored" in result.output and "predictions: s3://" in result.output and "report.json" in result.output
    bad = write_csv(generate(MODEL, "good", 50, seed=8).assign(mean_area="big"), tmp_path / "typed.csv")
    refused = CliRunner().invoke(
        app, ["batch", MODEL, str(bad), "--workdir", str(served.workdir)], env={"COLUMNS": "250"}
    )
    assert refused.exit_code == 1 and "'mean_area' must hold float values: 50 row(s)" in refused.output
