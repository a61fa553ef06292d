"""Python environments for the code the twin runs as AWS would: built once from the package index, cached.

AWS runs SageMaker code in a framework image and Lambda code on a managed runtime; each has a fixed
Python and a fixed set of packages, and nothing else. The twin gives that code the same:

- :func:`pinned_environment`: a virtual environment holding exactly a list of pinned distributions
  (installed by uv with ``--no-deps``, so nothing the list does not name creeps in), on an interpreter of
  the runtime's Python version found on this machine. Built once into ``~/.cache/mlops-twin/envs/``
  (``$MLOPS_TWIN_CACHE`` overrides), keyed by interpreter and pins, and reused after.
- :func:`requirements_environment`: a cached layer holding what ``pip install -r requirements.txt``
  adds on top of another environment, installed by that environment's own pip, as the SageMaker
  training and serving toolkits install a source dir's ``requirements.txt``.
- :func:`job_environment`: a throw-away environment per job or worker whose ``site-packages`` chains
  to cached layers, so whatever the code installs while it runs stays with it.

The environments are PEP 405 virtual environments written by hand (``pyvenv.cfg``, ``bin/python`` a
symlink to the interpreter): with ``include-system-site-packages = false`` nothing of the host's
packages is importable in them.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

BUILD_RECIPE = "1"  # bump when the way environments are built changes: every cached one is rebuilt
COMPLETE = ".complete"  # written last: an environment without it is half built and is rebuilt


class EnvironmentBuildError(RuntimeError):
    """An environment could not be built (no interpreter, a package the index does not have, ...)."""


class RequirementsError(RuntimeError):
    """``pip install -r requirements.txt`` failed: ``exit_code`` and pip's ``output``."""

    def __init__(self, exit_code: int, output: str) -> None:
        super().__init__(f"pip install -r requirements.txt failed with exit code {exit_code}")
        self.exit_code = exit_code
        self.output = output


def cache_root() -> Path:
    configured = os.environ.get("MLOPS_TWIN_CACHE")
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "mlops-twin"


# -- interpreters -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Interpreter:
    path: Path  # resolved executable
    version: str  # "3.12.1"

    @property
    def minor(self) -> str:
        return ".".join(self.version.split(".")[:2])


def _minor_tuple(minor: str) -> tuple[int, int]:
    major, _, rest = minor.partition(".")
    return int(major), int(rest.split(".")[0])


def _probe(path: Path) -> Interpreter | None:
    try:
        out = subprocess.run(
            [str(path), "-I", "-S", "-c", "import sys; print('%d.%d.%d' % sys.version_info[:3])"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    version = out.stdout.strip()
    if out.returncode != 0 or not re.fullmatch(r"\d+\.\d+\.\d+", version):
        return None
    return Interpreter(path.resolve(), version)


def _candidates() -> Iterator[Path]:
    base = Path(getattr(sys, "_base_executable", sys.executable) or sys.executable)
    yield base
    names = re.compile(r"python3\.\d+")
    for entry in os.environ.get("PATH", "").split(os.pathsep):
        if not entry or "shims" in Path(entry).parts:  # pyenv's shims fail for versions not selected
            continue
        with contextlib.suppress(OSError):
            for path in sorted(Path(entry).iterdir()):
                if names.fullmatch(path.name):
                    yield path
    pyenv = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv")
    yield from sorted(pyenv.glob("versions/*/bin/python3.*"))
    for system in ("/usr/bin", "/usr/local/bin"):
        yield from sorted(Path(system).glob("python3.*"))


@cache
def interpreters() -> tuple[Interpreter, ...]:
    """The CPython interpreters on this machine, one per minor version (the newest patch release)."""
    found: dict[str, Interpreter] = {}
    seen: set[Path] = set()
    for path in _candidates():
        if not re.fullmatch(r"python3(\.\d+)?", path.name) or not os.access(path, os.X_OK):
            continue
        with contextlib.suppress(OSError):
            real = path.resolve()
            if real in seen:
                continue
            seen.add(real)
        interp = _probe(path)
        if interp is None:
            continue
        current = found.get(interp.minor)
        if current is None or _version_tuple(interp.version) > _version_tuple(current.version):
            found[interp.minor] = interp
    return tuple(sorted(found.values(), key=lambda i: _version_tuple(i.version)))


def _version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split("."))


def nearest_interpreter(minor: str, available: Sequence[Interpreter] | None = None) -> Interpreter:
    """The interpreter of ``minor`` (``"3.12"``), else the nearest minor version on this machine (an older
    one first at equal distance: code that runs there uses nothing the runtime lacks)."""
    pool = list(interpreters() if available is None else available)
    if not pool:
        raise EnvironmentBuildError("no CPython 3 interpreter found on this machine")
    target = _minor_tuple(minor)

    def distance(interp: Interpreter) -> tuple[int, bool]:
        have = _minor_tuple(interp.minor)
        return abs(have[1] - target[1]) + 100 * abs(have[0] - target[0]), have > target

    return min(pool, key=distance)


# -- environments ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Environment:
    root: Path
    interpreter: Interpreter

    @property
    def python(self) -> Path:
        return self.root / "bin" / "python"

    @property
    def bin(self) -> Path:
        return self.root / "bin"

    @property
    def site(self) -> Path:
        return self.root / "lib" / f"python{self.interpreter.minor}" / "site-packages"

    def layers(self) -> list[Path]:
        """This environment's site-packages, then those it chains to, in import order."""
        chained = self.root / LAYERS_FILE
        return [self.site, *(Path(p) for p in (json.loads(chained.read_text()) if chained.is_file() else []))]


LAYERS_PTH = "_twin_layers.pth"
LAYERS_FILE = "twin-layers.json"


def _write_venv(root: Path, interp: Interpreter, layers: Sequence[Path] = ()) -> Environment:
    """A PEP 405 environment on ``interp`` whose site-packages chains to ``layers`` (in that order)."""
    env = Environment(root, interp)
    env.bin.mkdir(parents=True, exist_ok=True)
    for name in ("python", "python3", f"python{interp.minor}"):
        link = env.bin / name
        if not link.exists():
            link.symlink_to(interp.path)
    env.site.mkdir(parents=True, exist_ok=True)
    (root / "pyvenv.cfg").write_text(
        f"home = {interp.path.parent}\ninclude-system-site-packages = false\nversion = {interp.version}\n"
    )
    if layers:
        # ``import`` lines of a .pth file run at start-up; addsitedir also processes the layer's own .pth files
        lines = [f"import site; site.addsitedir({str(layer)!r})" for layer in layers]
        (env.site / LAYERS_PTH).write_text("\n".join(lines) + "\n")
        (root / LAYERS_FILE).write_text(json.dumps([str(layer) for layer in layers]))
    return env


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock across processes (parallel test workers may ask for the same environment)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _digest(*parts: str) -> str:
    return hashlib.sha256("\0".join([BUILD_RECIPE, *parts]).encode()).hexdigest()[:16]


def _uv() -> str:
    try:
        from uv import find_uv_bin
    except ImportError as exc:  # requirements.txt pins it; say so rather than fail obscurely
        raise EnvironmentBuildError("uv is not installed in the twin's environment (pip install uv)") from exc
    return str(find_uv_bin())


def _cached(label: str, key: str, build: Callable[[Path], Environment]) -> Environment:
    root = cache_root() / "envs" / f"{label}-{key}"
    with _locked(root.with_name(root.name + ".lock")):
        if (root / COMPLETE).is_file():
            info = json.loads((root / COMPLETE).read_text())
            return Environment(root, Interpreter(Path(info["interpreter"]), info["version"]))
        if root.exists():
            shutil.rmtree(root)
        started = time.monotonic()
        try:
            env = build(root)
        except BaseException:
            shutil.rmtree(root, ignore_errors=True)
            raise
        info = {
            "interpreter": str(env.interpreter.path),
            "version": env.interpreter.version,
            "built_in_s": round(time.monotonic() - started, 1),
        }
        (root / COMPLETE).write_text(json.dumps(info) + "\n")
        return env


def pinned_environment(label: str, interp: Interpreter, pins: Sequence[str]) -> Environment:
    """An environment holding exactly ``pins`` (``name==version`` lines) on ``interp``; cached."""
    text = "\n".join(pins) + "\n"

    def build(root: Path) -> Environment:
        env = _write_venv(root, interp)
        (root / "pins.txt").write_text(text)
        cmd = [_uv(), "pip", "install", "--python", str(env.python), "--no-deps", "--no-config"]
        cmd += ["--compile-bytecode", "--quiet", "-r", str(root / "pins.txt")]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise EnvironmentBuildError(
                f"building the {label} environment on Python {interp.version} failed:\n{done.stderr[-3000:]}"
            )
        return env

    return _cached(label, _digest(str(interp.path), interp.version, text), build)


_LOCAL_REFERENCE = re.compile(r"^\s*(-e|--editable|-r|--requirement|-c|--constraint|\.|/|file:)|\.(whl|tar\.gz|zip)\b")


def requirements_environment(base: Environment, requirements: Path) -> Environment:
    """What ``python -m pip install -r requirements.txt`` adds to ``base``, as a cached layer over it.

    Run by ``base``'s own pip (the image's), in the requirements file's directory, as the toolkits do.
    Keyed by ``base`` and the file's text (and the directory's files when the file refers to them).
    Raises :class:`RequirementsError` with pip's output when pip fails.
    """
    text = requirements.read_text()
    parts = [str(base.root), text]
    if any(_LOCAL_REFERENCE.search(line) for line in text.splitlines() if not line.lstrip().startswith("#")):
        parts.append(tree_digest(requirements.parent))

    def build(root: Path) -> Environment:
        env = _write_venv(root, base.interpreter, base.layers())
        cmd = [str(env.python), "-m", "pip", "install", "--disable-pip-version-check", "--no-input"]
        cmd += ["-r", str(requirements)]
        done = subprocess.run(
            cmd,
            cwd=requirements.parent,
            env=_tool_env(env),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            check=False,
        )
        (root / "pip.log").write_text(done.stdout)
        if done.returncode != 0:
            raise RequirementsError(done.returncode, done.stdout)
        return env

    return _cached("requirements", _digest(*parts), build)


def job_environment(dest: Path, layers: Sequence[Environment]) -> Environment:
    """A fresh environment at ``dest`` over ``layers`` (first wins): what a job may change is its own."""
    if not layers:
        raise ValueError("a job environment needs at least one layer")
    paths: list[Path] = []
    for layer in layers:
        paths += [p for p in layer.layers() if p not in paths]
    return _write_venv(dest, layers[0].interpreter, paths)


def _tool_env(env: Environment) -> dict[str, str]:
    """A minimal environment for pip in ``env``: the host's PIP_*/PYTHON* settings stay out."""
    keep = {k: v for k, v in os.environ.items() if k in ("HOME", "LANG", "LC_ALL", "TMPDIR", "SSL_CERT_FILE")}
    return {**keep, "PATH": f"{env.bin}{os.pathsep}/usr/local/bin:/usr/bin:/bin"}


def tree_digest(root: Path, suffixes: tuple[str, ...] = ()) -> str:
    """A digest of the files under ``root`` (names and contents), optionally only those ending in ``suffixes``."""
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        if suffixes and not path.name.endswith(suffixes):
            continue
        if "__pycache__" in path.parts:
            continue
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(path.read_bytes())
    return digest.hexdigest()
