"""Scores for VOS benchmarks, equal to the official evaluation tools' numbers.

`score_run` is the one entry point (the CLI `tools/evaluate.py` and `tools/vos_inference.py`
call it); `print_summary` prints its one-screen table; `EvaluationResult.write_files` writes the
files the official tool would write. Benchmarks whose official numbers come only from an
evaluation server (MOSEv1, YouTube-VOS) are not here: there is no public code to agree with.
"""

from __future__ import annotations

import time
from typing import Sequence

from sam2long.tools.evaluation.common import DatasetError, EvaluationResult, print_summary

__all__ = ["BENCHMARKS", "DatasetError", "EvaluationResult", "print_summary", "score_run"]

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
