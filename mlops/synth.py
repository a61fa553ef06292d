"""Synthesize the CDK app into a cloud assembly, from Python (no CDK CLI needed).

``python app.py`` with ``CDK_OUTDIR`` set is what the CDK CLI itself runs; doing the
same here keeps ``mlops local up`` independent of a global ``cdk`` install.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

# What the assembly is built from: a change here means a new synth.
SOURCES = ("app.py", "cdk.json", "stacks", "functions", "mlops", "configs", "pipelines")


class SynthError(RuntimeError):
    pass


def jsii_env() -> dict[str, str]:
    """Variables that silence jsii's Node version banners. The end-of-life one only takes effect when it
    lists this Node's major version (jsii compares it with a comma-separated list), not with ``1``."""
    env = {"JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION": "1"}
    try:
        version = subprocess.run(["node", "--version"], capture_output=True, text=True, check=False).stdout
    except OSError:
        return env
    major = version.strip().lstrip("v").split(".")[0]
    if major.isdigit():
        listed = [v for v in os.environ.get("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "").split(",") if v]
        env["JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION"] = ",".join(dict.fromkeys([*listed, major]))
    return env


def _newest_source(root: Path) -> float:
    newest = 0.0
    for name in SOURCES:
        path = root / name
        files = [path] if path.is_file() else path.rglob("*") if path.is_dir() else []
        for f in files:
            if f.is_file() and "__pycache__" not in f.parts and "twin" not in f.relative_to(root).parts[:2]:
                newest = max(newest, f.stat().st_mtime)
    return newest


def is_stale(root: Path, out: Path) -> bool:
    manifest = out / "manifest.json"
    return not manifest.is_file() or manifest.stat().st_mtime < _newest_source(root)


def synthesize(root: Path, out: Path) -> float:
    """Run the app into ``out``; returns seconds taken. Raises SynthError with the app's output."""
    started = time.monotonic()
    env = {**os.environ, "CDK_OUTDIR": str(out.resolve()), **jsii_env()}
    proc = subprocess.run([sys.executable, "app.py"], cwd=root, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0 or not (out / "manifest.json").is_file():
        raise SynthError(f"synthesis failed (exit {proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    (out / "manifest.json").touch()
    return time.monotonic() - started


def ensure_synthesized(root: Path, out: Path, *, force: bool = False) -> float | None:
    """Synthesize when forced or when any source is newer than the assembly; seconds taken or None."""
    if force or is_stale(root, out):
        return synthesize(root, out)
    return None
