"""The layers' contents, built the way synthesis builds them (no Docker)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from stacks import bundling
from stacks.layers import RUNTIME


def _pypi_reachable() -> bool:
    try:
        socket.create_connection(("pypi.org", 443), timeout=3).close()
    except OSError:
        return False
    return True


def test_core_layer_holds_the_package_and_configs(tmp_path: Path) -> None:
    bundling.copy_core(tmp_path)
    python = tmp_path / "python"
    assert (python / "mlops" / "config.py").is_file()
    assert (python / "mlops" / "core" / "contract.py").is_file()
    assert not (python / "mlops" / "twin").exists()
    assert not list(python.rglob("__pycache__"))
    assert sorted(p.name for p in (python / "mlops_configs").iterdir()) == sorted(
        p.name for p in (bundling.ROOT / "configs").glob("*.yaml")
    )


def test_deps_hash_depends_on_runtime_and_requirements(tmp_path: Path) -> None:
    req = tmp_path / "req.txt"
    req.write_text("polars>=1.20\n")
    first = bundling.deps_hash("3.14", req)
    assert first == bundling.deps_hash("3.14", req)
    assert first != bundling.deps_hash("3.13", req)
    req.write_text("polars>=1.21\n")
    assert first != bundling.deps_hash("3.14", req)


def test_pip_targets_lambda_linux_wheels() -> None:
    args = bundling.pip_platform_args(bundling.python_version(RUNTIME))
    assert args[args.index("--python-version") + 1] == RUNTIME.name.removeprefix("python")
    assert "manylinux2014_x86_64" in args and "--only-binary=:all:" in args
    assert args[args.index("--implementation") + 1] == "cp"


@pytest.mark.slow
@pytest.mark.skipif(
    not bundling.wheelhouse_ready() and not _pypi_reachable(),
    reason="no filled .wheelhouse/ and no network: run `python -m stacks.bundling fill-wheelhouse` once",
)
def test_deps_layer_installs_linux_wheels(tmp_path: Path) -> None:
    bundling.install_deps(tmp_path, bundling.python_version(RUNTIME))
    python = tmp_path / "python"
    assert (tmp_path / bundling.DEPS_MARKER).is_file()
    for package in ("polars", "numpy", "pydantic", "yaml", "aws_lambda_powertools", "aws_xray_sdk"):
        assert (python / package).is_dir(), package
    version = RUNTIME.name.removeprefix("python").replace(".", "")
    assert list(python.glob(f"pydantic_core/*cpython-{version}-x86_64-linux-gnu.so")), "not the runtime's wheel"
    assert not (python / "botocore").exists()  # left to the Lambda runtime
    size = sum(f.stat().st_size for f in python.rglob("*") if f.is_file())
    assert size < bundling.MAX_DEPS_BYTES
