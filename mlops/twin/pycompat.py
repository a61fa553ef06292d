"""Does code shipped to a runtime need a newer Python than that runtime has?

AWS runs a SageMaker source dir on the image's Python and a Lambda's code on its runtime's; code that
uses a later release's syntax or standard library fails there. The twin may run the code on another
patch or minor release (the nearest interpreter this machine has), so it checks the shipped files
against the runtime's version before running them:

- syntax: every file compiled by the interpreter that runs the code, when it is of the runtime's
  version (an older one would refuse what the runtime accepts);
- standard library and language features: ``vermin``'s rules (``datetime.UTC`` needs 3.11,
  ``itertools.batched`` 3.12, ...), reported where they need more than the runtime's version.

Installed distributions shipped with the code (a directory holding ``*.dist-info``, such as the source
dir's ``vendor/``) are not checked: pip chose them for the runtime's Python (wheel tags and
``Requires-Python``), and their version-guarded code would read as false positives.

Results are cached by the files' contents (in the process and under the twin's cache directory).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from threading import Lock

from mlops.twin.pyenvs import Interpreter, cache_root

RULES = "vermin-2"  # bump when the checks change: stored results are recomputed

_COMPILE = """
import json, sys
bad = []
for path in sys.stdin.read().splitlines():
    try:
        compile(open(path, 'rb').read(), path, 'exec', dont_inherit=True)
    except SyntaxError as exc:
        bad.append([path, exc.lineno or 0, exc.msg])
print(json.dumps(bad))
"""


@dataclass(frozen=True)
class Violation:
    path: str  # relative to the checked directory
    line: int
    needs: str  # "3.13", or "" for a syntax error under the runtime's interpreter
    what: str

    def __str__(self) -> str:
        if self.needs:
            return f"{self.path}:{self.line}: {self.what} requires Python {self.needs}"
        return f"{self.path}:{self.line}: SyntaxError: {self.what}"


_memo: dict[str, list[Violation]] = {}
_memo_lock = Lock()


def _minor(version: str) -> tuple[int, int]:
    major, minor = version.split(".")[:2]
    return int(major), int(minor)


def _files(root: Path) -> list[Path]:
    """The code's own ``.py`` files: none from a directory of installed distributions."""
    sites = {info.parent for info in root.rglob("*.dist-info") if info.is_dir()}

    def own(path: Path) -> bool:
        return "__pycache__" not in path.parts and not any(site in path.parents for site in sites)

    return sorted(p for p in root.rglob("*.py") if p.is_file() and own(p))


def _digest(root: Path, files: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def _syntax(root: Path, files: list[Path], interpreter: Path) -> list[Violation]:
    done = subprocess.run(
        [str(interpreter), "-I", "-S", "-c", _COMPILE],
        input="\n".join(str(f) for f in files),
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"compiling the shipped code with {interpreter} failed: {done.stderr[-2000:]}")
    return [Violation(str(Path(p).relative_to(root)), line, "", msg) for p, line, msg in json.loads(done.stdout)]


def _features(root: Path, files: list[Path], minor: str) -> list[Violation]:
    run = "import sys, vermin; sys.exit(vermin.main())"
    cmd = [sys.executable, "-c", run, "--no-tips", "--violations", "--format", "parsable", f"-t={minor}-"]
    done = subprocess.run([*cmd, *map(str, files)], capture_output=True, text=True, check=False)
    if not done.stdout.strip() and done.returncode not in (0, 1):
        raise RuntimeError(f"vermin failed ({done.returncode}): {done.stderr[-2000:]}")
    found = []
    for line in done.stdout.splitlines():
        # path:line:column:py2:py3:feature; summary lines have no line number
        parts = line.split(":", 5)
        if len(parts) < 6 or not parts[1].isdigit() or not parts[4][:1].isdigit():
            continue
        path, lineno, _col, _py2, needs, what = parts
        if _minor(needs) > _minor(minor):
            rel = str(Path(path).resolve().relative_to(root.resolve()))
            found.append(Violation(rel, int(lineno), needs, what.strip()))
    return found


def newer_python_needed(root: Path, minor: str, interpreter: Interpreter | None = None) -> list[Violation]:
    """What in ``root``'s ``.py`` files needs a Python newer than ``minor`` ("3.12"), or does not compile
    under ``interpreter`` (the one that will run the code) when that is a ``minor`` release."""
    root = Path(root)
    files = _files(root)
    if not files:
        return []
    compiler = interpreter.path if interpreter is not None and interpreter.minor == minor else None
    key = hashlib.sha256(f"{RULES}:{minor}:{compiler}:{_digest(root, files)}".encode()).hexdigest()[:24]
    with _memo_lock:
        if key in _memo:
            return list(_memo[key])
    stored = cache_root() / "pycompat" / f"{key}.json"
    if stored.is_file():
        found = [Violation(**v) for v in json.loads(stored.read_text())]
    else:
        found = _syntax(root, files, compiler) if compiler is not None else []
        found += _features(root, files, minor)
        found.sort(key=lambda v: (v.path, v.line))
        stored.parent.mkdir(parents=True, exist_ok=True)
        tmp = stored.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps([asdict(v) for v in found]))
        tmp.replace(stored)
    with _memo_lock:
        _memo[key] = found
    return list(found)


def describe(violations: list[Violation], runtime: str, limit: int = 5) -> str:
    """One message for a failure reason: the first few violations and how many more."""
    shown = "; ".join(str(v) for v in violations[:limit])
    more = f" (and {len(violations) - limit} more)" if len(violations) > limit else ""
    return f"the code needs a newer Python than {runtime}: {shown}{more}"
