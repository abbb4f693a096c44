"""SA-V scores, as sam2's `sav_dataset/sav_evaluator.py` (`utils/sav_benchmark.py`) computes them.

Two ground-truth layouts, told apart per video as the official tool does: a video folder that
holds only `.png` files is the DAVIS-like layout (one PNG per frame, pixel value = object id);
otherwise every entry is an object folder (`<video>/<obj>/<frame>.png`, one binary mask each).
The prediction folder has the same layout.

What the official tool does, and so what this does:
* Videos: those in both the ground truth and the prediction (sorted), unless `strict` (then the
  two must hold the same videos). A video missing from the prediction is skipped, with a note.
* Frames: the ground truth's files, sorted; the first and the last are skipped (per object in
  the per-object layout). A prediction must exist for each.
* An object is scored from the first scored frame where it shows in the ground truth or in the
  prediction, on every later scored frame; objects that never show in the scored ground truth
  are dropped (in the per-object layout the official tool asserts; here that is an error naming
  the folder). There is no void label: 255 is an object id like any other.
* J: intersection / union, 1 when both are empty. F: DAVIS's boundary F at ceil(0.008 * diagonal).
* Per object, J and F are means over its frames x 100; the globals are means over every object
  of every video, and "J&F" is their mean.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass

import numpy as np

from sam2long.tools.evaluation.common import (DatasetError, EvaluationResult, check_same_shape, list_dirs,
                                     map_videos, read_labels)
from sam2long.tools.evaluation.metrics import boundary_f, davis_radius, disk_kernel, jaccard, label_boundaries


@dataclass
class VideoScores:
    """Per-object (J, F) x 100 of one video, in the official order; keys are the object folder
    names (per-object layout) or the integer ids (DAVIS-like layout)."""

    video: str
    objects: dict
    frames: dict  # key -> scored frame names (from the object's first appearance)
    j: dict  # key -> per-frame J
    f: dict


class _ObjectTracker:
    """The official per-object bookkeeping over the frames of one evaluation unit: which objects
    have shown so far, and their per-frame J and F from then on."""

    def __init__(self) -> None:
        # A set, updated frame by frame as the official tool does, so that iterating it gives
        # the objects in the same order as theirs (CPython's set order).
        self.in_gt: set = set()
        self.in_pred: set = set()
        self.j: dict = {}
        self.f: dict = {}
        self.frames: dict = {}

    def feed(self, frame: str, gt: np.ndarray, pred: np.ndarray) -> None:
        gt_ids = _present(gt)
        pred_ids = _present(pred)
        self.in_gt.update(set(gt_ids))
        self.in_pred.update(set(pred_ids))
        scored = self.in_gt | self.in_pred
        kernel = disk_kernel(davis_radius(pred.shape))
        gt_bounds = label_boundaries(gt, scored)
        pred_bounds = label_boundaries(pred, scored)
        for k in scored:
            gm, pm = gt == k, pred == k
            inter = int(np.count_nonzero(gm & pm))
            union = int(np.count_nonzero(gm)) + int(np.count_nonzero(pm)) - inter
            self.j.setdefault(k, []).append(jaccard(inter, union))
            self.f.setdefault(k, []).append(boundary_f(pred_bounds[k], gt_bounds[k], kernel))
            self.frames.setdefault(k, []).append(frame)

    def conclude(self) -> dict:
        """{object: (J x 100, F x 100)} for the objects seen in the ground truth."""
        return {k: (float(np.mean(np.array(self.j[k]))) * 100, float(np.mean(np.array(self.f[k]))) * 100)
                for k in self.in_gt}


def _present(labels: np.ndarray) -> list[int]:
    """The non-zero values of a label image, ascending."""
    counts = np.bincount(labels.ravel(), minlength=1)
    return [int(k) for k in np.flatnonzero(counts) if k != 0]


def evaluate_video(video: str, gt_root: str, pred_root: str, skip_first_and_last: bool) -> VideoScores:
    gt_dir = os.path.join(gt_root, video)
    pred_dir = os.path.join(pred_root, video)
    entries = sorted(e for e in os.listdir(gt_dir) if not e.startswith("."))
    if all(e.endswith(".png") for e in entries):
        frames = entries[1:-1] if skip_first_and_last else entries
        tracker = _ObjectTracker()
        for frame in frames:
            gt, pred = _read_pair(gt_dir, pred_dir, frame, video, binary=False)
            tracker.feed(frame, gt, pred)
        objects = tracker.conclude()
        return VideoScores(video, objects, {k: tracker.frames[k] for k in objects},
                           {k: tracker.j[k] for k in objects}, {k: tracker.f[k] for k in objects})
    out = VideoScores(video, {}, {}, {}, {})
    for obj in entries:
        obj_gt = os.path.join(gt_dir, obj)
        if not os.path.isdir(obj_gt):
            raise DatasetError("a per-object (SA-V) video folder may hold only object folders",
                               video=video, path=obj_gt)
        frames = sorted(e for e in os.listdir(obj_gt) if not e.startswith("."))
        if skip_first_and_last:
            frames = frames[1:-1]
        tracker = _ObjectTracker()
        for frame in frames:
            gt, pred = _read_pair(obj_gt, os.path.join(pred_dir, obj), frame, video, binary=True)
            tracker.feed(frame, gt, pred)
        result = tracker.conclude()
        if len(result) != 1:
            raise DatasetError(f"object '{obj}' is empty in every scored ground-truth frame "
                               f"({len(frames)} of them; the first and last are not scored), which "
                               "the official evaluator cannot score (it stops with an assertion)",
                               video=video, path=obj_gt)
        (key, value), = result.items()
        out.objects[obj] = value
        out.frames[obj], out.j[obj], out.f[obj] = tracker.frames[key], tracker.j[key], tracker.f[key]
    return out


def _read_pair(gt_dir: str, pred_dir: str, frame: str, video: str,
               binary: bool) -> tuple[np.ndarray, np.ndarray]:
    pred_path = os.path.join(pred_dir, frame)
    if not os.path.isfile(pred_path):
        raise DatasetError("prediction not found (every scored ground-truth frame needs one)",
                           video=video, path=pred_path)
    gt = read_labels(os.path.join(gt_dir, frame), video)
    pred = read_labels(pred_path, video)
    check_same_shape(gt, pred, video, pred_path)
    if not binary:
        return gt, pred
    for labels, path in ((gt, os.path.join(gt_dir, frame)), (pred, pred_path)):
        if np.count_nonzero(np.bincount(labels.ravel())) > 2:  # the official: len(np.unique) <= 2
            raise DatasetError("more than two values in a per-object (SA-V) mask PNG, which must "
                               "hold one object", video=video, path=path)
    return (gt > 0).astype(np.uint8), (pred > 0).astype(np.uint8)


def sav_videos(gt_root: str, pred_root: str, strict: bool = False,
               videos: list[str] | None = None) -> tuple[list[str], list[str]]:
    """(videos to score, ground-truth videos with no prediction folder)."""
    for path, what in ((gt_root, "ground-truth"), (pred_root, "prediction")):
        if not os.path.isdir(path):
            raise DatasetError(f"{what} folder not found", path=path)
    gt_videos, pred_videos = set(list_dirs(gt_root)), set(list_dirs(pred_root))
    if videos is not None:
        unknown = [v for v in videos if v not in gt_videos]
        if unknown:
            raise DatasetError(f"no ground truth for video(s) {unknown[:5]}", path=gt_root)
        gt_videos = set(videos)
    if strict:
        extra = sorted(pred_videos - gt_videos) if videos is None else []
        missing = sorted(gt_videos - pred_videos)
        if missing or extra:
            raise DatasetError(f"--strict: videos without prediction {missing[:5]}, predictions "
                               f"without ground truth {extra[:5]}", path=pred_root)
    return sorted(gt_videos & pred_videos), sorted(gt_videos - pred_videos)


def evaluate_sav(gt_root: str, pred_root: str, *, videos: list[str] | None = None,
                 strict: bool = False, skip_first_and_last: bool = True,
                 num_processes: int = 1) -> EvaluationResult:
    """Score SA-V style predictions. `data` (the --json layout): "J&F", "J", "F" (x100);
    `per_object[<video>][<obj>]` with the same three; `per_frame[<video>][<obj>]` with the
    frames each object is scored on and their J and F (fractions)."""
    names, missing = sav_videos(gt_root, pred_root, strict, videos)
    if not names:
        raise DatasetError("no video has both ground truth and a prediction", path=pred_root)
    work = functools.partial(evaluate_video, gt_root=gt_root, pred_root=pred_root,
                             skip_first_and_last=skip_first_and_last)
    scores = map_videos(work, names, num_processes, "SA-V")
    return sav_result(scores, missing, skip_first_and_last=skip_first_and_last)


def sav_result(scores: list[VideoScores], missing: list[str], *,
               skip_first_and_last: bool) -> EvaluationResult:
    """The official numbers and file from per-video scores (videos sorted, as officially)."""
    all_j, all_f = [], []
    per_object, per_frame, objects = {}, {}, {}
    for video in scores:
        per_object[video.video], per_frame[video.video] = {}, {}
        for key, (j, f) in video.objects.items():
            all_j.append(j)
            all_f.append(f)
            label = key if isinstance(key, str) else f"{key:03}"
            values = {"J&F": (j + f) / 2, "J": j, "F": f}
            per_object[video.video][label] = values
            per_frame[video.video][label] = {"frames": video.frames[key], "J": list(map(float, video.j[key])),
                                             "F": list(map(float, video.f[key]))}
            objects[f"{video.video}/{label}"] = values
    global_j = float(np.array(all_j).mean()) if all_j else float("nan")
    global_f = float(np.array(all_f).mean()) if all_f else float("nan")
    summary = {"J&F": (global_j + global_f) / 2, "J": global_j, "F": global_f}
    data = {"benchmark": "sav", "skip_first_and_last": skip_first_and_last, **summary,
            "per_object": per_object, "per_frame": per_frame, "videos_without_prediction": missing}
    notes = [f"{len(missing)} ground-truth video(s) have no prediction folder and are not scored "
             f"(as officially without --strict): {', '.join(missing[:5])}"] if missing else []
    title = f"SA-V: {len(scores)} videos, {len(objects)} objects (x100)"
    # Objects as [key, ...] pairs: keys are ints or folder names, and their order is official.
    records = {"options": {"skip_first_and_last": skip_first_and_last}, "missing": list(missing),
               "videos": [{"video": v.video, "objects": [[k, list(v.objects[k]), v.frames[k],
                                                          list(map(float, v.j[k])), list(map(float, v.f[k]))]
                                                         for k in v.objects]} for v in scores]}
    return EvaluationResult("sav", title, summary, objects, "J&F", data,
                            {"results.csv": _results_csv(scores, summary)}, percent=True, notes=notes,
                            records=records)


def sav_from_records(options: dict, videos: list[dict], missing: list[str]) -> EvaluationResult:
    """`sav_result` again from the `records` of results (shards' results merged)."""
    scores = []
    for v in videos:
        objs = v["objects"]
        scores.append(VideoScores(v["video"], {o[0]: tuple(o[1]) for o in objs}, {o[0]: o[2] for o in objs},
                                  {o[0]: o[3] for o in objs}, {o[0]: o[4] for o in objs}))
    return sav_result(scores, missing, **options)


def _results_csv(scores: list[VideoScores], summary: dict) -> str:
    """`results.csv` exactly as the official tool writes it."""
    width = max(*[len(v.video) for v in scores], len("Global score"))
    lines = [f'{"sequence":<{width}},{"obj":>3}, {"J&F":>4}, {"J":>4}, {"F":>4}',
             f'{"Global score":<{width}},{"":>3}, {summary["J&F"]:.1f}, {summary["J"]:.1f}, {summary["F"]:.1f}']
    for video in scores:
        for key, (j, f) in video.objects.items():
            lines.append(f"{video.video:<{width}},{key:03}, {(j + f) / 2:>4.1f}, {j:>4.1f}, {f:>4.1f}")
    return "\n".join(lines) + "\n"
