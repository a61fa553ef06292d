"""One synthesis of the real app (``stacks.build_app`` with cdk-nag) per test session.

Bundling is skipped (``aws:cdk:bundling-stacks: []``): the templates are the same, and the
deps layer's pip install is covered by its own test in test_bundling.py.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aws_cdk.assertions import Template

from mlops.config import load_configs
from stacks.app_builder import build_app, new_app

from ..conftest import ROOT


@dataclass
class Synthesized:
    outdir: Path
    error: str | None  # the validation failure (cdk-nag findings), if synthesis failed

    def template_json(self, stack: str) -> dict[str, Any]:
        return json.loads((self.outdir / f"{stack}.template.json").read_text())

    def template(self, stack: str) -> Template:
        return Template.from_json(self.template_json(stack))

    def report(self) -> dict[str, Any]:
        return json.loads((self.outdir / "validation-report.json").read_text())


@pytest.fixture(scope="session")
def synthesized(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    outdir = tmp_path_factory.mktemp("infra") / "cdk.out"
    app = new_app(context={"aws:cdk:bundling-stacks": []}, outdir=str(outdir))
    build_app(app, load_configs(ROOT / "configs"))
    try:
        app.synth()
        error = None
    except RuntimeError as exc:  # templates are written before the validation plugins run
        error = str(exc)
    return Synthesized(outdir, error)


def resources(template: dict[str, Any], rtype: str) -> dict[str, dict[str, Any]]:
    return {lid: r for lid, r in template["Resources"].items() if r["Type"] == rtype}


def one(template: dict[str, Any], rtype: str) -> tuple[str, dict[str, Any]]:
    found = resources(template, rtype)
    assert len(found) == 1, f"expected one {rtype}, found {sorted(found)}"
    return next(iter(found.items()))


def logical_id(template: dict[str, Any], rtype: str, prefix: str) -> str:
    matches = [lid for lid in resources(template, rtype) if lid.startswith(prefix)]
    assert len(matches) == 1, f"expected one {rtype} named {prefix}*, found {matches}"
    return matches[0]


def join_definition(value: Any) -> str:
    """A ``DefinitionString`` (``Fn::Join`` of text and tokens) as text, tokens as ``"<token>"`` strings."""
    if isinstance(value, str):
        return value
    delimiter, parts = value["Fn::Join"]
    return delimiter.join(p if isinstance(p, str) else "<token>" for p in parts)
