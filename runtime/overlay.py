"""Draw object masks over a frame: per object a translucent fill in its own colour, a solid
outline, and its id in a tag (so objects can be told apart even where colours are close).

The tag sits just above the object's largest connected piece (stray pixels elsewhere do not
move it), or on that piece when there is no room above; tags never cover each other and
always stay inside the frame. The colours are saturated and far apart in hue and brightness,
with no grey, so they show on dark, bright and grey frames alike; a tag's text is black or
white, whichever reads on its colour.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

# Saturated colours, neighbours far apart (no grey, white or black: those vanish on some
# frames). The PNG masks keep the DAVIS palette; this one is only for drawing.
OVERLAY_PALETTE = np.array([
    (230, 25, 75), (60, 180, 75), (0, 130, 200), (255, 225, 25), (245, 130, 48), (145, 30, 180),
    (70, 240, 240), (240, 50, 230), (210, 245, 60), (0, 128, 128), (170, 110, 40), (128, 0, 0),
    (0, 0, 128), (255, 105, 180), (128, 128, 0), (100, 255, 150),
], dtype=np.uint8)
TAG_GAP = 2  # pixels kept between tags


def object_colour(obj_id: int) -> np.ndarray:
    """The overlay colour of `obj_id` (ids 1.. cycle through OVERLAY_PALETTE)."""
    return OVERLAY_PALETTE[(obj_id - 1) % len(OVERLAY_PALETTE)].astype(np.float32)


def text_colour(colour) -> tuple[int, int, int]:
    """Black on light colours, white on dark ones (relative luminance, sRGB weights)."""
    r, g, b = (float(c) for c in colour)
    return (0, 0, 0) if 0.2126 * r + 0.7152 * g + 0.0722 * b > 140 else (255, 255, 255)


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


def largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest 8-connected piece of a bool mask (all False when empty). Labels runs of
    each row and joins runs that touch across rows (union-find over runs, not pixels: a mask
    has a few runs per row, so this is fast in plain numpy + Python)."""
    h, w = mask.shape
    padded = np.zeros((h, w + 2), np.int8)
    padded[:, 1:-1] = mask
    edges = np.diff(padded, axis=1)
    rows_s, starts = np.nonzero(edges == 1)
    _, ends = np.nonzero(edges == -1)  # exclusive; same row order as starts
    if len(starts) == 0:
        return np.zeros_like(mask, dtype=bool)
    parent = list(range(len(starts)))

    def find(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    row_first = np.searchsorted(rows_s, np.arange(h + 1))
    for r in range(1, h):
        a, a_end = row_first[r - 1], row_first[r]
        b, b_end = row_first[r], row_first[r + 1]
        while a < a_end and b < b_end:  # runs of both rows in x order: merge-walk
            if starts[a] <= ends[b] and starts[b] <= ends[a]:  # touch, diagonals included
                ra, rb = find(a), find(b)
                if ra != rb:
                    parent[ra] = rb
            if ends[a] < ends[b]:
                a += 1
            else:
                b += 1
    roots = np.array([find(i) for i in range(len(starts))])
    sizes = np.bincount(roots, weights=ends - starts)
    keep = np.flatnonzero(roots == np.argmax(sizes))
    out = np.zeros_like(mask, dtype=bool)
    for i in keep:
        out[rows_s[i], starts[i]:ends[i]] = True
    return out


def _overlaps(box, placed) -> bool:
    x, y, w, h = box
    return any(x < px + pw + TAG_GAP and px < x + w + TAG_GAP and y < py + ph + TAG_GAP and py < y + h + TAG_GAP
               for px, py, pw, ph in placed)


def place_tags(masks: dict[int, np.ndarray], sizes: dict[int, tuple[int, int]],
               shape: tuple[int, int]) -> dict[int, tuple[int, int, int, int]]:
    """{obj_id: (x, y, w, h)} for each non-empty mask's tag of size `sizes[obj_id]` (w, h) in
    a frame of `shape` (H, W): above the largest piece's top, centred on it; else on the
    piece's middle; else below it; the first of those that is free of the tags placed so far,
    else the nearest free spot stepping away from the first. Always inside the frame."""
    height, width = shape
    placed: dict[int, tuple[int, int, int, int]] = {}
    for obj_id in sorted(masks):
        piece = largest_component(masks[obj_id])
        ys, xs = np.nonzero(piece)
        if len(ys) == 0:
            continue
        w, h = sizes[obj_id]
        w, h = min(w, width), min(h, height)
        top = ys.min()
        top_xs = xs[ys == top]
        cx = int(round((top_xs.min() + top_xs.max()) / 2))
        # the piece's pixel nearest its centroid: a point on it even for rings and crescents
        near = np.argmin((ys - ys.mean()) ** 2 + (xs - xs.mean()) ** 2)
        candidates = [(cx - w // 2, top - h - 1), (int(xs[near]) - w // 2, int(ys[near]) - h // 2),
                      (cx - w // 2, ys.max() + 2)]

        def clamp(x, y):
            return (int(min(max(x, 0), width - w)), int(min(max(y, 0), height - h)), w, h)

        boxes = [clamp(x, y) for x, y in candidates]
        box = next((b for b in boxes if not _overlaps(b, placed.values())), None)
        if box is None:  # step away from the first choice, nearest first, until free
            x0, y0 = boxes[0][:2]
            steps = [(dx, dy) for dy in range(-height, height + 1, h + TAG_GAP)
                     for dx in range(-width, width + 1, max(1, w // 2))]
            steps.sort(key=lambda d: d[0] ** 2 + d[1] ** 2)
            box = next((b for b in (clamp(x0 + dx, y0 + dy) for dx, dy in steps)
                        if not _overlaps(b, placed.values())), boxes[0])
        placed[obj_id] = box
    return placed


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
    texts = {obj_id: str(obj_id) for obj_id in masks}
    bboxes = {obj_id: draw.textbbox((0, 0), text, font=font) for obj_id, text in texts.items()}
    sizes = {obj_id: (r - l + 6, b - t + 4) for obj_id, (l, t, r, b) in bboxes.items()}
    for obj_id, (x, y, w, h) in place_tags(masks, sizes, out.shape[:2]).items():
        colour = tuple(int(c) for c in object_colour(obj_id))
        ink = text_colour(colour)
        draw.rectangle((x, y, x + w - 1, y + h - 1), fill=colour, outline=ink)
        left, top = bboxes[obj_id][:2]
        draw.text((x + 3 - left, y + 2 - top), texts[obj_id], fill=ink, font=font)
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
