"""Object prompts (a mask, or clicks and/or a box, on one frame of an object; an object may
have prompts on several frames), and the prompts file that gives them all at once."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from sam2long.engine.errors import SAM2LongError


class PromptError(SAM2LongError, ValueError):
    """A prompt that cannot be tracked; the message names the object and what is wrong."""


@dataclass(frozen=True)
class ObjectPrompt:
    obj_id: int
    frame_idx: int
    mask: np.ndarray | None = None  # bool [H, W] at video resolution
    points: np.ndarray | None = None  # [N, 2] float (x, y) in video pixels
    labels: np.ndarray | None = None  # [N] 1 = positive click, 0 = negative click
    box: np.ndarray | None = None  # [4] x0, y0, x1, y1 in video pixels

    def validate(self, video_hw: tuple[int, int], num_frames: int) -> None:
        h, w = video_hw
        name = f"object {self.obj_id}"
        if not 0 <= self.frame_idx < num_frames:
            raise PromptError(f"{name}: prompt frame {self.frame_idx} is outside the video's "
                              f"frames 0..{num_frames - 1}")
        has_clicks = self.points is not None or self.box is not None
        if (self.mask is None) == (not has_clicks):
            raise PromptError(f"{name}: give either a mask or points/box, not both or neither")
        if self.mask is not None:
            if self.mask.shape != (h, w):
                raise PromptError(f"{name}: mask is {self.mask.shape}, the video is {(h, w)}")
            if not self.mask.any():
                raise PromptError(f"{name}: the prompt mask on frame {self.frame_idx} is empty")
            return
        if self.points is not None:
            pts = np.asarray(self.points, dtype=np.float64)
            if pts.ndim != 2 or pts.shape[1] != 2 or len(pts) == 0:
                raise PromptError(f"{name}: points must be [N, 2] (x, y) pairs")
            if not np.isfinite(pts).all():
                raise PromptError(f"{name}: point coordinates must be finite numbers, got {pts.tolist()}")
            labels = self.labels if self.labels is not None else np.ones(len(pts))
            if len(labels) != len(pts) or not set(np.asarray(labels).tolist()) <= {0, 1}:
                raise PromptError(f"{name}: need one label (1 positive, 0 negative) per point")
            outside = (pts[:, 0] < 0) | (pts[:, 0] >= w) | (pts[:, 1] < 0) | (pts[:, 1] >= h)
            if outside.any():
                raise PromptError(
                    f"{name}: point {pts[outside][0].tolist()} is outside the {w}x{h} frame")
        if self.box is not None:
            box = np.asarray(self.box, dtype=np.float64).reshape(-1)
            if box.shape != (4,) or not np.isfinite(box).all():
                raise PromptError(f"{name}: a box is 4 finite numbers x0 y0 x1 y1, got {box.tolist()}")
            x0, y0, x1, y1 = box.tolist()
            if not (0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h):
                raise PromptError(f"{name}: box {[x0, y0, x1, y1]} must satisfy 0<=x0<x1<={w}, 0<=y0<y1<={h}")

    def click_inputs(self, video_hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        """Points (box corners first, labels 2 and 3, as SAM 2 encodes a box) in video
        pixels and their labels."""
        coords, labels = [], []
        if self.box is not None:
            coords.append(np.asarray(self.box, dtype=np.float32).reshape(2, 2))
            labels.append(np.array([2, 3], dtype=np.int32))
        if self.points is not None:
            pts = np.asarray(self.points, dtype=np.float32).reshape(-1, 2)
            lab = self.labels if self.labels is not None else np.ones(len(pts))
            coords.append(pts)
            labels.append(np.asarray(lab, dtype=np.int32))
        return np.concatenate(coords), np.concatenate(labels)


def validate_prompts(prompts: Sequence[ObjectPrompt], video_hw: tuple[int, int], num_frames: int,
                     max_clicks: int | None = None, several_frames: bool = False) -> None:
    """Every prompt checked against the video, and the object ids unique (with
    `several_frames`, an object may have prompts on several frames, one per frame); with
    `max_clicks` (what a backend's engines take), no prompt has more clicks."""
    if not prompts:
        raise PromptError("nothing to track: no object prompts")
    if several_frames:
        seen = set()
        for prompt in prompts:
            key = (prompt.obj_id, prompt.frame_idx)
            if key in seen:
                raise PromptError(f"object {prompt.obj_id} has two prompts on frame {prompt.frame_idx}: give one "
                                  "prompt per object and frame (its clicks and box together)")
            seen.add(key)
    else:
        ids = [p.obj_id for p in prompts]
        repeated = sorted({i for i in ids if ids.count(i) > 1})
        if repeated:
            raise PromptError(f"object id(s) {repeated} given more than once: each object needs its own id")
    for prompt in prompts:
        prompt.validate(video_hw, num_frames)
        if max_clicks is not None and prompt.mask is None:
            clicks = len(prompt.click_inputs(video_hw)[1])
            if clicks > max_clicks:
                raise PromptError(f"object {prompt.obj_id}: {clicks} clicks (a box counts as two), but the "
                                  f"engines take at most {max_clicks} per object; give fewer clicks or a mask")


def first_prompt_frames(prompts: Sequence[ObjectPrompt]) -> dict[int, int]:
    """Object id -> its first prompt frame (where it starts), in the order the objects
    first appear among `prompts`."""
    starts: dict[int, int] = {}
    for prompt in prompts:
        starts[prompt.obj_id] = min(starts.get(prompt.obj_id, prompt.frame_idx), prompt.frame_idx)
    return starts


def one_frame_per_object(prompts: Sequence[ObjectPrompt]) -> bool:
    return len({p.obj_id for p in prompts}) == len(prompts)


def click_prompt(obj_id: int, frame_idx: int, points=None, labels=None, box=None) -> ObjectPrompt:
    """One object's clicks and/or box as given on a command line or in a prompts file:
    flat or paired coordinates, labels defaulting to positive."""
    name = f"object {obj_id}"
    if points is None and labels is not None:
        raise PromptError(f"{name}: labels need points")
    if points is None and box is None:
        raise PromptError(f"{name}: give its points and/or box")
    pts = lab = None
    if points is not None:
        flat = np.asarray(points, dtype=np.float64).reshape(-1)
        if flat.size == 0 or flat.size % 2:
            raise PromptError(f"{name}: points need x y pairs, got {flat.size} numbers")
        pts = flat.reshape(-1, 2)
        lab = np.asarray(labels if labels is not None else [1] * len(pts), dtype=np.int64).reshape(-1)
        if len(lab) != len(pts):
            raise PromptError(f"{name}: {len(lab)} labels for {len(pts)} points (one per point: 1 or 0)")
    return ObjectPrompt(int(obj_id), int(frame_idx), points=pts, labels=lab,
                        box=None if box is None else np.asarray(box, dtype=np.float64))


PROMPT_FILE_HELP = """\
A prompts file is JSON: a list of prompts (or {"objects": [...]}), each
  {"id": 1, "frame": 0, "points": [[x, y], ...], "labels": [1, 0, ...], "box": [x0, y0, x1, y1],
   "mask": "path/to/mask.png"}
with "points" and/or "box", or "mask" (a PNG whose non-zero pixels are the object; a path
relative to the file's folder). "frame" (default 0) is the frame the prompt is on;
"labels" default to positive clicks. An object may have prompts on several frames: one
entry per frame, with the same "id" (then every entry needs its "id"); the object starts
on its first prompt frame."""


def load_prompt_file(path: str) -> list[ObjectPrompt]:
    """The objects of a prompts file (see PROMPT_FILE_HELP); errors name the file and object."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except OSError as e:
        raise PromptError(f"cannot read prompts file {path}: {e.strerror or e}") from e
    except ValueError as e:
        raise PromptError(f"prompts file {path} is not valid JSON: {e}") from e
    items = data.get("objects") if isinstance(data, dict) else data
    if not isinstance(items, list) or not items:
        raise PromptError(f"prompts file {path}: expected a non-empty list of objects.\n{PROMPT_FILE_HELP}")
    prompts, implicit = [], []
    for index, item in enumerate(items):
        where = f"prompts file {path}, object #{index + 1}"
        if not isinstance(item, dict):
            raise PromptError(f"{where}: expected an object like {{\"id\": 1, \"points\": ...}}")
        unknown = sorted(set(item) - {"id", "frame", "points", "labels", "box", "mask"})
        if unknown:
            raise PromptError(f"{where}: unknown keys {unknown}.\n{PROMPT_FILE_HELP}")
        if "id" not in item:
            implicit.append(index)
        try:
            obj_id, frame = int(item.get("id", index + 1)), int(item.get("frame", 0))
        except (TypeError, ValueError) as e:
            raise PromptError(f"{where}: id and frame must be integers ({e})") from e
        try:
            if "mask" in item:
                if any(k in item for k in ("points", "labels", "box")):
                    raise PromptError(f"object {obj_id}: give either a mask or points/box, not both")
                prompts.append(ObjectPrompt(obj_id, frame, mask=_read_mask(path, item["mask"], obj_id)))
            else:
                prompts.append(click_prompt(obj_id, frame, item.get("points"), item.get("labels"),
                                            item.get("box")))
        except (TypeError, ValueError) as e:
            if isinstance(e, PromptError):
                raise PromptError(f"prompts file {path}: {e}") from e
            raise PromptError(f"{where}: malformed numbers ({e})") from e
    ids = [p.obj_id for p in prompts]
    for index in implicit:
        # An entry's default id (its position) must not silently join another entry's object.
        if ids.count(ids[index]) > 1:
            raise PromptError(f"prompts file {path}, object #{index + 1}: it has no \"id\" and its default id "
                              f"{ids[index]} is another entry's too; when an object has prompts on several "
                              "frames, give every entry its \"id\"")
    return prompts


def _mask_file(prompt_file: str, mask_path) -> str:
    return os.path.join(os.path.dirname(os.path.abspath(prompt_file)), str(mask_path))


def prompt_file_inputs(path: str) -> list[str]:
    """The files a prompts file makes a run read: itself and the mask PNGs it names (a run's
    outputs must replace none of them). Read after load_prompt_file accepted the file."""
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    items = data.get("objects") if isinstance(data, dict) else data
    return [path, *(_mask_file(path, item["mask"]) for item in items if "mask" in item)]


def _read_mask(prompt_file: str, mask_path: str, obj_id: int) -> np.ndarray:
    from sam2long.runtime.image_io import load_palette_png

    full = _mask_file(prompt_file, mask_path)
    labels, _ = load_palette_png(full, video=None)
    return labels > 0
