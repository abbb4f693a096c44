#!/usr/bin/env python
"""Run SAM 2's own video predictor (the pip `sam2`, one pathway, no memory tree) on the
reference runner's inputs: the speed bar for `--num_pathway 1`.

`--vos_optimized` uses `SAM2VideoPredictorVOS` (torch.compile of the image encoder and the
heads, as SAM 2's `build_sam2_video_predictor(vos_optimized=True)`); compilation happens in
an untimed warm-up pass over the same video first. On CUDA everything runs under bf16
autocast, as SAM 2's tools/vos_inference.py. Writes `seconds`, `num_frames`, `logits_<id>`
and GPU memory like the other runners.
"""

import contextlib
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reference_runner import load_prompts  # noqa: E402
from runner_cli import FrameStore, GpuMemory, peak_rss, runner_parser, stage_report, time_modules  # noqa: E402


def build_predictor(config_path, checkpoint_path, device, vos_optimized):
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    cfg = OmegaConf.load(config_path)
    name = "SAM2VideoPredictorVOS" if vos_optimized else "SAM2VideoPredictor"
    cfg.model["_target_"] = f"sam2.sam2_video_predictor.{name}"
    if vos_optimized:
        cfg.model["compile_image_encoder"] = True
    cfg.model["non_overlap_masks"] = False
    OmegaConf.resolve(cfg)
    model = instantiate(cfg.model, _recursive_=True)
    state = torch.load(checkpoint_path, map_location="cpu", weights_only=True)
    model.load_state_dict(state["model"], strict=True)
    return model.to(torch.device(device)).eval()


def track_all(predictor, frames, prompts, packed_masks: bool):
    state = predictor.init_state(video_path=frames, async_loading_frames=False)
    results = {}
    for obj_id, (start, mask) in prompts.items():
        predictor.reset_state(state)
        predictor.add_new_mask(inference_state=state, frame_idx=start, obj_id=obj_id, mask=mask)
        logits = FrameStore(packed_masks)
        for _, _, m in predictor.propagate_in_video(state, start_frame_idx=start):
            logits.add(m[0, 0].float().cpu().numpy())
        results[obj_id] = (start, logits)
    return state["num_frames"], results


def main(argv=None):
    p = runner_parser(__doc__.split("\n\n")[0])
    p.add_argument("--vos_optimized", action="store_true")
    args = p.parse_args(argv)
    if args.num_pathway != 1:
        raise SystemExit("SAM 2's predictor has one pathway: use --num_pathway 1")
    memory = GpuMemory(args.device)
    predictor = build_predictor(args.config, args.checkpoint, args.device, args.vos_optimized)
    stages = {} if memory.cuda or args.vos_optimized else time_modules(predictor)
    prompts = load_prompts(args.prompts)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if memory.cuda else contextlib.nullcontext()
    with torch.inference_mode(), autocast:
        if args.vos_optimized:
            track_all(predictor, args.frames, prompts, args.packed_masks)  # untimed: torch.compile happens here
        memory.start()
        t0 = time.perf_counter()
        num_frames, results = track_all(predictor, args.frames, prompts, args.packed_masks)
        memory.sync()
        seconds = time.perf_counter() - t0
    out = {"num_frames": np.int64(num_frames), "seconds": np.float64(seconds), **memory.report(),
           **peak_rss(), **stage_report(stages)}
    for obj_id, (start, logits) in results.items():
        out[f"logits_{obj_id}"] = logits.logits()
        out[f"start_{obj_id}"] = np.int64(start)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    np.savez_compressed(args.out, **out)
    print(f"wrote {args.out}: {num_frames} frames, {seconds:.2f}s", file=sys.stderr)


if __name__ == "__main__":
    main()
