#!/usr/bin/env bash
# Set up everything the app, the twin and the tests need, in .venv. Safe to re-run:
# it reinstalls only when the requirements change.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
"$PY" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' \
  || { echo "error: Python 3.11+ is required (found $("$PY" --version 2>&1))" >&2; exit 1; }
command -v node >/dev/null \
  || { echo "error: Node.js is required: aws-cdk-lib runs on it (jsii) when the app is synthesized" >&2; exit 1; }

[ -x .venv/bin/python ] || "$PY" -m venv .venv
stamp=".venv/.installed-$(cat requirements.txt requirements-dev.txt functions/layer-requirements.txt pyproject.toml 2>/dev/null | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  echo "==> installing Python packages into .venv"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -r requirements-dev.txt -e .
  rm -f .venv/.installed-*
  touch "$stamp"
fi
if [ -f functions/layer-requirements.txt ] && [ ! -f .wheelhouse/.complete ]; then
  echo "==> downloading Linux wheels for the Lambda dependency layer (once; synth is offline afterwards)"
  .venv/bin/python -m stacks.bundling fill-wheelhouse
fi
export JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION=1
# jsii silences its end-of-life banner only for the Node major versions this variable lists
JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION="$(node -p 'process.versions.node.split(".")[0]')"
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION
