"""What SageMaker jobs run: the scikit-learn framework image and our source dir.

- The image URI per region comes from sagemaker-core's image URI config for the
  scikit-learn container whose version matches the installed scikit-learn, so what
  trains in AWS is what the twin and the tests run. A CfnMapping keeps the
  templates region-agnostic (no credentials or lookups needed to synthesize).
- The source dir is one ``sourcedir.tar.gz`` asset (script mode's
  ``sagemaker_submit_directory``): the entry points from ``pipelines/`` at its root, the
  ``mlops`` package beside them and ``requirements.txt`` (``pipelines/requirements.txt``:
  what the code needs that the image lacks), built by local bundling (no Docker).
- The image holds only its own packages: the training toolkit installs ``requirements.txt``
  at job start and the serving container at model load; a processing job installs nothing
  by itself, so its entrypoint (:func:`processing_entrypoint`) does, as the SageMaker SDK's
  framework processors do.
"""

from __future__ import annotations

import json
import re
import tarfile
from functools import cache
from importlib import resources
from pathlib import Path

import aws_cdk as cdk
import jsii
from aws_cdk import aws_s3_assets as s3_assets
from constructs import Construct

ROOT = Path(__file__).resolve().parent.parent
ENTRY_POINTS = ("train.py", "evaluate.py", "inference.py")
REQUIREMENTS = ROOT / "pipelines" / "requirements.txt"  # shipped as the source dir's requirements.txt
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


def build_sourcedir(out_dir: Path) -> Path:
    """Write ``sourcedir.tar.gz``: entry points at the root, the mlops package (minus the twin) beside them."""
    out_dir.mkdir(parents=True, exist_ok=True)
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
        tar.add(REQUIREMENTS, arcname="requirements.txt", filter=skip)
        tar.add(ROOT / "mlops", arcname="mlops", filter=skip)
    return archive


def processing_entrypoint(program: str) -> list[str]:
    """``ContainerEntrypoint`` running ``program`` from the source dir given as the ``code`` input.

    Unpacks ``sourcedir.tar.gz``, installs its ``requirements.txt`` with the image's pip (the
    image has only its own packages), then runs the program with the job's arguments.
    """
    script = (
        f"set -e;d={PROCESSING_SRC};mkdir -p $d;tar -xzf {PROCESSING_CODE}/*.gz -C $d;cd $d;"
        "[ ! -f requirements.txt ]||python3 -m pip install -q --no-input -r requirements.txt;"
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
            exclude=["**", "!pipelines/*.py", "!pipelines/requirements.txt", "!mlops/**/*.py"],
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
