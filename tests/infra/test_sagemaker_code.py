"""What the stacks ship to SageMaker and Lambda runs there: its image holds what it needs, and it needs no
newer Python than the runtime has."""

from __future__ import annotations

import tarfile
from pathlib import Path

from mlops.twin import pycompat
from mlops.twin.sagemaker import images
from mlops.twin.sagemaker.rules import check_model
from stacks.layers import RUNTIME
from stacks.sagemaker_code import build_sourcedir, processing_entrypoint, sklearn_container_version

ROOT = Path(__file__).resolve().parents[2]


def test_the_source_dir_ships_its_requirements_for_what_the_image_lacks(tmp_path: Path) -> None:
    with tarfile.open(build_sourcedir(tmp_path)) as tar:
        names = set(tar.getnames())
        requirements = tar.extractfile("requirements.txt").read().decode()  # type: ignore[union-attr]
    assert {"train.py", "evaluate.py", "inference.py", "requirements.txt", "mlops/config.py"} <= names
    pins = dict(p.split("==") for p in images.spec_for("sklearn", sklearn_container_version()).pins())
    assert "pydantic" not in pins  # the image lacks it, mlops.config needs it
    assert any(line.startswith("pydantic") for line in requirements.splitlines())


def test_the_evaluation_entrypoint_installs_the_requirements_before_running() -> None:
    script = processing_entrypoint("evaluate.py")[2]
    assert script.index("pip install") < script.index("evaluate.py")
    assert "-r requirements.txt" in script
    # each member within SageMaker's limit: the twin's rules refuse a longer one, as CreateProcessingJob does
    check_model(
        "CreateProcessingJob",
        {
            "ProcessingJobName": "evaluate",
            "RoleArn": "arn:aws:iam::123456789012:role/sm",
            "ProcessingResources": {
                "ClusterConfig": {"InstanceCount": 1, "InstanceType": "ml.m5.large", "VolumeSizeInGB": 10}
            },
            "AppSpecification": {"ImageUri": "sklearn", "ContainerEntrypoint": processing_entrypoint("evaluate.py")},
        },
    )


def test_the_image_the_stacks_use_is_one_the_twin_runs() -> None:
    spec = images.spec_for("sklearn", sklearn_container_version())
    assert spec.python == "3.12"


def test_the_shipped_code_needs_no_newer_python_than_its_runtimes(tmp_path: Path) -> None:
    with tarfile.open(build_sourcedir(tmp_path / "asset")) as tar:
        tar.extractall(tmp_path / "src", filter="data")
    image_python = images.spec_for("sklearn", sklearn_container_version()).python
    assert pycompat.newer_python_needed(tmp_path / "src", image_python) == []
    lambda_python = RUNTIME.name.removeprefix("python")
    for root in (ROOT / "functions", ROOT / "mlops" / "core", ROOT / "mlops" / "services"):
        assert pycompat.newer_python_needed(root, lambda_python) == [], root


def test_the_check_catches_code_needing_a_newer_python(tmp_path: Path) -> None:
    (tmp_path / "train.py").write_text("import itertools\n\nprint(itertools.batched([1, 2], 1))\n")
    found = pycompat.newer_python_needed(tmp_path, "3.11")
    assert [str(v) for v in found] == ["train.py:3: 'itertools.batched' member requires Python 3.12"]
