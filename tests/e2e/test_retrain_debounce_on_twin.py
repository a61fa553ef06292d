"""EventBridge delivers at least once: the same alarm event twice (and a second alarm of the
same episode) start one retrain; the others end in TrainingSkipped with the reason.
The retrain has new labelled data to learn from (ground truth for captured requests)."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest

from examples.generate_data import generate, write_csv
from mlops.demo import feature_frame
from mlops.settings import model_config
from mlops.twin.daemon import outputs
from mlops.twin.runtime import Twin
from mlops.twin.stepfunctions.asl.history import entered_states

from .conftest import TIME_SCALE

pytestmark = pytest.mark.e2e
MODEL = "tumor-classifier"


def _alarm_event(twin: Twin, kind: str) -> dict[str, Any]:
    name = f"mlops-{MODEL}-{kind}"
    return {
        "version": "0",
        "id": f"alarm-{kind}",
        "detail-type": "CloudWatch Alarm State Change",
        "source": "aws.cloudwatch",
        "account": twin.assembly.account,
        "time": "2026-11-26T12:00:00Z",
        "region": twin.assembly.region,
        "resources": [f"arn:aws:cloudwatch:{twin.assembly.region}:{twin.assembly.account}:alarm:{name}"],
        "detail": {
            "alarmName": name,
            "state": {"value": "ALARM", "reason": "Threshold Crossed", "timestamp": "2026-11-26T12:00:00Z"},
            "previousState": {"value": "OK", "reason": "", "timestamp": "2026-11-26T11:00:00Z"},
        },
    }


def _label_some_traffic(twin: Twin) -> None:
    """Requests to the deployed endpoint, one row each with an InferenceId, and their ground truth."""
    config = model_config(MODEL)
    rows = generate(MODEL, "drifted", 20, seed=22)
    features = feature_frame(rows, config)
    runtime = twin.client("sagemaker-runtime")
    for i in range(len(rows)):
        body = features.iloc[i : i + 1].to_csv(header=False, index=False)
        runtime.invoke_endpoint(EndpointName=MODEL, ContentType="text/csv", InferenceId=f"gt-{i}", Body=body)
    twin.capture.flush()
    truth = "inference_id,diagnosis\n" + "".join(f"gt-{i},{int(v)}\n" for i, v in enumerate(rows["diagnosis"]))
    incoming = outputs(twin)["MlopsData.IncomingBucketName"]
    twin.client("s3").put_object(Bucket=incoming, Key=f"ground-truth/{MODEL}/labels.csv", Body=truth.encode())


def test_duplicate_alarm_events_start_one_retrain(cdk_out: Path, tmp_path: Path) -> None:
    twin = Twin(cdk_out, tmp_path / "twin", time_scale=TIME_SCALE)
    twin.start()
    try:
        data = write_csv(generate(MODEL, "good", 1500, seed=21), tmp_path / "good.csv")
        twin.client("s3").upload_file(
            str(data), outputs(twin)["MlopsData.IncomingBucketName"], f"incoming/{MODEL}/g.csv"
        )
        assert twin.wait_idle(300), "upload → validation → training → deployment did not settle"
        first_trainings = [e for e in twin.engine.list_executions() if "Training" in e.state_machine_arn]
        assert [e.status for e in first_trainings] == ["SUCCEEDED"], [e.cause for e in first_trainings]
        _label_some_traffic(twin)  # a retrain needs new labelled data, or it is not run at all

        drift = _alarm_event(twin, "drift")
        deliveries = [drift, drift, _alarm_event(twin, "quality")]  # a redelivery, and the other alarm
        threads = [threading.Thread(target=twin.emit, args=(event,)) for event in deliveries]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert twin.wait_idle(300)

        retrains = [
            e
            for e in twin.engine.list_executions()
            if "Training" in e.state_machine_arn and (e.input or {}).get("trigger") == "alarm"
        ]
        assert len(retrains) == len(deliveries)  # every delivery starts an execution, as in AWS
        trained = [e for e in retrains if "TrainModel" in entered_states(e.history)]
        skipped = [e for e in retrains if entered_states(e.history)[-1] == "TrainingSkipped"]
        assert len(trained) == 1 and len(skipped) == len(deliveries) - 1
        assert trained[0].status == "SUCCEEDED"
        reasons = [json.dumps(e.output) for e in skipped]
        assert all("cooldown" in r or "already running" in r or "another alarm" in r for r in reasons), reasons
    finally:
        twin.stop()
