#!/usr/bin/env python
"""SAM2Long semi-supervised VOS over a dataset folder (DAVIS / SA-V / LVOS / YouTube-VOS layout).

Reads `<base_video_dir>/<video>/<frame>.jpg` and the prompt masks in `<input_mask_dir>`,
writes the predicted masks to `<output_mask_dir>` in the same layout. Videos are sharded
over nodes x chunks (or SLURM / torchrun ranks), finished videos are skipped on a rerun,
and one bad video is reported without stopping the others.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from pathlib import Path

if __package__ in (None, ""):  # `python tools/vos_inference.py` from anywhere
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
from PIL import Image
from tqdm import tqdm

from runtime.config import TrackerConfig
from runtime.frames import prefetch, preprocess_frame
from runtime.postprocess import to_video_resolution
from runtime.prompts import ObjectPrompt, PromptError
from runtime.sharding import PRECEDENCE, resolve_shard, select_shard, split_contiguous
from runtime.video_io import VideoError, VideoSource
from runtime.vos_dataset import (
    DatasetError,
    OutputWriter,
    is_video_complete,
    list_frames,
    list_videos,
    load_prompts,
)
from tools.backend_options import add_backend_args



def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    model = p.add_argument_group("model")
    model.add_argument("--sam2_cfg", default="configs/sam2.1/sam2.1_hiera_b+.yaml",
                       help="SAM 2 config: a name inside the sam2 package or a path to a YAML file")
    model.add_argument("--sam2_checkpoint", default="./checkpoints/sam2.1_hiera_b+.pt",
                       help='checkpoint in the official layout {"model": state_dict}')
    add_backend_args(model, default="torch")
    data = p.add_argument_group("data")
    data.add_argument("--base_video_dir", required=True,
                      help="folder with one subfolder of JPEG frames per video")
    data.add_argument("--input_mask_dir", required=True,
                      help="folder with the prompt masks (PNG) of each video")
    data.add_argument("--video_list_file", default=None,
                      help="text file with one video name per line (default: every subfolder)")
    data.add_argument("--output_mask_dir", required=True, help="where the predicted PNG masks go")
    data.add_argument("--per_obj_png_file", action="store_true",
                      help="SA-V layout: one PNG per object in <video>/<obj:03d>/ (inputs and "
                           "outputs); default: DAVIS palette PNGs with all objects packed")
    data.add_argument("--track_object_appearing_later_in_video", action="store_true",
                      help="each object starts at its first non-empty mask (LVOS, YouTube-VOS); "
                           "default: all objects come from the first frame's mask")
    data.add_argument("--use_all_masks", action="store_true",
                      help="not supported: the reference's memory tree is defined for one "
                           "conditioning frame per object")
    data.add_argument("--score_thresh", type=float, default=0.0,
                      help="a pixel belongs to an object when its mask logit is above this")
    tree = p.add_argument_group("SAM2Long memory tree")
    tree.add_argument("--num_pathway", type=int, default=3, help="pathways per object (1..8)")
    tree.add_argument("--iou_thre", type=float, default=0.1,
                      help="a frame enters memory only if its predicted IoU is above this")
    tree.add_argument("--uncertainty", type=float, default=2.0,
                      help="when every |object score| is at most this, favour diverse masks")
    shard = p.add_argument_group("sharding", PRECEDENCE)
    shard.add_argument("--num_nodes", type=int, default=None, help="number of nodes")
    shard.add_argument("--node_id", type=int, default=None, help="this node's index")
    shard.add_argument("--num_chunks", type=int, default=None,
                       help="processes per node (usually the node's GPU count)")
    shard.add_argument("--chunk_id", type=int, default=None, help="this process's index on the node")
    run = p.add_argument_group("run")
    run.add_argument("--dry_run", action="store_true",
                     help="print every shard's videos and exit, without loading a model")
    run.add_argument("--overwrite", action="store_true",
                     help="redo videos whose outputs are already complete")
    run.add_argument("--trace_dir", default=None,
                     help="also save per-object IoU / object-score / accumulated-score traces "
                          "(<video>.npz) for parity checks")
    return p


def _report(message: str):
    tqdm.write(message, file=sys.stderr)


def _video_prompts(args, video: str, frame_names: list[str]) -> tuple[list[ObjectPrompt], object]:
    per_obj, palette = load_prompts(
        args.input_mask_dir, video, frame_names, args.per_obj_png_file,
        args.track_object_appearing_later_in_video,
    )
    prompts = [ObjectPrompt(obj_id=obj_id, frame_idx=start, mask=mask)
               for obj_id, (start, mask) in per_obj.items()]
    return prompts, palette


def run_video(args, tracker, video: str, frame_names: list[str]) -> int:
    """Track one video and write its masks; returns the number of frames written."""
    video_dir = os.path.join(args.base_video_dir, video)
    prompts, palette = _video_prompts(args, video, frame_names)
    source = VideoSource(video_dir)  # same frame list and order as `frame_names`
    video_hw = (source.info.height, source.info.width)
    for prompt in prompts:
        if prompt.mask.shape != video_hw:
            raise DatasetError(
                f"object {prompt.obj_id}'s mask is {prompt.mask.shape[1]}x{prompt.mask.shape[0]}, "
                f"the frames are {video_hw[1]}x{video_hw[0]}",
                video=video, path=os.path.join(args.input_mask_dir, video))
    writer = OutputWriter(
        args.output_mask_dir, video, args.per_obj_png_file, palette, video_hw[0], video_hw[1],
        [p.obj_id for p in prompts], score_thresh=args.score_thresh,
    )
    trace = {} if args.trace_dir else None
    size = tracker.geo.image_size
    frames = prefetch(source.frames(), lambda rgb: preprocess_frame(Image.fromarray(rgb), size))
    results = tracker.track(frames, prompts, len(frame_names), video_hw, trace=trace)
    try:
        for result in tqdm(results, total=len(frame_names), desc=video, unit="frame", leave=False):
            logits = to_video_resolution(result.low_res_logits, video_hw)
            writer.write(frame_names[result.frame_idx], dict(zip(result.obj_ids, logits)))
    except BaseException:
        writer.abandon()
        raise
    if trace is not None:
        _save_trace(args.trace_dir, video, prompts, trace)
    writer.finish()
    return writer.num_frames_written


def _save_trace(trace_dir: str, video: str, prompts, trace: dict):
    os.makedirs(trace_dir, exist_ok=True)
    arrays = {}
    for prompt in prompts:
        rows = trace[prompt.obj_id]
        arrays[f"start_{prompt.obj_id}"] = np.array(prompt.frame_idx)
        for name in ("ious", "obj_scores", "acc"):
            arrays[f"{name}_{prompt.obj_id}"] = np.stack([getattr(r, name) for r in rows]) \
                if rows else np.zeros((0, 0))
    np.savez(os.path.join(trace_dir, f"{video}.npz"), **arrays)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.use_all_masks:
        print("error: --use_all_masks is not supported: SAM2Long's memory tree (and the "
              "reference implementation) is defined for a single conditioning frame per "
              "object; run without it", file=sys.stderr)
        return 2
    try:
        config = TrackerConfig(args.num_pathway, args.iou_thre, args.uncertainty)
        for flag in ("base_video_dir", "input_mask_dir"):
            if not os.path.isdir(getattr(args, flag)):
                raise DatasetError(f"--{flag} {getattr(args, flag)} is not a folder")
        videos = list_videos(args.base_video_dir, args.video_list_file)
        index, total, source = resolve_shard(
            args.num_nodes, args.node_id, args.num_chunks, args.chunk_id, os.environ)
    except (ValueError, DatasetError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    shard = select_shard(videos, index, total)
    print(f"shard {index} of {total} (source: {source}): {len(shard)} of {len(videos)} videos")
    if args.dry_run:
        for i, chunk in enumerate(split_contiguous(sorted(videos), total)):
            mark = " <- this process" if i == index else ""
            print(f"shard {i}: {len(chunk)} videos{mark}: {' '.join(chunk)}")
        return 0

    from engine.manifest import EngineMismatchError
    from engine.model_loading import ModelLoadError
    from runtime.tracker import SAM2LongTracker
    from tools.backend_options import build_chosen_backend, check_cuda_graphs

    try:
        backend = build_chosen_backend(args.backend, args.sam2_cfg, args.sam2_checkpoint, args.device,
                                       args.engine_dir, args.precision)
        tracker = SAM2LongTracker(backend, config, cuda_graphs=check_cuda_graphs(args, backend))
    except (ModelLoadError, EngineMismatchError, ValueError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"backend {backend.name} ({args.precision}) on {backend.device}; P={config.num_pathway} "
          f"iou_thre={config.iou_thre} uncertainty={config.uncertainty}")

    failed, skipped, done = [], 0, 0
    start = time.perf_counter()
    for video in tqdm(shard, desc="videos", unit="video"):
        try:
            frame_names = list_frames(os.path.join(args.base_video_dir, video))
            if not args.overwrite and is_video_complete(args.output_mask_dir, video, len(frame_names)):
                skipped += 1
                continue
            run_video(args, tracker, video, frame_names)
            done += 1
        except (DatasetError, PromptError, VideoError) as e:
            failed.append(video)
            _report(f"FAILED {video}: {e}")
        except Exception as e:  # keep going: one broken video must not stop a benchmark run
            failed.append(video)
            _report(f"FAILED {video}: {type(e).__name__}: {e}\n{traceback.format_exc()}")
    elapsed = time.perf_counter() - start
    print(f"done: {done} tracked, {skipped} already complete, {len(failed)} failed "
          f"in {elapsed:.1f}s; masks in {args.output_mask_dir}")
    if failed:
        print(f"failed videos: {' '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
