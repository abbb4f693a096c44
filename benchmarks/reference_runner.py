#!/usr/bin/env python
"""Run the ORIGINAL SAM2Long implementation and dump its outputs as a parity npz.

This script drives the upstream code (Mark12Ding/SAM2Long); it contains no
algorithm of its own. Run it with the original repository first on the path so
that its `sam2` package (a fork) shadows the pip `sam2`:

    PYTHONPATH=.reference/SAM2Long .venv/bin/python benchmarks/reference_runner.py \
        --config FIXTURE/micro_sam2.1.yaml --checkpoint FIXTURE/micro_lively_seed0.pt \
        --frames FIXTURE/frames --prompts FIXTURE/prompts.npz \
        --num_pathway 3 --iou_thre 0.1 --uncertainty 2 --out /tmp/ref.npz

FIXTURE is ../shared/fixtures/sam2long_parity, or the project's copy unpacked
(`python benchmarks/parity_data.py` prints where).

Protocol (mirrors the fixture README and `vos_separate_inference_per_object`):
- model: YAML loaded with OmegaConf, `model._target_` set to the fork's
  `SAM2VideoPredictor`, `model.non_overlap_masks=false`, no post-processing
  overrides, hydra `instantiate`, strict `{"model": state_dict}` load, eval,
  float32 on the CPU; with --device cuda, bf16 autocast as the original's own script;
- one `init_state` on the JPEG folder; then for each object (sorted ids):
  `reset_state`, `add_new_mask(start, mask)`, `propagate_in_video(start)`.

Output npz keys, per object id k:
- `logits_k`  float16 [frames start..end, H, W]: video-res logits of the best
  pathway's lineage (what `propagate_in_video` returns);
- `obj_scores_k`, `ious_k`, `acc_k` float64 [frames after start, P]: read from
  `output_dict["non_cond_frame_outputs"][t]` after propagation (slot order as
  stored; missing slots are NaN);
- `start_k`; plus `num_frames` and `seconds` (wall time of `init_state` and all
  objects' prompting + propagation; model build and npz writing excluded).

`--frame_times FILE` writes each frame's seconds: frame 0's image features (computed by
`init_state`), the prompt (`add_new_mask`), the propagation's consolidation of the prompt
frame, and each `_run_single_frame_inference` of the propagation loop, summed over the
objects (which the original tracks one after another); `init_state`'s loading of every
frame and the final resize of all masks are not per frame (they are in `seconds`).

`reference_runner.py --vos_inference REPO/tools/vos_inference.py ARGS...` runs the
original's own dataset script with ARGS, unchanged except that its model builder is given
device="cpu" (the script has no device flag and builds on CUDA) and finds a `--sam2_cfg`
given as a YAML path (the script passes it to hydra as a config name).
"""

import os
import sys
import time

import numpy as np
import torch


def build_predictor(config_path, checkpoint_path, device="cpu"):
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    cfg = OmegaConf.load(config_path)
    cfg.model["_target_"] = "sam2.sam2_video_predictor.SAM2VideoPredictor"
    cfg.model["non_overlap_masks"] = False
    OmegaConf.resolve(cfg)
    model = instantiate(cfg.model, _recursive_=True)
    state = torch.load(checkpoint_path, map_location="cpu", weights_only=True)
    model.load_state_dict(state["model"], strict=True)
    return model.to(torch.device(device)).float().eval()


def load_prompts(path):
    data = np.load(path)
    prompts = {}
    for key in data.files:
        if key.startswith("mask_"):
            obj_id = int(key[len("mask_"):])
            prompts[obj_id] = (int(data[f"frame_{obj_id}"]), data[key].astype(bool))
    if not prompts:
        raise SystemExit(f"no mask_<id> keys in {path}")
    return dict(sorted(prompts.items()))


def _flat(value):
    """A stored per-slot value (tensor or list of numbers) as a 1-D float64 array."""
    if isinstance(value, torch.Tensor):
        return value.detach().float().cpu().reshape(-1).double().numpy()
    return np.asarray([float(v) for v in value], dtype=np.float64)


def read_traces(inference_state, start, num_frames, num_pathway):
    """Per-slot object-score / IoU / accumulated-score traces for frames start+1..end."""
    outputs = inference_state["output_dict"]["non_cond_frame_outputs"]
    rows = max(num_frames - start - 1, 0)
    traces = {name: np.full((rows, num_pathway), np.nan) for name in ("obj", "iou", "acc")}
    for row, t in enumerate(range(start + 1, num_frames)):
        out = outputs[t]
        for name, key in (("obj", "object_score_logits"), ("iou", "ious"), ("acc", "acc_score")):
            vals = _flat(out[key])[:num_pathway]
            traces[name][row, : len(vals)] = vals
    return traces


def time_frames(predictor, clock):
    """Time the original's per-frame work as spans of `clock` (a call inside another, such
    as add_new_mask's own inference, counts once, in the outer span)."""
    def frame_of(*a, **k):
        return k["frame_idx"] if "frame_idx" in k else a[1]

    # _get_image_feature: init_state encodes frame 0 ahead of the prompt, which reuses it.
    for name in ("_get_image_feature", "add_new_mask", "_consolidate_temp_output_across_obj",
                 "_run_single_frame_inference"):
        setattr(predictor, name, clock.wrap(getattr(predictor, name), frame_of))


def run_vos_inference(script, argv):
    """The original's tools/vos_inference.py on the CPU (see the module docstring)."""
    import runpy
    from pathlib import Path

    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    check_fork()
    import sam2.build_sam as build_sam

    build = build_sam.build_sam2_video_predictor

    def on_cpu(config_file, ckpt_path=None, device="cuda", *a, **k):
        path = Path(config_file)
        if path.suffix == ".yaml" and path.is_file():
            GlobalHydra.instance().clear()
            initialize_config_dir(config_dir=str(path.resolve().parent), version_base="1.2")
            config_file = path.name  # as sam2 names its own configs: with .yaml
        return build(config_file, ckpt_path, "cpu", *a, **k)

    build_sam.build_sam2_video_predictor = on_cpu  # the script imports it by name: patched first
    sys.argv = [script, *argv]
    runpy.run_path(script, run_name="__main__")


def check_fork():
    import sam2
    from sam2.modeling.sam2_base import SAM2Base

    if not hasattr(SAM2Base, "track_step") or "mem_pick_index" not in \
            SAM2Base.track_step.__code__.co_varnames:
        raise SystemExit(f"`sam2` resolves to {sam2.__file__}, not the SAM2Long fork; "
                         "put the original repo first on PYTHONPATH")


def run(args):
    import contextlib

    from runner_cli import FrameClock, FrameStore, GpuMemory, peak_rss, stage_report, time_modules

    memory = GpuMemory(args.device)
    predictor = build_predictor(args.config, args.checkpoint, args.device)
    stages = {} if memory.cuda else time_modules(predictor)
    clock = FrameClock()
    if args.frame_times:
        time_frames(predictor, clock)
    prompts = load_prompts(args.prompts)
    results = {}
    # On CUDA the original's own script runs everything under bf16 autocast.
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if memory.cuda else contextlib.nullcontext()
    memory.start()

    t0 = time.perf_counter()
    clock.start()
    with torch.inference_mode(), autocast:
        state = predictor.init_state(video_path=args.frames, async_loading_frames=False)
        state["num_pathway"] = args.num_pathway
        state["iou_thre"] = args.iou_thre
        state["uncertainty"] = args.uncertainty
        num_frames = state["num_frames"]
        for obj_id, (start, mask) in prompts.items():
            predictor.reset_state(state)
            predictor.add_new_mask(
                inference_state=state, frame_idx=start, obj_id=obj_id, mask=mask
            )
            _, masks = predictor.propagate_in_video(
                state, start_frame_idx=start, reverse=False
            )
            # Frame by frame: a whole-video float32 copy would add to the original's peak.
            logits = FrameStore(args.packed_masks)
            for m in masks:
                logits.add(m[0, 0].float().cpu().numpy())
            del masks
            results[obj_id] = (start, logits,
                               None if args.no_trace else read_traces(state, start, num_frames, args.num_pathway))
    memory.sync()
    seconds = time.perf_counter() - t0

    out = {"num_frames": np.int64(num_frames), "seconds": np.float64(seconds), **memory.report(),
           **peak_rss(), **stage_report(stages)}
    for obj_id, (start, logits, tr) in results.items():
        out[f"logits_{obj_id}"] = logits.logits()
        if tr is not None:
            out[f"obj_scores_{obj_id}"] = tr["obj"]
            out[f"ious_{obj_id}"] = tr["iou"]
            out[f"acc_{obj_id}"] = tr["acc"]
        out[f"start_{obj_id}"] = np.int64(start)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    np.savez_compressed(args.out, **out)
    if args.frame_times:
        clock.write(args.frame_times, int(num_frames), backend="original")
    print(f"wrote {args.out}: {num_frames} frames, objects {list(results)}, "
          f"{seconds:.2f}s", file=sys.stderr)


def main(argv=None):
    from runner_cli import runner_parser

    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--vos_inference"]:
        if len(argv) < 2:
            raise SystemExit("--vos_inference needs the original's tools/vos_inference.py, then its arguments")
        return run_vos_inference(argv[1], argv[2:])
    p = runner_parser(__doc__.split("\n\n")[0])
    args = p.parse_args(argv)
    check_fork()
    run(args)


if __name__ == "__main__":
    main()
