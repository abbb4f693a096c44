"""The J/F building blocks against plain reference implementations of their definitions:
seg2bmap boundaries, disk dilation as OpenCV anchors it, DAVIS's decay quarters, and SciPy's
assignment on tie-heavy matrices."""

import json
import math

import numpy as np
import pytest

from tests.conftest import ROOT
from sam2long.tools.evaluation.assignment import linear_sum_assignment
from sam2long.tools.evaluation.metrics import (Boundary, boundary_f, count_matched, davis_radius, decay_quarters,
                                      disk_kernel, label_boundaries, mean_recall_decay)


def reference_boundary(seg: np.ndarray) -> np.ndarray:
    """seg2bmap's rule, pixel by pixel: differs from its east, south or south-east neighbour
    inside the image; on the last row only east counts, in the last column only south, and the
    bottom-right pixel is never a boundary."""
    h, w = seg.shape
    out = np.zeros((h, w), bool)
    for y in range(h):
        for x in range(w):
            if y == h - 1 and x == w - 1:
                continue
            if y == h - 1:
                neighbours = [(y, x + 1)]
            elif x == w - 1:
                neighbours = [(y + 1, x)]
            else:
                neighbours = [(y, x + 1), (y + 1, x), (y + 1, x + 1)]
            out[y, x] = any(seg[ny, nx] != seg[y, x] for ny, nx in neighbours)
    return out


def reference_dilate(image: np.ndarray, radius: float) -> np.ndarray:
    """Dilation by scikit-image's disk(radius), with OpenCV's centre anchor and constant border:
    out[p] is set when image[p + (i - a, j - a)] is set for a footprint element (i, j)."""
    grid = np.arange(-radius, radius + 1)
    footprint = grid[None, :] ** 2 + grid[:, None] ** 2 <= radius ** 2
    a = len(grid) // 2
    h, w = image.shape
    out = np.zeros_like(image)
    for i, j in zip(*np.nonzero(footprint)):
        dy, dx = i - a, j - a
        if abs(dy) >= h or abs(dx) >= w:
            continue
        src = image[max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)]
        out[max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)] |= src
    return out


def _random_labels(rng, h, w):
    labels = np.zeros((h, w), np.uint8)
    for k in (1, 2, 3):
        for _ in range(int(rng.integers(0, 3))):
            y, x = rng.integers(0, h), rng.integers(0, w)
            labels[y:y + rng.integers(1, 12), x:x + rng.integers(1, 12)] = k
    labels[rng.random((h, w)) < 0.05] = rng.integers(0, 4)
    return labels


def _points(mask):
    ys, xs = np.nonzero(mask)
    return Boundary(ys.astype(np.int64), xs.astype(np.int64))


def test_label_boundaries_follow_seg2bmap_including_thin_images():
    rng = np.random.default_rng(0)
    shapes = [(1, 1), (1, 9), (9, 1), (2, 2), (2, 7)] + [tuple(rng.integers(3, 25, 2)) for _ in range(40)]
    for h, w in shapes:
        labels = _random_labels(rng, h, w)
        bounds = label_boundaries(labels, [1, 2, 3, 9])
        for k in (1, 2, 3, 9):
            expected = _points(reference_boundary(labels == k))
            assert np.array_equal(bounds[k].ys, expected.ys) and np.array_equal(bounds[k].xs, expected.xs), (h, w, k)


@pytest.mark.parametrize("radius", [1.0, 2.0, 3.0, 8.0, 0.64, 2.5, 3.7, 7.8369, 1.3])
def test_matching_counts_equal_a_dilation(radius):
    rng = np.random.default_rng(int(radius * 100))
    kernel = disk_kernel(radius)
    for _ in range(15):
        h, w = rng.integers(5, 40, 2)
        a, b = rng.random((h, w)) < 0.08, rng.random((h, w)) < 0.08
        expected = int((a & reference_dilate(b, radius)).sum())
        assert count_matched(_points(a), _points(b), kernel) == expected


def test_disk_shapes():
    cross = disk_kernel(1.0)
    assert cross.dy.tolist() == [-1, 0, 1] and cross.dx_lo.tolist() == [0, -1, 0] and cross.dx_hi.tolist() == [0, 1, 0]
    davis_480p = disk_kernel(davis_radius((480, 854)))
    assert davis_radius((480, 854)) == 8.0 and davis_480p.dy.tolist() == list(range(-8, 9))
    lopsided = disk_kernel(0.008 * math.hypot(480, 854))  # MOSEv2's radius without the ceil
    assert lopsided.dy.tolist() == list(range(-7, 8))  # its grid -7.84..8.16 is off-centre
    assert (lopsided.dx_lo != -lopsided.dx_hi).any()
    # No grid point within radius 0.4: OpenCV then shifts by the anchor (seen with 4.11 and 5.0).
    empty = disk_kernel(0.4)
    assert (empty.dy.tolist(), empty.dx_lo.tolist(), empty.dx_hi.tolist()) == ([-1], [-1], [-1])


def test_boundary_f_conventions():
    kernel = disk_kernel(1.0)
    empty = Boundary(np.zeros(0, np.int64), np.zeros(0, np.int64))
    some = _points(np.eye(4, dtype=bool))
    assert boundary_f(empty, empty, kernel) == 1.0
    assert boundary_f(some, empty, kernel) == 0.0 and boundary_f(empty, some, kernel) == 0.0
    assert boundary_f(some, some, kernel) == 1.0


def test_decay_quarters_wrap_as_uint8():
    values = np.linspace(1.0, 0.0, 10)
    first, last = decay_quarters(10, wrap_uint8=True)
    assert (first, last) == (slice(0, 3), slice(7, 10))  # edges 0, 2, 5, 7, 9
    assert mean_recall_decay(values)[2] == pytest.approx(values[0:3].mean() - values[7:10].mean())
    for n in (256, 260, 300):  # past 255 the official edges wrap: the last quarter is empty
        assert math.isnan(mean_recall_decay(np.ones(n))[2])
        assert mean_recall_decay(np.ones(n), wrap_uint8=False)[2] == 0.0
    assert mean_recall_decay(np.ones(255))[2] == 0.0
    mean, recall, decay = mean_recall_decay(np.array([0.4, 0.6, 1.0]))
    assert mean == pytest.approx(2 / 3) and recall == pytest.approx(2 / 3)


def test_assignment_matches_scipy_on_ties():
    data = json.loads((ROOT / "tests" / "data" / "evaluation" / "assignment_scipy.json").read_text())
    assert len(data["cases"]) >= 100
    for case in data["cases"]:
        rows, cols = linear_sum_assignment(np.array(case["cost"]))
        assert rows.tolist() == case["rows"] and cols.tolist() == case["cols"], case["cost"]
