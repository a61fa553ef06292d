"""What a Lambda function's code runs with on the twin: the runtime's Python and packages, then its layers.

In AWS a Python function sees its code, its layers (``/opt/python``), and the runtime's own packages (the
AWS SDK, :mod:`mlops.lambda_contract`), on the runtime's Python. The twin gives it the same:

- the runtime: an environment on the interpreter nearest to the runtime's version (``python3.14`` runs on
  3.14 where this machine has it, else on the nearest minor version) holding exactly the runtime's
  packages at their pinned versions, nothing of the host's;
- a layer is used as it is, except a dependency layer built by ``stacks/bundling.py`` for Lambda's Python
  and platform (its native modules would not load here): in its place on ``sys.path`` the twin puts the
  same distributions at the same versions (read from the layer's ``*.dist-info``), installed for the
  twin's interpreter. Both environments are cached (:mod:`mlops.twin.pyenvs`).

Code shipped to the function (its code directory and the other layers) is checked against the runtime's
Python version (:mod:`mlops.twin.pycompat`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from email.parser import HeaderParser
from pathlib import Path

from mlops.lambda_contract import runtime_pins
from mlops.twin import pycompat
from mlops.twin.pyenvs import Environment, Interpreter, nearest_interpreter, pinned_environment

DEPS_LAYER_MARKER = "mlops-deps-layer.txt"  # written by stacks/bundling.py into the dependency layer


def runtime_version(runtime: str) -> str:
    """``python3.14`` -> ``3.14``."""
    match = re.fullmatch(r"python(\d+\.\d+)", runtime)
    if match is None:
        raise ValueError(f"not a Python Lambda runtime: {runtime!r}")
    return match[1]


def runtime_environment(runtime: str) -> Environment:
    """The runtime's packages on the interpreter nearest to its Python (cached)."""
    interp = nearest_interpreter(runtime_version(runtime))
    return pinned_environment(f"lambda-{runtime}-runtime-py{interp.minor}", interp, runtime_pins())


def layer_distributions(site: Path) -> list[str]:
    """``name==version`` of every distribution installed in ``site`` (from its ``*.dist-info``)."""
    pins = []
    for info in sorted(site.glob("*.dist-info")):
        metadata = info / "METADATA"
        if not metadata.is_file():
            continue
        headers = HeaderParser().parsestr(metadata.read_text(errors="replace"))
        if headers.get("Name") and headers.get("Version"):
            pins.append(f"{headers['Name']}=={headers['Version']}")
    return pins


def is_deps_layer(layer_dir: Path) -> bool:
    return (Path(layer_dir) / DEPS_LAYER_MARKER).is_file()


def deps_layer_environment(layer_dir: Path, interp: Interpreter) -> Environment:
    """The dependency layer's distributions, same versions, installed for ``interp`` (cached)."""
    pins = layer_distributions(Path(layer_dir) / "python")
    return pinned_environment(f"lambda-deps-layer-py{interp.minor}", interp, pins)


@dataclass
class FunctionEnvironment:
    """The interpreter and import path of one function's execution environments."""

    runtime: str
    env: Environment  # the runtime's packages; its python runs the workers
    layer_paths: list[Path]  # what the layers put on sys.path, in Lambda's order (later layers first)
    layer_bins: list[Path]
    notes: list[str] = field(default_factory=list)  # how it differs from AWS, for the start report
    code_problems: list[pycompat.Violation] = field(default_factory=list)

    @property
    def python(self) -> Path:
        return self.env.python


def function_environment(runtime: str, code_dir: Path, layer_dirs: list[Path]) -> FunctionEnvironment:
    env = runtime_environment(runtime)
    interp = env.interpreter
    wanted = runtime_version(runtime)
    notes = []
    on = f"Python {interp.version}" + ("" if interp.minor == wanted else f", the nearest to {runtime} on this machine")
    paths: list[Path] = []
    bins: list[Path] = []
    shipped = [Path(code_dir)]
    # AWS extracts the layers into /opt in order, a later layer's files replacing an earlier one's; so a
    # later layer comes first. Lambda's order is /opt/python/lib/pythonX/site-packages, then /opt/python.
    for layer in reversed([Path(d) for d in layer_dirs]):
        if is_deps_layer(layer):
            deps = deps_layer_environment(layer, interp)
            paths.append(deps.site)
            notes.append(f"{layer.name} (dependency layer): the same package versions, built for {on}")
            continue
        for candidate in (layer / "python" / "lib" / runtime / "site-packages", layer / "python"):
            if candidate.is_dir():
                paths.append(candidate.resolve())
                shipped.append(candidate)
        if (layer / "bin").is_dir():
            bins.append(layer / "bin")
    problems: list[pycompat.Violation] = []
    for root in shipped:
        problems += pycompat.newer_python_needed(root, wanted, interp)
    return FunctionEnvironment(runtime, env, paths, bins, notes, problems)
