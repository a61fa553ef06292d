#!/usr/bin/env bash
# The test suite: lint, unit, infra (CDK assertions + cdk-nag) and e2e on the twin.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bootstrap.sh
echo "==> ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
echo "==> pytest"
exec .venv/bin/pytest -n 2 --dist loadfile "$@"
