"""Per-frame object masks written as PNGs, in the two layouts the benchmarks use.

* DAVIS (``per_obj_png_file=False``): one palette PNG per frame, ``<folder>/<frame>.png``,
  pixel value = object id, after SAM 2's non-overlap rule (per pixel only the object with
  the highest logit keeps a positive score).
* SA-V (``per_obj_png_file=True``): one binary PNG per object and frame,
  ``<folder>/<obj_id:03d>/<frame>.png``, no non-overlap rule.

The dataset tool and the video tool both write through :class:`MaskWriter`, so the same
prompts give the same files from either. PNG encoding runs on a worker thread.
"""

from __future__ import annotations

import os
from typing import Iterable, Mapping, Sequence

import numpy as np

from sam2long.runtime.background import BackgroundWorker
from sam2long.runtime.image_io import DAVIS_PALETTE, save_palette_png

#: Score of objects with no prediction on a frame (as SAM 2's evaluation script): far
#: below any threshold, so they are "absent".
ABSENT_SCORE = -1024.0

#: Scores of non-winning objects are clamped to at most this value by the non-overlap
#: rule (as SAM 2's ``_apply_non_overlapping_constraints``).
_NON_WINNER_MAX_SCORE = -10.0


def apply_non_overlap(scores: np.ndarray) -> np.ndarray:
    """SAM 2's non-overlapping constraint on (N, H, W) scores: per pixel, only the object
    with the highest score (the first on ties, like ``torch.argmax``) keeps its score; the
    others are clamped to at most -10."""
    if scores.shape[0] <= 1:
        return scores
    winner = np.argmax(scores, axis=0)[None]
    keep = winner == np.arange(scores.shape[0])[:, None, None]
    return np.where(keep, scores, np.minimum(scores, _NON_WINNER_MAX_SCORE))


def check_object_ids(ids: Sequence[int], per_obj_png_file: bool, where: str) -> list[int]:
    """Sorted ids after checking they fit the layout (DAVIS palette values are 1..255)."""
    ids = [int(o) for o in ids]
    if not ids:
        raise ValueError(f"{where}: no object ids to write")
    if len(set(ids)) != len(ids):
        raise ValueError(f"{where}: duplicate object ids {ids}")
    if per_obj_png_file:
        bad = [o for o in ids if o < 0]
        if bad:
            raise ValueError(f"{where}: negative object ids {bad}")
    else:
        bad = [o for o in ids if not 1 <= o <= 255]
        if bad:
            raise ValueError(f"{where}: object ids {bad} cannot be stored in a DAVIS palette PNG (1..255)")
    return sorted(ids)


class MaskWriter:
    """Thresholds per-object logits and writes one frame at a time into `folder`.

    ``close()`` waits for every PNG and re-raises the first write error; ``abandon()``
    stops after a failure without raising (the failure being handled is the one to
    report). ``files`` lists what was written, relative to `folder`.
    """

    def __init__(self, folder: str, per_obj_png_file: bool, palette: bytes | Sequence[int] | None,
                 height: int, width: int, obj_ids: Iterable[int], score_thresh: float = 0.0,
                 name: str = "masks"):
        self.obj_ids = check_object_ids(list(obj_ids), per_obj_png_file, name)
        if height < 1 or width < 1:
            raise ValueError(f"{name}: bad frame size {width}x{height}")
        self.folder = folder
        self.name = name
        self.per_obj_png_file = per_obj_png_file
        self.palette = DAVIS_PALETTE if palette is None else palette
        self.height, self.width = height, width
        self.score_thresh = float(score_thresh)
        self.frames: list[str] = []
        os.makedirs(folder, exist_ok=True)
        if per_obj_png_file:
            for oid in self.obj_ids:
                os.makedirs(os.path.join(folder, f"{oid:03d}"), exist_ok=True)
        self._worker = BackgroundWorker(f"png-writer-{name}")

    @property
    def files(self) -> list[str]:
        if self.per_obj_png_file:
            return [f"{oid:03d}/{frame}.png" for oid in self.obj_ids for frame in self.frames]
        return [f"{frame}.png" for frame in self.frames]

    def _scores(self, per_obj_logits: Mapping[int, np.ndarray]) -> np.ndarray:
        unknown = sorted(set(per_obj_logits) - set(self.obj_ids))
        if unknown:
            raise ValueError(f"{self.name}: logits for unknown object ids {unknown} "
                             f"(the writer was made for {self.obj_ids})")
        scores = np.full((len(self.obj_ids), self.height, self.width), ABSENT_SCORE, dtype=np.float32)
        for i, oid in enumerate(self.obj_ids):
            if oid not in per_obj_logits:
                continue
            logits = np.asarray(per_obj_logits[oid], dtype=np.float32)
            if logits.size != self.height * self.width:
                raise ValueError(f"{self.name}: logits of object {oid} have shape {logits.shape}, "
                                 f"expected {self.height}x{self.width}")
            scores[i] = logits.reshape(self.height, self.width)
        return scores

    def write(self, frame_name: str, per_obj_logits: Mapping[int, np.ndarray]) -> None:
        """One frame: {object id: float logits HxW}; objects left out are absent there."""
        if frame_name in self.frames:
            raise ValueError(f"{self.name}: frame {frame_name} written twice")
        scores = self._scores(per_obj_logits)  # checked here, so errors name the caller's frame
        self._worker.submit(self._write_pngs, frame_name, scores)
        self.frames.append(frame_name)

    def _write_pngs(self, frame_name: str, scores: np.ndarray) -> None:
        if not self.per_obj_png_file:
            masks = apply_non_overlap(scores) > self.score_thresh
            packed = np.zeros((self.height, self.width), dtype=np.uint8)
            for i in range(len(self.obj_ids) - 1, -1, -1):  # the smallest id ends on top
                packed[masks[i]] = self.obj_ids[i]
            save_palette_png(os.path.join(self.folder, f"{frame_name}.png"), packed, self.palette)
            return
        masks = scores > self.score_thresh
        for i, oid in enumerate(self.obj_ids):
            save_palette_png(os.path.join(self.folder, f"{oid:03d}", f"{frame_name}.png"),
                             masks[i].astype(np.uint8), self.palette)

    def close(self) -> None:
        self._worker.close()

    def abandon(self) -> None:
        try:
            self._worker.close()
        except Exception:
            pass  # the failure being handled is the one to report
