#!/usr/bin/env bash
# Install what is needed (first run) and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup_env.sh
# The demo's browser test drives Debian's Chromium (Playwright's own browser download
# cannot work offline). Install it where we may; the test says why it skips otherwise.
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing Debian's chromium for the browser test ..."
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
      || echo "could not install chromium: the browser test will skip"
  else
    echo "chromium is not installed and apt-get is not usable here: the browser test will skip"
  fi
fi
exec .venv/bin/python -m pytest -q tests "$@"
