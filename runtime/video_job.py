"""Objects through one video, end to end: the pipeline's frames -> an overlay video (+ PNG
masks in the dataset tool's layouts). Shared by tools/video_inference.py and the demo.

Every output location is checked before the first frame, and this process is its only
writer until the job ends. The video is written under a temporary name and the masks into a
staging folder; both appear only when the whole video is done, so a failed or interrupted
run leaves nothing that looks like a result.

One rule for both outputs: an existing one is replaced when a previous job wrote it and it
is unchanged since (its record, a hidden ``.<name>.complete`` beside it, lists each file's
size and SHA-256), so rerunning the same command works; anything else there is
replaced only with ``overwrite`` (and a mask folder only when it holds nothing but masks).
No output is ever an input, lies inside one, or holds one.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sam2long.runtime.image_io import atomic_write
from sam2long.runtime.mask_writer import MaskWriter, apply_non_overlap, check_object_ids
from sam2long.runtime.output_paths import (OutputError, OutputLock, StagedDir, check_output_dir, check_output_file,
                                           overlaps, remove_stale_partials)
from sam2long.runtime.overlay import overlay_masks
from sam2long.runtime.pipeline import predictor_frames, track_frames
from sam2long.runtime.prompts import ObjectPrompt, first_prompt_frames, validate_prompts
from sam2long.runtime.records import changed_file, describe_files, visible_files
from sam2long.runtime.tracker import SAM2LongTracker
from sam2long.runtime.video_io import H264Writer, VideoSource
from sam2long.runtime.vos_dataset import COMPLETE_MARKER

_RECORD_VERSION = 1


@dataclass(frozen=True)
class VideoOutputs:
    video: str  # the overlay MP4
    mask_dir: str | None = None  # PNG masks (optional)
    per_obj_png_file: bool = False  # SA-V layout <obj:03d>/<frame>.png instead of palette PNGs
    overwrite: bool = False  # replace outputs a previous job did not write (masks: only masks)
    inputs: tuple[str, ...] = ()  # what else the job reads (prompt files, model): never replaced


def _record_path(target: str) -> str:
    """The record of an output: a hidden sibling, so it is never part of the output itself."""
    parent, name = os.path.split(os.path.abspath(target).rstrip(os.sep))
    return os.path.join(parent, f".{name}{COMPLETE_MARKER}")


def _base(target: str) -> str:
    """The folder a record's file names are relative to: the mask folder, or the video's."""
    return target if os.path.isdir(target) else os.path.dirname(os.path.abspath(target))


def _write_record(target: str, names: Sequence[str]) -> None:
    payload = {"version": _RECORD_VERSION, "files": describe_files(_base(target), names)}
    atomic_write(_record_path(target), lambda f: f.write(json.dumps(payload, sort_keys=True).encode("utf-8")))


def _is_ours(target: str) -> bool:
    """`target` holds exactly what a previous job wrote there, unchanged since."""
    try:
        with open(_record_path(target), encoding="utf-8") as f:
            record = json.load(f)
        files = record["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    if record.get("version") != _RECORD_VERSION or not isinstance(files, dict):
        return False
    held = visible_files(target) if os.path.isdir(target) else {os.path.basename(os.path.abspath(target))}
    return held == set(files) and changed_file(_base(target), files) is None


def check_outputs(outputs: VideoOutputs, source: VideoSource, obj_ids: Sequence[int] | None = None) -> None:
    """Every output location usable, none of them an input, the object ids storable in the
    mask layout: before any work."""
    inputs = [source.path, *outputs.inputs]
    check_output_file(outputs.video, inputs, "--output_video")
    if os.path.lexists(outputs.video) and not outputs.overwrite and not _is_ours(outputs.video):
        raise OutputError(f"--output_video {outputs.video} already exists and is not what a previous run "
                          "of this tool wrote there (or it changed since); pass --overwrite to replace it, "
                          "or choose another path")
    remove_stale_partials(os.path.dirname(os.path.abspath(outputs.video)))
    if outputs.mask_dir:
        if overlaps(outputs.mask_dir, outputs.video):
            raise OutputError(f"--output_video {outputs.video} and --output_mask_dir {outputs.mask_dir} "
                              "overlap: the mask folder is replaced whole; choose separate places")
        ours = os.path.isdir(outputs.mask_dir) and _is_ours(outputs.mask_dir)
        check_output_dir(outputs.mask_dir, inputs, "--output_mask_dir", outputs.overwrite, ours=ours)
        remove_stale_partials(os.path.dirname(os.path.abspath(outputs.mask_dir)))
        if obj_ids is not None:
            try:
                check_object_ids(obj_ids, outputs.per_obj_png_file, "--output_mask_dir")
            except ValueError as e:
                hint = "" if outputs.per_obj_png_file else "; or pass --per_obj_png_file (one PNG per object)"
                raise OutputError(f"{e}{hint}") from None


@contextlib.contextmanager
def claim_outputs(outputs: VideoOutputs, source: VideoSource, obj_ids: Sequence[int] | None = None):
    """Lock every output (one writer each, another process is refused and named), then
    check them; held until the block ends."""
    with contextlib.ExitStack() as stack:
        stack.enter_context(OutputLock(outputs.video, "--output_video"))
        if outputs.mask_dir:
            stack.enter_context(OutputLock(outputs.mask_dir, "--output_mask_dir"))
        check_outputs(outputs, source, obj_ids)
        yield


def overlay_frame(rgb, obj_ids, logits):
    """The frame with each object's mask as the PNGs have it (non-overlapping)."""
    if not obj_ids:
        return rgb
    masks = apply_non_overlap(logits) > 0
    return overlay_masks(rgb, dict(zip(obj_ids, masks)))


def run_video_job(tracker: SAM2LongTracker, source: VideoSource, prompts: Sequence[ObjectPrompt],
                  outputs: VideoOutputs, progress: Callable = lambda iterable, **_: iterable) -> float:
    """Track `prompts` (one per object) through `source` into `outputs`; `progress` wraps
    the frame stream (tqdm-like). Returns frames per second."""
    info = source.info
    validate_prompts(prompts, (info.height, info.width), info.num_frames)
    obj_ids = [p.obj_id for p in prompts]
    with claim_outputs(outputs, source, obj_ids):
        return _run(lambda: track_frames(tracker, source, prompts, keep_frames=True), source, obj_ids,
                    outputs, progress)


def run_predictor_job(predictor, source: VideoSource, prompts: Sequence[ObjectPrompt], outputs: VideoOutputs,
                      progress: Callable = lambda iterable, **_: iterable) -> float:
    """As run_video_job, through a video predictor (sam2long.predictor): plain SAM 2, or
    objects with prompts on several frames (runtime/pipeline.py `predictor_frames`)."""
    info = source.info
    validate_prompts(prompts, (info.height, info.width), info.num_frames, several_frames=True)
    obj_ids = list(first_prompt_frames(prompts))
    with claim_outputs(outputs, source, obj_ids):
        return _run(lambda: predictor_frames(predictor, source, prompts, keep_frames=True), source, obj_ids,
                    outputs, progress)


def _run(make_frames: Callable, source, obj_ids, outputs, progress) -> float:
    info = source.info
    start = time.perf_counter()
    writer = H264Writer(outputs.video, info.height, info.width, info.fps,
                        timestamps=source.timestamps())
    staged = masks = None
    try:
        if outputs.mask_dir:
            staged = StagedDir(outputs.mask_dir)
            masks = MaskWriter(staged.path, outputs.per_obj_png_file, None, info.height, info.width,
                               obj_ids, name=outputs.mask_dir)
        frames = make_frames()
        for frame in progress(frames, total=info.num_frames, unit="frame", desc="tracking"):
            writer.write(overlay_frame(frame.rgb, frame.obj_ids, frame.logits))
            if masks is not None:
                masks.write(frame.name, dict(zip(frame.obj_ids, frame.logits)))
        if masks is not None:
            masks.close()
        writer.close()
    except BaseException:
        writer.close(keep=False)
        if masks is not None:
            masks.abandon()
        if staged is not None:
            staged.discard()
        raise
    if staged is not None:
        staged.commit()
        _write_record(outputs.mask_dir, masks.files)
    _write_record(outputs.video, [os.path.basename(os.path.abspath(outputs.video))])
    return info.num_frames / (time.perf_counter() - start)
