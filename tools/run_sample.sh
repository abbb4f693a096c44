#!/usr/bin/env bash
# The main job: SAM2Long on the shipped sample video (samples/shapes.mp4), one object
# clicked on frame 0, written to outputs/shapes_sam2long.mp4 with per-frame masks.
#
#   bash tools/run_sample.sh                  # SAM 2.1 base+; downloads it when missing
#   bash tools/run_sample.sh --random_weights # offline: seeded random micro weights,
#                                             # the whole pipeline runs, masks are meaningless
# Extra arguments go to tools/video_inference.py.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup_env.sh
exec .venv/bin/python tools/video_inference.py --video_path samples/shapes.mp4 \
  --points 70 120 --output_video outputs/shapes_sam2long.mp4 \
  --output_mask_dir outputs/shapes_masks "$@"
