"""Draw object masks over a frame: per object a translucent fill in its own colour, a solid
outline, and its id in a tag at the mask's top-left corner (so objects can be told apart
even where colours are close)."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from sam2long.runtime.image_io import DAVIS_PALETTE

PALETTE = np.frombuffer(DAVIS_PALETTE, dtype=np.uint8).reshape(-1, 3)


def object_colour(obj_id: int) -> np.ndarray:
    """The DAVIS palette colour of `obj_id` (as in the PNG masks), black skipped."""
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


def _font(height: int):
    size = max(10, min(28, height // 24))
    try:
        return ImageFont.load_default(size)
    except TypeError:  # Pillow without FreeType sizes
        return ImageFont.load_default()


def _draw_tags(out: np.ndarray, masks: dict[int, np.ndarray]) -> np.ndarray:
    image = Image.fromarray(out)
    draw = ImageDraw.Draw(image)
    font = _font(out.shape[0])
    for obj_id, mask in masks.items():
        ys, xs = np.nonzero(mask)
        if len(ys) == 0:
            continue
        text = str(obj_id)
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        w, h = right - left + 6, bottom - top + 4
        x = int(min(max(xs.min(), 0), out.shape[1] - w))
        y = int(min(max(ys.min() - h, 0), out.shape[0] - h))
        colour = tuple(int(c) for c in object_colour(obj_id))
        draw.rectangle((x, y, x + w - 1, y + h - 1), fill=colour, outline=(255, 255, 255))
        draw.text((x + 3 - left, y + 2 - top), text, fill=(255, 255, 255), font=font)
    return np.asarray(image)


def overlay_masks(rgb: np.ndarray, masks: dict[int, np.ndarray], alpha: float = 0.45,
                  tags: bool = True) -> np.ndarray:
    """rgb uint8 [H, W, 3] + {obj_id: bool [H, W]} -> uint8 [H, W, 3]."""
    out = rgb.astype(np.float32)
    for obj_id, mask in masks.items():
        colour = object_colour(obj_id)
        out[mask] = (1 - alpha) * out[mask] + alpha * colour
        out[_outline(mask)] = colour
    out = out.clip(0, 255).astype(np.uint8)
    return _draw_tags(out, masks) if tags else out
