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
import io
import json
import re
import shutil
import tarfile
import tempfile
from functools import cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aws_cdk as cdk
import jsii
from aws_cdk import aws_s3_assets as s3_assets
from constructs import Construct

from mlops.config import FRAMEWORK_VERSIONS, ConfigError, Framework, ModelConfig
from mlops.core.model_code import INFERENCE, MANIFEST, PROGRAM

if TYPE_CHECKING:
    from mlops.twin.sagemaker.images import ImageSpec

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


def sklearn_image_uri(scope: Construct, scope_name: str = "training") -> str:
    """The image URI for the stack's region, through a CfnMapping (a token at synth time)."""
    return framework_image_uri(scope, Framework.SKLEARN, None, scope_name)


def container_version(framework: Framework, version: str | None) -> str:
    """A config's ``training.framework_version``, or the platform's default for the framework."""
    if version is not None:
        return version
    if framework is Framework.SKLEARN:
        return sklearn_container_version()
    return FRAMEWORK_VERSIONS[framework][0]


@cache
def image_by_region(framework: Framework, version: str, scope: str = "training") -> dict[str, str]:
    """sagemaker-core's image URI of a framework container, for every region it is published in."""
    from sagemaker.core import image_uris

    config = json.loads(resources.files("sagemaker.core").joinpath(f"image_uri_config/{framework}.json").read_text())
    regions = sorted(config[scope]["versions"][version]["registries"])
    return {
        region: image_uris.retrieve(
            framework=str(framework),
            region=region,
            version=version,
            py_version="py3",
            image_scope=scope,
            instance_type="ml.m5.large",
        )
        for region in regions
    }


def framework_image_uri(
    scope: Construct, framework: Framework, version: str | None, scope_name: str = "training"
) -> str:
    """A framework image's URI for the stack's region, through one CfnMapping per image (a token at synth)."""
    stack = cdk.Stack.of(scope)
    resolved = container_version(framework, version)
    if framework is Framework.SKLEARN and resolved == sklearn_container_version():
        mapping_id = f"SklearnImage{scope_name.capitalize()}"
    else:
        mapping_id = f"{framework.capitalize()}Image{re.sub(r'[^0-9]', '', resolved)}{scope_name.capitalize()}"
    mapping = stack.node.try_find_child(mapping_id)
    if mapping is None:
        by_region = image_by_region(framework, resolved, scope_name)
        mapping = cdk.CfnMapping(stack, mapping_id, mapping={r: {"uri": uri} for r, uri in by_region.items()})
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


def vendor_dir(requirements: Path = REQUIREMENTS, spec: ImageSpec | None = None) -> Path:
    """``vendor/`` for the image: ``requirements`` installed by pip as wheels for the image's Python and
    platform (never compiled: the image's Python does it). Built once per recipe, then reused.

    The requirements must pin every distribution the image lacks: pip resolves them against the image's
    own package set (as constraints), and a distribution pip adds that is not pinned, or that the image
    already has, is refused, so the asset is the same wherever and whenever it is built.
    """
    from mlops.twin.sagemaker.images import spec_for
    from stacks.bundling import PLATFORMS, pip_platform_args, run_pip

    spec = spec or spec_for("sklearn", sklearn_container_version())
    text = requirements.read_text()
    wanted = _pins(text)
    image = _pins("\n".join(spec.pins()))
    if overlap := sorted(set(wanted) & set(image)):
        raise VendorError(f"{requirements.name} pins {', '.join(overlap)}, which the image already has")
    recipe = "\n".join([VENDOR_RECIPE, spec.python, *PLATFORMS, text, *spec.pins()])
    target = VENDOR_CACHE / hashlib.sha256(recipe.encode()).hexdigest()[:16]
    if (target / VENDOR_MARKER).is_file():
        return target
    # a staging dir of this build's own: synths running side by side (tests, the demo) may build the
    # same recipe at once; the first to finish publishes it, the others use it
    VENDOR_CACHE.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f"{target.name}.", suffix=".tmp", dir=VENDOR_CACHE))
    constraints = staging.with_suffix(".image-constraints.txt")
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
        f"What the image lacks, from {_shown(requirements)}.\n\n{text}"
    )
    try:
        staging.rename(target)
    except OSError as exc:  # another build published it first: a published tree is always complete
        shutil.rmtree(staging, ignore_errors=True)
        if (target / VENDOR_MARKER).is_file():
            return target
        raise VendorError(f"could not publish the vendored packages to {target}: {exc}") from exc
    return target


# what the platform puts at the root of a model's own source dir beside the model's files
OWN_CODE_ENTRY_POINTS = (PROGRAM, "evaluate.py", "vendored.py")
OWN_CODE_RESERVED = {*OWN_CODE_ENTRY_POINTS, "mlops", VENDOR, MANIFEST}
OWN_CODE_SKIP = {"__pycache__", "requirements.txt"}  # requirements.txt: vendored at synth, never pip-installed


def own_code_problems(config: ModelConfig, root: Path = ROOT) -> list[str]:
    """Why ``training.code`` cannot be shipped (one line each, naming the field), or nothing."""
    code = config.training.code
    if code is None:
        return []
    where = root / code
    if not where.is_dir():
        return [f"training.code: {code} is not a directory of the project"]
    problems = [
        f"training.code: {code} has no {name}; {why}"
        for name, why in (
            ("train.py", "SageMaker runs it as the training job's script"),
            (
                INFERENCE,
                "the platform evaluates and serves the model through its model_fn/input_fn/predict_fn/output_fn",
            ),
        )
        if not (where / name).is_file()
    ]
    clash = sorted(p.name for p in where.iterdir() if p.name in OWN_CODE_RESERVED)
    if clash:
        problems.append(f"training.code: {code} holds {', '.join(clash)}, name(s) the platform uses in the source dir")
    return problems


def check_own_code(name: str, config: ModelConfig, root: Path = ROOT) -> None:
    problems = own_code_problems(config, root)
    if problems:
        raise ConfigError(f"configs/{name}.yaml", problems)


def image_spec(config: ModelConfig) -> ImageSpec:
    """The twin's registry entry (Python, package set) of the image a config's jobs run on."""
    from mlops.twin.sagemaker.images import spec_for

    framework = config.training.framework
    return spec_for(str(framework), container_version(framework, config.training.framework_version))


def _own_files(code_dir: Path) -> list[Path]:
    return sorted(
        p
        for p in code_dir.rglob("*")
        if p.is_file() and not OWN_CODE_SKIP & set(p.relative_to(code_dir).parts) and not p.name.endswith(".pyc")
    )


def _shown(path: Path) -> str:
    return path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else path.name


def build_sourcedir(out_dir: Path, config: ModelConfig | None = None, root: Path = ROOT) -> Path:
    """Write ``sourcedir.tar.gz``: entry points at the root, the mlops package (minus the twin) and vendor/
    beside them. For a model with its own code (``training.code``): the model's files at the root (its
    pinned ``requirements.txt`` installed there at synth, for the image's Python), the platform's
    entry points for its code beside them, and ``own-code.json`` naming the model's files."""
    out_dir.mkdir(parents=True, exist_ok=True)
    own = config is not None and config.training.code is not None
    spec = image_spec(config) if config is not None else None
    vendor = vendor_dir(REQUIREMENTS, spec)
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
        for name in OWN_CODE_ENTRY_POINTS if own else ENTRY_POINTS:
            tar.add(ROOT / "pipelines" / name, arcname=name, filter=skip)
        tar.add(ROOT / "mlops", arcname="mlops", filter=skip)
        for path in sorted(p for p in vendor.rglob("*") if p.is_file()):  # sorted: the same bytes every build
            tar.add(path, arcname=f"{VENDOR}/{path.relative_to(vendor).as_posix()}", filter=skip)
        if own:
            assert config is not None and config.training.code is not None and spec is not None
            _add_own_code(tar, root / config.training.code, spec, skip)
    return archive


def _add_own_code(tar: tarfile.TarFile, code_dir: Path, spec: ImageSpec, skip: Any) -> None:
    """The model's files at the source dir's root, its requirements vendored beside them, the manifest."""
    names: set[str] = set()
    for path in _own_files(code_dir):
        rel = path.relative_to(code_dir).as_posix()
        tar.add(path, arcname=rel, filter=skip)
        names.add(rel.split("/")[0])
    requirements = code_dir / "requirements.txt"
    if requirements.is_file():
        vendored = vendor_dir(requirements, spec)
        for path in sorted(p for p in vendored.rglob("*") if p.is_file() and p.name != VENDOR_MARKER):
            rel = path.relative_to(vendored).as_posix()
            if rel.split("/")[0] in OWN_CODE_RESERVED | names:
                raise VendorError(f"{requirements}: {rel} would replace a file of the source dir")
            tar.add(path, arcname=rel, filter=skip)
        names |= {p.name for p in vendored.iterdir() if p.name != VENDOR_MARKER}
    manifest = json.dumps({"program": "train.py", "files": sorted(names)}, indent=1).encode()
    info = skip(tarfile.TarInfo(MANIFEST))
    info.size = len(manifest)
    tar.addfile(info, io.BytesIO(manifest))


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
    def __init__(self, config: ModelConfig | None = None) -> None:
        self.config = config

    def try_bundle(self, output_dir: str, *, image: cdk.DockerImage, **_: object) -> bool:
        build_sourcedir(Path(output_dir), self.config)
        return True


# what the platform's source dir is made of, and how (vendor/'s recipe): the same sources, the same hash
PLATFORM_SOURCES = (
    "pipelines/*.py",
    "pipelines/requirements.txt",
    "mlops/**/*.py",
    "mlops/twin/sagemaker/image_sets/*.txt",
    "stacks/sagemaker_code.py",
    "stacks/bundling.py",
)


def own_code_hash(config: ModelConfig, root: Path = ROOT) -> str:
    """The source dir's hash for a model with its own code: the platform's sources, the model's files and
    the image they are built for (a framework change rebuilds vendor/: a new hash)."""
    assert config.training.code is not None
    digest = hashlib.sha256()
    files = {p for pattern in PLATFORM_SOURCES for p in root.glob(pattern) if p.is_file()}
    files |= set(_own_files(root / config.training.code))
    for path in sorted(files):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    spec = image_spec(config)
    digest.update(f"{spec.framework}:{spec.version}:{VENDOR_RECIPE}".encode())
    return digest.hexdigest()


class SourcedirAsset(Construct):
    """The script-mode source dir as one S3 file asset; ``s3_url`` and ``hash`` for lineage.

    Without a config: the platform's source dir (its estimators, on the scikit-learn image). With a config
    whose model brings its own code (``training.code``): that model's source dir, for its image.
    """

    def __init__(self, scope: Construct, construct_id: str, config: ModelConfig | None = None) -> None:
        super().__init__(scope, construct_id)
        bundling = cdk.BundlingOptions(
            image=cdk.DockerImage.from_registry("local-bundling-only"),  # never pulled: local bundling
            local=_SourcedirBundling(config),
            output_type=cdk.BundlingOutput.ARCHIVED,
        )
        if config is not None and config.training.code is not None:
            check_own_code(config.name, config)
            self.asset = s3_assets.Asset(
                self,
                "Archive",
                path=str(ROOT / config.training.code),
                asset_hash_type=cdk.AssetHashType.CUSTOM,
                asset_hash=own_code_hash(config),
                bundling=bundling,
            )
            return
        self.asset = s3_assets.Asset(
            self,
            "Archive",
            path=str(ROOT),
            exclude=["**", *(f"!{pattern}" for pattern in PLATFORM_SOURCES)],
            asset_hash_type=cdk.AssetHashType.SOURCE,
            bundling=bundling,
        )

    @property
    def s3_url(self) -> str:
        return self.asset.s3_object_url

    @property
    def hash(self) -> str:
        return self.asset.asset_hash
