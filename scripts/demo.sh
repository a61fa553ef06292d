#!/usr/bin/env bash
# The main job on the local twin: install, synthesize, start the twin, upload demo data
# and show the platform working. No AWS account and no Docker needed.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bootstrap.sh
exec .venv/bin/mlops local demo "$@"
