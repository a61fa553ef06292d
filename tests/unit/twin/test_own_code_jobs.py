"""A model with its own code (issue 11) on the twin: its source dir as the stacks build it, trained,
evaluated and served on the XGBoost image's environment; a script that breaks the contract fails the job
with what was expected."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path
from typing import Any

import pytest

from examples.generate_data import generate
from mlops.config import load_config
from mlops.twin.sagemaker import images
from mlops.twin.sagemaker.jobs import JobFailed, JobRunner
from mlops.twin.sagemaker.serving import LoadedModel
from stacks.sagemaker_code import build_sourcedir, processing_entrypoint
from tests.unit.twin import XGBOOST_IMAGE

ROOT = Path(__file__).resolve().parents[3]
CONFIG = load_config(ROOT / "configs" / "wine-cultivar.yaml")
PROCESSING = "/opt/ml/processing"


@pytest.fixture(scope="module")
def sourcedir(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return build_sourcedir(tmp_path_factory.mktemp("asset"), CONFIG).read_bytes()


def _replaced(archive: bytes, files: dict[str, str]) -> bytes:
    """The archive with ``files`` written over (the model's code changed, the platform's kept)."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tout:
        if archive:
            with tarfile.open(fileobj=io.BytesIO(archive)) as tin:
                for member in tin.getmembers():
                    if member.name not in files:
                        tout.addfile(member, tin.extractfile(member) if member.isfile() else None)
        for name, text in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(text.encode())
            tout.addfile(info, io.BytesIO(text.encode()))
    return out.getvalue()


@pytest.fixture
def runner(s3: Any, tmp_path: Path) -> JobRunner:
    for bucket in ("assets-bkt", "data-bkt"):
        s3.create_bucket(Bucket=bucket)
    data = generate("wine-cultivar", "good", 500, seed=3)
    for split, rows in (("train", data.iloc[:350]), ("validation", data.iloc[350:420]), ("test", data.iloc[420:])):
        s3.put_object(Bucket="data-bkt", Key=f"w/{split}/data.csv", Body=rows.to_csv(index=False).encode())
    config = json.dumps(CONFIG.model_dump(mode="json")).encode()
    s3.put_object(Bucket="data-bkt", Key="w/config/model-config.json", Body=config)
    return JobRunner(s3, tmp_path / "sagemaker", "000000000000", "us-east-1")


def _train(runner: JobRunner, s3: Any, archive: bytes, name: str, program: str = "train_own_code.py") -> dict[str, Any]:
    s3.put_object(Bucket="assets-bkt", Key=f"{name}/sourcedir.tar.gz", Body=archive)
    hps = {k: str(v) for k, v in CONFIG.training.hyperparameters.items()}
    params = {
        "TrainingJobName": name,
        "AlgorithmSpecification": {"TrainingImage": XGBOOST_IMAGE, "TrainingInputMode": "File"},
        "HyperParameters": {
            **hps,
            "sagemaker_program": program,
            "sagemaker_submit_directory": f"s3://assets-bkt/{name}/sourcedir.tar.gz",
        },
        "InputDataConfig": [
            {
                "ChannelName": c,
                "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": f"s3://data-bkt/w/{c}/"}},
            }
            for c in ("train", "validation", "config")
        ],
        "OutputDataConfig": {"S3OutputPath": "s3://data-bkt/w/output"},
        "StoppingCondition": {"MaxRuntimeInSeconds": 600},
    }
    try:
        return runner.train(params)
    except JobFailed as exc:
        return exc.describe


def test_the_xgboost_image_runs_its_own_package_set_and_lacks_what_it_lacks(runner: JobRunner, s3: Any) -> None:
    spec = images.spec_for_uri(XGBOOST_IMAGE)
    assert (spec.framework, spec.version, spec.python) == ("xgboost", "3.2-0", "3.12")
    pins = dict(pin.split("==") for pin in spec.pins())
    published = {"xgboost": "3.2.0", "numpy": "2.1.0", "pandas": "2.2.3", "scikit-learn": "1.8.0", "scipy": "1.15.0"}
    assert {k: pins[k] for k in published} == published
    script = """
import json, os, sys
import numpy, sklearn, xgboost
json.dump([sys.version.split()[0], numpy.__version__, sklearn.__version__, xgboost.__version__],
          open(os.path.join(os.environ["SM_MODEL_DIR"], "env.json"), "w"))
import sagemaker_training  # the scikit-learn image's toolkit: the XGBoost image has sagemaker-containers
"""
    out = _train(runner, s3, _replaced(b"", {"train.py": script}), "lacks", program="train.py")
    assert out["TrainingJobStatus"] == "Failed"
    assert "No module named 'sagemaker_training'" in out["FailureReason"]
    found = json.loads((runner.root / "training" / "lacks" / "opt/ml/model/env.json").read_text())
    assert found[0].startswith("3.12.") and found[1:] == ["2.1.0", "1.8.0", "3.2.0"]


def test_the_models_own_code_trains_and_its_artifact_carries_its_inference_code(
    runner: JobRunner, s3: Any, sourcedir: bytes, tmp_path: Path
) -> None:
    out = _train(runner, s3, sourcedir, "wine")
    assert out["TrainingJobStatus"] == "Completed", out.get("FailureReason")
    model_dir = runner.root / "training" / "wine" / "opt/ml/model"
    assert {"xgboost-model.json", "model-info.json", "code"} <= {p.name for p in model_dir.iterdir()}
    assert {"inference.py", "train.py"} <= {p.name for p in (model_dir / "code").iterdir()}
    metrics = {m["MetricName"]: m["Value"] for m in out["FinalMetricDataList"]}
    assert metrics["validation:f1"] > 0.85  # computed by the platform through the model's own handlers
    log = (runner.root / "training" / "wine" / "job.log").read_text()
    assert "exact package set on Python 3.12" in log and "trained XGBoost 3.2.0" in log

    # served by the image's model server through its own handlers
    code_dir = runner.root / "training" / "wine" / "opt/ml/code"
    model = LoadedModel("wine", model_dir, code_dir, image_uri=XGBOOST_IMAGE, workers=1, log_path=tmp_path / "l")
    row = generate("wine-cultivar", "good", 5, seed=9).drop(columns="cultivar").iloc[0]
    try:
        body, content_type = model.load().handle(",".join(map(str, row)).encode(), "text/csv", "application/json")
    finally:
        model.close()
    prediction = json.loads(body)["predictions"][0]
    assert content_type == "application/json" and prediction["label"] in (0, 1, 2)
    assert set(prediction["probabilities"]) == {"0", "1", "2"}

    # evaluated, candidate and champion (here the same artifact) through their own code on the same rows
    s3.put_object(
        Bucket="data-bkt",
        Key="w/champion/model.tar.gz",
        Body=s3.get_object(Bucket="data-bkt", Key="w/output/wine/output/model.tar.gz")["Body"].read(),
    )
    evaluation = _evaluate(runner, s3, sourcedir, "wine-eval", "s3://data-bkt/w/output/wine/output/model.tar.gz")
    assert evaluation["ProcessingJobStatus"] == "Completed", evaluation.get("FailureReason")
    result = json.loads(s3.get_object(Bucket="data-bkt", Key="w/evaluation/evaluation.json")["Body"].read())
    assert result["rows"] == 80 and result["champion"] == result["candidate"]
    assert result["candidate"]["f1"] > 0.85 and "roc_auc" in result["candidate"]


def _evaluate(runner: JobRunner, s3: Any, archive: bytes, name: str, model_uri: str) -> dict[str, Any]:
    s3.put_object(Bucket="assets-bkt", Key=f"{name}/sourcedir.tar.gz", Body=archive)
    inputs = {
        "code": f"s3://assets-bkt/{name}/",
        "model": model_uri,
        "test": "s3://data-bkt/w/test/",
        "config": "s3://data-bkt/w/config/",
        "champion": "s3://data-bkt/w/champion/",
    }
    params = {
        "ProcessingJobName": name,
        "AppSpecification": {
            "ImageUri": XGBOOST_IMAGE,
            "ContainerEntrypoint": processing_entrypoint("evaluate.py"),
            "ContainerArguments": [
                *(f"--{n}-dir={PROCESSING}/{n}" for n in ("model", "test", "config", "champion")),
                f"--output-dir={PROCESSING}/evaluation",
            ],
        },
        "ProcessingInputs": [
            {
                "InputName": n,
                "S3Input": {"S3Uri": uri, "LocalPath": f"{PROCESSING}/{'input/code' if n == 'code' else n}"},
            }
            for n, uri in inputs.items()
        ],
        "ProcessingOutputConfig": {
            "Outputs": [
                {
                    "OutputName": "evaluation",
                    "S3Output": {"S3Uri": "s3://data-bkt/w/evaluation", "LocalPath": f"{PROCESSING}/evaluation"},
                }
            ]
        },
        "StoppingCondition": {"MaxRuntimeInSeconds": 600},
    }
    try:
        return runner.process(params)
    except JobFailed as exc:
        return exc.describe


WRITES_NOTHING = "print('training, but saving nothing')\n"
NO_PREDICT_FN = """
def model_fn(model_dir):
    return None
def input_fn(body, content_type):
    return body
def output_fn(prediction, accept):
    return "{}"
"""
ONE_PREDICTION = (
    NO_PREDICT_FN
    + """
def predict_fn(data, model):
    return None
def output_fn(prediction, accept):
    return '{"predictions": [{"label": 0}]}', "application/json"
"""
)


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        (
            {"train.py": WRITES_NOTHING},
            "train.py wrote nothing to SM_MODEL_DIR (/opt/ml/model); a training script must save its model there",
        ),
        ({"inference.py": NO_PREDICT_FN}, "inference.py has no predict_fn; the platform evaluates and serves"),
        (
            {"inference.py": ONE_PREDICTION},
            "inference.py returned 1 predictions for 70 rows; output_fn must return one prediction per input row",
        ),
        ({"train.py": "import sys\nsys.exit('no data for me')\n"}, "train.py exited with code 1"),
    ],
    ids=["no-model", "no-predict_fn", "wrong-length", "script-fails"],
)
def test_a_script_that_breaks_the_contract_fails_the_job_saying_what_was_expected(
    runner: JobRunner, s3: Any, sourcedir: bytes, files: dict[str, str], expected: str
) -> None:
    out = _train(runner, s3, _replaced(sourcedir, files), "broken")
    assert out["TrainingJobStatus"] == "Failed"
    assert expected in out["FailureReason"], out["FailureReason"]


def test_the_models_pinned_requirements_are_vendored_at_synth_and_nothing_is_installed_at_start(
    runner: JobRunner, s3: Any, tmp_path: Path
) -> None:
    code = tmp_path / "app" / "pipelines" / "wine-cultivar"
    code.mkdir(parents=True)
    (code / "requirements.txt").write_text("tabulate==0.9.0\n")  # not in the XGBoost image
    train = (ROOT / "pipelines" / "wine-cultivar" / "train.py").read_text()
    (code / "train.py").write_text(train.replace("import xgboost as xgb\n", "import xgboost as xgb\nimport tabulate\n"))
    assert "import tabulate" in (code / "train.py").read_text()
    (code / "inference.py").write_text((ROOT / "pipelines" / "wine-cultivar" / "inference.py").read_text())
    archive = build_sourcedir(tmp_path / "asset", CONFIG, root=tmp_path / "app")
    with tarfile.open(archive) as tar:
        names = set(tar.getnames())
        manifest = json.loads(tar.extractfile("own-code.json").read())  # type: ignore[union-attr]
    assert "requirements.txt" not in names  # the training toolkit would pip-install it at every start
    assert "tabulate/__init__.py" in names and "tabulate" in manifest["files"]
    out = _train(runner, s3, archive.read_bytes(), "with-reqs")
    assert out["TrainingJobStatus"] == "Completed", out.get("FailureReason")
    model_code = runner.root / "training" / "with-reqs" / "opt/ml/model/code"
    assert (model_code / "tabulate" / "__init__.py").is_file()  # the artifact's code has what it imports
    assert "pip" not in (runner.root / "training" / "with-reqs" / "job.log").read_text().lower()
