#!/usr/bin/env python
"""SAM2Long semi-supervised VOS over a dataset folder (DAVIS / SA-V / LVOS / YouTube-VOS layout).

Reads `<base_video_dir>/<video>/<frame>.jpg` and the prompt masks in `<input_mask_dir>`,
writes the predicted masks to `<output_mask_dir>` in the same layout. Videos are sharded
over nodes x chunks (or SLURM / torchrun ranks); one bad video is reported without
stopping the others.

Each finished video's folder records what produced it (model hashes and every setting
that changes masks) and what it wrote. A rerun skips a video only when that record matches
the current settings and every file is still there; unfinished videos are redone from
scratch; a folder made with other settings stops the run before any work unless
--overwrite (old and new masks are never mixed).
"""

from __future__ import annotations

if __name__ == "__main__":  # Ctrl-C or SIGTERM while importing: one line, not a traceback
    from sam2long.tools.startup import quiet_interrupts

    quiet_interrupts()

import argparse
import errno
import os
import sys
import time
import traceback


import numpy as np

from sam2long.engine.errors import ConfigError, SAM2LongError
from sam2long.runtime import progress as bars
from sam2long.runtime.image_io import DatasetError, list_frames
from sam2long.runtime.sharding import PRECEDENCE, resolve_shard, select_shard, split_contiguous
from sam2long.runtime.vos_dataset import list_videos
from sam2long.resources import add_version
from sam2long.tools.cli import (HelpFormatter, add_backend_args, add_model_args, add_tracker_args, finite_float,
                       report_error, run_main, tracker_config)

SAM2_FILL_HOLE_AREA = 8  # what sam2's apply_postprocessing sets (build_sam.py)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    add_version(p)
    model = p.add_argument_group("model")
    add_model_args(model, random_weights=False)
    add_backend_args(model)
    # sam2's own vos_inference flags, so that its commands run here unchanged
    model.add_argument("--apply_postprocessing", action="store_true",
                       help="sam2's post-processing: fill holes of at most 8 pixels in each object's "
                            "low-resolution mask before it is resized (sam2's fill_hole_area=8; done "
                            "on every device here, where sam2 skips it without its CUDA extension). "
                            "Its two other parts change nothing with mask prompts, as in sam2: "
                            "binarised memory masks act on click-prompted frames, and the dynamic "
                            "multimask fallback on single-mask outputs, which tracking never makes. "
                            "Off by default, as in sam2 and the original SAM2Long")
    model.add_argument("--use_vos_optimized_video_predictor", action="store_true",
                       help="sam2's compiled VOS predictor; here: our fastest path, --backend auto (the "
                            "default: TensorRT engines on a GPU with --engine_dir, else torch; ONNX "
                            "Runtime on a CPU where faster) plus --cuda_graphs on CUDA (torch, trt)")
    data = p.add_argument_group("data")
    data.add_argument("--base_video_dir", required=True,
                      help="folder with one subfolder of JPEG frames per video")
    data.add_argument("--input_mask_dir", required=True,
                      help="folder with the prompt masks (PNG) of each video")
    data.add_argument("--video_list_file", default=None,
                      help="text file with one video name per line (default: every subfolder)")
    data.add_argument("--output_mask_dir", required=True,
                      help="where the predicted PNG masks go (must not overlap the inputs)")
    data.add_argument("--per_obj_png_file", action="store_true",
                      help="SA-V layout: one PNG per object in <video>/<obj:03d>/ (inputs and "
                           "outputs); default: DAVIS palette PNGs with all objects packed")
    data.add_argument("--track_object_appearing_later_in_video", action="store_true",
                      help="each object starts at its first non-empty mask (LVOS, YouTube-VOS); "
                           "default: all objects come from the first frame's mask")
    data.add_argument("--use_all_masks", action="store_true",
                      help="not supported: the reference's memory tree is defined for one "
                           "conditioning frame per object")
    data.add_argument("--score_thresh", type=finite_float, default=0.0,
                      help="a pixel belongs to an object when its mask logit is above this")
    tree = p.add_argument_group("SAM2Long memory tree")
    add_tracker_args(tree)
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
                     help="redo every video, also those already complete or made with other settings")
    run.add_argument("--score", default=None, choices=["davis", "sav", "lvos", "mose"],
                     help="after the run, score this shard's videos as that benchmark's official tool "
                          "would (tools/evaluate.py), against the ground truth next to "
                          "--input_mask_dir (DAVIS: <root>/Annotations/480p; SA-V: the annotation "
                          "folder; LVOS: <split>/Annotations; MOSE: Annotations with ../meta.json), "
                          "or --score_gt; tables and official files go to <output_mask_dir>_scores/, "
                          "a shard's to <output_mask_dir>_scores/shard-<i>-of-<n>/ (merge them with "
                          "tools/evaluate.py --merge_shards <output_mask_dir>_scores)")
    run.add_argument("--score_gt", default=None,
                     help="with --score: the ground truth as tools/evaluate.py takes it (DAVIS root, "
                          "SA-V or MOSE annotation folder, LVOS split folder), if not derived")
    run.add_argument("--trace_dir", default=None,
                     help="also save per-object IoU / object-score / accumulated-score traces "
                          "(<video>.npz) for parity checks")
    return p


def _report(message: str):
    bars.write(message, file=sys.stderr)


def produced_by(args, backend) -> dict:
    """Everything that decides the masks, as the completion records store it."""
    from sam2long.engine.file_hashes import known_sha256
    from sam2long.engine.model_loading import resolve_config_path

    return {
        "config_sha256": known_sha256(resolve_config_path(args.sam2_cfg)),
        "checkpoint_sha256": known_sha256(args.sam2_checkpoint),
        "backend": backend.describe(), "device": backend.device.type, "precision": args.precision,
        "num_pathway": args.num_pathway, "iou_thre": args.iou_thre, "uncertainty": args.uncertainty,
        "score_thresh": args.score_thresh, "per_obj_png_file": args.per_obj_png_file,
        "track_object_appearing_later_in_video": args.track_object_appearing_later_in_video,
        # only when on, so that the records of runs without it stay valid
        **({"apply_postprocessing": True} if args.apply_postprocessing else {}),
    }


def score_sources(args) -> tuple[str, str | None]:
    """--score's ground truth and (MOSE) meta.json: given, or derived from --input_mask_dir."""
    from pathlib import Path

    masks = Path(args.input_mask_dir).resolve()
    gt = args.score_gt or str({"davis": masks.parents[1], "lvos": masks.parent}.get(args.score, masks))
    meta = str(Path(gt).parent / "meta.json") if args.score == "mose" else None
    return gt, meta


def scores_dir(args) -> str:
    from sam2long.tools.evaluate import default_output_dir

    return default_output_dir(args.output_mask_dir)


def run_inputs(args) -> list[str]:
    """Every file and folder this run reads: no output may be, hold or lie inside one."""
    from sam2long.tools.cli import model_inputs

    inputs = [args.base_video_dir, args.input_mask_dir, args.video_list_file, *model_inputs(args)]
    if args.score:
        inputs += [p for p in score_sources(args) if p]
    return [p for p in inputs if p]


def check_outputs(args, shard: list[str]):
    """Every output of the run, before the model loads: the output folder and each video's
    folder in it (links resolved) inside it and apart from every input, --trace_dir and
    the scores folder likewise, --score's inputs there, and no video being written by
    another process (one run-level error each)."""
    from sam2long.runtime.output_paths import (OutputError, OutputLock, check_apart, overlaps, probe_writable,
                                               remove_stale_partials)

    inputs = run_inputs(args)
    check_apart(args.output_mask_dir, inputs, "--output_mask_dir")
    root = os.path.realpath(args.output_mask_dir)
    for video in shard:
        folder = os.path.join(args.output_mask_dir, video)
        real = os.path.realpath(folder)
        if os.path.dirname(real) != root:
            raise OutputError(f"--output_mask_dir: the output of video {video!r} would be {real}, "
                              f"outside {args.output_mask_dir} (a link?); remove {folder}")
        check_apart(folder, inputs, f"--output_mask_dir: the output of video {video!r},")
    if args.trace_dir:
        check_apart(args.trace_dir, inputs, "--trace_dir")
        if overlaps(args.trace_dir, args.output_mask_dir):
            raise OutputError(f"--trace_dir {args.trace_dir} and --output_mask_dir {args.output_mask_dir} "
                              "overlap: finished videos' folders are replaced whole; choose a separate folder")
        probe_writable(args.trace_dir, "--trace_dir")
    if args.score:
        gt, meta = score_sources(args)
        if not os.path.isdir(gt):
            raise ConfigError(f"--score {args.score}: the ground truth {gt} is not a folder; pass --score_gt")
        if meta and not os.path.isfile(meta):
            raise ConfigError(f"--score mose: {meta} not found (MOSE's meta.json beside the annotation "
                              "folder); pass --score_gt <the Annotations folder with ../meta.json>")
        check_apart(scores_dir(args), inputs + [args.output_mask_dir], "the scores folder")
    probe_writable(args.output_mask_dir, "--output_mask_dir")
    for video in shard:
        with OutputLock(os.path.join(args.output_mask_dir, video), f"--output_mask_dir: video {video!r} in"):
            pass  # another process writing it: refused now, not after the model loads
    for path in remove_stale_partials(args.output_mask_dir):
        print(f"removed {path}, left by a killed run")


def plan_videos(args, shard: list[str], identity: dict) -> list[str]:
    """The shard's videos still to do. Results made with other settings stop the run here,
    before any work, unless --overwrite."""
    from sam2long.runtime.vos_dataset import video_status

    if args.overwrite:
        return list(shard)
    todo, foreign = [], []
    for video in shard:
        try:
            names = list_frames(os.path.join(args.base_video_dir, video))
        except DatasetError:
            todo.append(video)  # it fails, with its message, in the loop
            continue
        status = video_status(args.output_mask_dir, video, names, identity, trace_path(args, video))
        if status.state == "other_settings":
            foreign.append(f"{video}: {status.reason}")
        elif status.state != "complete":
            todo.append(video)
    if foreign:
        shown = "\n  ".join(foreign[:5]) + (f"\n  ... and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise ConfigError(
            f"{len(foreign)} video(s) in {args.output_mask_dir} hold masks made with other settings:\n  "
            f"{shown}\npass --overwrite to redo them with the current settings, or choose another "
            "--output_mask_dir")
    return todo


def trace_path(args, video: str) -> str | None:
    return os.path.join(args.trace_dir, f"{video}.npz") if args.trace_dir else None


def run_video(args, tracker, video: str, identity: dict) -> int | None:
    """Track one video into a staging folder that replaces its output folder when whole
    (this process the only writer of it meanwhile); returns the number of frames written,
    or None when another run finished it since the plan."""
    from sam2long.runtime.output_paths import OutputError, OutputLock
    from sam2long.runtime.vos_dataset import video_status

    with OutputLock(os.path.join(args.output_mask_dir, video), f"--output_mask_dir: video {video!r} in"):
        if not args.overwrite:  # what the plan saw may have changed while other videos ran
            names = list_frames(os.path.join(args.base_video_dir, video))
            status = video_status(args.output_mask_dir, video, names, identity, trace_path(args, video))
            if status.state == "complete":
                return None
            if status.state == "other_settings":
                raise OutputError(f"another run wrote it meanwhile, {status.reason}; it is kept (pass "
                                  "--overwrite to redo it)")
        return _run_video(args, tracker, video, identity)


def _run_video(args, tracker, video: str, identity: dict) -> int:
    from sam2long.runtime.mask_writer import MaskWriter
    from sam2long.runtime.output_paths import StagedDir
    from sam2long.runtime.pipeline import track_frames
    from sam2long.runtime.prompts import ObjectPrompt
    from sam2long.runtime.video_io import VideoSource
    from sam2long.runtime.vos_dataset import load_prompts, write_completion

    video_dir = os.path.join(args.base_video_dir, video)
    source = VideoSource(video_dir)
    frame_names = source.frame_names
    found = load_prompts(args.input_mask_dir, video, frame_names, args.per_obj_png_file,
                         args.track_object_appearing_later_in_video)
    for obj_id, frame_name in found.later_objects.items():
        _report(f"WARNING {video}: object {obj_id} first appears on frame {frame_name} of the input masks, "
                "after the first frame: it is not tracked; pass --track_object_appearing_later_in_video "
                "to track it from there")
    for obj_id in found.empty_objects:
        if obj_id in found.later_objects:
            continue
        _report(f"WARNING {video}: object {obj_id:03d} has no non-empty prompt mask "
                f"({os.path.join(args.input_mask_dir, video, f'{obj_id:03d}')}); it is not tracked "
                "and its output masks are empty")
    prompts = [ObjectPrompt(obj_id=obj_id, frame_idx=start, mask=mask)
               for obj_id, (start, mask) in found.objects.items()]
    video_hw = (source.info.height, source.info.width)
    for prompt in prompts:
        if prompt.mask.shape != video_hw:
            raise DatasetError(
                f"object {prompt.obj_id}'s mask is {prompt.mask.shape[1]}x{prompt.mask.shape[0]}, "
                f"the frames are {video_hw[1]}x{video_hw[0]}",
                video=video, path=os.path.join(args.input_mask_dir, video))
    obj_ids = sorted([p.obj_id for p in prompts] + found.empty_objects)
    trace = {} if args.trace_dir else None
    staged = StagedDir(os.path.join(args.output_mask_dir, video))
    writer = None
    try:
        writer = MaskWriter(staged.path, args.per_obj_png_file, found.palette, *video_hw, obj_ids,
                            score_thresh=args.score_thresh, name=video)
        fill_hole_area = SAM2_FILL_HOLE_AREA if args.apply_postprocessing else 0
        for frame in bars.progress(track_frames(tracker, source, prompts, trace=trace, fill_hole_area=fill_hole_area),
                                   total=len(frame_names), desc=video, unit="frame", leave=False):
            writer.write(frame.name, dict(zip(frame.obj_ids, frame.logits)))
        writer.close()
        if trace is not None:
            _save_trace(trace_path(args, video), prompts, trace)
        write_completion(staged.path, identity, frame_names, obj_ids, writer.files, trace_path(args, video))
    except BaseException:
        if writer is not None:
            writer.abandon()
        staged.discard()
        raise
    staged.commit()
    return len(frame_names)


def _save_trace(path: str, prompts, trace: dict):
    """The video's traces, whole or not at all (the completion record names them)."""
    from sam2long.runtime.image_io import atomic_write

    arrays = {}
    for prompt in prompts:
        rows = trace[prompt.obj_id]
        arrays[f"start_{prompt.obj_id}"] = np.array(prompt.frame_idx)
        for name in ("ious", "obj_scores", "acc"):
            arrays[f"{name}_{prompt.obj_id}"] = np.stack([getattr(r, name) for r in rows]) \
                if rows else np.zeros((0, 0))
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    atomic_write(path, lambda f: np.savez(f, **arrays))


def score_own_run(args, videos: list[str], index: int = 0, total: int = 1) -> None:
    """Score the run's videos with the benchmark's official numbers (tools/evaluate.py). A
    sharded run writes into its own `<output_mask_dir>_scores/shard-<i>-of-<n>/`, with the
    per-video scores that `tools/evaluate.py --merge_shards` turns into the whole set's numbers."""
    from sam2long.tools.evaluation import print_summary, score_run, shard_scores_name, write_shard_scores

    gt, meta = score_sources(args)
    folder = scores_dir(args)
    if total > 1:
        folder = os.path.join(folder, shard_scores_name(index, total))
    if not videos:  # an empty shard still reports, so that the merge sees every shard
        path = write_shard_scores(folder, index, total, args.score, gt, videos, None)
        print(f"scores ({args.score}): this shard has no video; wrote {path}")
        return
    result = score_run(args.score, gt, args.output_mask_dir, videos, meta=meta)
    written = result.write_files(folder)
    if total > 1:
        written.append(write_shard_scores(folder, index, total, args.score, gt, videos, result))
    print_summary(result)
    print(f"scores ({args.score}, {len(videos)} video(s) of this shard) in {', '.join(written)}")
    if total > 1:
        print(f"when every shard is done: python tools/evaluate.py --merge_shards {scores_dir(args)}")


def preview_split(args, videos: list[str], why: ValueError) -> int:
    """--dry_run with counts whose indices come at launch (`--num_chunks 2` outside a
    launcher): the split they give, no process's own shard."""
    node_id = 0 if args.node_id is None and args.num_nodes is not None else args.node_id
    chunk_id = 0 if args.chunk_id is None and args.num_chunks is not None else args.chunk_id
    try:  # the same counts with their missing indices given: if still refused, that is the error
        _, total, _ = resolve_shard(args.num_nodes, node_id, args.num_chunks, chunk_id, {})
    except ValueError:
        raise ConfigError(str(why)) from None
    print(f"--dry_run: {total} shards of {len(videos)} videos; which one a process runs comes from its "
          f"launcher or index flags ({why})")
    for i, chunk in enumerate(split_contiguous(sorted(videos), total)):
        print(f"shard {i}: {len(chunk)} videos: {' '.join(chunk)}")
    return 0


_DISK_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}


def run(args) -> int:
    if args.use_all_masks:
        raise ConfigError("--use_all_masks is not supported: SAM2Long's memory tree (and the "
                          "reference implementation) is defined for a single conditioning frame per "
                          "object; run without it")
    tracker_config(args)  # flag ranges, before anything else
    for flag in ("base_video_dir", "input_mask_dir"):
        if not os.path.isdir(getattr(args, flag)):
            raise ConfigError(f"--{flag} {getattr(args, flag)} is not a folder")
    videos = list_videos(args.base_video_dir, args.video_list_file)
    try:
        index, total, source = resolve_shard(
            args.num_nodes, args.node_id, args.num_chunks, args.chunk_id, os.environ)
    except ValueError as e:
        if not args.dry_run:
            raise ConfigError(str(e)) from None
        return preview_split(args, videos, e)
    shard = select_shard(videos, index, total)
    print(f"shard {index} of {total} (source: {source}): {len(shard)} of {len(videos)} videos")
    if args.dry_run:
        for i, chunk in enumerate(split_contiguous(sorted(videos), total)):
            mark = " <- this process" if i == index else ""
            print(f"shard {i}: {len(chunk)} videos{mark}: {' '.join(chunk)}")
        return 0

    from sam2long.tools.cli import load_backend, make_tracker

    check_outputs(args, shard)
    backend = load_backend(args)
    if args.use_vos_optimized_video_predictor and backend.device.type == "cuda" and backend.name != "onnx":
        args.cuda_graphs = True  # sam2's compiled predictor's counterpart: captured frames
    tracker = make_tracker(args, backend)
    identity = produced_by(args, backend)
    todo = plan_videos(args, shard, identity)
    config = tracker.config
    print(f"backend {backend.describe()} ({args.precision}) on {backend.device}; P={config.num_pathway} "
          f"iou_thre={config.iou_thre} uncertainty={config.uncertainty}; {len(shard) - len(todo)} "
          f"video(s) already complete")

    failed, done, already = [], 0, len(shard) - len(todo)
    start = time.perf_counter()
    for video in bars.progress(todo, desc="videos", unit="video"):
        try:
            if run_video(args, tracker, video, identity) is None:
                already += 1
            else:
                done += 1
        except SAM2LongError as e:
            failed.append(video)
            _report(f"FAILED {video}: {e}")
        except OSError as e:
            if e.errno in _DISK_ERRORS:
                raise  # a full or read-only disk fails every video alike: one line, the run ends
            failed.append(video)
            _report(f"FAILED {video}: {report_error(e)}")
        except Exception as e:  # keep going: one broken video must not stop a benchmark run
            failed.append(video)
            _report(f"FAILED {video}: {type(e).__name__}: {e}\n{traceback.format_exc()}")
    elapsed = time.perf_counter() - start
    print(f"done: {done} tracked, {already} already complete, {len(failed)} failed "
          f"in {elapsed:.1f}s; masks in {args.output_mask_dir}")
    if failed:
        print(f"failed videos: {' '.join(failed)}", file=sys.stderr)
        if args.score:
            print("not scored: every video must have masks first", file=sys.stderr)
        return 1
    if args.score:
        score_own_run(args, shard, index, total)
    return 0


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return run_main(lambda: run(args), interrupted="finished videos are kept; a rerun resumes")


if __name__ == "__main__":
    from sam2long.tools.startup import restore_interrupts

    restore_interrupts()
    sys.exit(main())
