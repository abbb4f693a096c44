#!/usr/bin/env bash
# The main job on the shipped sample: SAM2Long over samples/shapes (DAVIS layout, two
# objects) with tools/vos_inference.py. Real SAM 2.1 checkpoints cannot be fetched here, so
# unless SAM2_CFG / SAM2_CHECKPOINT point at one, it runs on seeded random micro weights:
# the whole pipeline runs, but the masks are meaningless.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup_env.sh
OUT=${OUT:-outputs/sample}
CFG=${SAM2_CFG:-configs/micro_sam2.1_256.yaml}
CKPT=${SAM2_CHECKPOINT:-}
if [ -z "$CKPT" ]; then
  CKPT=outputs/checkpoints/micro_random_seed0.pt
  [ -f "$CKPT" ] || .venv/bin/python tools/make_random_checkpoint.py --sam2_cfg "$CFG" --out "$CKPT"
  echo "NOTE: random micro weights (no official checkpoint given): masks are meaningless."
fi
.venv/bin/python tools/vos_inference.py --backend torch \
  --sam2_cfg "$CFG" --sam2_checkpoint "$CKPT" \
  --base_video_dir samples/shapes/JPEGImages --input_mask_dir samples/shapes/Annotations \
  --output_mask_dir "$OUT" --overwrite "$@"
echo "masks: $OUT/shapes/*.png"
