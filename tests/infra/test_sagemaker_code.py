"""What the stacks ship to SageMaker and Lambda runs there: its image holds what it needs, and it needs no
newer Python than the runtime has."""

from __future__ import annotations

import re
import tarfile
from pathlib import Path

import aws_cdk as cdk
import pytest

from mlops.twin import pycompat
from mlops.twin.sagemaker import images
from mlops.twin.sagemaker.rules import check_model
from stacks.layers import RUNTIME
from stacks.sagemaker_code import (
    VENDOR,
    VENDOR_MARKER,
    SourcedirAsset,
    VendorError,
    build_sourcedir,
    processing_entrypoint,
    sklearn_container_version,
    vendor_dir,
)

ROOT = Path(__file__).resolve().parents[2]


def test_the_source_dir_ships_what_the_image_lacks_built_for_the_images_python(tmp_path: Path) -> None:
    with tarfile.open(build_sourcedir(tmp_path)) as tar:
        names = set(tar.getnames())
        marker = tar.extractfile(f"{VENDOR}/{VENDOR_MARKER}").read().decode()  # type: ignore[union-attr]
    assert {"train.py", "evaluate.py", "inference.py", "vendored.py", "mlops/config.py"} <= names
    assert "requirements.txt" not in names  # the toolkits would pip-install it from PyPI at every start
    pins = dict(p.split("==") for p in images.spec_for("sklearn", sklearn_container_version()).pins())
    assert "pydantic" not in pins  # the image lacks it, mlops.config needs it
    assert f"{VENDOR}/pydantic/__init__.py" in names
    # pydantic-core's extension module, built for the image's CPython 3.12 on Linux x86_64
    assert any(
        re.fullmatch(rf"{VENDOR}/pydantic_core/_pydantic_core\.cpython-312-x86_64-linux-gnu\.so", n) for n in names
    )
    assert "CPython 3.12" in marker and "pydantic==" in marker
    assert not any("__pycache__" in n or n.endswith(".pyc") for n in names)


def test_every_entry_point_puts_vendor_on_the_path_before_importing_mlops() -> None:
    for name in ("train.py", "evaluate.py", "inference.py"):
        text = (ROOT / "pipelines" / name).read_text()
        assert text.index("import vendored") < text.index("from mlops"), name


def test_the_vendored_requirements_must_be_pinned_exactly(tmp_path: Path) -> None:
    loose = tmp_path / "requirements.txt"
    loose.write_text("pydantic>=2.7,<3\n")
    with pytest.raises(VendorError, match="not pinned"):
        vendor_dir(loose)
    incomplete = tmp_path / "incomplete.txt"
    incomplete.write_text("pydantic==2.14.4\n")  # its dependencies unpinned: what pip picks would drift
    with pytest.raises(VendorError, match="must pin exactly what pip installs"):
        vendor_dir(incomplete)
    overlap = tmp_path / "overlap.txt"
    overlap.write_text("pyyaml==6.0.3\n")
    with pytest.raises(VendorError, match="which the image already has"):
        vendor_dir(overlap)


def test_the_evaluation_entrypoint_installs_nothing() -> None:
    script = processing_entrypoint("evaluate.py")[2]
    assert "pip" not in script and "requirements" not in script
    assert script.index("tar -xzf") < script.index("python3 evaluate.py")
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


def test_the_source_dir_asset_hash_is_deterministic() -> None:
    def asset_hash() -> str:
        stack = cdk.Stack(cdk.App(), "S")
        return SourcedirAsset(stack, "Code").hash

    first = asset_hash()
    assert asset_hash() == first


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


def test_the_check_skips_installed_distributions_but_not_the_code_beside_them(tmp_path: Path) -> None:
    # pip chose vendor/'s wheels for the image's Python; their version-guarded code is not the app's
    (tmp_path / "vendor" / "lib-1.0.dist-info").mkdir(parents=True)
    (tmp_path / "vendor" / "lib.py").write_text("import itertools\n\nprint(itertools.batched([1, 2], 1))\n")
    assert pycompat.newer_python_needed(tmp_path, "3.11") == []
    (tmp_path / "train.py").write_text("import itertools\n\nprint(itertools.batched([1, 2], 1))\n")
    assert [v.path for v in pycompat.newer_python_needed(tmp_path, "3.11")] == ["train.py"]


def test_builds_of_one_recipe_side_by_side_both_get_the_whole_tree(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Synths running at once (test workers, the demo) build the same vendor/ tree: neither may see the
    other's half-built one. pip is replaced by one that installs the pins one by one, slowly."""
    import threading
    import time

    import stacks.bundling
    import stacks.sagemaker_code as code

    requirements = tmp_path / "requirements.txt"
    requirements.write_text("alpha-pkg==1.0\nbeta-pkg==2.0\ngamma-pkg==3.0\n")

    def slow_pip(args: list[str]) -> None:
        target = Path(args[args.index("--target") + 1])
        for line in requirements.read_text().split():
            name, version = line.split("==")
            (target / f"{name.replace('-', '_')}-{version}.dist-info").mkdir(parents=True)
            time.sleep(0.2)

    monkeypatch.setattr(code, "VENDOR_CACHE", tmp_path / "cache")
    monkeypatch.setattr(stacks.bundling, "run_pip", slow_pip)
    results: list[Path | BaseException] = []

    def build() -> None:
        try:
            results.append(vendor_dir(requirements))
        except BaseException as exc:
            results.append(exc)

    threads = [threading.Thread(target=build) for _ in range(2)]
    for thread in threads:
        thread.start()
        time.sleep(0.1)  # the second starts while the first is installing
    for thread in threads:
        thread.join(timeout=30)
    assert len(results) == 2 and all(isinstance(r, Path) for r in results), results
    assert results[0] == results[1] and (results[0] / VENDOR_MARKER).is_file()  # type: ignore[operator]
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == [results[0].name]  # type: ignore[union-attr]
