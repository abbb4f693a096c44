"""Scores for VOS benchmarks, equal to the official evaluation tools' numbers.

`score_run` is the one entry point (the CLI `tools/evaluate.py` and `tools/vos_inference.py`
call it); `print_summary` prints its one-screen table; `EvaluationResult.write_files` writes the
files the official tool would write. Benchmarks whose official numbers come only from an
evaluation server (MOSEv1, YouTube-VOS) are not here: there is no public code to agree with.
"""

from __future__ import annotations

import json
import os
import re
import time
from typing import Sequence

from sam2long.tools.evaluation.common import DatasetError, EvaluationResult, print_summary

__all__ = ["BENCHMARKS", "DatasetError", "EvaluationResult", "merge_shards", "print_summary",
           "read_shard_scores", "score_run", "shard_scores_name", "write_shard_scores"]

BENCHMARKS = ("davis", "sav", "lvos", "mose")


def score_run(benchmark: str, gt_path: str, pred_root: str, videos: Sequence[str] | None = None, *,
              num_processes: int = 1, task: str = "semi-supervised", subset: str | None = None,
              meta: str | None = None, unseen_list: str | None = None, strict: bool = False,
              skip_first_and_last: bool = True, corrected: bool = False) -> EvaluationResult:
    """Score the predicted masks in `pred_root` (the layout tools/vos_inference.py writes).

    gt_path: what the official tool takes as ground truth --
      davis: the DAVIS root (JPEGImages/480p, Annotations/480p, ImageSets/2017/<subset>.txt);
      sav:   the annotation folder (<video>/<obj>/<frame>.png or <video>/<frame>.png);
      lvos:  the split root (Annotations/, <subset>_meta.json);
      mose:  the annotation folder, with `meta` the meta.json.
    videos: score only these (default: the benchmark's own list).
    task: DAVIS "semi-supervised" or "unsupervised". subset: DAVIS set (default "val"), LVOS
    split (default "valid"). unseen_list: LVOS's unseen video list (default
    ./unseen_videos.txt as the official tool reads it, else <gt_path>/unseen_videos.txt).
    strict / skip_first_and_last: SA-V's official flags.
    corrected: fix the official tools' known bugs instead of reproducing them (DAVIS decay past
    255 frames; MOSE's descent into a lone prediction folder).
    Raises DatasetError (message naming the video and file) for bad input.
    """
    videos = list(videos) if videos is not None else None
    start = time.perf_counter()
    if benchmark == "davis":
        from sam2long.tools.evaluation.davis import davis_layout, evaluate_davis

        subset = subset or "val"
        layout = davis_layout(gt_path, subset, task, videos)
        result = evaluate_davis(layout, pred_root, task=task, subset=subset, corrected=corrected,
                                num_processes=num_processes)
    elif benchmark == "sav":
        from sam2long.tools.evaluation.sav import evaluate_sav

        result = evaluate_sav(gt_path, pred_root, videos=videos, strict=strict,
                              skip_first_and_last=skip_first_and_last, num_processes=num_processes)
    elif benchmark == "lvos":
        from sam2long.tools.evaluation.lvos import evaluate_lvos, lvos_layout

        subset = subset or "valid"
        layout = lvos_layout(gt_path, subset, unseen_list, videos)
        result = evaluate_lvos(layout, pred_root, subset=subset, num_processes=num_processes)
    elif benchmark == "mose":
        from sam2long.tools.evaluation.mose import evaluate_mose

        if meta is None:
            raise ValueError("MOSE needs its meta.json (meta=...)")
        result = evaluate_mose(gt_path, meta, pred_root, videos=videos, corrected=corrected,
                               num_processes=num_processes)
    else:
        raise ValueError(f"unknown benchmark {benchmark!r}; choose from {BENCHMARKS}")
    result.data["seconds"] = time.perf_counter() - start
    return result


SHARD_FORMAT = "sam2long-shard-scores/1"
_SHARD_FILE = re.compile(r"^shard-(\d+)-of-(\d+)$")


def shard_scores_name(index: int, total: int) -> str:
    """The folder one shard's scores go to, inside `<output_mask_dir>_scores/`."""
    return f"shard-{index}-of-{total}"


def write_shard_scores(folder: str, index: int, total: int, benchmark: str, gt_path: str,
                       videos: Sequence[str], result: EvaluationResult | None) -> str:
    """Write a shard's per-video scores (`scores.json`) beside its official files, so that
    `merge_shards` gives the whole set's numbers; `result` None for a shard with no video."""
    records = result.records if result is not None else {"options": None, "videos": []}
    doc = {"format": SHARD_FORMAT, "benchmark": benchmark, "shard": index, "num_shards": total,
           "gt_path": os.path.abspath(gt_path), "scored_videos": list(videos), **records}
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, "scores.json")
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(doc, f)  # floats as repr: they read back bit for bit
    os.replace(tmp, path)
    return path


def read_shard_scores(scores_dir: str) -> list[dict]:
    """Every shard's `scores.json` under `scores_dir` (`shard-<i>-of-<n>/scores.json`), checked
    to be one complete run: the same benchmark, shard count, ground truth and options, every
    shard present once, no video twice. Raises DatasetError naming what is wrong."""
    if not os.path.isdir(scores_dir):
        raise DatasetError("shard scores folder not found", path=scores_dir)
    parts = []
    for name in sorted(os.listdir(scores_dir)):
        match = _SHARD_FILE.match(name)
        path = os.path.join(scores_dir, name, "scores.json")
        if not match or not os.path.isfile(path):
            continue
        try:
            with open(path, encoding="utf-8") as f:
                doc = json.load(f)
        except (OSError, ValueError) as e:
            raise DatasetError(f"cannot read a shard's scores ({e})", path=path) from e
        if doc.get("format") != SHARD_FORMAT:
            raise DatasetError(f"not a shard scores file of format {SHARD_FORMAT}", path=path)
        doc["path"] = path
        parts.append(doc)
    if not parts:
        raise DatasetError("no shard-<i>-of-<n>/scores.json here (run tools/vos_inference.py with "
                           "--score and --num_chunks/--chunk_id first)", path=scores_dir)
    totals = sorted({p["num_shards"] for p in parts})
    if len(totals) > 1:
        raise DatasetError(f"shards of runs split {totals} ways are mixed here; keep one run's "
                           "shard folders", path=scores_dir)
    total = totals[0]
    first = parts[0]
    for p in parts[1:]:
        for key in ("benchmark", "gt_path"):
            if p[key] != first[key]:
                raise DatasetError(f"shard {p['shard']} has {key} {p[key]!r}, shard {first['shard']} "
                                   f"{first[key]!r}", path=p["path"])
    with_options = [p for p in parts if p["options"] is not None]
    for p in with_options[1:]:
        if p["options"] != with_options[0]["options"]:
            raise DatasetError(f"shard {p['shard']} was scored with {p['options']}, shard "
                               f"{with_options[0]['shard']} with {with_options[0]['options']}",
                               path=p["path"])
    found = sorted(p["shard"] for p in parts)
    missing = sorted(set(range(total)) - set(found))
    if missing:
        raise DatasetError(f"no scores from shard(s) {missing} of {total}: run them with --score "
                           "(a shard whose videos failed is not scored)", path=scores_dir)
    seen: dict[str, int] = {}
    for p in parts:
        for video in p["scored_videos"]:
            if video in seen:
                raise DatasetError(f"scored by shards {seen[video]} and {p['shard']}", video=video,
                                   path=scores_dir)
            seen[video] = p["shard"]
    return sorted(parts, key=lambda p: p["shard"])


def merge_shards(scores_dir: str) -> EvaluationResult:
    """The whole set's official numbers from its shards' per-video scores: the shards hold
    contiguous runs of the sorted video list, so in shard order the videos are in the order an
    unsharded run scores them, and every mean is taken over the same objects in the same order."""
    from sam2long.tools.evaluation.davis import davis_from_records
    from sam2long.tools.evaluation.lvos import lvos_from_records
    from sam2long.tools.evaluation.mose import mose_from_records
    from sam2long.tools.evaluation.sav import sav_from_records

    start = time.perf_counter()
    parts = read_shard_scores(scores_dir)
    benchmark = parts[0]["benchmark"]
    videos = [v for p in parts for v in p["videos"]]
    scored = [p for p in parts if p["options"] is not None]
    if not scored:
        raise DatasetError("every shard is empty: there is nothing to merge", path=scores_dir)
    options = scored[0]["options"]
    if benchmark == "davis":
        result = davis_from_records(options, videos)
    elif benchmark == "sav":
        result = sav_from_records(options, videos, sorted(m for p in parts for m in p.get("missing", [])))
    elif benchmark == "lvos":
        result = lvos_from_records(options, videos)
    elif benchmark == "mose":
        result = mose_from_records(options, videos)
    else:
        raise DatasetError(f"unknown benchmark {benchmark!r}", path=parts[0]["path"])
    result.data["seconds"] = time.perf_counter() - start
    result.data["merged_shards"] = len(parts)
    return result
