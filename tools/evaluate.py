#!/usr/bin/env python
"""Score predicted masks with the official DAVIS 2017, SA-V, LVOS or MOSEv2 numbers.

Reads the folders tools/vos_inference.py writes and gives, to the last digit, what each
benchmark's official evaluation code gives on them, without installing it:
  davis  davisvideochallenge/davis2017-evaluation (J&F-Mean, J/F Mean, Recall, Decay)
  sav    facebookresearch/sam2 sav_dataset/sav_evaluator.py (J&F, J, F x100)
  lvos   LingyiHongfd/lvos-evaluation (seen/unseen J and F, and the variance V)
  mose   henghuiding/MOSE-api MOSEv2 score.py (J&F, and J&F_new with the adaptive boundary)
MOSEv1 and YouTube-VOS have no public evaluation code (their scores come only from the
CodaLab servers), so they are not offered. Where an official tool has a known bug, the default
reproduces it and --corrected fixes it.
"""

from __future__ import annotations

if __name__ == "__main__":  # Ctrl-C or SIGTERM while importing: one line, not a traceback
    from sam2long.tools.startup import quiet_interrupts

    quiet_interrupts()

import argparse
import json
import os
import sys


from sam2long.engine.errors import SAM2LongError
from sam2long.resources import add_version
from sam2long.runtime.image_io import atomic_write
from sam2long.tools.evaluation import BENCHMARKS, merge_shards, print_summary, score_run

_EPILOG = """examples:
  python tools/evaluate.py --benchmark davis --davis_path DAVIS --pred_root outputs/davis_val
  python tools/evaluate.py --benchmark sav --gt_root sav_val/Annotations_6fps --pred_root outputs/sav_val
  python tools/evaluate.py --benchmark lvos --lvos_path LVOS/valid --unseen_list lvos-evaluation/unseen_videos.txt --pred_root outputs/lvos
  python tools/evaluate.py --benchmark mose --gt_root MOSEv2/train/Annotations --meta MOSEv2/train/meta.json --pred_root outputs/mose
  python tools/evaluate.py --merge_shards outputs/davis_val_scores   # after sharded --score runs
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, epilog=_EPILOG,
                                formatter_class=_Formatter)
    add_version(p)
    p.add_argument("--benchmark", choices=BENCHMARKS,
                   help="which official evaluation to reproduce (required unless --merge_shards)")
    p.add_argument("--merge_shards", metavar="SCORES_DIR", default=None,
                   help="instead of scoring masks: merge the per-video scores that sharded "
                        "`tools/vos_inference.py --score` runs wrote to SCORES_DIR/shard-<i>-of-<n>/ "
                        "into the whole set's official numbers (the same as one unsharded run); "
                        "the files go to SCORES_DIR unless --output_dir")
    p.add_argument("--pred_root", "--results_path", "--pred", dest="pred_root",
                   help="(required unless --merge_shards) the predicted masks: <video>/<frame>.png (DAVIS palette), or "
                        "<video>/<obj:03d>/<frame>.png (SA-V per-object layout); also accepted "
                        "under the official tools' names")
    gt = p.add_argument_group("ground truth (the official tools' layouts)")
    gt.add_argument("--davis_path", help="davis: the DAVIS root, with JPEGImages/480p, "
                    "Annotations/480p (Annotations_unsupervised/480p) and ImageSets/2017/<set>.txt")
    gt.add_argument("--gt_root", "--ann", dest="gt_root",
                    help="sav: the annotation folder (Annotations_6fps); mose: the Annotations folder")
    gt.add_argument("--lvos_path", help="lvos: the split folder, with Annotations/ and <set>_meta.json")
    gt.add_argument("--meta", help="mose: the meta.json with each video's length, size and objects")
    gt.add_argument("--set", default=None,
                    help="davis: the ImageSets/2017 list (default val); lvos: the split of "
                         "<set>_meta.json (default valid)")
    gt.add_argument("--task", default="semi-supervised", choices=("semi-supervised", "unsupervised"),
                    help="davis: the task (the official tool's own default is unsupervised; "
                         "semi-supervised is what tools/vos_inference.py does)")
    gt.add_argument("--unseen_list", default=None,
                    help="lvos: the official unseen_videos.txt (default: ./unseen_videos.txt as the "
                         "official tool reads it, else <lvos_path>/unseen_videos.txt)")
    gt.add_argument("--videos", nargs="+", default=None,
                    help="score only these videos (default: the benchmark's list or every video)")
    opts = p.add_argument_group("scoring")
    opts.add_argument("--strict", action="store_true",
                      help="sav: every ground-truth video must have a prediction and the other way "
                           "round (default, as officially: score the videos both have)")
    opts.add_argument("--do_not_skip_first_and_last_frame", action="store_true",
                      help="sav: also score each object's first and last annotated frame")
    opts.add_argument("--corrected", action="store_true",
                      help="fix the official tools' known bugs instead of reproducing them: davis's "
                           "decay past 255 frames (its uint8 quarter edges wrap, giving NaN); "
                           "mose's descent into a prediction root that holds one folder even when "
                           "that folder is the only video")
    out = p.add_argument_group("output")
    out.add_argument("--json", default=None,
                     help="write every number (globals under the official names, per object, per "
                          "frame) to this JSON file")
    out.add_argument("--output_dir", "--output", dest="output_dir", default=None,
                     help="where the files the official tool writes go (davis/lvos: the two CSVs; "
                          "sav: results.csv; mose: metrics.json, scores.txt); default "
                          "<pred_root>_scores beside the predictions, never inside them unless given")
    out.add_argument("-n", "--num_processes", type=int, default=1, help="worker processes (over videos)")
    return p


class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults shown where there is one to show (the help text explains the optional ones)."""

    def _get_help_string(self, action):
        if action.default in (None, False):
            return action.help
        return super()._get_help_string(action)


_NEEDS = {"davis": ("davis_path",), "sav": ("gt_root",), "lvos": ("lvos_path",), "mose": ("gt_root", "meta")}


def default_output_dir(pred_root: str) -> str:
    pred = os.path.abspath(pred_root)
    return os.path.join(os.path.dirname(pred), os.path.basename(pred) + "_scores")


def check_outputs(args, gt_path: str, output_dir: str) -> None:
    """Before scoring: no output is an input, lies inside one (the ground truth, the
    predictions, meta.json, the unseen list) or holds one; --json names a file and
    --output_dir a folder, both writable; the predictions come from one run's settings."""
    from sam2long.runtime.output_paths import OutputError, check_apart, check_output_file, probe_writable
    from sam2long.runtime.vos_dataset import mixed_settings

    mixed = mixed_settings(args.pred_root, args.videos) if os.path.isdir(args.pred_root) else None
    if mixed:
        raise OutputError(f"--pred_root {args.pred_root} mixes results of different runs: {mixed}; "
                          "score each run's folder on its own (rerun the others with one setting)")
    inputs = [gt_path, args.meta, args.unseen_list, args.pred_root]
    check_apart(output_dir, inputs, "--output_dir")
    if os.path.exists(output_dir) and not os.path.isdir(output_dir):
        raise OutputError(f"--output_dir {output_dir} is a file, not a folder")
    if args.json:
        check_output_file(args.json, inputs, "--json")
    probe_writable(output_dir, "--output_dir")


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.merge_shards is not None:
        return _merge(args)
    for flag in ("benchmark", "pred_root"):
        if getattr(args, flag) is None:
            print(f"error: --{flag} is required (or --merge_shards)", file=sys.stderr)
            return 2
    missing = [f"--{flag}" for flag in _NEEDS[args.benchmark] if getattr(args, flag) is None]
    if missing:
        print(f"error: --benchmark {args.benchmark} needs {' and '.join(missing)}", file=sys.stderr)
        return 2
    if args.num_processes < 1:
        print("error: --num_processes must be at least 1", file=sys.stderr)
        return 2
    gt_path = {"davis": args.davis_path, "sav": args.gt_root, "lvos": args.lvos_path,
               "mose": args.gt_root}[args.benchmark]
    output_dir = args.output_dir or default_output_dir(args.pred_root)
    try:
        check_outputs(args, gt_path, output_dir)
        result = score_run(args.benchmark, gt_path, args.pred_root, args.videos,
                           num_processes=args.num_processes, task=args.task, subset=args.set,
                           meta=args.meta, unseen_list=args.unseen_list, strict=args.strict,
                           skip_first_and_last=not args.do_not_skip_first_and_last_frame,
                           corrected=args.corrected)
        written = _write(result, output_dir, args.json)
    except (SAM2LongError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print_summary(result)
    print(f"scored in {result.data['seconds']:.1f}s; wrote {', '.join(written)}")
    return 0


def _merge(args) -> int:
    scoring = [f"--{k}" for k in ("benchmark", "pred_root", "davis_path", "gt_root", "lvos_path",
                                  "meta", "unseen_list", "videos") if getattr(args, k) is not None]
    if scoring:
        print(f"error: --merge_shards takes the shards' own settings; drop {' '.join(scoring)}",
              file=sys.stderr)
        return 2
    try:
        result = merge_shards(args.merge_shards)
        written = _write(result, args.output_dir or args.merge_shards, args.json)
    except (SAM2LongError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print_summary(result)
    print(f"merged {result.data['merged_shards']} shards; wrote {', '.join(written)}")
    return 0


def _write(result, output_dir: str, json_path: str | None) -> list[str]:
    written = result.write_files(output_dir)
    if json_path:
        os.makedirs(os.path.dirname(os.path.abspath(json_path)), exist_ok=True)
        text = json.dumps(result.data, indent=1) + "\n"
        atomic_write(json_path, lambda f: f.write(text.encode("utf-8")))
        written.append(json_path)
    return written


if __name__ == "__main__":
    from sam2long.tools.startup import restore_interrupts

    restore_interrupts()
    sys.exit(main())
