#!/usr/bin/env python
"""Side-by-side benchmark: our engine vs the original SAM2Long, same inputs.

Both sides run in subprocesses with the same CLI and write the same npz keys:
- the original through `benchmarks/reference_runner.py`, with PYTHONPATH set to
  `--reference_repo` (a local copy of Mark12Ding/SAM2Long) so its `sam2` fork
  shadows the pip package;
- ours through `benchmarks/engine_runner.py`.

Each side runs `--repeats` times, alternating, and the median of the `seconds`
each run reports is used. The table shows tracked frames, seconds, frames/s,
the speed ratio (ours / original, in frames/s) and mask agreement: per object,
the minimum over frames of the IoU between `logits > 0` of the two sides (and
the max abs logit difference). `--warmup N` adds untimed runs first (the very
first run on a cold machine can be several times slower). No timing assertions.

    .venv/bin/python benchmarks/bench_vs_reference.py \
        --reference_repo .reference/SAM2Long --repeats 3 --json /tmp/bench.json
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from sam2long.runtime.metrics import mask_iou  # noqa: E402
from parity_data import fixture_dir  # noqa: E402

FIXTURE_FILES = {"config": "micro_sam2.1.yaml", "checkpoint": "micro_lively_seed0.pt", "prompts": "prompts.npz"}


def run_side(script, pythonpath, args, out_path, extra=()):
    cmd = [args.python, str(script),
           "--config", args.config, "--checkpoint", args.checkpoint,
           "--frames", args.frames, "--prompts", args.prompts,
           "--num_pathway", str(args.num_pathway), "--iou_thre", str(args.iou_thre),
           "--uncertainty", str(args.uncertainty), "--out", str(out_path), *extra]
    env = dict(os.environ, PYTHONPATH=pythonpath)
    proc = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
        raise SystemExit(f"{script.name} failed with exit code {proc.returncode}")
    with np.load(out_path) as data:
        return float(data["seconds"])


def object_ids(npz):
    return sorted(int(k[len("logits_"):]) for k in npz if k.startswith("logits_"))


def tracked_frames(npz):
    return sum(int(npz[f"logits_{k}"].shape[0]) for k in object_ids(npz))


def agreement(ours, ref):
    """Per object: min per-frame IoU of logits > 0, and max abs logit difference."""
    result = {}
    for k in object_ids(ref):
        a, b = ours[f"logits_{k}"], ref[f"logits_{k}"]
        if a.shape != b.shape:
            result[k] = {"min_iou": None, "max_abs": None, "note": f"shape {a.shape} vs {b.shape}"}
            continue
        ious = [mask_iou(x, y) for x, y in zip(a > 0, b > 0)]
        diff = np.abs(a.astype(np.float32) - b.astype(np.float32)).max()
        result[k] = {"min_iou": float(min(ious)), "max_abs": float(diff)}
    return result


def add_input_args(p: argparse.ArgumentParser, frames: str):
    """The model and video every side runs (default: the parity fixture's, `frames` folder;
    see benchmarks/parity_data.py for which fixture)."""
    p.add_argument("--reference_repo", help="local copy of the original SAM2Long repo")
    p.set_defaults(fixture_frames=frames)
    p.add_argument("--config", help="model YAML (default: the parity fixture's)")
    p.add_argument("--checkpoint", help="checkpoint (default: the parity fixture's lively one)")
    p.add_argument("--frames", help=f"folder of JPEG frames (default: the parity fixture's {frames}/)")
    p.add_argument("--prompts", help="npz with mask_<id>, frame_<id> (default: the parity fixture's)")
    p.add_argument("--iou_thre", type=float, default=0.1)
    p.add_argument("--uncertainty", type=float, default=2)


def resolve_input_args(p: argparse.ArgumentParser, args):
    """Every input given (or taken from the parity fixture), as absolute paths for the
    subprocesses. The fixture is found (or unpacked) only when an input is not given."""
    files = dict(FIXTURE_FILES, frames=args.fixture_frames)
    for name in ("config", "checkpoint", "frames", "prompts"):
        if getattr(args, name) is None:
            setattr(args, name, str(fixture_dir() / files[name]))
        setattr(args, name, os.path.abspath(getattr(args, name)))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_input_args(p, "frames")
    p.add_argument("--num_pathway", type=int, default=3)
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--warmup", type=int, default=0, help="untimed runs of each side first")
    p.add_argument("--backends", nargs="+", default=["torch"], choices=["torch", "onnx"],
                   help="our backends to time (onnx engines are built first, untimed)")
    p.add_argument("--engine_arg", action="append", default=[],
                   help="extra argument passed to engine_runner.py (repeatable)")
    p.add_argument("--python", default=sys.executable, help="interpreter for both sides")
    p.add_argument("--json", help="write the numbers to this file")
    args = p.parse_args(argv)
    resolve_input_args(p, args)

    ref_repo = Path(args.reference_repo).resolve() if args.reference_repo else None
    if ref_repo is None or not (ref_repo / "sam2" / "sam2_video_predictor.py").exists():
        print(f"reference repo {'not given' if ref_repo is None else f'missing at {ref_repo}'}: "
              "running only our engine")
        ref_repo = None

    sides = {}
    engine_runner = ROOT / "benchmarks" / "engine_runner.py"
    tmp_holder = tempfile.TemporaryDirectory()
    tmp = Path(tmp_holder.name)
    for backend in args.backends:
        extra = ["--backend", backend, *args.engine_arg]
        if backend == "onnx":
            subprocess.run([args.python, str(ROOT / "export" / "build_engines.py"), "--sam2_cfg",
                            args.config, "--sam2_checkpoint", args.checkpoint, "--out_dir",
                            str(tmp / "engines")], check=True, capture_output=True, cwd=ROOT)
            extra += ["--engine_dir", str(tmp / "engines")]
        sides[backend] = (engine_runner, str(ROOT), extra)
    if ref_repo is not None:
        sides["original"] = (ROOT / "benchmarks" / "reference_runner.py", str(ref_repo), [])

    seconds = {name: [] for name in sides}
    outs = {name: tmp / f"{name}.npz" for name in sides}
    for _ in range(args.warmup):
        for name, (script, pythonpath, extra) in sides.items():
            run_side(script, pythonpath, args, outs[name], extra)
    for r in range(args.repeats):
        order = list(sides) if r % 2 == 0 else list(sides)[::-1]
        for name in order:
            script, pythonpath, extra = sides[name]
            seconds[name].append(run_side(script, pythonpath, args, outs[name], extra))
            print(f"  run {r + 1}/{args.repeats} {name}: {seconds[name][-1]:.2f} s", flush=True)
    npz = {name: dict(np.load(outs[name])) for name in sides}
    tmp_holder.cleanup()
    frames = {name: tracked_frames(npz[name]) for name in sides}

    report = {"settings": {k: getattr(args, k) for k in (
        "config", "checkpoint", "frames", "prompts", "num_pathway", "iou_thre",
        "uncertainty", "repeats", "warmup")}, "sides": {}}
    print(f"\n{'side':<10}{'frames':>8}{'median s':>11}{'frames/s':>10}")
    for name in sides:
        med = statistics.median(seconds[name])
        fps = frames[name] / med if med > 0 else float("nan")
        report["sides"][name] = {"frames": frames[name], "seconds": med,
                                 "fps": fps, "all_seconds": seconds[name]}
        print(f"{name:<10}{frames[name]:>8}{med:>11.2f}{fps:>10.2f}")
    if "original" in sides:
        report["agreement"] = {}
        for name in args.backends:
            ratio = report["sides"][name]["fps"] / report["sides"]["original"]["fps"]
            report["sides"][name]["speed_ratio_over_original"] = ratio
            print(f"speed ratio ({name}/original, fps): {ratio:.2f}x")
            agree = agreement(npz[name], npz["original"])
            report["agreement"][name] = {str(k): v for k, v in agree.items()}
            for k, v in agree.items():
                if v["min_iou"] is None:
                    print(f"  object {k}: not comparable ({v['note']})")
                else:
                    print(f"  object {k}: min per-frame mask IoU {v['min_iou']:.4f}, "
                          f"max abs logit diff {v['max_abs']:.3g}")
    stages = ("encode_image", "attend_memory", "decode_masks", "encode_memory")
    print(f"\nper-stage ms per call (last run){''.join(f'{st:>15}' for st in stages)}")
    for name in args.backends:
        totals = [float(npz[name].get(f"stage_seconds_{st}", float("nan"))) for st in stages]
        calls = [float(npz[name].get(f"stage_seconds_{st}_calls", float("nan"))) for st in stages]
        per_call = [1000 * t / c if c else float("nan") for t, c in zip(totals, calls)]
        report["sides"][name]["stage_seconds"] = dict(zip(stages, totals))
        report["sides"][name]["stage_ms_per_call"] = dict(zip(stages, per_call))
        print(f"{name:<32}{''.join(f'{v:>15.1f}' for v in per_call)}")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
