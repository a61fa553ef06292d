#!/usr/bin/env python3
"""CDK entry point: the model configs in configs/ and the platform's stacks (see stacks/app_builder.py)."""

import sys
from pathlib import Path

from mlops.config import ConfigError, load_configs

try:
    configs = load_configs(Path(__file__).resolve().parent / "configs")
except ConfigError as exc:  # one line per problem, naming the file and the field; no traceback
    sys.exit("\n".join(exc.lines()))

# aws_cdk starts its Node runtime on import: only once the configs are known to be valid
from stacks.app_builder import build_app, new_app

app = new_app()
try:
    build_app(app, configs)  # a model's own code directory is checked here (training.code)
except ConfigError as exc:
    sys.exit("\n".join(exc.lines()))
app.synth()
