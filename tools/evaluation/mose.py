"""MOSEv2 scores, as `henghuiding/MOSE-api` `MOSEv2/sam2_rcms/tools/score.py` computes them.

(MOSEv1 has no public evaluation code: its numbers come from the CodaLab server only.)

What the official tool does, and so what this does:
* Videos: the ground-truth folders; `meta.json` gives each one's `length`, `height`, `width` and
  `objects`; a ground-truth folder must hold exactly `length` entries.
* Frames: the prediction folder's PNGs sorted by number; positions 1..length-2 are scored (the
  first and the last are not), each looked up by that name in the ground truth too. A video
  whose prediction folder is missing scores 0 (J, F) for every object.
* If the prediction root holds a single folder, the official tool descends into it (for
  submissions zipped with a top folder) -- even when that folder is the only video. `corrected`
  descends only when the folder is not a ground-truth video.
* J = (|A & B| + 1) / (|A | B| + 1), 1 when both are empty.
* F (the DAVIS boundary F) and F_new (the adaptive-boundary F): the tolerance of F_new is
  ceil(0.1 * sqrt(object area)) (ceil(0.1 * diagonal) when the object is absent), capped at
  0.008 * diagonal. When the cap bites, both F and F_new use the uncapped-by-ceil radius
  0.008 * diagonal (a non-integer disk, as officially); otherwise F uses ceil(0.008 * diagonal).
* Per object: means over the scored frames; disappear_J&F_new and reappear_J&F_new average the
  J and F_new of the segments where the object is absent in the ground truth (after having been
  there) and where it comes back. Globals: means over all objects, x100, rounded to 2 decimals;
  J&F = (J + F) / 2 and J&F_new = (J + F_new) / 2.
"""

from __future__ import annotations

import functools
import json
import os
import time
from dataclasses import dataclass

import numpy as np

from sam2long.tools.evaluation.common import DatasetError, EvaluationResult, list_dirs, map_videos, read_labels
from sam2long.tools.evaluation.metrics import (BOUNDARY_FRACTION, boundary_f, disk_kernel, image_diagonal,
                                      label_boundaries)

ADAPTIVE_FRACTION = 0.1
GLOBAL_NAMES = ("J&F_new", "J", "F_new", "disappear_J&F_new", "reappear_J&F_new", "F", "J&F")


@dataclass(frozen=True)
class MoseVideo:
    name: str
    length: int
    height: int | None
    width: int | None
    objects: tuple[str, ...]


@dataclass
class ObjectScores:
    """Per-frame J, F (DAVIS radius), F_new (adaptive) and "absent in the ground truth"."""

    obj_id: str
    frames: list[str]
    j: np.ndarray
    f: np.ndarray
    f_new: np.ndarray
    empty_gt: np.ndarray
    missing: bool = False  # no prediction folder: the official 0 scores


def mose_videos(gt_root: str, meta_path: str, videos: list[str] | None = None) -> list[MoseVideo]:
    try:
        with open(meta_path, encoding="utf-8") as f:
            meta = json.load(f)["videos"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise DatasetError(f"cannot read the MOSE meta file ({e})", path=meta_path) from e
    if not os.path.isdir(gt_root):
        raise DatasetError("ground-truth folder not found", path=gt_root)
    names = list_dirs(gt_root) if videos is None else list(videos)
    out = []
    for name in names:
        folder = os.path.join(gt_root, name)
        if name not in meta:
            raise DatasetError("ground-truth video is not in the meta file", video=name, path=meta_path)
        info = meta[name]
        if not os.path.isdir(folder):
            raise DatasetError("ground-truth folder not found", video=name, path=folder)
        if info["length"] != len(os.listdir(folder)):  # the official integrity check
            raise DatasetError(f"meta length {info['length']} but {len(os.listdir(folder))} entries "
                               "in the ground-truth folder", video=name, path=folder)
        out.append(MoseVideo(name, int(info["length"]), info.get("height"), info.get("width"),
                             tuple(str(o) for o in info["objects"])))
    return out


def prediction_root(pred_root: str, videos: list[MoseVideo], corrected: bool) -> str:
    """The official tool descends into a lone subfolder of the prediction root."""
    if not os.path.isdir(pred_root):
        raise DatasetError("prediction folder not found", path=pred_root)
    entries = [e for e in os.listdir(pred_root) if not e.startswith(".")]
    if len(entries) == 1 and os.path.isdir(os.path.join(pred_root, entries[0])):
        if not (corrected and entries[0] in {v.name for v in videos}):
            return os.path.join(pred_root, entries[0])
    return pred_root


def evaluate_video(video: MoseVideo, gt_root: str, pred_root: str) -> list[ObjectScores]:
    pred_dir = os.path.join(pred_root, video.name)
    empty = np.zeros(0)
    if not os.path.isdir(pred_dir):
        return [ObjectScores(o, [], empty, empty, empty, empty.astype(bool), missing=True)
                for o in video.objects]
    names = [n for n in os.listdir(pred_dir) if not n.startswith(".") and n.endswith(".png")]
    try:
        names.sort(key=lambda n: int(n.split(".")[0]))
    except ValueError as e:
        raise DatasetError(f"prediction PNG names must be frame numbers ({e})", video=video.name,
                           path=pred_dir) from e
    scored = range(1, video.length - 1)
    if len(names) < video.length - 1 and len(scored):
        raise DatasetError(f"{len(names)} prediction PNGs; the video has {video.length} frames and "
                           f"frames 1..{video.length - 2} are scored", video=video.name, path=pred_dir)
    ids = [int(o) for o in video.objects]
    n = len(scored)
    j, f, f_new = (np.zeros((len(ids), n)) for _ in range(3))
    empty_gt = np.zeros((len(ids), n), dtype=bool)
    frames = []
    shape = None
    for t, index in enumerate(scored):
        stem = names[index].split(".")[0]
        gt_path = os.path.join(gt_root, video.name, f"{stem}.png")
        pred_path = os.path.join(pred_dir, f"{stem}.png")
        gt = read_labels(gt_path, video.name, as_palette=True)
        pred = read_labels(pred_path, video.name, as_palette=True)
        if shape is None:
            shape = (video.height, video.width) if video.height is not None and video.width is not None else gt.shape
        for labels, path, what in ((pred, pred_path, "prediction"), (gt, gt_path, "ground truth")):
            if labels.shape != tuple(shape):
                raise DatasetError(f"{what} is {labels.shape[-1]}x{labels.shape[0]}, the meta file "
                                   f"says {shape[1]}x{shape[0]}", video=video.name, path=path)
        frames.append(stem)
        gt_bounds, pred_bounds = label_boundaries(gt, ids), label_boundaries(pred, ids)
        diagonal = image_diagonal(gt.shape)
        for i, k in enumerate(ids):
            gm, pm = gt == k, pred == k
            inter = int(np.count_nonzero(gm & pm))
            area = int(np.count_nonzero(gm))
            union = area + int(np.count_nonzero(pm)) - inter
            j[i, t] = 1.0 if union == 0 else min(max((inter + 1) / (union + 1), 0.0), 1.0)
            empty_gt[i, t] = area == 0
            f[i, t], f_new[i, t] = _boundary_pair(pred_bounds[k], gt_bounds[k], area, diagonal)
    return [ObjectScores(str(o), frames, j[i], f[i], f_new[i], empty_gt[i]) for i, o in enumerate(video.objects)]


def _boundary_pair(pred, gt, area: int, diagonal: float) -> tuple[float, float]:
    """(F, F_new) of one frame with the official choice of radii."""
    cap = BOUNDARY_FRACTION * diagonal
    if area:
        adaptive = np.ceil(ADAPTIVE_FRACTION * np.sqrt(np.float64(area)))
    else:
        adaptive = np.ceil(ADAPTIVE_FRACTION * diagonal)
    radius = min(cap, adaptive)
    if radius < cap:
        return (boundary_f(pred, gt, disk_kernel(float(np.ceil(cap)))),
                boundary_f(pred, gt, disk_kernel(float(radius))))
    same = boundary_f(pred, gt, disk_kernel(float(cap)))
    return same, same


def object_metrics(obj: ObjectScores) -> list:
    """The official per-object record [J, F_new, F, disappear J, disappear F_new, reappear J,
    reappear F_new] (means over frames; None where there is no such segment)."""
    if obj.missing or obj.j.size == 0:
        return [0, 0, 0, None, None, None, None]
    j, f_new, empty = obj.j, obj.f_new, obj.empty_gt
    disappear = np.where(~empty[:-1] & empty[1:])[0] + 1
    if empty[0]:
        disappear = np.insert(disappear, 0, 0)
    reappear = np.where(empty[:-1] & ~empty[1:])[0] + 1
    gone = []
    for i, start in enumerate(disappear):
        end = reappear[i] if i < len(reappear) else len(empty)
        if start > 0:  # absent from the first scored frame on is not a disappearance
            gone.append((j[start:end].mean(), f_new[start:end].mean()))
    back = []
    for i, start in enumerate(reappear):
        end = disappear[i + 1] if i + 1 < len(disappear) else len(empty)
        back.append((j[start:end].mean(), f_new[start:end].mean()))
    record = [j.mean(), f_new.mean(), obj.f.mean()]
    for segments in (gone, back):
        if segments:
            record += [np.mean([s[0] for s in segments]), np.mean([s[1] for s in segments])]
        else:
            record += [None, None]
    return record


def _r2(value):
    """The official `round(x, 2)` of a numpy (or int) value."""
    return round(value, 2)


def _formatted(record: list) -> dict:
    """One object's entry in the official metrics.json."""
    j, f_new, f, dj, df, rj, rf = record
    return {
        "J&F_new": _r2((j + f_new) / 2 * 100),
        "J": _r2(j * 100),
        "F_new": _r2(f_new * 100),
        "disappear_J&F_new": _r2((dj + df) / 2 * 100) if dj is not None and df is not None else None,
        "reappear_J&F_new": _r2((rj + rf) / 2 * 100) if rj is not None and rf is not None else None,
        "F": _r2(f * 100),
        "J&F": _r2((j + f) / 2 * 100),
    }


def _mean(values: list) -> np.float64:
    with np.errstate(invalid="ignore", divide="ignore"):  # empty: NaN, as officially
        return np.float64(np.mean(np.array(values, dtype=np.float64))) if values else np.float64("nan")


def evaluate_mose(gt_root: str, meta_path: str, pred_root: str, *, videos: list[str] | None = None,
                  corrected: bool = False, num_processes: int = 1) -> EvaluationResult:
    """Score MOSEv2-style predictions. `data` (the --json layout): the seven global numbers under
    their official names, x100 and rounded to 2 decimals as the official scores.txt; `exact`: the
    same unrounded; `per_object[<video>_<id>]`: the official metrics.json entry;
    `per_object_exact[<video>_<id>]`: the unrounded record [J, F_new, F, disappear J,
    disappear F_new, reappear J, reappear F_new] (fractions); `per_frame`."""
    start = time.perf_counter()
    mose = mose_videos(gt_root, meta_path, videos)
    if not mose:
        raise DatasetError("no ground-truth video to score", path=gt_root)
    pred_root = prediction_root(pred_root, mose, corrected)
    work = functools.partial(evaluate_video, gt_root=gt_root, pred_root=pred_root)
    scores = map_videos(work, mose, num_processes, "MOSE")
    return mose_result([v.name for v in mose], scores, corrected=corrected, start=start)


def mose_result(videos: list[str], scores: list[list[ObjectScores]], *, corrected: bool,
                start: float | None = None) -> EvaluationResult:
    """The official numbers and files from per-video object scores (videos in official order);
    `start`: when the scoring began, for metrics.json's total_time."""
    start = time.perf_counter() if start is None else start
    records, per_object, per_frame, objects, missing = {}, {}, {}, {}, []
    for video, video_scores in zip(videos, scores):
        for obj in video_scores:
            name = f"{video}_{obj.obj_id}"
            if obj.missing and video not in missing:
                missing.append(video)
            records[name] = record = object_metrics(obj)
            per_object[name] = _formatted(record)
            per_frame[name] = {"frames": obj.frames, "J": obj.j.tolist(), "F": obj.f.tolist(),
                               "F_new": obj.f_new.tolist(), "empty_gt": obj.empty_gt.tolist()}
            objects[name] = {k: v for k, v in per_object[name].items() if v is not None}
    column = {k: [r[i] for r in records.values() if r[i] is not None] for i, k in enumerate(
        ("j", "f_new", "f", "dj", "df", "rj", "rf"))}
    m = {k: _mean(v) for k, v in column.items()}
    exact = {
        "J&F_new": (m["j"] + m["f_new"]) / 2 * 100,
        "J": m["j"] * 100,
        "F_new": m["f_new"] * 100,
        "disappear_J&F_new": (m["dj"] + m["df"]) / 2 * 100,
        "reappear_J&F_new": (m["rj"] + m["rf"]) / 2 * 100,
        "F": m["f"] * 100,
        "J&F": (m["j"] + m["f"]) / 2 * 100,
    }
    summary = {k: float(_r2(v)) for k, v in exact.items()}
    metrics_json = {**{k: v for k, v in per_object.items()}, "total_time": time.perf_counter() - start}
    scores_txt = "".join(f"{k}: {_r2(exact[k])}\n" for k in GLOBAL_NAMES) + "Copy-Paste: " + ",".join(
        f"{_r2(exact[k]):.1f}" for k in GLOBAL_NAMES) + "\n"
    notes = [f"{len(missing)} video(s) have no prediction folder and score 0, as officially: "
             f"{', '.join(missing[:5])}"] if missing else []
    data = {"benchmark": "mose", "corrected": corrected, **summary,
            "exact": {k: float(v) for k, v in exact.items()}, "per_object": per_object,
            "per_object_exact": {n: [None if v is None else float(v) for v in r] for n, r in records.items()},
            "per_frame": per_frame, "videos_without_prediction": missing}
    title = f"MOSEv2: {len(videos)} videos, {len(records)} objects (x100)"
    shard_records = {"options": {"corrected": corrected},
                     "videos": [{"video": video, "objects": [
                         [o.obj_id, o.frames, o.j.tolist(), o.f.tolist(), o.f_new.tolist(),
                          o.empty_gt.tolist(), o.missing] for o in objs]} for video, objs in zip(videos, scores)]}
    return EvaluationResult("mose", title, summary, objects, "J&F", data,
                            {"metrics.json": json.dumps(metrics_json, indent=4), "scores.txt": scores_txt},
                            percent=True, notes=notes, records=shard_records)


def mose_from_records(options: dict, videos: list[dict]) -> EvaluationResult:
    """`mose_result` again from the `records` of results (shards' results merged)."""
    scores = [[ObjectScores(o[0], o[1], np.array(o[2], dtype=np.float64), np.array(o[3], dtype=np.float64),
                            np.array(o[4], dtype=np.float64), np.array(o[5], dtype=bool), o[6])
               for o in v["objects"]] for v in videos]
    return mose_result([v["video"] for v in videos], scores, **options)
