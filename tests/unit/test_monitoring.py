"""The model monitor on moto: capture in, drift and model quality out, state between runs."""

from __future__ import annotations

import json
from typing import Any

import boto3
import numpy as np
import pandas as pd
import pytest

from examples.generate_data import generate
from mlops.core.capture import columns, parse_lines
from mlops.core.drift import bin_fractions
from mlops.services.monitoring import ModelMonitor, MonitorSettings
from mlops.settings import model_config

MODEL = "tumor-classifier"
SETTINGS = MonitorSettings("capture-bkt", "datacapture", "incoming-bkt", "artifacts-bkt")
FEATURES = [f.name for f in model_config(MODEL).dataset.features]


def _profile(frame: Any) -> dict[str, Any]:
    features = {}
    for name in FEATURES:
        col = frame[name]
        if not pd.api.types.is_numeric_dtype(col):
            freq = col.value_counts(normalize=True).to_dict()
            features[name] = {"kind": "categorical", "frequencies": {str(k): float(v) for k, v in freq.items()}}
        else:
            values = col.dropna().to_numpy(dtype=float)
            edges = np.quantile(values, np.linspace(0, 1, 11)).tolist()
            features[name] = {
                "kind": "numeric",
                "bin_edges": edges,
                "bin_fractions": bin_fractions(values, edges).tolist(),
                "quantiles": np.quantile(values, np.linspace(0, 1, 101)).tolist(),
            }
    return {"version": 1, "rows": len(frame), "features": features}


def _capture_line(row: dict[str, Any], inference_id: str, label: int) -> str:
    csv_row = ",".join("" if row[f] is None else str(row[f]) for f in FEATURES)
    return json.dumps(
        {
            "captureData": {
                "endpointInput": {
                    "observedContentType": "text/csv",
                    "mode": "INPUT",
                    "data": csv_row,
                    "encoding": "CSV",
                },
                "endpointOutput": {
                    "observedContentType": "application/json",
                    "mode": "OUTPUT",
                    "data": json.dumps({"predictions": [{"label": label}]}),
                    "encoding": "JSON",
                },
            },
            "eventMetadata": {
                "eventId": inference_id,
                "inferenceId": inference_id,
                "inferenceTime": "2026-11-24T00:00:00Z",
            },
            "eventVersion": "0",
        }
    )


@pytest.fixture
def monitor(s3: Any) -> ModelMonitor:
    for bucket in ("capture-bkt", "incoming-bkt", "artifacts-bkt"):
        s3.create_bucket(Bucket=bucket)
    sm = boto3.client("sagemaker", region_name="us-east-1")
    sm.create_model_package_group(ModelPackageGroupName=MODEL)
    train = generate(MODEL, "good", 3000, seed=1)
    s3.put_object(Bucket="artifacts-bkt", Key="profile.json", Body=json.dumps(_profile(train)))
    s3.put_object(
        Bucket="artifacts-bkt", Key="lineage.json", Body=json.dumps({"profile_uri": "s3://artifacts-bkt/profile.json"})
    )
    arn = sm.create_model_package(
        ModelPackageGroupName=MODEL,
        InferenceSpecification={
            "Containers": [{"Image": "img", "ModelDataUrl": "s3://artifacts-bkt/m.tar.gz"}],
            "SupportedContentTypes": ["text/csv"],
            "SupportedResponseMIMETypes": ["application/json"],
        },
        ModelApprovalStatus="Approved",
        CustomerMetadataProperties={"lineage": "s3://artifacts-bkt/lineage.json"},
    )["ModelPackageArn"]
    sm.create_model(
        ModelName="m", ExecutionRoleArn="arn:aws:iam::123456789012:role/r", PrimaryContainer={"Image": "img"}
    )
    sm.create_endpoint_config(
        EndpointConfigName="c",
        ProductionVariants=[
            {"VariantName": "AllTraffic", "ModelName": "m", "InitialInstanceCount": 1, "InstanceType": "ml.m5.large"}
        ],
    )
    ep = sm.create_endpoint(EndpointName=MODEL, EndpointConfigName="c")["EndpointArn"]
    sm.add_tags(ResourceArn=ep, Tags=[{"Key": "mlops:model-package-arn", "Value": arn}])
    return ModelMonitor(s3, sm, SETTINGS)


def _put_capture(s3: Any, variant: str, seed: int, key: str) -> list[str]:
    frame = generate(MODEL, variant, 400, seed=seed)
    rows = frame.astype(object).where(frame.notna(), None).to_dict("records")
    lines = [_capture_line(r, f"{key}-{i}", int(r["diagnosis"])) for i, r in enumerate(rows)]
    s3.put_object(
        Bucket="capture-bkt", Key=f"datacapture/{MODEL}/AllTraffic/2026/11/24/10/{key}.jsonl", Body="\n".join(lines)
    )
    return [f"{key}-{i}" for i in range(len(rows))]


def test_capture_parsing_handles_csv_json_and_bad_lines() -> None:
    lines = [
        _capture_line({f: 1.0 for f in FEATURES} | {"clinic": "north"}, "a", 1),
        json.dumps(
            {
                "captureData": {
                    "endpointInput": {
                        "observedContentType": "application/json",
                        "data": json.dumps({"instances": [{"mean_radius": 3}]}),
                        "encoding": "JSON",
                    }
                }
            }
        ),
        "{not json",
    ]
    requests, unreadable = parse_lines(lines, FEATURES)
    assert unreadable == 1 and len(requests) == 2
    cols = columns(requests, FEATURES)
    assert cols["mean_radius"] == [1.0, 3] and cols["clinic"] == ["north", None]
    assert requests[0].predictions == [1] and requests[0].inference_id == "a"


def test_stable_traffic_shows_no_drift_and_quality_joins_ground_truth(monitor: ModelMonitor, s3: Any) -> None:
    ids = _put_capture(s3, "good", 5, "batch1")
    truth = "inference_id,diagnosis\n" + "\n".join(f"{i},1" for i in ids[:100])
    s3.put_object(Bucket="incoming-bkt", Key=f"ground-truth/{MODEL}/labels.csv", Body=truth)
    result = monitor.run(model_config(MODEL))
    assert result["captured_rows"] == 400 and result["unreadable_records"] == 0
    assert result["drift"]["drifted_share"] < 0.2
    assert result["quality"]["metric"] == "accuracy" and result["quality"]["joined"] == 100
    assert 0 < result["quality"]["value"] <= 1
    # the next run only reads what arrived since
    again = monitor.run(model_config(MODEL))
    assert again["captured_rows"] == 0 and again["drift"] is None


def test_drifted_traffic_is_flagged(monitor: ModelMonitor, s3: Any) -> None:
    _put_capture(s3, "drifted", 6, "batch2")
    result = monitor.run(model_config(MODEL))
    drifted = {f["feature"] for f in result["drift"]["features"] if f["drifted"]}
    assert {"mean_radius", "worst_radius"} <= drifted
    assert result["drift"]["max_psi"] > 0.5


def test_bad_ground_truth_files_are_reported_not_fatal(monitor: ModelMonitor, s3: Any) -> None:
    _put_capture(s3, "good", 7, "batch3")
    s3.put_object(Bucket="incoming-bkt", Key=f"ground-truth/{MODEL}/wrong.csv", Body="id,label\n1,0\n")
    result = monitor.run(model_config(MODEL))
    assert result["quality"]["value"] is None
    assert "needs columns inference_id and diagnosis" in result["quality"]["problems"][0]
