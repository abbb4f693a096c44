#!/usr/bin/env bash
# Create (or reuse) the project virtualenv in .venv with everything the tools and tests need.
# Order matters: CPU torch first, then sam2 built against it without build isolation
# (otherwise pip downloads a multi-GB CUDA torch into a throwaway build environment).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
STAMP=.venv/.deps-v6
# The project itself is installed editable: the check also makes sure it is this checkout's.
if [ -f "$STAMP" ] && .venv/bin/python -c "
import os, torch, sam2, hydra, PIL, tqdm, pytest, av, gradio, playwright, onnx, onnxruntime, sam2long.tools as tools
assert os.path.samefile(os.path.dirname(tools.__file__), 'tools')" 2>/dev/null; then
  exit 0
fi
echo "setting up .venv (first run only) ..."
"$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q "torch==2.13.0" "torchvision==0.28.0"
SAM2_BUILD_CUDA=0 .venv/bin/python -m pip install -q --no-build-isolation "sam2==1.1.0"
.venv/bin/python -m pip install -q "hydra-core>=1.3.2" "omegaconf>=2.3" "numpy>=1.24" \
  "pillow>=9.4" "tqdm>=4.66" "av>=12" "gradio>=5" "onnx>=1.16" "onnxruntime>=1.18" "pytest>=8" "playwright>=1.40"
.venv/bin/python -m pip install -q --no-deps --no-build-isolation -e .
touch "$STAMP"
echo ".venv ready"
