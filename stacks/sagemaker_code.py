"""What SageMaker jobs run: the scikit-learn framework image and our source dir.

- The image URI per region comes from sagemaker-core's image URI config for the
  scikit-learn container whose version matches the installed scikit-learn, so what
  trains in AWS is what the twin and the tests run. A CfnMapping keeps the
  templates region-agnostic (no credentials or lookups needed to synthesize).
- The source dir is one ``sourcedir.tar.gz`` asset (script mode's
  ``sagemaker_submit_directory``): the entry points from ``pipelines/`` at its root, the
  ``mlops`` package beside them and ``vendor/``: what the code needs that the image lacks
  (``pipelines/requirements.txt``, every distribution pinned), installed at synth time by
  pip as wheels for the image's Python and platform, as the Lambda deps layer is (local
  bundling, no Docker). Each entry point first imports ``vendored`` (``pipelines/vendored.py``),
  which puts ``vendor/`` on ``sys.path``.
- So nothing is installed when a job or model server starts: no ``requirements.txt`` at the
  source dir's root (the training toolkit and the serving container would pip-install it
  from PyPI at every start, which also fails in a VPC without internet access), and the
  processing entrypoint (:func:`processing_entrypoint`) only unpacks the source dir.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import tarfile
from functools import cache
from importlib import resources
from pathlib import Path

import aws_cdk as cdk
import jsii
from aws_cdk import aws_s3_assets as s3_assets
from constructs import Construct

ROOT = Path(__file__).resolve().parent.parent
ENTRY_POINTS = ("train.py", "evaluate.py", "inference.py", "vendored.py")
REQUIREMENTS = ROOT / "pipelines" / "requirements.txt"  # vendored into the source dir's vendor/
VENDOR = "vendor"  # in the source dir: the distributions of REQUIREMENTS (pipelines/vendored.py reads it)
VENDOR_MARKER = "VENDORED.txt"  # in vendor/: for which Python and platforms, and the pins
VENDOR_RECIPE = "1"  # bump when the way vendor/ is built changes: cached builds are redone
VENDOR_CACHE = ROOT / ".wheelhouse" / "sourcedir-vendor"  # built vendor/ trees, keyed by recipe
PROCESSING_CODE = "/opt/ml/processing/input/code"  # where the processing job's "code" input lands
PROCESSING_SRC = "/opt/ml/processing/src"
ENTRYPOINT_MEMBER_MAX = 256  # SageMaker's limit on each ContainerEntrypoint member (botocore's model)


class ImageVersionError(RuntimeError):
    pass


@cache
def sklearn_container_version() -> str:
    """The framework container version (``1.9-0``) matching the installed scikit-learn."""
    import sklearn

    config = json.loads(resources.files("sagemaker.core").joinpath("image_uri_config/sklearn.json").read_text())
    local = ".".join(sklearn.__version__.split(".")[:2])
    # plain "<major.minor>-<build>" versions; suffixed ones (e.g. "1.4-2-py312") pin another Python
    candidates = [v for v in config["training"]["versions"] if re.fullmatch(rf"{re.escape(local)}-\d+", v)]
    if not candidates:
        known = ", ".join(config["training"]["versions"])
        raise ImageVersionError(
            f"no SageMaker scikit-learn container for scikit-learn {sklearn.__version__} (containers: {known}); "
            "install a scikit-learn version that has one"
        )
    return sorted(candidates)[-1]


@cache
def sklearn_image_by_region(scope: str = "training") -> dict[str, str]:
    from sagemaker.core import image_uris

    version = sklearn_container_version()
    config = json.loads(resources.files("sagemaker.core").joinpath("image_uri_config/sklearn.json").read_text())
    regions = sorted(config[scope]["versions"][version]["registries"])
    return {
        region: image_uris.retrieve(
            framework="sklearn",
            region=region,
            version=version,
            py_version="py3",
            image_scope=scope,
            instance_type="ml.m5.large",
        )
        for region in regions
    }


def sklearn_image_uri(scope: Construct, scope_name: str = "training") -> str:
    """The image URI for the stack's region, through a CfnMapping (a token at synth time)."""
    stack = cdk.Stack.of(scope)
    mapping_id = f"SklearnImage{scope_name.capitalize()}"
    mapping = stack.node.try_find_child(mapping_id)
    if mapping is None:
        mapping = cdk.CfnMapping(
            stack, mapping_id, mapping={r: {"uri": uri} for r, uri in sklearn_image_by_region(scope_name).items()}
        )
    return mapping.find_in_map(cdk.Aws.REGION, "uri")  # type: ignore[union-attr]


class VendorError(RuntimeError):
    pass


def image_python() -> str:
    """The Python version (``3.12``) of the scikit-learn image the stacks use."""
    from mlops.twin.sagemaker.images import spec_for  # the registry of the images' published contents

    return spec_for("sklearn", sklearn_container_version()).python


def _pins(text: str) -> dict[str, str]:
    """``name==version`` lines of a requirements file, by normalized name; anything else is refused."""
    pins = {}
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([A-Za-z0-9.+!-]+)", line)
        if match is None:
            raise VendorError(f"{REQUIREMENTS.name}: {line!r} is not pinned (name==version): the asset must not drift")
        pins[re.sub(r"[-_.]+", "-", match[1]).lower()] = match[2]
    return pins


def vendor_dir(requirements: Path = REQUIREMENTS) -> Path:
    """``vendor/`` for the image: ``requirements`` installed by pip as wheels for the image's Python and
    platform (never compiled: the image's Python does it). Built once per recipe, then reused.

    The requirements must pin every distribution the image lacks: pip resolves them against the image's
    own package set (as constraints), and a distribution pip adds that is not pinned, or that the image
    already has, is refused, so the asset is the same wherever and whenever it is built.
    """
    from mlops.twin.sagemaker.images import spec_for
    from stacks.bundling import PLATFORMS, pip_platform_args, run_pip

    spec = spec_for("sklearn", sklearn_container_version())
    text = requirements.read_text()
    wanted = _pins(text)
    image = _pins("\n".join(spec.pins()))
    if overlap := sorted(set(wanted) & set(image)):
        raise VendorError(f"{requirements.name} pins {', '.join(overlap)}, which the image already has")
    recipe = "\n".join([VENDOR_RECIPE, spec.python, *PLATFORMS, text, *spec.pins()])
    target = VENDOR_CACHE / hashlib.sha256(recipe.encode()).hexdigest()[:16]
    if (target / VENDOR_MARKER).is_file():
        return target
    staging = target.with_name(target.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    constraints = staging.parent / f"{target.name}.image-constraints.txt"
    constraints.write_text("\n".join(spec.pins()) + "\n")
    try:
        install = ["install", "--quiet", "--disable-pip-version-check", "--no-compile", "--target", str(staging)]
        run_pip([*install, "-r", str(requirements), "-c", str(constraints), *pip_platform_args(spec.python)])
        got = {}
        for info in staging.glob("*.dist-info"):
            name, _, version = info.name.removesuffix(".dist-info").rpartition("-")
            got[re.sub(r"[-_.]+", "-", name).lower()] = version
        if got != wanted:
            extra = sorted(f"{n}=={v}" for n, v in got.items() if wanted.get(n) != v)
            raise VendorError(
                f"{requirements.name} must pin exactly what pip installs for the image; pip installed {extra}"
            )
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    finally:
        constraints.unlink(missing_ok=True)
    (staging / VENDOR_MARKER).write_text(
        f"Vendored for {spec.repository}:{spec.version}: CPython {spec.python}, {', '.join(PLATFORMS)}.\n"
        f"What the image lacks, from pipelines/{requirements.name}; put on sys.path by vendored.py.\n\n{text}"
    )
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    return target


def build_sourcedir(out_dir: Path) -> Path:
    """Write ``sourcedir.tar.gz``: entry points at the root, the mlops package (minus the twin) and vendor/
    beside them."""
    out_dir.mkdir(parents=True, exist_ok=True)
    vendor = vendor_dir()
    archive = out_dir / "sourcedir.tar.gz"

    def skip(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
        parts = Path(info.name).parts
        if "__pycache__" in parts or info.name.endswith(".pyc") or parts[:2] == ("mlops", "twin"):
            return None
        info.mtime = 0  # reproducible archive: same code, same asset hash
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        return info

    with tarfile.open(archive, "w:gz", compresslevel=6) as tar:
        for name in ENTRY_POINTS:
            tar.add(ROOT / "pipelines" / name, arcname=name, filter=skip)
        tar.add(ROOT / "mlops", arcname="mlops", filter=skip)
        for path in sorted(p for p in vendor.rglob("*") if p.is_file()):  # sorted: the same bytes every build
            tar.add(path, arcname=f"{VENDOR}/{path.relative_to(vendor).as_posix()}", filter=skip)
    return archive


def processing_entrypoint(program: str) -> list[str]:
    """``ContainerEntrypoint`` running ``program`` from the source dir given as the ``code`` input.

    Unpacks ``sourcedir.tar.gz`` and runs the program with the job's arguments; what the image lacks
    comes with the source dir (``vendor/``), so nothing is installed.
    """
    script = (
        f"set -e;d={PROCESSING_SRC};mkdir -p $d;tar -xzf {PROCESSING_CODE}/*.gz -C $d;cd $d;"
        f'PYTHONPATH=$d exec python3 {program} "$@"'
    )
    entrypoint = ["/bin/sh", "-c", script, "sh"]
    too_long = [part for part in entrypoint if len(part) > ENTRYPOINT_MEMBER_MAX]
    if too_long:  # CreateProcessingJob refuses it (ValidationException); fail at synth instead
        raise ValueError(f"ContainerEntrypoint member over {ENTRYPOINT_MEMBER_MAX} characters: {too_long[0]!r}")
    return entrypoint


@jsii.implements(cdk.ILocalBundling)
class _SourcedirBundling:
    def try_bundle(self, output_dir: str, *, image: cdk.DockerImage, **_: object) -> bool:
        build_sourcedir(Path(output_dir))
        return True


class SourcedirAsset(Construct):
    """The script-mode source dir as one S3 file asset; ``s3_url`` and ``hash`` for lineage."""

    def __init__(self, scope: Construct, construct_id: str) -> None:
        super().__init__(scope, construct_id)
        self.asset = s3_assets.Asset(
            self,
            "Archive",
            path=str(ROOT),
            # what the bundle is made of, and how (vendor/'s recipe): the same sources, the same hash
            exclude=[
                "**",
                "!pipelines/*.py",
                "!pipelines/requirements.txt",
                "!mlops/**/*.py",
                "!mlops/twin/sagemaker/image_sets/*.txt",
                "!stacks/sagemaker_code.py",
                "!stacks/bundling.py",
            ],
            asset_hash_type=cdk.AssetHashType.SOURCE,
            bundling=cdk.BundlingOptions(
                image=cdk.DockerImage.from_registry("local-bundling-only"),  # never pulled: local bundling
                local=_SourcedirBundling(),
                output_type=cdk.BundlingOutput.ARCHIVED,
            ),
        )

    @property
    def s3_url(self) -> str:
        return self.asset.s3_object_url

    @property
    def hash(self) -> str:
        return self.asset.asset_hash
