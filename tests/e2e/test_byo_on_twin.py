"""A model with its own code on the twin (issue 11): wine-cultivar's XGBoost train.py and inference.py on
the SageMaker XGBoost image go upload → validated → trained → gated against its champion → registered
with its code hash → deployed → predictions; a script that writes no model fails the run with the
contract's message, in the execution's cause and in `mlops executions ID`.

One twin serves the module (tests run in file order on one worker).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from examples.generate_data import generate, write_csv
from mlops.cli import app
from mlops.demo import feature_frame, runtime_client, serving_version, wait_until
from mlops.platform import Platform
from mlops.s3io import S3Location
from mlops.settings import model_config
from mlops.twin import control
from mlops.twin.stepfunctions.asl.history import entered_states
from stacks.sagemaker_code import build_sourcedir

from ..conftest import ROOT
from .conftest import TIME_SCALE

pytestmark = pytest.mark.e2e
MODEL = "wine-cultivar"
CONFIG = model_config(MODEL)
XGBOOST_REPOSITORY = "/sagemaker-xgboost:3.2-0"
NO_MODEL = "train.py wrote nothing to SM_MODEL_DIR (/opt/ml/model); a training script must save its model there"


@pytest.fixture(scope="module")
def twin(cdk_out: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[control.TwinHandle]:
    workdir = tmp_path_factory.mktemp("byo") / "twin"
    handle = control.start(cdk_out, workdir, port=0, time_scale=TIME_SCALE)
    try:
        yield handle
    finally:
        control.stop(workdir)


def _train_upload(twin: control.TwinHandle, tmp_path: Path, name: str, seed: int) -> dict[str, Any]:
    path = write_csv(generate(MODEL, "good", 1200, seed=seed), tmp_path / name)
    key = f"incoming/{MODEL}/{name}"
    twin.client().upload_file(str(path), twin.bucket("incoming"), key)
    (validation,) = control.wait_for_executions(twin.workdir, key, machine="Validation", timeout_s=120)
    assert validation["status"] == "SUCCEEDED", validation.get("cause")
    version = validation["output"]["dataset_version"]
    (training,) = control.wait_for_executions(twin.workdir, version, machine="Training", timeout_s=300)
    return training


def _packages(twin: control.TwinHandle) -> list[dict[str, Any]]:
    sm = twin.client("sagemaker")
    found = sm.list_model_packages(ModelPackageGroupName=MODEL, SortBy="CreationTime", SortOrder="Ascending")
    return [sm.describe_model_package(ModelPackageName=p["ModelPackageArn"]) for p in found["ModelPackageSummaryList"]]


def _json(twin: control.TwinHandle, uri: str) -> Any:
    loc = S3Location.parse(uri)
    return json.loads(twin.client().get_object(Bucket=loc.bucket, Key=loc.key)["Body"].read())


def test_own_code_is_trained_registered_with_its_code_hash_deployed_and_predicts(
    twin: control.TwinHandle, tmp_path: Path
) -> None:
    training = _train_upload(twin, tmp_path, "first.csv", seed=1)
    assert training["status"] == "SUCCEEDED", training.get("cause")
    assert entered_states(training["history"])[-1] == "ModelRegistered"

    (package,) = _packages(twin)
    assert package["ModelApprovalStatus"] == "Approved"
    container = package["InferenceSpecification"]["Containers"][0]
    assert container["Image"].endswith(XGBOOST_REPOSITORY)  # the model's framework image, not scikit-learn's
    lineage = _json(twin, package["CustomerMetadataProperties"]["lineage"])
    assert lineage["code_hash"] == package["CustomerMetadataProperties"]["code_hash"]
    assert lineage["code_hash"] in lineage["code_uri"]  # the model's own source dir asset, named by its hash
    assert container["Environment"]["SAGEMAKER_SUBMIT_DIRECTORY"] == lineage["code_uri"]
    assert lineage["image_uri"] == container["Image"]
    assert lineage["hyperparameters"] == {k: str(v) for k, v in CONFIG.training.hyperparameters.items()}
    evaluation = _json(twin, lineage["evaluation"])
    assert evaluation["champion"] is None and evaluation["candidate"]["f1"] >= 0.85
    shown = CliRunner().invoke(app, ["lineage", f"{MODEL}:1", "--workdir", str(twin.workdir)], env={"COLUMNS": "400"})
    assert shown.exit_code == 0 and lineage["code_hash"] in shown.output and XGBOOST_REPOSITORY in shown.output

    deploy = wait_until(
        lambda: [e for e in control.load_executions(twin.workdir, "Deploy") if e["status"] != "RUNNING"],
        180,
        "the first deployment",
    )
    assert deploy[0]["status"] == "SUCCEEDED", deploy[0].get("cause")
    assert serving_version(Platform.twin(twin.endpoint), MODEL) == "1"
    rows = feature_frame(generate(MODEL, "good", 6, seed=11), CONFIG)
    answer = runtime_client(twin).invoke_endpoint(
        EndpointName=MODEL,
        ContentType="text/csv",
        Accept="application/json",
        Body=rows.to_csv(header=False, index=False),
    )
    predictions = json.loads(answer["Body"].read())["predictions"]
    assert len(predictions) == 6
    assert all(p["label"] in (0, 1, 2) and set(p["probabilities"]) == {"0", "1", "2"} for p in predictions)


def test_a_second_upload_is_gated_against_the_champion_scored_by_its_own_code(
    twin: control.TwinHandle, tmp_path: Path
) -> None:
    training = _train_upload(twin, tmp_path, "second.csv", seed=2)
    assert training["status"] == "SUCCEEDED", training.get("cause")
    first, second = _packages(twin)
    lineage = _json(twin, second["CustomerMetadataProperties"]["lineage"])
    assert lineage["champion"]["model_package_arn"] == first["ModelPackageArn"]
    evaluation = _json(twin, lineage["evaluation"])
    # the champion was scored on the same test rows through the inference.py its artifact carries
    assert evaluation["champion_error"] is None and evaluation["champion"]["f1"] > 0.8
    assert evaluation["comparison"]["metric"] == "f1"
    (check,) = [c for c in lineage["gate"]["checks"] if c["name"] == "champion"]
    assert check["metric"] == "f1" and check["value"] == evaluation["candidate"]["f1"]


def test_a_script_that_writes_no_model_fails_the_run_with_the_contracts_message(
    twin: control.TwinHandle, tmp_path: Path
) -> None:
    # the model's code as a deployment with a broken train.py would ship it, in place of its asset
    code = tmp_path / "app" / "pipelines" / MODEL
    shutil.copytree(ROOT / "pipelines" / MODEL, code)
    (code / "train.py").write_text("print('trained, but saved nothing')\n")
    archive = build_sourcedir(tmp_path / "asset", CONFIG, root=tmp_path / "app")
    (package, *_) = _packages(twin)
    asset = S3Location.parse(_json(twin, package["CustomerMetadataProperties"]["lineage"])["code_uri"])
    twin.client().upload_file(str(archive), asset.bucket, asset.key)

    training = _train_upload(twin, tmp_path, "third.csv", seed=3)
    assert training["status"] == "FAILED"
    assert NO_MODEL in training["cause"], training["cause"]
    shown = CliRunner().invoke(
        app, ["executions", training["name"], "--workdir", str(twin.workdir)], env={"COLUMNS": "250"}
    )
    assert shown.exit_code == 0, shown.output
    assert "wrote nothing to SM_MODEL_DIR" in " ".join(shown.output.split())
