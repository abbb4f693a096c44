"""LVOS scores (semi-supervised), as `LingyiHongfd/lvos-evaluation` computes them.

What the official tool does, and so what this does:
* `<root>/<set>_meta.json` lists the videos (scored in sorted order) and, per object, a frame
  range: the annotated frames `start, start+5, ..., < end` (names `%08d.png`); the first of them
  is skipped, and so is the one at position `frame_nums - 1` (never reached when `end` is the
  last annotated frame, so the last one is scored). An object's per-frame arrays hold
  `frame_nums - 2` values, zeros where no frame lands.
* Masks: the object is `value == id` in the ground truth and in the prediction (255 is not
  void here). J and F as DAVIS; F's tolerance from the frame diagonal.
* Per object: J-Mean and F-Mean (nan-means) and V, the spread of the per-frame J&F:
  sqrt(round(mean((mean(JF) - JF)^2), 4)).
* Videos are "unseen" when listed in the unseen list (the official `unseen_videos.txt`), else
  "seen". Globals: J-seen-Mean etc. are means over the objects of that group; J-Mean is the mean
  of the seen and unseen means (NaN when a group is empty, as officially); J&F-Mean is the mean
  of the four J and F group means.
"""

from __future__ import annotations

import functools
import json
import math
import os
from dataclasses import dataclass

import numpy as np

from sam2long.tools.evaluation.common import DatasetError, EvaluationResult, check_same_shape, csv_text, map_videos, read_labels
from sam2long.tools.evaluation.metrics import boundary_f, davis_radius, disk_kernel, jaccard, label_boundaries, nanmean

GLOBAL_NAMES = ("J&F-Mean", "J-Mean", "J-seen-Mean", "J-unseen-Mean", "F-Mean", "F-seen-Mean",
                "F-unseen-Mean", "V-Mean", "V-seen-Mean", "V-unseen-Mean")
FRAME_STEP = 5


@dataclass(frozen=True)
class LvosObject:
    obj_id: str
    start: int
    end: int
    frame_nums: int


@dataclass(frozen=True)
class LvosLayout:
    annotation_dir: str
    videos: tuple[str, ...]
    objects: dict  # video -> tuple[LvosObject, ...] in meta order
    unseen: frozenset


def lvos_layout(lvos_root: str, subset: str = "valid", unseen_list: str | None = None,
                videos: list[str] | None = None) -> LvosLayout:
    """Read `<root>/<subset>_meta.json` and the unseen list (`unseen_list`, else
    ./unseen_videos.txt, else `<root>/unseen_videos.txt`)."""
    meta_path = os.path.join(lvos_root, f"{subset}_meta.json")
    try:
        with open(meta_path, encoding="utf-8") as f:
            meta = json.load(f)["videos"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise DatasetError(f"cannot read the LVOS meta file ({e})", path=meta_path) from e
    if unseen_list is None:
        # Where the official tool looks: the working directory, or the split root on its server.
        candidates = ("unseen_videos.txt", os.path.join(lvos_root, "unseen_videos.txt"))
        unseen_list = next((c for c in candidates if os.path.isfile(c)), None)
        if unseen_list is None:
            raise DatasetError("LVOS splits videos into seen and unseen: pass --unseen_list (the "
                               "official lvos-evaluation repository's unseen_videos.txt)",
                               path=candidates[1])
    try:
        with open(unseen_list, encoding="utf-8") as f:
            unseen = frozenset(line.strip() for line in f)
    except OSError as e:
        raise DatasetError(f"cannot read the unseen video list ({e.strerror})", path=unseen_list) from e
    names = sorted(meta)
    if videos is not None:
        unknown = [v for v in videos if v not in meta]
        if unknown:
            raise DatasetError(f"video(s) {unknown[:5]} are not in the meta file", path=meta_path)
        names = sorted(set(videos))
    objects = {}
    for video in names:
        try:
            objects[video] = tuple(
                LvosObject(str(obj), int(o["frame_range"]["start"]), int(o["frame_range"]["end"]),
                           int(o["frame_range"]["frame_nums"]))
                for obj, o in meta[video]["objects"].items())
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise DatasetError(f"malformed objects/frame_range entry ({e!r})", video=video,
                               path=meta_path) from e
    return LvosLayout(os.path.join(lvos_root, "Annotations"), tuple(names), objects, unseen)


@dataclass
class ObjectScores:
    obj_id: str
    frames: list  # frame name per slot (None where no frame lands)
    j: np.ndarray
    f: np.ndarray


def evaluate_video(video: str, layout: LvosLayout, pred_root: str) -> list[ObjectScores]:
    out = []
    for obj in layout.objects[video]:
        slots = obj.frame_nums - 2
        if slots < 0:
            raise DatasetError(f"object {obj.obj_id}: frame_nums {obj.frame_nums} is below 2",
                               video=video)
        j, f, frames = np.zeros(slots), np.zeros(slots), [None] * slots
        for position, index in enumerate(range(obj.start, obj.end, FRAME_STEP)):
            if position == 0 or position == obj.frame_nums - 1:
                continue
            if position - 1 >= slots:
                raise DatasetError(
                    f"object {obj.obj_id}: frames {obj.start}..{obj.end} (step {FRAME_STEP}) are "
                    f"more than its frame_nums {obj.frame_nums}", video=video)
            name = f"{index:08d}"
            gt = read_labels(os.path.join(layout.annotation_dir, video, f"{name}.png"), video)
            pred_path = os.path.join(pred_root, video, f"{name}.png")
            if not os.path.isfile(pred_path):
                raise DatasetError(f"no prediction for frame '{name}'", video=video, path=pred_path)
            pred = read_labels(pred_path, video)
            check_same_shape(gt, pred, video, pred_path)
            k = int(obj.obj_id)
            gm, pm = (gt == k).astype(np.uint8), (pred == k).astype(np.uint8)
            inter = int(np.count_nonzero(gm & pm))
            union = int(np.count_nonzero(gm)) + int(np.count_nonzero(pm)) - inter
            j[position - 1] = jaccard(inter, union)
            f[position - 1] = boundary_f(label_boundaries(pm, [1])[1], label_boundaries(gm, [1])[1],
                                         disk_kernel(davis_radius(gm.shape)))
            frames[position - 1] = name
        out.append(ObjectScores(obj.obj_id, frames, j, f))
    return out


def spread(j: np.ndarray, f: np.ndarray) -> float:
    """LVOS's V: the square root of the per-frame J&F's mean squared deviation from its mean,
    the latter first rounded to 4 decimals (numpy's rounding, as the official code's round())."""
    jf = (j + f) / 2
    deviation = nanmean(jf) - jf
    with np.errstate(divide="ignore", invalid="ignore"):  # no frames: NaN, as officially
        mean_square = np.nansum(deviation ** 2) / len(jf)
    return math.sqrt(round(mean_square, 4))


def evaluate_lvos(layout: LvosLayout, pred_root: str, *, subset: str = "valid",
                  num_processes: int = 1) -> EvaluationResult:
    """Score `pred_root/<video>/<frame:08d>.png`. `data` (the --json layout): the ten global
    numbers under their official names; `per_object[<video>_<n>]` with J-Mean, F-Mean, V-Mean and
    whether the video is unseen; `per_frame[<video>_<n>]` with the frames and their J and F."""
    if not os.path.isdir(pred_root):
        raise DatasetError("prediction folder not found", path=pred_root)
    work = functools.partial(evaluate_video, layout=layout, pred_root=pred_root)
    scores = map_videos(work, list(layout.videos), num_processes, "LVOS")
    return lvos_result(list(layout.videos), scores, layout.unseen, subset=subset)


def lvos_result(videos: list[str], scores: list[list[ObjectScores]], unseen, *,
                subset: str) -> EvaluationResult:
    """The official numbers and files from per-video object scores (videos in official order)."""
    groups = {g: {"J": [], "F": [], "V": []} for g in ("seen", "unseen")}
    per_object, per_frame, objects = {}, {}, {}
    for video, video_scores in zip(videos, scores):
        group = "unseen" if video in unseen else "seen"
        for i, obj in enumerate(video_scores):
            name = f"{video}_{i + 1}"
            values = {"J-Mean": nanmean(obj.j), "F-Mean": nanmean(obj.f), "V-Mean": spread(obj.j, obj.f)}
            for m in "JFV":
                groups[group][m].append(values[f"{m}-Mean"])
            per_object[name] = {**values, "unseen": group == "unseen", "object_id": obj.obj_id}
            per_frame[name] = {"frames": obj.frames, "J": obj.j.tolist(), "F": obj.f.tolist()}
            objects[name] = {"J&F-Mean": (values["J-Mean"] + values["F-Mean"]) / 2, **values}
    means = {(g, m): _mean(groups[g][m]) for g in groups for m in "JFV"}
    summary = {"J&F-Mean": ((means["seen", "J"] + means["seen", "F"])
                            + (means["unseen", "J"] + means["unseen", "F"])) / 4.0}
    for m in "JFV":
        summary[f"{m}-Mean"] = (means["seen", m] + means["unseen", m]) / 2
        summary[f"{m}-seen-Mean"] = means["seen", m]
        summary[f"{m}-unseen-Mean"] = means["unseen", m]
    summary = {k: summary[k] for k in GLOBAL_NAMES}
    files = {
        f"global_results-{subset}.csv": csv_text(GLOBAL_NAMES, [[summary[k] for k in GLOBAL_NAMES]]),
        f"per-sequence_results-{subset}.csv": csv_text(
            ("Sequence", "J-Mean", "F-Mean", "V-Mean"),
            [(n, v["J-Mean"], v["F-Mean"], v["V-Mean"]) for n, v in per_object.items()]),
    }
    notes = [f"no {g} video: the official global numbers that average over both groups are NaN"
             for g in groups if not groups[g]["J"]]
    data = {"benchmark": "lvos", "set": subset, **summary, "per_object": per_object, "per_frame": per_frame}
    title = f"LVOS {subset} (semi-supervised): {len(videos)} videos, {len(per_object)} objects"
    records = {"options": {"subset": subset},
               "videos": [{"video": video, "unseen": video in unseen,
                           "objects": [[o.obj_id, o.frames, o.j.tolist(), o.f.tolist()] for o in objs]}
                          for video, objs in zip(videos, scores)]}
    return EvaluationResult("lvos", title, summary, objects, "J&F-Mean", data, files, notes=notes,
                            records=records)


def lvos_from_records(options: dict, videos: list[dict]) -> EvaluationResult:
    """`lvos_result` again from the `records` of results (shards' results merged)."""
    scores = [[ObjectScores(o[0], o[1], np.array(o[2], dtype=np.float64), np.array(o[3], dtype=np.float64))
               for o in v["objects"]] for v in videos]
    unseen = {v["video"] for v in videos if v["unseen"]}
    return lvos_result([v["video"] for v in videos], scores, unseen, **options)


def _mean(values: list[float]) -> float:
    return float(np.mean(np.array(values, dtype=np.float64))) if values else float("nan")
