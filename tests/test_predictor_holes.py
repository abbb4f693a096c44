"""Hole filling as sam2 defines it (its CUDA extension's 8-connected components), checked
against a plain breadth-first labelling."""

from collections import deque

import numpy as np
import torch

from sam2long.runtime.postprocess import fill_small_holes


def components_bfs(background: np.ndarray):
    """labels (1.. per 8-connected region, 0 elsewhere) and each pixel's region area."""
    h, w = background.shape
    labels = np.zeros((h, w), np.int64)
    areas = np.zeros((h, w), np.int64)
    count = 0
    for y0 in range(h):
        for x0 in range(w):
            if not background[y0, x0] or labels[y0, x0]:
                continue
            count += 1
            labels[y0, x0] = count
            queue, members = deque([(y0, x0)]), []
            while queue:
                y, x = queue.popleft()
                members.append((y, x))
                for dy in (-1, 0, 1):
                    for dx in (-1, 0, 1):
                        v, u = y + dy, x + dx
                        if 0 <= v < h and 0 <= u < w and background[v, u] and not labels[v, u]:
                            labels[v, u] = count
                            queue.append((v, u))
            for y, x in members:
                areas[y, x] = len(members)
    return labels, areas


def fill_reference(masks: torch.Tensor, max_area: int) -> torch.Tensor:
    out = masks.clone()
    for i in range(masks.shape[0]):
        labels, areas = components_bfs((masks[i, 0] <= 0).numpy())
        hole = torch.from_numpy((labels > 0) & (areas <= max_area))
        out[i, 0] = torch.where(hole, 0.1, masks[i, 0])
    return out


def test_small_background_regions_are_filled_exactly_as_sam2_defines_them():
    gen = torch.Generator().manual_seed(0)
    # Sparse foreground speckle, dense foreground with scattered background, and a snake.
    masks = torch.cat([
        torch.where(torch.rand(3, 1, 24, 20, generator=gen) < p, -1.0, 1.0) for p in (0.2, 0.5, 0.8)])
    snake = torch.ones(1, 1, 24, 20)
    snake[0, 0, 1::4, 1:19] = -1  # long thin background runs: more than 8 pixels, not holes
    snake[0, 0, 3, 5] = snake[0, 0, 11, 3] = -2  # ... and two single-pixel holes beside them
    masks = torch.cat([masks, snake])
    for max_area in (1, 3, 8):
        np.testing.assert_array_equal(fill_small_holes(masks, max_area).numpy(),
                                      fill_reference(masks, max_area).numpy())
    filled = fill_small_holes(snake, 8)
    assert filled[0, 0, 1, 5] == -1 and abs(float(filled[0, 0, 11, 3]) - 0.1) < 1e-6
