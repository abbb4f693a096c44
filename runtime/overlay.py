"""Draw object masks over a frame: a translucent fill and a solid outline per object."""

from __future__ import annotations

import numpy as np

from runtime.vos_dataset import DAVIS_PALETTE

PALETTE = np.frombuffer(DAVIS_PALETTE, dtype=np.uint8).reshape(-1, 3)


def object_colour(obj_id: int) -> np.ndarray:
    return PALETTE[1 + (obj_id - 1) % (len(PALETTE) - 1)].astype(np.float32)


def _outline(mask: np.ndarray, width: int = 2) -> np.ndarray:
    """Pixels of `mask` within `width` pixels of its border (4-neighbour erosion)."""
    inner = mask.copy()
    for _ in range(width):
        shrunk = inner.copy()
        shrunk[1:] &= inner[:-1]
        shrunk[:-1] &= inner[1:]
        shrunk[:, 1:] &= inner[:, :-1]
        shrunk[:, :-1] &= inner[:, 1:]
        inner = shrunk
    return mask & ~inner


def overlay_masks(rgb: np.ndarray, masks: dict[int, np.ndarray], alpha: float = 0.45) -> np.ndarray:
    """rgb uint8 [H, W, 3] + {obj_id: bool [H, W]} -> uint8 [H, W, 3]."""
    out = rgb.astype(np.float32)
    for obj_id, mask in masks.items():
        colour = object_colour(obj_id)
        out[mask] = (1 - alpha) * out[mask] + alpha * colour
        out[_outline(mask)] = colour
    return out.clip(0, 255).astype(np.uint8)
