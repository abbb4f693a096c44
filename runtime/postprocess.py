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


def fill_small_holes(masks: torch.Tensor, max_area: int) -> torch.Tensor:
    """sam2's `fill_holes_in_mask_scores` without its CUDA extension: every 8-connected
    background region (logit <= 0) of at most `max_area` pixels becomes 0.1.

    A region of n pixels is at most n - 1 steps across, so after max_area - 1 rounds of
    "take the smallest label among the 8 neighbours" each small region holds one label; a
    label whose pixels border another label is part of a larger region still spreading."""
    background = masks <= 0  # [B, 1, h, w]
    b, _, h, w = masks.shape
    index = torch.arange(1, h * w + 1, dtype=torch.float32, device=masks.device).view(1, 1, h, w)
    none = torch.tensor(float("-inf"), device=masks.device)
    label = torch.where(background, -index, none)  # max-pooling the negated labels: the smallest
    for _ in range(max_area - 1):
        label = torch.where(background, F.max_pool2d(label, 3, 1, 1), none)
    highest = F.max_pool2d(label, 3, 1, 1)
    lowest = -F.max_pool2d(torch.where(background, -label, none), 3, 1, 1)
    open_pixel = background & ((highest != label) | (lowest != label))
    ids = torch.where(background, -label, 0).long().view(b, -1)  # 0: foreground
    area = torch.zeros(b, h * w + 1, device=masks.device).scatter_add_(1, ids, background.view(b, -1).float())
    open_label = torch.zeros(b, h * w + 1, device=masks.device).scatter_reduce_(
        1, ids, open_pixel.view(b, -1).float(), "amax")
    hole = background.view(b, -1) & (area.gather(1, ids) <= max_area) & (open_label.gather(1, ids) == 0)
    return torch.where(hole.view_as(masks), HOLE_SCORE, masks)


def fill_holes(low_res_logits: np.ndarray, max_area: int) -> np.ndarray:
    """fill_small_holes for [N, h, w] float32 arrays (the batch tools' output masks)."""
    if low_res_logits.shape[0] == 0 or max_area <= 0:
        return low_res_logits
    masks = torch.from_numpy(np.ascontiguousarray(low_res_logits, dtype=np.float32))[:, None]
    return fill_small_holes(masks, max_area)[:, 0].numpy()
