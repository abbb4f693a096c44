"""One video through the tracker, as typed per-frame results.

decode (a stream) -> prepare on a prefetch thread -> track -> masks back at video
resolution. The video tool, the demo, the dataset tool and the benchmark runner consume
this one pipeline and differ only in where the results go (their sinks).

`predictor_frames` gives the same per-frame results from the interactive predictor
(sam2long.predictor): plain SAM 2, and prompts on several frames of one object.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from sam2long.runtime.frames import prefetch, preprocess_frame
from sam2long.runtime.postprocess import fill_holes, to_video_resolution
from sam2long.runtime.prompts import ObjectPrompt, first_prompt_frames, validate_prompts
from sam2long.runtime.tracker import SAM2LongTracker
from sam2long.runtime.video_io import VideoSource


@dataclass
class FrameOutput:
    index: int
    name: str  # the frame file's stem for a folder of frames, else 00000, 00001, ...
    obj_ids: list[int]  # objects started by this frame
    logits: np.ndarray  # [len(obj_ids), H, W] float32 mask logits at video resolution
    rgb: np.ndarray | None  # the decoded frame [H, W, 3] uint8, when asked for

    def masks(self, threshold: float = 0.0) -> dict[int, np.ndarray]:
        return {obj: logit > threshold for obj, logit in zip(self.obj_ids, self.logits)}


def track_frames(tracker: SAM2LongTracker, source: VideoSource, prompts: Sequence[ObjectPrompt],
                 keep_frames: bool = False, trace: dict | None = None,
                 fill_hole_area: int = 0) -> Iterator[FrameOutput]:
    """Every frame of `source`, in order, once its masks are decided. `keep_frames` also
    hands back each decoded frame. Pass a dict as `trace` for the tracker's per-object
    TraceRows. `fill_hole_area` > 0 fills the output masks' holes up to that many
    low-resolution pixels (sam2's post-processing); memory never sees it, as in sam2."""
    info = source.info
    video_hw = (info.height, info.width)
    # Before any frame is decoded; with the clicks the backend's engines take.
    validate_prompts(prompts, video_hw, info.num_frames, getattr(tracker.backend, "max_clicks", None))
    names = source.frame_names
    size = tracker.geo.image_size
    frames = prefetch(source.frames(), lambda rgb: preprocess_frame(Image.fromarray(rgb), size))
    # The frames handed back come from a second decoder, in step with the answers (which come
    # in frame order): keeping the decoded frames until their masks are decided could mean
    # keeping the whole video, since SAM2Long may decide only at the end.
    replay = prefetch(source.frames(), lambda rgb: rgb) if keep_frames else None
    try:
        for result in tracker.track(frames, list(prompts), info.num_frames, video_hw, trace=trace):
            low_res = fill_holes(result.low_res_logits, fill_hole_area) if fill_hole_area else result.low_res_logits
            yield FrameOutput(result.frame_idx, names[result.frame_idx], list(result.obj_ids),
                              to_video_resolution(low_res, video_hw),
                              None if replay is None else next(replay))
    finally:
        frames.close()
        if replay is not None:
            replay.close()


def predictor_frames(predictor, source: VideoSource, prompts: Sequence[ObjectPrompt],
                     keep_frames: bool = False) -> Iterator[FrameOutput]:
    """Every frame of `source`, in order, from a video predictor (sam2long.predictor's, or
    anything with sam2's methods): each prompt added in the order given (the objects keep
    the order of their first prompts), then one forward propagation from the earliest
    prompt frame. As in `track_frames`, an object shows from its first prompt frame on:
    the predictor tracks every object from the earliest prompt (as sam2's does), and its
    masks of an object before that object's own first prompt are not handed back.

    Unlike `track_frames`, the predictor holds the whole video, resized to the model's
    input, in memory for the session."""
    info = source.info
    validate_prompts(prompts, (info.height, info.width), info.num_frames,
                     getattr(predictor.backend, "max_clicks", None), several_frames=True)
    state = predictor.init_state(source.path)
    for p in prompts:
        if p.mask is not None:
            predictor.add_new_mask(state, p.frame_idx, p.obj_id, p.mask)
        else:
            predictor.add_new_points_or_box(state, p.frame_idx, p.obj_id, points=p.points, labels=p.labels,
                                            box=p.box)
    starts = first_prompt_frames(prompts)
    first = min(starts.values())
    names = source.frame_names
    replay = prefetch(source.frames(), lambda rgb: rgb) if keep_frames else None
    try:
        for t in range(first):  # no object yet
            yield FrameOutput(t, names[t], [], np.zeros((0, info.height, info.width), np.float32),
                              None if replay is None else next(replay))
        for t, obj_ids, masks in predictor.propagate_in_video(state, start_frame_idx=first):
            shown = [k for k, obj_id in enumerate(obj_ids) if starts[obj_id] <= t]
            logits = masks[shown, 0].float().cpu().numpy()
            yield FrameOutput(t, names[t], [obj_ids[k] for k in shown], logits,
                              None if replay is None else next(replay))
    finally:
        if replay is not None:
            replay.close()
