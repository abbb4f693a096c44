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
# The launcher's real-SLURM test (tests/test_slurm_real.py) starts its own two-node cluster
# with Debian's slurmctld, slurmd and munge. Same pattern: install where we may, else it skips.
slurm_missing=""
for b in slurmctld slurmd sbatch munged; do
  command -v "$b" >/dev/null 2>&1 || [ -x "/usr/sbin/$b" ] || slurm_missing="$slurm_missing $b"
done
if [ -n "$slurm_missing" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing Debian's slurmctld, slurmd and munge for the real-SLURM test ..."
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        slurmctld slurmd slurm-client munge >/dev/null) \
      || echo "could not install SLURM: the real-SLURM test will skip"
  else
    echo "SLURM is not installed and apt-get is not usable here: the real-SLURM test will skip"
  fi
fi
# NVIDIA's TensorRT bindings wheels (about 1.2 MB each; only their extension module is kept,
# in .venv/trt-bindings/): tests/test_trt_bindings_binary.py reads the names they register.
.venv/bin/python -m tests.trt_bindings .venv/trt-bindings \
  || echo "could not fetch the TensorRT bindings wheels: their test will say why it skips"
exec .venv/bin/python -m pytest -q tests "$@"
