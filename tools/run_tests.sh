#!/usr/bin/env bash
# Install what is needed (first run) and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup_env.sh
exec .venv/bin/python -m pytest -q tests "$@"
