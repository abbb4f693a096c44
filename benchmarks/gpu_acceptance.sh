#!/usr/bin/env bash
# The GPU acceptance run in one command; benchmarks/gpu_acceptance.py says what it checks
# and measures, and writes the markdown report.
#
#   bash benchmarks/gpu_acceptance.sh --prepare         # here, once: the wheels to carry
#   bash benchmarks/gpu_acceptance.sh --out $OUT/gpu_acceptance.md [--reference_repo DIR]
#   bash benchmarks/gpu_acceptance.sh --dry_run --out report.md   # any CPU, tiny inputs (CI)
#
# The device tool's H100 has Python 3.12 with torch (CUDA), onnx and onnxruntime, and fetches
# nothing: sam2 (built here without its CUDA extension, as tools/setup_env.sh does) and what
# it needs beyond that image (hydra-core, omegaconf, antlr4, iopath) travel as wheels in
# .gpu_carry/wheels (ignored; name it in the device call's `carry`), installed with
# --no-index under /tmp/site when sam2 is not importable. The original SAM2Long's column
# needs its code, carried too: REFERENCE_REPO=path/to/SAM2Long with --prepare copies its
# .py and .yaml files to .gpu_carry/SAM2Long; then pass --reference_repo .gpu_carry/SAM2Long.
# FIXTURE=../shared/fixtures/sam2long_parity with --prepare copies the parity fixture's
# lively case to .gpu_carry/sam2long_parity; pass --fixture .gpu_carry/sam2long_parity.
set -euo pipefail
cd "$(dirname "$0")/.."
CARRY=.gpu_carry
PYTHON=${PYTHON:-python3}
if [ "${1:-}" = --prepare ]; then
  mkdir -p "$CARRY/wheels"
  SAM2_BUILD_CUDA=0 "$PYTHON" -m pip wheel -q --no-deps --no-build-isolation -w "$CARRY/wheels" "sam2==1.1.0"
  "$PYTHON" -m pip wheel -q --no-deps -w "$CARRY/wheels" "hydra-core==1.3.2" "omegaconf==2.3.0" \
    "antlr4-python3-runtime==4.9.3" "iopath==0.1.10"
  if [ -n "${REFERENCE_REPO:-}" ]; then  # the original's code only (its sam2 fork and configs)
    rm -rf "$CARRY/SAM2Long" && mkdir -p "$CARRY/SAM2Long"
    (cd "$REFERENCE_REPO" && find . -path ./.git -prune -o -type f \( -name '*.py' -o -name '*.yaml' \) -print \
      | tar cf - -T -) | tar xf - -C "$CARRY/SAM2Long"
  fi
  if [ -n "${FIXTURE:-}" ]; then  # the parity fixture's lively case (about 30 MB)
    mkdir -p "$CARRY/sam2long_parity"
    cp -r "$FIXTURE"/{micro_sam2.1.yaml,micro_lively_seed0.pt,frames,prompts.npz,expected_lively_p3_iou0.1_unc2.npz} \
      "$CARRY/sam2long_parity/"
  fi
  du -sh "$CARRY"
  exit 0
fi
if ! "$PYTHON" -c "import sam2" 2>/dev/null; then
  if ! ls "$CARRY"/wheels/*.whl >/dev/null 2>&1; then
    echo "error: sam2 is not installed and $CARRY/wheels has no wheels (run --prepare where pip works, and carry $CARRY)" >&2
    exit 2
  fi
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site "$CARRY"/wheels/*.whl
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
exec "$PYTHON" benchmarks/gpu_acceptance.py "$@"
