"""Low-res mask logits -> video resolution, as SAM 2 does (bilinear, align_corners=False), and
SAM 2's optional hole filling."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def to_video_resolution(low_res_logits: np.ndarray, video_hw: tuple[int, int]) -> np.ndarray:
    """[N, h, w] float32 -> [N, H, W] float32 logits."""
    if low_res_logits.shape[0] == 0:
        return np.zeros((0, *video_hw), np.float32)
    x = torch.from_numpy(np.ascontiguousarray(low_res_logits, dtype=np.float32))[:, None]
    return F.interpolate(x, size=video_hw, mode="bilinear", align_corners=False)[:, 0].numpy()


HOLE_SCORE = 0.1  # what sam2 writes into a filled hole: just above the 0 threshold


def fill_holes(low_res_logits: np.ndarray, max_area: int) -> np.ndarray:
    """sam2's `fill_holes_in_mask_scores`: every 8-connected background region (logit <= 0)
    of at most `max_area` pixels, in each [h, w] mask of `low_res_logits` [N, h, w], gets the
    score 0.1. Exact, without sam2's CUDA extension.

    Labels spread through the background by 3x3 max-pooling: after `max_area - 1` steps a
    region that small holds one label everywhere (its geodesic diameter is below its area).
    A label whose pixels see no other label among their background neighbours is a whole
    region, so only whole regions are measured, and a part of a larger one never is."""
    if low_res_logits.shape[0] == 0 or max_area <= 0:
        return low_res_logits
    logits = torch.from_numpy(np.ascontiguousarray(low_res_logits, dtype=np.float32))
    n, h, w = logits.shape
    background = (logits <= 0)[:, None]
    # One unique label per pixel, 1-based (float64: exact for any number of pixels).
    ids = torch.arange(1, n * h * w + 1, dtype=torch.float64).reshape(n, 1, h, w)
    labels = torch.where(background, ids, torch.zeros_like(ids))
    for _ in range(max_area - 1):
        labels = torch.where(background, F.max_pool2d(labels, 3, 1, 1), labels)
    # The smallest background label around each pixel (foreground reads as +inf).
    spread = torch.where(background, labels, torch.full_like(labels, float("inf")))
    lowest = -F.max_pool2d(-spread, 3, 1, 1)
    highest = F.max_pool2d(labels, 3, 1, 1)
    mixed = background & ((lowest != labels) | (highest != labels))
    flat = labels[background].long()
    size = torch.bincount(flat, minlength=n * h * w + 1)
    open_region = torch.bincount(labels[mixed].long(), minlength=n * h * w + 1) > 0
    small = (size > 0) & (size <= max_area) & ~open_region
    hole = background & small[labels.long()]
    return torch.where(hole[:, 0], torch.tensor(HOLE_SCORE), logits).numpy()
