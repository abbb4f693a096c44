"""DAVIS 2017 scores, as `davisvideochallenge/davis2017-evaluation` computes them.

What the official tool does, and so what this does (semi-supervised task unless noted):
* Sequences come from `ImageSets/2017/<set>.txt`; a sequence's frames are its ground-truth PNGs
  (`Annotations/480p/<seq>/*.png`, sorted by name), and it needs at least as many of them as it
  has JPEG frames.
* Objects are ids 1..N, N being the largest id in the first ground-truth frame (so an id absent
  from that frame but below N is an object, and ids above N are ignored). Void (255) counts as
  background in the semi-supervised task; in the unsupervised one it is cut out of both masks.
* Semi-supervised: the first and the last frame are not scored. A prediction must exist for every
  other frame, and may not use an id above N (the official tool prints a message and exits with
  status 0 in both cases; here it is an error naming the file, and a non-zero exit).
* Unsupervised (`Annotations_unsupervised`): every frame is scored; up to 20 proposals (ids)
  are matched one-to-one to the objects by the Hungarian algorithm on the mean of J and F, and
  the objects are then listed in proposal order (the official naming, which may put a
  sequence's objects in another order than their ids).
* Per object: J and F per frame, then Mean (nan-mean), Recall (fraction above 0.5) and Decay
  (first quarter minus last quarter, with the official uint8 quarter edges unless `corrected`).
* Globals: the mean over every object of every sequence; "J&F-Mean" is the mean of J-Mean and
  F-Mean.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass

import numpy as np

from sam2long.tools.evaluation.assignment import linear_sum_assignment
from sam2long.tools.evaluation.common import (DatasetError, EvaluationResult, check_same_shape, csv_text,
                                     list_pngs, map_videos, read_labels)
from sam2long.tools.evaluation.metrics import (Boundary, boundary_f, davis_radius, disk_kernel, jaccard,
                                      label_boundaries, mean_recall_decay)

TASKS = ("semi-supervised", "unsupervised")
GLOBAL_NAMES = ("J&F-Mean", "J-Mean", "J-Recall", "J-Decay", "F-Mean", "F-Recall", "F-Decay")
VOID = 255
MAX_PROPOSALS = 20


@dataclass(frozen=True)
class DavisLayout:
    """Where one DAVIS split lives: JPEG frames (only counted), ground truth, sequence names."""

    image_dir: str
    annotation_dir: str
    sequences: tuple[str, ...]


def davis_layout(davis_root: str, subset: str = "val", task: str = "semi-supervised",
                 sequences: list[str] | None = None) -> DavisLayout:
    """The official tool's paths: `JPEGImages/480p`, `Annotations/480p` (or
    `Annotations_unsupervised/480p`), `ImageSets/2017/<set>.txt` (2019 for the unsupervised
    test sets). `sequences` replaces the list file."""
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, not {task!r}")
    if not os.path.isdir(davis_root):
        raise DatasetError("DAVIS root folder not found", path=davis_root)
    annotations = "Annotations" if task == "semi-supervised" else "Annotations_unsupervised"
    annotation_dir = os.path.join(davis_root, annotations, "480p")
    if not os.path.isdir(annotation_dir):
        raise DatasetError(f"no {annotations}/480p folder for the {task} task", path=annotation_dir)
    image_dir = os.path.join(davis_root, "JPEGImages", "480p")
    if sequences is None:
        year = "2019" if task == "unsupervised" and subset in ("test-dev", "test-challenge") else "2017"
        list_file = os.path.join(davis_root, "ImageSets", year, f"{subset}.txt")
        try:
            with open(list_file, encoding="utf-8") as f:
                sequences = [line.strip() for line in f]
        except OSError as e:
            raise DatasetError(f"cannot read the sequence list of set '{subset}' ({e.strerror})",
                               path=list_file) from e
    names = list(dict.fromkeys(s for s in sequences if s))  # the official keeps the first of duplicates
    if not names:
        raise DatasetError("no sequences to evaluate", path=annotation_dir)
    return DavisLayout(image_dir, annotation_dir, tuple(names))


@dataclass
class SequenceScores:
    """Per-object per-frame J and F of one sequence, objects in the official order."""

    sequence: str
    frames: list[str]
    j: np.ndarray  # [objects, frames]
    f: np.ndarray


def evaluate_sequence(sequence: str, layout: DavisLayout, pred_root: str, task: str) -> SequenceScores:
    gt_dir = os.path.join(layout.annotation_dir, sequence)
    image_dir = os.path.join(layout.image_dir, sequence)
    num_images = sum(1 for n in os.listdir(image_dir) if n.endswith(".jpg") and not n.startswith(".")) \
        if os.path.isdir(image_dir) else 0
    if num_images == 0:  # the official tool only counts them, but refuses a sequence without
        raise DatasetError("no .jpg frames for the sequence", video=sequence, path=image_dir)
    if not os.path.isdir(gt_dir):
        raise DatasetError("ground-truth folder not found", video=sequence, path=gt_dir)
    names = [n[:-len(".png")] for n in list_pngs(gt_dir)]
    if len(names) < num_images:
        raise DatasetError(f"{len(names)} ground-truth PNGs for {num_images} JPEG frames; the "
                           "official tool needs one per frame", video=sequence, path=gt_dir)
    first = _read_gt(gt_dir, names[0], sequence)[0]
    num_objects = int(first.max())
    if task == "semi-supervised":
        if len(names) < 3:
            raise DatasetError(f"{len(names)} ground-truth frames: the semi-supervised task scores "
                               "all but the first and the last, so it needs at least 3",
                               video=sequence, path=gt_dir)
        names = names[1:-1]
        return _semi_supervised(sequence, gt_dir, pred_root, names, num_objects, first.shape)
    return _unsupervised(sequence, gt_dir, pred_root, names, num_objects, first.shape)


def _read_gt(gt_dir: str, name: str, sequence: str, shape=None) -> tuple[np.ndarray, np.ndarray]:
    """Ground-truth labels with void set to background, and the void mask."""
    path = os.path.join(gt_dir, f"{name}.png")
    labels = read_labels(path, sequence)
    if shape is not None and labels.shape != shape:
        raise DatasetError(f"ground truth is {labels.shape[-1]}x{labels.shape[0]}, its first frame "
                           f"{shape[1]}x{shape[0]}", video=sequence, path=path)
    void = labels == VOID
    if void.any():
        labels = np.where(void, 0, labels)
    return labels, void


def _read_pred(pred_root: str, sequence: str, name: str, gt: np.ndarray) -> tuple[np.ndarray, str]:
    path = os.path.join(pred_root, sequence, f"{name}.png")
    if not os.path.isfile(path):
        raise DatasetError(f"no prediction for frame '{name}' (every scored frame needs one)",
                           video=sequence, path=path)
    pred = read_labels(path, sequence)
    check_same_shape(gt, pred, sequence, path)
    return pred, path


class _FrameMasks:
    """One frame's masks, sizes and boundaries for a set of ids (each computed once)."""

    def __init__(self, labels: np.ndarray, ids: range) -> None:
        self.masks = {k: labels == k for k in ids}
        self.sizes = {k: int(np.count_nonzero(m)) for k, m in self.masks.items()}
        self.bounds: dict[int, Boundary] = label_boundaries(labels, ids)


def _pair(pred: _FrameMasks, pk: int, gt: _FrameMasks, gk: int, kernel) -> tuple[float, float]:
    """J and F of proposal pk against object gk on one frame."""
    p_size, g_size = pred.sizes[pk], gt.sizes[gk]
    inter = int(np.count_nonzero(pred.masks[pk] & gt.masks[gk])) if p_size and g_size else 0
    return jaccard(inter, p_size + g_size - inter), boundary_f(pred.bounds[pk], gt.bounds[gk], kernel)


def _semi_supervised(sequence: str, gt_dir: str, pred_root: str, names: list[str],
                     num_objects: int, shape: tuple[int, int]) -> SequenceScores:
    ids = range(1, num_objects + 1)
    kernel = disk_kernel(davis_radius(shape))
    j = np.zeros((num_objects, len(names)))
    f = np.zeros((num_objects, len(names)))
    for t, name in enumerate(names):
        gt, _ = _read_gt(gt_dir, name, sequence, shape)
        pred, path = _read_pred(pred_root, sequence, name, gt)
        top = int(pred.max())
        if top > num_objects:
            raise DatasetError(f"object id {top} in the prediction is above the {num_objects} "
                               "object(s) of the first ground-truth frame", video=sequence, path=path)
        gt_masks, pred_masks = _FrameMasks(gt, ids), _FrameMasks(pred, ids)
        for i, k in enumerate(ids):
            j[i, t], f[i, t] = _pair(pred_masks, k, gt_masks, k, kernel)
    return SequenceScores(sequence, names, j, f)


def _unsupervised(sequence: str, gt_dir: str, pred_root: str, names: list[str],
                  num_objects: int, shape: tuple[int, int]) -> SequenceScores:
    gts, voids, preds = [], [], []
    for name in names:  # every prediction is read (and checked) before any scoring, as officially
        gt, void = _read_gt(gt_dir, name, sequence, shape)
        pred, path = _read_pred(pred_root, sequence, name, gt)
        top = int(pred.max())
        if top > MAX_PROPOSALS:
            raise DatasetError(f"proposal id {top} is above the {MAX_PROPOSALS} proposals the "
                               "unsupervised task allows", video=sequence, path=path)
        gts.append(gt)
        voids.append(void)
        preds.append(pred)
    num_proposals = max(max(int(p.max()) for p in preds), num_objects)
    gt_ids, pred_ids = range(1, num_objects + 1), range(1, num_proposals + 1)
    kernel = disk_kernel(davis_radius(shape))
    j = np.zeros((num_proposals, num_objects, len(names)))
    f = np.zeros((num_proposals, num_objects, len(names)))
    for t, (gt, void, pred) in enumerate(zip(gts, voids, preds)):
        pred = np.where(void, 0, pred)  # void pixels are cut out of the proposals too
        gt_masks, pred_masks = _FrameMasks(gt, gt_ids), _FrameMasks(pred, pred_ids)
        for r, pk in enumerate(pred_ids):
            for c, gk in enumerate(gt_ids):
                j[r, c, t], f[r, c, t] = _pair(pred_masks, pk, gt_masks, gk, kernel)
    quality = (np.mean(j, axis=2) + np.mean(f, axis=2)) / 2
    rows, cols = linear_sum_assignment(-quality)
    return SequenceScores(sequence, names, j[rows, cols, :], f[rows, cols, :])


def evaluate_davis(layout: DavisLayout, pred_root: str, *, task: str = "semi-supervised",
                   subset: str = "val", corrected: bool = False,
                   num_processes: int = 1) -> EvaluationResult:
    """Score `pred_root/<sequence>/<frame>.png` against a DAVIS split.

    `corrected=True` computes the decay on the true quarter edges past 255 frames (the official
    tool wraps them modulo 256). `data` (the --json layout): the seven global numbers under their
    official names; `per_object[<seq>_<n>]` with J/F Mean, Recall and Decay; `per_frame[<seq>_<n>]`
    with the scored frame names and their J and F.
    """
    if not os.path.isdir(pred_root):
        raise DatasetError("prediction folder not found", path=pred_root)
    work = functools.partial(evaluate_sequence, layout=layout, pred_root=pred_root, task=task)
    scores = map_videos(work, list(layout.sequences), num_processes, "DAVIS")
    return davis_result(scores, task=task, subset=subset, corrected=corrected)


def davis_result(scores: list[SequenceScores], *, task: str, subset: str,
                 corrected: bool) -> EvaluationResult:
    """The official numbers and files from per-sequence scores (in the official order)."""
    stats = {m: {"M": [], "R": [], "D": []} for m in ("J", "F")}
    per_object, per_frame, objects = {}, {}, {}
    for seq in scores:
        for i in range(seq.j.shape[0]):
            name = f"{seq.sequence}_{i + 1}"
            values = {}
            for metric, frames in (("J", seq.j[i]), ("F", seq.f[i])):
                mean, recall, decay = mean_recall_decay(frames, wrap_uint8=not corrected)
                for key, v in zip("MRD", (mean, recall, decay)):
                    stats[metric][key].append(v)
                values.update({f"{metric}-Mean": mean, f"{metric}-Recall": recall, f"{metric}-Decay": decay})
            per_object[name] = values
            per_frame[name] = {"frames": seq.frames, "J": seq.j[i].tolist(), "F": seq.f[i].tolist()}
            objects[name] = {"J&F-Mean": (values["J-Mean"] + values["F-Mean"]) / 2,
                             "J-Mean": values["J-Mean"], "F-Mean": values["F-Mean"]}
    mean = {f"{m}-{label}": _mean(stats[m][key])
            for m in ("J", "F") for key, label in (("M", "Mean"), ("R", "Recall"), ("D", "Decay"))}
    summary = {"J&F-Mean": (mean["J-Mean"] + mean["F-Mean"]) / 2.0}
    summary.update((k, mean[k]) for k in GLOBAL_NAMES[1:])
    files = {
        f"global_results-{subset}.csv": csv_text(GLOBAL_NAMES, [[summary[k] for k in GLOBAL_NAMES]]),
        f"per-sequence_results-{subset}.csv": csv_text(
            ("Sequence", "J-Mean", "F-Mean"),
            [(name, v["J-Mean"], v["F-Mean"]) for name, v in per_object.items()]),
    }
    data = {"benchmark": "davis", "task": task, "set": subset, "corrected": corrected, **summary,
            "per_object": per_object, "per_frame": per_frame}
    title = (f"DAVIS 2017 {subset} ({task}): {len(scores)} sequences, {len(per_object)} objects"
             + (" [corrected decay]" if corrected else ""))
    records = {"options": {"task": task, "subset": subset, "corrected": corrected},
               "videos": [{"video": seq.sequence, "frames": seq.frames, "j": seq.j.tolist(),
                           "f": seq.f.tolist()} for seq in scores]}
    return EvaluationResult("davis", title, summary, objects, "J&F-Mean", data, files, records=records)


def davis_from_records(options: dict, videos: list[dict]) -> EvaluationResult:
    """`davis_result` again from the `records` of results (shards' results merged)."""
    scores = [SequenceScores(v["video"], v["frames"], _matrix(v["j"], v["frames"]), _matrix(v["f"], v["frames"]))
              for v in videos]
    return davis_result(scores, **options)


def _matrix(rows: list, frames: list) -> np.ndarray:
    return np.array(rows, dtype=np.float64).reshape(len(rows), len(frames))


def _mean(values: list[float]) -> float:
    """np.mean over the objects in order (NaN, as officially, when there are none)."""
    return float(np.mean(np.array(values, dtype=np.float64))) if values else float("nan")
