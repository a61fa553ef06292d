"""Every Lambda handler imports with only what its layers provide.

The twin lets the host's packages stand in for the dependency layer, so it cannot catch a
handler that imports a package the layer does not ship (scikit-learn, pandas): this test
does, by importing each handler in a fresh interpreter where those packages are absent.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ..conftest import ROOT

# Packages that the deps layer (functions/layer-requirements.txt) and the runtime do not provide.
NOT_IN_LAYER = ("sklearn", "pandas", "scipy", "joblib", "moto", "typer", "rich", "aws_cdk")
HANDLERS = sorted(p.parent.name for p in (ROOT / "functions").glob("*/handler.py"))

PROBE = """
import importlib.util, sys
sys.path.insert(0, {code!r})
for name in {blocked!r}:
    sys.modules[name] = None  # "import name" raises ImportError, as on Lambda
spec = importlib.util.spec_from_file_location("handler", {handler!r})
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
print("imported", {handler!r})
"""


@pytest.mark.parametrize("function", HANDLERS)
def test_handler_imports_without_packages_the_layer_lacks(function: str) -> None:
    code = ROOT / "functions" / function
    probe = PROBE.format(code=str(code), blocked=NOT_IN_LAYER, handler=str(code / "handler.py"))
    env = {"AWS_DEFAULT_REGION": "us-east-1", "POWERTOOLS_TRACE_DISABLED": "true", "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]


def test_the_list_matches_the_layer_requirements() -> None:
    wanted = (ROOT / "functions" / "layer-requirements.txt").read_text().lower()
    for name in NOT_IN_LAYER:
        assert f"\n{name}" not in wanted, f"{name} is in the layer now: remove it from NOT_IN_LAYER"
    assert Path(ROOT / "functions").is_dir() and HANDLERS
