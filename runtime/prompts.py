"""Object prompts (a mask, or clicks and/or a box, on the object's start frame)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


class PromptError(ValueError):
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
            raise PromptError(f"{name}: prompt frame {self.frame_idx} is outside 0..{num_frames - 1}")
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
            labels = self.labels if self.labels is not None else np.ones(len(pts))
            if len(labels) != len(pts) or not set(np.asarray(labels).tolist()) <= {0, 1}:
                raise PromptError(f"{name}: need one label (1 positive, 0 negative) per point")
            outside = (pts[:, 0] < 0) | (pts[:, 0] >= w) | (pts[:, 1] < 0) | (pts[:, 1] >= h)
            if outside.any():
                raise PromptError(
                    f"{name}: point {pts[outside][0].tolist()} is outside the {w}x{h} frame")
        if self.box is not None:
            x0, y0, x1, y1 = np.asarray(self.box, dtype=np.float64).tolist()
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
