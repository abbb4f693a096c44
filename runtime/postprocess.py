"""Low-res mask logits -> video resolution, as SAM 2 does (bilinear, align_corners=False)."""

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
