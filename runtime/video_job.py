"""Objects through one video, end to end: the pipeline's frames -> an overlay video (+ PNG
masks in the dataset tool's layouts). Shared by tools/video_inference.py and the demo.

Every output location is checked before the first frame. The video is written under a
temporary name and the masks into a staging folder; both appear only when the whole video
is done, so a failed or interrupted run leaves nothing that looks like a result.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sam2long.runtime.mask_writer import MaskWriter, apply_non_overlap
from sam2long.runtime.output_paths import StagedDir, check_output_dir, check_output_file, remove_stale_partials
from sam2long.runtime.overlay import overlay_masks
from sam2long.runtime.pipeline import track_frames
from sam2long.runtime.prompts import ObjectPrompt, validate_prompts
from sam2long.runtime.tracker import SAM2LongTracker
from sam2long.runtime.video_io import H264Writer, VideoSource


@dataclass(frozen=True)
class VideoOutputs:
    video: str  # the overlay MP4
    mask_dir: str | None = None  # PNG masks (optional)
    per_obj_png_file: bool = False  # SA-V layout <obj:03d>/<frame>.png instead of palette PNGs
    overwrite: bool = False  # replace the masks already in mask_dir


def check_outputs(outputs: VideoOutputs, source: VideoSource) -> None:
    """Every output location usable, and none of them the input: before any work."""
    check_output_file(outputs.video, [source.path], "--output_video")
    remove_stale_partials(os.path.dirname(os.path.abspath(outputs.video)))
    if outputs.mask_dir:
        check_output_dir(outputs.mask_dir, [source.path], "--output_mask_dir", outputs.overwrite)
        remove_stale_partials(os.path.dirname(os.path.abspath(outputs.mask_dir)))


def overlay_frame(rgb, obj_ids, logits):
    """The frame with each object's mask as the PNGs have it (non-overlapping)."""
    if not obj_ids:
        return rgb
    masks = apply_non_overlap(logits) > 0
    return overlay_masks(rgb, dict(zip(obj_ids, masks)))


def run_video_job(tracker: SAM2LongTracker, source: VideoSource, prompts: Sequence[ObjectPrompt],
                  outputs: VideoOutputs, progress: Callable = lambda iterable, **_: iterable) -> float:
    """Track `prompts` through `source` into `outputs`; `progress` wraps the frame stream
    (tqdm-like). Returns frames per second."""
    info = source.info
    validate_prompts(prompts, (info.height, info.width), info.num_frames)
    check_outputs(outputs, source)
    start = time.perf_counter()
    writer = H264Writer(outputs.video, info.height, info.width, info.fps,
                        timestamps=source.timestamps())
    staged = masks = None
    try:
        if outputs.mask_dir:
            staged = StagedDir(outputs.mask_dir)
            masks = MaskWriter(staged.path, outputs.per_obj_png_file, None, info.height, info.width,
                               [p.obj_id for p in prompts], name=outputs.mask_dir)
        frames = track_frames(tracker, source, prompts, keep_frames=True)
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
    return info.num_frames / (time.perf_counter() - start)
