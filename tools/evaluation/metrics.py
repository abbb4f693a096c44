"""Region (J) and boundary (F) measures, computed the way the official VOS tools do.

Every official tool (DAVIS 2017, SA-V, LVOS, MOSEv2) scores a frame the same way at heart:

* J: intersection over union of the object's masks; 1 when both are empty.
* F: boundary precision/recall. A mask's boundary is David Martin's `seg2bmap` (a pixel is on
  the boundary when it differs from its east, south or south-east neighbour, with special rules
  on the last row and column). A boundary pixel counts as matched when the other mask's boundary
  has a pixel inside a tolerance disk around it: scikit-image's `disk(radius)` used as an OpenCV
  `dilate` kernel, of radius `ceil(0.008 * image diagonal)` (MOSEv2 also uses other radii,
  some of them not integers).

The official tools build full-frame boundary images and dilate them. Here a boundary is kept as
its pixel coordinates (a few thousand at most), and "is there a boundary pixel of the other mask
inside the kernel" is answered by a binary search per kernel row: the same set, at a fraction of
the cost, with no OpenCV or scikit-image. All arithmetic that produces a score is done in the
same float64 order as the official code, so scores agree to the last bit.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Iterable

import numpy as np

#: DAVIS's boundary tolerance, as a fraction of the image diagonal.
BOUNDARY_FRACTION = 0.008


def image_diagonal(shape: tuple[int, ...]) -> float:
    """Length of the image diagonal (what `np.linalg.norm(mask.shape)` gives for a 2-D mask)."""
    height, width = shape[-2:]
    return math.sqrt(height * height + width * width)


def davis_radius(shape: tuple[int, ...]) -> float:
    """The official boundary tolerance in pixels: ceil(0.008 * diagonal), a float like theirs."""
    return float(np.ceil(BOUNDARY_FRACTION * image_diagonal(shape)))


@dataclass(frozen=True)
class Kernel:
    """A dilation kernel as row spans: offset (dy, dx) is in it when dx_lo[i] <= dx <= dx_hi[i]
    for the row i with dy[i] == dy. Offsets are relative to OpenCV's default anchor (the centre
    element, `size // 2`), which is what makes a non-integer-radius disk lopsided."""

    dy: np.ndarray
    dx_lo: np.ndarray
    dx_hi: np.ndarray

    @property
    def reach(self) -> int:
        """The largest |dx| in the kernel."""
        return int(max(np.abs(self.dx_lo).max(), np.abs(self.dx_hi).max()))


@functools.lru_cache(maxsize=64)
def disk_kernel(radius: float) -> Kernel:
    """scikit-image's `disk(radius)` (strict radius), as row spans around OpenCV's anchor.

    The footprint samples the grid `np.arange(-radius, radius + 1)` in both directions and keeps
    the points with x**2 + y**2 <= radius**2. For a non-integer radius the grid is not centred
    on 0, so the kernel is not symmetric; OpenCV then anchors it at its centre element anyway.
    """
    grid = np.arange(-radius, radius + 1)
    squares = grid ** 2
    inside = (squares[None, :] + squares[:, None]) <= radius ** 2
    anchor = len(grid) // 2
    dy, lo, hi = [], [], []
    for row in range(len(grid)):
        cols = np.flatnonzero(inside[row])
        if cols.size == 0:
            continue
        # A disk meets a grid row in one run of columns; a hole would break the span form.
        assert cols[-1] - cols[0] + 1 == cols.size, "disk rows are contiguous"
        dy.append(row - anchor)
        lo.append(cols[0] - anchor)
        hi.append(cols[-1] - anchor)
    if not dy:
        # Radii below ~0.586 (MOSEv2 on images under ~73 px of diagonal) sample no grid point.
        # OpenCV then dilates as if the top-left element alone were set: a shift by the anchor.
        return Kernel(np.array([-anchor]), np.array([-anchor]), np.array([-anchor]))
    return Kernel(np.array(dy, np.int64), np.array(lo, np.int64), np.array(hi, np.int64))


@dataclass(frozen=True)
class Boundary:
    """The boundary pixels of one mask, in row-major order."""

    ys: np.ndarray
    xs: np.ndarray

    def __len__(self) -> int:
        return int(self.ys.size)


_EMPTY = Boundary(np.zeros(0, np.int64), np.zeros(0, np.int64))


def label_boundaries(labels: np.ndarray, ids: Iterable[int]) -> dict[int, Boundary]:
    """`seg2bmap(labels == k)` for each k in `ids`, from one pass over the label image.

    A pixel is on object k's boundary when it and one of the neighbours that count differ in
    "is k". So it is enough to find the pixels that differ from a counted neighbour at all
    (few), and then ask, per object, whether the pixel or that neighbour is k. The neighbours
    that count: east, south and south-east inside the image; only east on the last row; only
    south in the last column; none in the bottom-right corner (seg2bmap's rules).
    """
    ids = list(ids)
    if not ids:
        return {}
    height, width = labels.shape
    if height < 2 or width < 2:
        return {k: _boundary_of_thin_image(labels == k) for k in ids}
    inner = labels[:-1, :-1]
    change = np.zeros((height, width), dtype=bool)
    change[:-1, :-1] = (inner != labels[:-1, 1:]) | (inner != labels[1:, :-1]) | (inner != labels[1:, 1:])
    change[-1, :-1] = labels[-1, :-1] != labels[-1, 1:]
    change[:-1, -1] = labels[:-1, -1] != labels[1:, -1]
    ys, xs = np.nonzero(change)
    if ys.size == 0:
        return {k: _EMPTY for k in ids}
    own = labels[ys, xs]
    last_row = ys == height - 1
    last_col = xs == width - 1
    east = np.where(last_col, own, labels[ys, np.minimum(xs + 1, width - 1)])
    south = np.where(last_row, own, labels[np.minimum(ys + 1, height - 1), xs])
    south_east = np.where(last_row | last_col, own,
                          labels[np.minimum(ys + 1, height - 1), np.minimum(xs + 1, width - 1)])
    out = {}
    for k in ids:
        on = (own == k) | (east == k) | (south == k) | (south_east == k)
        out[k] = Boundary(ys[on].astype(np.int64), xs[on].astype(np.int64))
    return out


def _boundary_of_thin_image(seg: np.ndarray) -> Boundary:
    """seg2bmap on a one-row or one-column image, where the general rules overlap."""
    height, width = seg.shape
    b = np.zeros_like(seg)
    if height == 1 and width == 1:
        return _EMPTY
    if height == 1:  # the last row: east neighbour only; the last pixel is the corner
        b[0, :-1] = seg[0, :-1] != seg[0, 1:]
    else:  # the last column: south neighbour only
        b[:-1, 0] = seg[:-1, 0] != seg[1:, 0]
    ys, xs = np.nonzero(b)
    return Boundary(ys.astype(np.int64), xs.astype(np.int64))


def count_matched(points: Boundary, targets: Boundary, kernel: Kernel) -> int:
    """How many of `points` are set in `cv2.dilate(image of targets, kernel)`.

    OpenCV sets pixel p when some target lies at p + offset for an offset of the kernel; with
    row spans that is: for some kernel row dy, a target in row p.y + dy with x in
    [p.x + dx_lo, p.x + dx_hi]. Targets are keyed `y * stride + x` (sorted, since they come in
    row-major order) with a stride wide enough that no span reaches into another row, so each
    (point, kernel row) pair is one binary search.
    """
    if len(points) == 0 or len(targets) == 0 or kernel.dy.size == 0:
        return 0
    reach = kernel.reach
    stride = int(max(points.xs.max(), targets.xs.max())) + reach + 2
    keys = targets.ys * stride + targets.xs
    rows = (points.ys[None, :] + kernel.dy[:, None]) * stride
    lo = rows + points.xs[None, :] + kernel.dx_lo[:, None]
    hi = rows + points.xs[None, :] + kernel.dx_hi[:, None]
    at = np.searchsorted(keys, lo.ravel())
    found = keys[np.minimum(at, keys.size - 1)] <= hi.ravel()
    found &= at < keys.size
    return int(found.reshape(lo.shape).any(axis=0).sum())


def boundary_f(pred: Boundary, gt: Boundary, kernel: Kernel) -> float:
    """The official F for one frame: 2PR/(P+R) with their conventions for empty boundaries
    (both empty: 1; one empty: 0)."""
    n_fg, n_gt = len(pred), len(gt)
    if n_fg == 0 and n_gt == 0:
        return 1.0
    if n_fg == 0 or n_gt == 0:
        return 0.0
    precision = count_matched(pred, gt, kernel) / float(n_fg)
    recall = count_matched(gt, pred, kernel) / float(n_gt)
    if precision + recall == 0:
        return 0.0
    return 2 * precision * recall / (precision + recall)


def jaccard(intersection: int, union: int) -> float:
    """IoU with DAVIS's convention: 1 when the union is empty."""
    return 1.0 if union == 0 else intersection / union


def nanmean(values: np.ndarray) -> float:
    """numpy's nanmean, NaN (not a warning) for an empty or all-NaN input."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0 or np.isnan(values).all():
        return float("nan")
    return float(np.nanmean(values))


def decay_quarters(num_frames: int, wrap_uint8: bool) -> tuple[slice, slice]:
    """The first and last of DAVIS's four overlapping quarters of `num_frames` values.

    The official code stores the quarter edges as uint8 and adds one to an edge in uint8 too,
    so past 255 frames the indices wrap modulo 256 (numpy >= 2 semantics on x86): the last
    quarter is then usually empty and the decay NaN. `wrap_uint8=False` keeps the true edges.
    """
    edges = (np.round(np.linspace(1, num_frames, 5) + 1e-10) - 1).astype(np.int64)
    if not wrap_uint8:
        return slice(edges[0], edges[1] + 1), slice(edges[3], edges[4] + 1)
    edges %= 256
    return slice(edges[0], (edges[1] + 1) % 256), slice(edges[3], (edges[4] + 1) % 256)


def mean_recall_decay(per_frame: np.ndarray, wrap_uint8: bool = True) -> tuple[float, float, float]:
    """DAVIS's per-object statistics: nan-mean, fraction above 0.5, and decay (mean of the first
    quarter minus mean of the last)."""
    per_frame = np.asarray(per_frame, dtype=np.float64)
    mean = nanmean(per_frame)
    recall = nanmean(per_frame > 0.5)
    first, last = decay_quarters(len(per_frame), wrap_uint8)
    return mean, recall, nanmean(per_frame[first]) - nanmean(per_frame[last])
