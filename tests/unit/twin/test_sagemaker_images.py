"""SageMaker code on the twin runs with what its image holds: the image's Python and packages, the source
dir's requirements.txt, nothing of the host's; the app's own source dir (its vendored packages) starts there
(issue 8, defect 1)."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path
from typing import Any

import pytest

from mlops.twin import pyenvs
from mlops.twin.pyenvs import EnvironmentBuildError, Interpreter
from mlops.twin.sagemaker import images
from mlops.twin.sagemaker.jobs import JobFailed, JobRunner
from mlops.twin.sagemaker.serving import HandlerError, LoadedModel, ModelLoadError
from stacks.sagemaker_code import VENDOR, build_sourcedir, processing_entrypoint
from tests.unit.twin import SKLEARN_IMAGE

ROOT = Path(__file__).resolve().parents[3]


# -- the registry ----------------------------------------------------------------------------------------
def test_the_image_uri_sagemaker_core_gives_resolves_to_its_registry_entry() -> None:
    for scope in ("training", "inference"):
        uri = images.image_uri("sklearn", "1.9-0", "eu-west-1", scope)
        assert images.spec_for_uri(uri).key == ("sklearn", "1.9-0")
    assert images.spec_for_uri(SKLEARN_IMAGE).python == "3.12"


def test_an_image_the_twin_has_no_package_set_for_is_refused_by_name() -> None:
    with pytest.raises(images.UnknownImage, match=r"no package set for image '.*sagemaker-scikit-learn:0\.23-1"):
        images.spec_for_uri("683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:0.23-1-cpu-py3")
    with pytest.raises(images.UnknownImage):
        images.spec_for_uri("my-own-image:latest")


def test_the_package_set_is_the_images_published_one() -> None:
    pins = dict(pin.split("==") for pin in images.spec_for("sklearn", "1.9-0").pins())
    # aws/sagemaker-scikit-learn-container requirements.txt for 1.9-0 (and six forced to 1.16.0 by its Dockerfile)
    published = {"numpy": "2.5.1", "scikit-learn": "1.9.0", "scipy": "1.18.0", "pandas": "2.2.3", "pyarrow": "25.0.0"}
    assert {name: pins[name] for name in published} == published
    assert pins["six"] == "1.16.0" and pins["pyyaml"] == "6.0.3"
    assert "pydantic" not in pins and "polars" not in pins  # what the app's code must bring itself


def test_without_the_images_python_the_nearest_runs_with_the_recorded_deviations() -> None:
    spec = images.spec_for("sklearn", "1.9-0")
    on_311 = Interpreter(Path("/usr/bin/python3.11"), "3.11.2")
    pins, changed = images._apply(spec, on_311)
    assert changed == {"numpy": ("2.5.1", "2.4.6"), "scipy": ("1.18.0", "1.17.1")}
    assert "numpy==2.4.6" in pins and "scikit-learn==1.9.0" in pins
    unknown = r"no Python 3\.12 and the twin knows no package set for it on Python 3\.10"
    with pytest.raises(EnvironmentBuildError, match=unknown):
        images._apply(spec, Interpreter(Path("/usr/bin/python3.10"), "3.10.13"))


def test_the_nearest_interpreter_is_exact_else_closest_and_older_first() -> None:
    have = [Interpreter(Path(f"/p/{v}"), v) for v in ("3.11.7", "3.13.0")]
    assert pyenvs.nearest_interpreter("3.13", have).version == "3.13.0"
    assert pyenvs.nearest_interpreter("3.12", have).version == "3.11.7"  # equal distance: the older
    assert pyenvs.nearest_interpreter("3.14", have).version == "3.13.0"


# -- jobs ------------------------------------------------------------------------------------------------
def _archive(s3: Any, files: dict[str, str | bytes], key: str = "code.tar.gz") -> str:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, text in files.items():
            data = text.encode() if isinstance(text, str) else text
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    s3.put_object(Bucket="assets-bkt", Key=key, Body=buf.getvalue())
    return f"s3://assets-bkt/{key}"


@pytest.fixture
def runner(s3: Any, tmp_path: Path) -> JobRunner:
    for bucket in ("assets-bkt", "data-bkt"):
        s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket="data-bkt", Key="run/train/data.csv", Body=b"a,b\n1,2\n")
    return JobRunner(s3, tmp_path / "sagemaker", "000000000000", "us-east-1")


def _train(runner: JobRunner, code: str, name: str = "job", channels: dict[str, str] | None = None) -> dict:
    params = {
        "TrainingJobName": name,
        "AlgorithmSpecification": {"TrainingImage": SKLEARN_IMAGE, "TrainingInputMode": "File"},
        "HyperParameters": {"sagemaker_program": "train.py", "sagemaker_submit_directory": code},
        "InputDataConfig": [
            {"ChannelName": c, "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": uri}}}
            for c, uri in (channels or {"train": "s3://data-bkt/run/train/"}).items()
        ],
        "OutputDataConfig": {"S3OutputPath": "s3://data-bkt/run/output"},
        "StoppingCondition": {"MaxRuntimeInSeconds": 600},
    }
    try:
        return runner.train(params)
    except JobFailed as exc:
        return exc.describe


def test_a_job_sees_the_images_python_and_packages_not_the_hosts(runner: JobRunner, s3: Any) -> None:
    script = """
import importlib.util, json, os, sys
import numpy, sklearn
found = {m: importlib.util.find_spec(m) is not None for m in ("polars", "pydantic", "moto", "mlops")}
json.dump({"python": sys.version.split()[0], "numpy": numpy.__version__, "sklearn": sklearn.__version__,
           "found": found}, open(os.path.join(os.environ["SM_MODEL_DIR"], "env.json"), "w"))
"""
    out = _train(runner, _archive(s3, {"train.py": script}))
    assert out["TrainingJobStatus"] == "Completed", out.get("FailureReason")
    env = json.loads((runner.root / "training" / "job" / "opt/ml/model/env.json").read_text())
    assert env["python"].startswith("3.12.") and env["numpy"] == "2.5.1" and env["sklearn"] == "1.9.0"
    assert env["found"] == {"polars": False, "pydantic": False, "moto": False, "mlops": False}


def test_a_module_the_image_lacks_fails_the_job_as_in_aws(runner: JobRunner, s3: Any) -> None:
    out = _train(runner, _archive(s3, {"train.py": "import polars\n"}))
    assert out["TrainingJobStatus"] == "Failed"
    assert "No module named 'polars'" in out["FailureReason"]


def test_code_needing_a_newer_python_than_the_image_fails_before_it_runs(runner: JobRunner, s3: Any) -> None:
    code = _archive(s3, {"train.py": "import copy\n\nprint(copy.replace)\n"})  # copy.replace: Python 3.13
    out = _train(runner, code)
    assert out["TrainingJobStatus"] == "Failed"
    assert "train.py:3: 'copy.replace' member requires Python 3.13" in out["FailureReason"]


def test_what_a_job_installs_stays_with_that_job(runner: JobRunner, s3: Any) -> None:
    writer = "import sysconfig, pathlib\n"
    writer += "pathlib.Path(sysconfig.get_paths()['purelib'], 'planted.py').write_text('X=1')\n"
    assert _train(runner, _archive(s3, {"train.py": writer}, "w.tar.gz"), "one")["TrainingJobStatus"] == "Completed"
    out = _train(runner, _archive(s3, {"train.py": "import planted\n"}, "r.tar.gz"), "two")
    assert "No module named 'planted'" in out["FailureReason"]


def test_a_requirement_the_index_does_not_have_fails_like_the_training_toolkit(runner: JobRunner, s3: Any) -> None:
    files = {"train.py": "print('never runs')\n", "requirements.txt": "mlops-twin-no-such-package-x9==1.0\n"}
    out = _train(runner, _archive(s3, files))
    assert out["TrainingJobStatus"] == "Failed"
    assert out["FailureReason"].startswith("AlgorithmError: InstallRequirementsError:")


# -- defect 1: the app's own source dir, as the stacks ship it ----------------------------------------------
@pytest.fixture(scope="module")
def sourcedir(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return build_sourcedir(tmp_path_factory.mktemp("asset")).read_bytes()


def _without(archive: bytes, name: str) -> bytes:
    """The archive without ``name`` (a file, or a directory and everything under it)."""
    src, out = io.BytesIO(archive), io.BytesIO()
    with tarfile.open(fileobj=src) as tin, tarfile.open(fileobj=out, mode="w:gz") as tout:
        for member in tin.getmembers():
            if member.name != name and not member.name.startswith(name + "/"):
                tout.addfile(member, tin.extractfile(member) if member.isfile() else None)
    return out.getvalue()


def _data(s3: Any) -> dict[str, str]:
    from examples.generate_data import generate
    from mlops.config import load_config

    data = generate("tumor-classifier", "good", 400, seed=1)
    s3.put_object(Bucket="data-bkt", Key="tc/train/data.csv", Body=data.iloc[:300].to_csv(index=False).encode())
    s3.put_object(Bucket="data-bkt", Key="tc/validation/data.csv", Body=data.iloc[300:].to_csv(index=False).encode())
    config = load_config(ROOT / "configs" / "tumor-classifier.yaml").model_dump(mode="json")
    s3.put_object(Bucket="data-bkt", Key="tc/config/model-config.json", Body=json.dumps(config).encode())
    return {c: f"s3://data-bkt/tc/{c}/" for c in ("train", "validation", "config")}


def test_the_apps_source_dir_trains_and_serves_in_the_image(
    runner: JobRunner, s3: Any, sourcedir: bytes, tmp_path: Path
) -> None:
    s3.put_object(Bucket="assets-bkt", Key="sourcedir.tar.gz", Body=sourcedir)
    out = _train(runner, "s3://assets-bkt/sourcedir.tar.gz", "app", _data(s3))
    assert out["TrainingJobStatus"] == "Completed", out.get("FailureReason")
    job = runner.root / "training" / "app" / "opt/ml"
    metadata = json.loads((job / "model" / "model-metadata.json").read_text())
    row = ",".join("1" for _ in metadata["features"])
    model = LoadedModel("app", job / "model", job / "code", image_uri=SKLEARN_IMAGE, workers=1, log_path=tmp_path / "l")
    try:
        body, content_type = model.load().handle(row.encode(), "text/csv", "application/json")
        assert content_type == "application/json"
        assert set(json.loads(body)["predictions"][0]) == {"label", "probabilities"}
        with pytest.raises(HandlerError, match="empty text/csv request"):
            model.handle(b"\n", "text/csv", "application/json")
    finally:
        model.close()


def test_without_its_vendored_packages_the_apps_training_job_fails_for_pydantic(
    runner: JobRunner, s3: Any, sourcedir: bytes
) -> None:
    # the defect this guards against: train.py imports mlops.config (pydantic), which the image lacks
    s3.put_object(Bucket="assets-bkt", Key="bare.tar.gz", Body=_without(sourcedir, VENDOR))
    out = _train(runner, "s3://assets-bkt/bare.tar.gz", "bare", _data(s3))
    assert out["TrainingJobStatus"] == "Failed"
    assert "No module named 'pydantic'" in out["FailureReason"]


def _evaluate(runner: JobRunner, code: str, name: str) -> dict[str, Any]:
    """The app's evaluation job (its entrypoint and arguments) with no inputs but its code: it gets past its
    imports, then stops on the missing model config."""
    processing = "/opt/ml/processing"
    args = [f"--{name}-dir={processing}/{name}" for name in ("model", "test", "config")]
    params = {
        "ProcessingJobName": name,
        "AppSpecification": {
            "ImageUri": SKLEARN_IMAGE,
            "ContainerEntrypoint": processing_entrypoint("evaluate.py"),
            "ContainerArguments": [*args, f"--output-dir={processing}/evaluation"],
        },
        "ProcessingInputs": [
            {"InputName": "code", "S3Input": {"S3Uri": code, "LocalPath": f"{processing}/input/code"}}
        ],
        "StoppingCondition": {"MaxRuntimeInSeconds": 600},
    }
    try:
        return runner.process(params)
    except JobFailed as exc:
        return exc.describe


def test_the_apps_evaluation_job_installs_nothing_and_needs_its_vendored_packages(
    runner: JobRunner, s3: Any, sourcedir: bytes
) -> None:
    s3.put_object(Bucket="assets-bkt", Key="eval/sourcedir.tar.gz", Body=sourcedir)
    out = _evaluate(runner, "s3://assets-bkt/eval/", "eval-app")
    assert "model config not found" in out["FailureReason"], out["FailureReason"]  # past its imports (pydantic)
    log = (runner.root / "processing" / "eval-app" / "job.log").read_text()
    assert "pip" not in log.lower()
    s3.put_object(Bucket="assets-bkt", Key="bare/sourcedir.tar.gz", Body=_without(sourcedir, VENDOR))
    out = _evaluate(runner, "s3://assets-bkt/bare/", "eval-bare")
    assert "No module named 'pydantic'" in out["FailureReason"]


def test_a_model_whose_code_lacks_a_module_fails_to_load(tmp_path: Path) -> None:
    code, model_dir = tmp_path / "code", tmp_path / "model"
    code.mkdir()
    model_dir.mkdir()
    (code / "inference.py").write_text("import polars\n")
    with pytest.raises(ModelLoadError, match="No module named 'polars'"):
        LoadedModel("m", model_dir, code, image_uri=SKLEARN_IMAGE, workers=1).load()
