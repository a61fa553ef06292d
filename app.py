#!/usr/bin/env python3
"""CDK entry point: the model configs in configs/ and the platform's stacks (see stacks/app_builder.py)."""

from pathlib import Path

from mlops.config import load_configs
from stacks.app_builder import build_app, new_app

app = new_app()
build_app(app, load_configs(Path(__file__).resolve().parent / "configs"))
app.synth()
