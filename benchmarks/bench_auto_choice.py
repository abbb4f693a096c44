#!/usr/bin/env python
"""Does `--backend auto` pick the faster CPU backend? Per model, side by side in one run:

1. auto's choice, made now into an empty cache (engine/auto_backend.py: one frame's stages
   timed in torch and in onnx, 1 object x 3 pathways, memory full);
2. both backends tracking the same clip in their own processes (benchmarks/engine_runner.py,
   --warmup untimed runs, then --repeats timed runs in alternating order, median);
3. whether auto's pick is the backend that tracked faster. A pick of torch counts as right
   when onnx was less than auto's margin (5%) faster: auto keeps to torch there on purpose
   (ONNX Runtime holds more memory). A mixed pick (each stage in the faster library) is
   tracked too, with auto's recorded choice, and counts as right when it tracked at least
   as fast as the faster of the two, less that margin.

Models: `micro` (the parity fixture's lively micro model), `tiny` and `b+` (seeded random
lively weights, as benchmarks/bench_cpu.py makes them). The clip is --num_frames frames of
--frames played forwards and backwards (the memory slots fill after 7 frames, so the default 32
is mostly the steady state).

    .venv/bin/python benchmarks/bench_auto_choice.py --models micro tiny --markdown /tmp/auto.md

`--dry_run` checks the script in seconds: the test micro model with random weights, 3
synthetic frames, one run per side, no warm-up (its numbers mean nothing).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(BENCH))
from bench_cpu import LIVELY, build_onnx, clip, model_files, run_side  # noqa: E402
from parity_data import fixture_dir  # noqa: E402

MICRO_CFG = str(ROOT / "configs" / "micro_sam2.1_256.yaml")


def auto_pick(model, engine_dir: str, cache_file: Path) -> tuple[str, dict, str]:
    """(auto's choice, its probe's seconds per stage per backend, its one-line reason), measured
    now: the cache file starts empty (`cache_file` is $XDG_CACHE_HOME/sam2long/backend_choice.json
    for the tracking run of a mixed pick to find)."""
    from sam2long.engine.auto_backend import ChoiceCache, choose_cpu_backend

    cache = ChoiceCache(cache_file)
    choice = choose_cpu_backend(model[0], model[1], "cpu", engine_dir, build=False, cache=cache,
                                say=lambda line: None)
    entry = next(iter(json.loads(cache_file.read_text()).values()))
    return choice.name, entry["seconds"], choice.reason


def tracked_fps(model, frames, prompts, engine_dir, args, tmp: Path, auto_cache: Path | None = None) -> dict[str, float]:
    """Frames per second of each backend over the whole clip (median of the timed runs); with
    `auto_cache`, also `--backend auto` ("auto") with the choice kept there (an XDG_CACHE_HOME)."""
    runner_args = argparse.Namespace(iou_thre=0.1, uncertainty=2.0, memory=False, engine_arg=[],
                                     auto_cache=auto_cache)
    seconds = {"torch": [], "onnx": [], **({"auto": []} if auto_cache else {})}
    sides = list(seconds)
    for r in range(args.warmup + args.repeats):
        for side in (sides if r % 2 == 0 else sides[::-1]):
            data = run_side(side, model, frames, prompts, 3, engine_dir, None, tmp / f"{side}.npz",
                            args.python, runner_args)
            if r >= args.warmup:
                seconds[side].append(float(data["seconds"]))
            num_frames = int(data["num_frames"])
    return {side: num_frames / statistics.median(s) for side, s in seconds.items()}


def verdict(pick: str, fps: dict[str, float]) -> str:
    from sam2long.engine.auto_backend import ONNX_MARGIN

    faster = max(("torch", "onnx"), key=fps.get)
    if pick == "mixed":
        if fps["auto"] >= fps[faster]:
            return "yes"
        return "yes (within the margin)" if fps["auto"] * ONNX_MARGIN >= fps[faster] else "NO"
    if pick == faster:
        return "yes"
    if pick == "torch" and fps["onnx"] < ONNX_MARGIN * fps["torch"]:
        return "yes (within the margin)"
    return "NO"


def dry_run_inputs(tmp: Path, checkpoint: str | None) -> tuple[tuple[str, str], str, str]:
    """The test micro model (random lively weights unless given), 3 synthetic frames and a
    one-object prompt."""
    from PIL import Image

    if checkpoint is None:
        from sam2long.tools.make_random_checkpoint import write_checkpoint

        checkpoint = str(write_checkpoint(tmp / "micro_lively.pt", MICRO_CFG, seed=0, lively=True))
    frames = tmp / "frames"
    frames.mkdir()
    yy, xx = np.mgrid[:120, :160]
    for t in range(3):
        rgb = np.stack([(xx + 7 * t) % 256, (yy * 2) % 256, (xx + yy) % 256], -1).astype(np.uint8)
        Image.fromarray(rgb).save(frames / f"{t:05d}.jpg")
    mask = ((yy - 60) ** 2 + (xx - 80) ** 2) < 30 ** 2
    np.savez(tmp / "prompts.npz", mask_1=mask, frame_1=np.array(0))
    return (MICRO_CFG, checkpoint), str(frames), str(tmp / "prompts.npz")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--models", nargs="+", default=["micro", "tiny"], choices=["micro", "tiny", "b+"])
    p.add_argument("--frames", help="folder of JPEG frames (default: the parity fixture's frames16/)")
    p.add_argument("--prompts", help="npz with mask_1, frame_1 (default: the parity fixture's)")
    p.add_argument("--num_frames", type=int, default=32, help="frames of the clip to track")
    p.add_argument("--warmup", type=int, default=1, help="untimed runs of each side first")
    p.add_argument("--repeats", type=int, default=3, help="timed runs of each side (median)")
    p.add_argument("--checkpoint_dir", default=str(ROOT / "outputs" / "bench_checkpoints"))
    p.add_argument("--engine_dir", default=None,
                   help="graphs to use instead of building them (one model only)")
    p.add_argument("--dry_run", action="store_true",
                   help="check the script: test micro model, 3 synthetic frames, one run per side")
    p.add_argument("--checkpoint", default=None, help="--dry_run: the micro checkpoint (default: made)")
    p.add_argument("--python", default=sys.executable)
    p.add_argument("--markdown", help="append the table to this file")
    p.add_argument("--json", help="write the numbers to this file")
    args = p.parse_args(argv)
    if args.dry_run:
        args.models, args.warmup, args.repeats = ["micro"], 0, 1
    elif args.engine_dir and len(args.models) > 1:
        print("error: --engine_dir holds one model's graphs: give one --models", file=sys.stderr)
        return 2
    if not args.dry_run and (args.frames is None or args.prompts is None):
        # Found (or unpacked from tests/data/parity) only when needed: see parity_data.py.
        args.frames = args.frames or str(fixture_dir() / "frames16")
        args.prompts = args.prompts or str(fixture_dir() / "prompts.npz")
    if not args.dry_run and (not Path(args.frames).is_dir() or not Path(args.prompts).is_file()):
        print(f"error: no frames at {args.frames} or prompts at {args.prompts} (the parity fixture's; "
              "give --frames and --prompts)", file=sys.stderr)
        return 2
    lines = [f"\n### {time.strftime('%Y-%m-%d')}: --backend auto against the measured faster backend, "
             f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"
             + (" (DRY RUN: numbers mean nothing)" if args.dry_run else ""), "",
             "| model | auto picks | probe ms/frame torch | probe ms/frame onnx | tracked fps torch "
             "| tracked fps onnx | tracked fps mixed | auto picked the faster |", "|---" * 8 + "|"]
    report = {}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        for name in args.models:
            if args.dry_run:
                model, frames, prompts = dry_run_inputs(tmp, args.checkpoint)
            else:
                bias, gain = LIVELY.get(name, (0.0, 1.0))
                model = model_files(name, Path(args.checkpoint_dir), bias, gain)
                frames = clip(Path(args.frames), args.num_frames, tmp / f"clip_{name}")
                prompts = args.prompts
            engine_dir = args.engine_dir or build_onnx(model, tmp / f"engines_{name}", args.python)
            print(f"{name}: auto's probe", flush=True)
            xdg = tmp / f"xdg_{name}"
            pick, probe, reason = auto_pick(model, engine_dir, xdg / "sam2long" / "backend_choice.json")
            print(f"  {reason}\n{name}: tracking with both backends", flush=True)
            fps = tracked_fps(model, frames, prompts, engine_dir, args, tmp,
                              auto_cache=xdg if pick == "mixed" else None)
            agrees = verdict(pick, fps)
            per_frame = {side: 1e3 * sum(stages.values()) for side, stages in probe.items()}
            mixed_fps = f"{fps['auto']:.2f}" if "auto" in fps else "-"
            lines.append(f"| {name} | {pick} | {per_frame['torch']:.0f} | {per_frame['onnx']:.0f} "
                         f"| {fps['torch']:.2f} | {fps['onnx']:.2f} | {mixed_fps} | {agrees} |")
            report[name] = {"pick": pick, "probe_seconds": probe, "tracked_fps": fps, "agrees": agrees}
            print(lines[-1], flush=True)
    print("\n".join(lines))
    if args.markdown:
        with open(args.markdown, "a", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
    return 0 if all(r["agrees"] != "NO" for r in report.values()) or args.dry_run else 1


if __name__ == "__main__":
    sys.exit(main())
