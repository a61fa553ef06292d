"""SageMaker framework images on the twin: which Python and which packages each one holds.

A training job, processing job or model names its container by ECR image URI (what sagemaker-core's
``image_uris.retrieve`` gives the stacks). The twin cannot run the image, so it runs the code in an
environment holding what the image holds: the image's Python version and its published package set,
every distribution pinned (``image_sets/<repository>-<version>.txt``, with where it comes from).

The registry is keyed by (framework, version), the names sagemaker-core uses; an image the registry
does not know is refused by name rather than run with whatever the host has.

Deviations, in one place (:data:`DEVIATIONS`): where this machine has no interpreter of the image's
Python version, the nearest one runs the code, with the nearest releases of the pinned packages that
install on it. The twin reports them when it builds the environment.

``MLOPS_TWIN_IMAGE_ENV=host`` runs SageMaker code on the twin's own interpreter and packages instead:
not the image, and said so in every job and model-server log. It exists only as the baseline
``bench/loop.py`` measures the cost of the image environments against.
"""

from __future__ import annotations

import os
import platform
import re
import sys
import threading
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from mlops.twin.pyenvs import Environment, EnvironmentBuildError, Interpreter, nearest_interpreter, pinned_environment


class UnknownImage(LookupError):
    """The twin has no package set for this image."""


@dataclass(frozen=True)
class ImageSpec:
    framework: str  # sagemaker-core's framework name ("sklearn", "xgboost")
    version: str  # the container version ("1.9-0")
    repository: str  # the ECR repository the image URI names
    python: str  # the image's Python ("3.12")
    package_set: str  # file under image_sets/
    source: str  # where the set comes from

    @property
    def key(self) -> tuple[str, str]:
        return self.framework, self.version

    @property
    def label(self) -> str:
        return f"{self.repository}-{self.version}"

    def pins(self) -> list[str]:
        text = resources.files("mlops.twin.sagemaker").joinpath("image_sets", self.package_set).read_text()
        return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


REGISTRY: dict[tuple[str, str], ImageSpec] = {
    spec.key: spec
    for spec in (
        ImageSpec(
            framework="sklearn",
            version="1.9-0",
            repository="sagemaker-scikit-learn",
            python="3.12",
            package_set="sagemaker-scikit-learn-1.9-0.txt",
            source="aws/sagemaker-scikit-learn-container@eae7b6b requirements.txt, docker/1.4-2-py312",
        ),
        ImageSpec(
            framework="xgboost",
            version="3.2-0",
            repository="sagemaker-xgboost",
            python="3.12",
            package_set="sagemaker-xgboost-3.2-0.txt",
            source="aws/sagemaker-xgboost-container@cb8df91 requirements.txt, test/resources/versions/train.py",
        ),
    )
}

# (framework, version, Python the twin runs it on) -> {package: the release used instead of the image's}.
# Found with `uv pip compile` against the image's set for that Python: these pins have no release for it.
DEVIATIONS: dict[tuple[str, str, str], dict[str, str]] = {
    ("sklearn", "1.9-0", "3.11"): {"numpy": "2.4.6", "scipy": "1.17.1"},  # numpy 2.5, scipy 1.18 need 3.12
}

_URI = re.compile(
    r"^(?:[0-9]{12}\.dkr\.ecr\.[a-z0-9-]+\.amazonaws\.com(?:\.cn)?/)?(?P<repo>[a-z0-9._/-]+):(?P<tag>\S+)$"
)


def spec_for_uri(image_uri: str) -> ImageSpec:
    """The registry entry for an image URI (``<account>.dkr.ecr.<region>.amazonaws.com/<repo>:<tag>``)."""
    match = _URI.match(image_uri.strip())
    if match:
        for spec in REGISTRY.values():
            tag = match["tag"]
            if match["repo"] == spec.repository and (tag == spec.version or tag.startswith(spec.version + "-")):
                return spec
    known = ", ".join(f"{s.repository}:{s.version}" for s in REGISTRY.values())
    raise UnknownImage(
        f"the local twin has no package set for image {image_uri!r} (it runs only the framework images it "
        f"knows: {known})"
    )


def spec_for(framework: str, version: str) -> ImageSpec:
    try:
        return REGISTRY[(framework, version)]
    except KeyError:
        known = ", ".join(f"{f} {v}" for f, v in REGISTRY)
        raise UnknownImage(f"no {framework} {version} image on the twin (known: {known})") from None


@dataclass(frozen=True)
class ImageEnvironment:
    """An image's environment on this machine, and how it differs from the image."""

    spec: ImageSpec
    env: Environment
    deviations: dict[str, tuple[str, str]] = field(default_factory=dict)  # package -> (image's, used)

    @property
    def python_version(self) -> str:
        return self.env.interpreter.version

    def describe(self) -> str:
        head = f"{self.spec.repository}:{self.spec.version} (Python {self.spec.python})"
        if self.env.interpreter.minor == self.spec.python and not self.deviations:
            return f"{head}: exact package set on Python {self.python_version}"
        changed = ", ".join(f"{name} {image} -> {used}" for name, (image, used) in self.deviations.items())
        return f"{head}: on Python {self.python_version}; {changed or 'no package changes'}"


def _apply(spec: ImageSpec, interp: Interpreter) -> tuple[list[str], dict[str, tuple[str, str]]]:
    pins = spec.pins()
    if interp.minor == spec.python:
        return pins, {}
    table = DEVIATIONS.get((spec.framework, spec.version, interp.minor))
    if table is None:
        raise EnvironmentBuildError(
            f"{spec.repository}:{spec.version} runs Python {spec.python}; this machine has no Python {spec.python} "
            f"and the twin knows no package set for it on Python {interp.minor} (install Python {spec.python}, "
            "or add the nearest releases to DEVIATIONS in mlops/twin/sagemaker/images.py)"
        )
    changed: dict[str, tuple[str, str]] = {}
    out = []
    for pin in pins:
        name, _, version = pin.partition("==")
        if name in table:
            changed[name] = (version, table[name])
            pin = f"{name}=={table[name]}"
        out.append(pin)
    return out, changed


HOST_MODE_VARIABLE = "MLOPS_TWIN_IMAGE_ENV"


def _host_environment(spec: ImageSpec) -> ImageEnvironment:
    """The benchmark baseline: the twin's own venv where the image's environment belongs."""
    env = Environment(Path(sys.prefix), Interpreter(Path(sys.executable), platform.python_version()))
    return ImageEnvironment(spec, env, {"(all packages)": ("the image's", "the twin's own venv: NOT the image")})


_built: dict[tuple[str, str], ImageEnvironment] = {}
_build_lock = threading.Lock()


def image_environment(spec: ImageSpec) -> ImageEnvironment:
    """The image's environment (built on first use, from the package index; then cached on disk)."""
    if os.environ.get(HOST_MODE_VARIABLE) == "host":
        return _host_environment(spec)
    with _build_lock:
        found = _built.get(spec.key)
        if found is None:
            interp = nearest_interpreter(spec.python)
            pins, changed = _apply(spec, interp)
            env = pinned_environment(f"{spec.label}-py{interp.minor}", interp, pins)
            found = _built[spec.key] = ImageEnvironment(spec, env, changed)
        return found


def environment_for_uri(image_uri: str) -> ImageEnvironment:
    return image_environment(spec_for_uri(image_uri))


def image_uri(framework: str, version: str, region: str = "us-east-1", scope: str = "training") -> str:
    """The image URI sagemaker-core gives for a registry entry (what the stacks put in the templates)."""
    from sagemaker.core import image_uris

    spec = spec_for(framework, version)
    return image_uris.retrieve(
        framework=spec.framework,
        region=region,
        version=spec.version,
        py_version="py3",
        image_scope=scope,
        instance_type="ml.m5.large",
    )


def package_set_path(spec: ImageSpec) -> Path:
    return Path(str(resources.files("mlops.twin.sagemaker").joinpath("image_sets", spec.package_set)))
