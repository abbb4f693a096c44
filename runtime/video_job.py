"""One object through one video, end to end: decode -> track -> overlay video (+ PNG masks).

Shared by tools/video_inference.py and the Gradio demo.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable

import numpy as np
from PIL import Image

from engine.stages import StageBackend
from runtime.background import BackgroundWorker
from runtime.config import TrackerConfig
from runtime.frames import prefetch, preprocess_frame
from runtime.overlay import overlay_masks
from runtime.postprocess import to_video_resolution
from runtime.prompts import ObjectPrompt
from runtime.tracker import SAM2LongTracker
from runtime.video_io import H264Writer, VideoSource
from runtime.vos_dataset import save_palette_png


def track_video(
    backend: StageBackend,
    source: VideoSource,
    prompts: list[ObjectPrompt],
    config: TrackerConfig,
    output_video: str,
    output_mask_dir: str | None = None,
    progress: Callable = lambda iterable, **_: iterable,
    cuda_graphs: bool = False,
) -> float:
    """Write `output_video` (and one palette PNG per frame, pixel value = object id, into
    `output_mask_dir`); `progress` wraps the result stream (tqdm-like). Returns frames/s."""
    info = source.info
    video_hw = (info.height, info.width)
    size = backend.geometry.image_size
    originals: dict[int, np.ndarray] = {}  # read but not yet written: bounded by the lag

    def prepare(item):
        index, rgb = item
        originals[index] = rgb
        return preprocess_frame(Image.fromarray(rgb), size)

    if output_mask_dir:
        os.makedirs(output_mask_dir, exist_ok=True)
    tracker = SAM2LongTracker(backend, config, cuda_graphs=cuda_graphs)
    writer = H264Writer(output_video, info.height, info.width, info.fps)
    png_worker = BackgroundWorker("mask-png-writer") if output_mask_dir else None
    start = time.perf_counter()
    try:
        frames = prefetch(enumerate(source.frames()), prepare)
        results = tracker.track(frames, prompts, info.num_frames, video_hw)
        for result in progress(results, total=info.num_frames, unit="frame", desc="tracking"):
            masks = {}
            if result.obj_ids:
                logits = to_video_resolution(result.low_res_logits, video_hw)
                masks = {obj: logit > 0 for obj, logit in zip(result.obj_ids, logits)}
            writer.write(overlay_masks(originals.pop(result.frame_idx), masks))
            if output_mask_dir:
                packed = np.zeros(video_hw, np.uint8)
                for obj in sorted(masks, reverse=True):  # smaller ids on top
                    packed[masks[obj]] = obj
                png_worker.submit(save_palette_png, os.path.join(output_mask_dir, f"{result.frame_idx:05d}.png"),
                                  packed, None)
    except BaseException:
        writer.close(keep=False)
        if png_worker is not None:
            with contextlib.suppress(Exception):  # the failure being handled is the one to report
                png_worker.close()
        raise
    writer.close()
    if png_worker is not None:
        png_worker.close()
    return info.num_frames / (time.perf_counter() - start)
