"""Lambda layer contents built on this machine (CDK local bundling), never in Docker.

- Core layer: the project's ``mlops`` package (without the twin) and the model configs,
  laid out as ``python/mlops`` and ``python/mlops_configs`` (see ``mlops/settings.py``).
- Deps layer: the third-party packages of ``functions/layer-requirements.txt`` installed
  by pip as Linux x86_64 wheels for the Lambda runtime's Python, whatever the host is.
  With a filled ``.wheelhouse/`` pip installs offline (``--no-index``), so ``cdk synth``
  needs no network; ``python -m stacks.bundling fill-wheelhouse`` fills it.

Bundling never falls back to Docker: the ``image`` the CDK API requires is a placeholder
and local bundling either succeeds or raises with pip's output.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import shutil
import subprocess
import sys
from pathlib import Path

import aws_cdk as cdk
import jsii
from aws_cdk import aws_lambda as lambda_

from mlops.lambda_contract import RUNTIME_PACKAGES

ROOT = Path(__file__).resolve().parent.parent
REQUIREMENTS = ROOT / "functions" / "layer-requirements.txt"
WHEELHOUSE = ROOT / ".wheelhouse"
WHEELHOUSE_DONE = ".complete"  # written last by fill_wheelhouse: a half-filled wheelhouse is not used
# The twin recognises the deps layer by this file and installs the same distributions for its Python.
DEPS_MARKER = "mlops-deps-layer.txt"
# manylinux2014 (glibc 2.17) wheels run on every Lambda Python runtime; 2_28 adds packages that
# only ship newer wheels (the Amazon Linux 2023 runtimes have glibc 2.34).
PLATFORMS = ("manylinux2014_x86_64", "manylinux_2_28_x86_64")
UNUSED_IMAGE = cdk.DockerImage.from_registry("unused")  # required by the API, never run
BUNDLING_VERSION = "2"  # bump to invalidate cached deps layers when the recipe below changes
# Shipped by the Lambda Python runtime; a copy in the layer would shadow the runtime's boto3 stack.
RUNTIME_PROVIDED = frozenset(RUNTIME_PACKAGES)
# Lambda caps a function and its layers at 250 MiB unzipped; leave room for the code and core layer.
MAX_DEPS_BYTES = 230 * 2**20


class BundlingError(RuntimeError):
    pass


def python_version(runtime: lambda_.Runtime) -> str:
    """``python3.14`` -> ``3.14``."""
    if not runtime.name.startswith("python"):
        raise ValueError(f"not a Python runtime: {runtime.name}")
    return runtime.name.removeprefix("python")


def pip_platform_args(version: str) -> list[str]:
    args = [arg for platform in PLATFORMS for arg in ("--platform", platform)]
    return [*args, "--only-binary=:all:", "--python-version", version, "--implementation", "cp"]


def wheelhouse_ready(wheelhouse: Path = WHEELHOUSE) -> bool:
    return (wheelhouse / WHEELHOUSE_DONE).is_file()


def deps_hash(version: str, requirements: Path = REQUIREMENTS) -> str:
    """Asset hash of the deps layer: what pip is asked for, not what the host has."""
    recipe = "\n".join([BUNDLING_VERSION, version, *PLATFORMS, requirements.read_text()])
    return hashlib.sha256(recipe.encode()).hexdigest()


def run_pip(args: list[str]) -> None:
    cmd = [sys.executable, "-m", "pip", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        hint = ""
        if "--no-index" in args:
            hint = "\nthe wheelhouse may be stale: run `python -m stacks.bundling fill-wheelhouse`"
        output = proc.stdout[-2000:] + proc.stderr[-3000:]
        raise BundlingError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{output}{hint}")


def install_deps(target: Path, version: str, requirements: Path = REQUIREMENTS, wheelhouse: Path = WHEELHOUSE) -> None:
    """pip-install the layer requirements for Lambda into ``target/python``, plus the marker file."""
    source = ["--no-index", "--find-links", str(wheelhouse)] if wheelhouse_ready(wheelhouse) else []
    run_pip(
        [
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--no-compile",  # .pyc for the host's Python would be useless in Lambda
            "--target",
            str(target / "python"),
            "-r",
            str(requirements),
            *pip_platform_args(version),
            *source,
        ]
    )
    site = target / "python"
    removed = remove_distributions(site, RUNTIME_PROVIDED)
    stripped = strip_shared_objects(site)
    size = sum(f.stat().st_size for f in site.rglob("*") if f.is_file())
    if size > MAX_DEPS_BYTES:
        raise BundlingError(
            f"the deps layer is {size / 2**20:.0f} MiB unzipped, over {MAX_DEPS_BYTES / 2**20:.0f} MiB "
            "(Lambda allows 250 MiB for a function and its layers): trim functions/layer-requirements.txt"
        )
    (target / DEPS_MARKER).write_text(
        f"Third-party packages for Lambda ({version}, {', '.join(PLATFORMS)}), {size / 2**20:.0f} MiB, "
        f"from {requirements.name}.\nLeft to the runtime: {', '.join(removed) or 'none'}. "
        f"Symbols stripped: {'yes' if stripped else 'no (strip not found)'}.\n\n" + requirements.read_text()
    )


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def remove_distributions(site: Path, names: frozenset[str]) -> list[str]:
    """Delete installed distributions (their RECORD files) that the Lambda runtime already has."""
    removed = []
    for info in sorted(site.glob("*.dist-info")):
        name = _normalize(info.name.removesuffix(".dist-info").rsplit("-", 1)[0])
        if name not in names:
            continue
        for line in (info / "RECORD").read_text().splitlines():
            path = site / line.split(",", 1)[0]
            if path.is_file() and site in path.resolve().parents:
                path.unlink()
        shutil.rmtree(info, ignore_errors=True)
        removed.append(name)
    for directory in sorted((d for d in site.rglob("*") if d.is_dir()), key=lambda d: len(d.parts), reverse=True):
        if not any(directory.iterdir()):
            directory.rmdir()
    return removed


def strip_shared_objects(site: Path, min_bytes: int = 2**20) -> bool:
    """Drop the symbol tables of large native libraries (polars' runtime shrinks by ~40 MB)."""
    strip = shutil.which("strip")
    if strip is None:
        return False
    for lib in site.rglob("*.so"):
        if lib.is_file() and lib.stat().st_size >= min_bytes:
            subprocess.run([strip, "--strip-unneeded", str(lib)], capture_output=True, check=False)
    return True


def fill_wheelhouse(version: str, requirements: Path = REQUIREMENTS, wheelhouse: Path = WHEELHOUSE) -> Path:
    """Download the Linux wheels once so that later synths install offline."""
    wheelhouse.mkdir(parents=True, exist_ok=True)
    (wheelhouse / WHEELHOUSE_DONE).unlink(missing_ok=True)
    run_pip(
        [
            "download",
            "--quiet",
            "--disable-pip-version-check",
            "--dest",
            str(wheelhouse),
            "-r",
            str(requirements),
            *pip_platform_args(version),
        ]
    )
    (wheelhouse / WHEELHOUSE_DONE).write_text(deps_hash(version, requirements) + "\n")
    return wheelhouse


def copy_core(target: Path, root: Path = ROOT) -> None:
    """``python/mlops`` (without the twin) and ``python/mlops_configs`` into ``target``."""
    python = target / "python"
    shutil.copytree(
        root / "mlops",
        python / "mlops",
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "twin"),
        dirs_exist_ok=True,
    )
    configs = python / "mlops_configs"
    configs.mkdir(parents=True, exist_ok=True)
    for path in sorted((root / "configs").glob("*.y*ml")):
        shutil.copy2(path, configs / path.name)


@jsii.implements(cdk.ILocalBundling)
class PipLayerBundling:
    def __init__(self, version: str, requirements: Path = REQUIREMENTS, wheelhouse: Path = WHEELHOUSE) -> None:
        self.version = version
        self.requirements = requirements
        self.wheelhouse = wheelhouse

    def try_bundle(self, output_dir: str, options: cdk.BundlingOptions) -> bool:
        install_deps(Path(output_dir), self.version, self.requirements, self.wheelhouse)
        return True


@jsii.implements(cdk.ILocalBundling)
class CoreLayerBundling:
    def __init__(self, root: Path = ROOT) -> None:
        self.root = root

    def try_bundle(self, output_dir: str, options: cdk.BundlingOptions) -> bool:
        copy_core(Path(output_dir), self.root)
        return True


def deps_layer_code(runtime: lambda_.Runtime) -> lambda_.Code:
    version = python_version(runtime)
    return lambda_.Code.from_asset(
        str(REQUIREMENTS.parent),
        asset_hash_type=cdk.AssetHashType.CUSTOM,
        asset_hash=deps_hash(version),  # same requirements and runtime: the bundle in cdk.out is reused
        bundling=cdk.BundlingOptions(image=UNUSED_IMAGE, local=PipLayerBundling(version)),
    )


def core_layer_code() -> lambda_.Code:
    return lambda_.Code.from_asset(
        str(ROOT),
        asset_hash_type=cdk.AssetHashType.OUTPUT,  # hash what is copied, not the whole checkout
        bundling=cdk.BundlingOptions(image=UNUSED_IMAGE, local=CoreLayerBundling()),
    )


def main(argv: list[str] | None = None) -> int:
    from stacks.layers import RUNTIME

    parser = argparse.ArgumentParser(prog="python -m stacks.bundling", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    fill = sub.add_parser("fill-wheelhouse", help="download the deps layer's Linux wheels into .wheelhouse/")
    fill.add_argument("--dest", type=Path, default=WHEELHOUSE)
    build = sub.add_parser("build-deps", help="install the deps layer into a directory (what synth does)")
    build.add_argument("target", type=Path)
    args = parser.parse_args(argv)
    version = python_version(RUNTIME)
    try:
        if args.command == "fill-wheelhouse":
            where = fill_wheelhouse(version, wheelhouse=args.dest)
            print(f"wheels for Python {version} on {', '.join(PLATFORMS)} in {where}")
        else:
            install_deps(args.target, version)
            print(f"deps layer in {args.target}")
    except BundlingError as exc:
        print(exc, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
