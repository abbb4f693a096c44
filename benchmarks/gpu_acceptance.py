#!/usr/bin/env python
"""The GPU acceptance run: one command, one markdown report (benchmarks/gpu_acceptance.sh
prepares the machine and calls this).

Checks, on the seeded random "lively" micro model (the parity fixture's kind of model:
masks that branch) and a synthetic video:
- the torch backend on CUDA against the CPU (fp32, every pathway a row): per-frame mask IoU;
- CUDA graphs on and off: the masks must be identical;
- bf16 and fp16 (autocast) against fp32: per-frame mask IoU;
- host syncs per frame (torch's sync debug mode counts every synchronising call; the one
  blocking event wait of a frame is not one of them) and peak GPU memory.
Then the speed matrix on SAM 2.1 tiny and base+ with seeded random lively weights, P = 1
and 3, 1 and 3 objects: the original SAM2Long on CUDA (its own bf16 autocast; only with
--reference_repo), ours eager fp32, with CUDA graphs, and bf16 with CUDA graphs. Every
number is measured in this process, except the original's (its own process).

`--dry_run` runs all of it end to end on the CPU with tiny inputs (the micro model for the
matrix too, two frames, no CUDA graphs: they need CUDA), so that the script cannot rot;
the CUDA-only cells say so. No timing assertions: the report is for a person.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

MICRO = str(ROOT / "configs" / "micro_sam2.1_256.yaml")
MATRIX_CONFIGS = {"tiny": "configs/sam2.1/sam2.1_hiera_t.yaml", "base+": "configs/sam2.1/sam2.1_hiera_b+.yaml"}
MIN_IOU_FP32, MIN_IOU_REDUCED = 0.999, 0.97


# -- inputs ----------------------------------------------------------------------------------
def write_video(folder: Path, num_frames: int, hw: tuple[int, int], num_objects: int, seed: int = 0):
    """JPEG frames of discs drifting over a textured background, and the npz of prompts
    (mask_<id>, frame_<id>) the runners read: each object's disc on frame 0."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    h, w = hw
    folder.mkdir(parents=True, exist_ok=True)
    background = (rng.random((h, w, 3)) * 80 + 40).astype(np.float32)
    yy, xx = np.mgrid[:h, :w]
    starts = [(h * (0.3 + 0.4 * (i % 2)), w * (0.2 + 0.6 * i / max(1, num_objects - 1 or 1))) for i in range(num_objects)]
    radius = min(h, w) / 8
    masks = {}
    for t in range(num_frames):
        frame = background.copy()
        for i, (cy, cx) in enumerate(starts):
            disc = (yy - cy - 2 * t) ** 2 + (xx - cx - 3 * t) ** 2 < radius ** 2
            frame[disc] = (200, 60 + 60 * i, 40)
            if t == 0:
                masks[i + 1] = disc
        Image.fromarray(frame.clip(0, 255).astype(np.uint8)).save(folder / f"{t:05d}.jpg", quality=95)
    prompts = folder.parent / f"{folder.name}_prompts.npz"
    np.savez(prompts, **{f"mask_{i}": m for i, m in masks.items()}, **{f"frame_{i}": np.array(0) for i in masks})
    return str(folder), str(prompts)


@functools.cache
def lively_checkpoint(cfg: str, folder: Path) -> str:
    from sam2long.tools.make_random_checkpoint import write_checkpoint

    return str(write_checkpoint(folder / f"{Path(cfg).stem}_lively.pt", cfg, seed=0, lively=True))


# -- one run of ours ---------------------------------------------------------------------------
def track(backend, frames: str, prompts: str, num_pathway: int, cuda_graphs=False, fixed_shapes=None):
    """(logits {id: [T, h, w]}, seconds, peak GPU bytes or None, host syncs per frame or None)."""
    import torch

    from sam2long.runtime.config import TrackerConfig
    from sam2long.runtime.pipeline import track_frames
    from sam2long.runtime.prompts import ObjectPrompt
    from sam2long.runtime.tracker import SAM2LongTracker
    from sam2long.runtime.video_io import VideoSource

    cuda = backend.device.type == "cuda"
    tracker = SAM2LongTracker(backend, TrackerConfig(num_pathway, 0.1, 2.0), cuda_graphs=cuda_graphs,
                              fixed_shapes=fixed_shapes)
    data = np.load(prompts)
    ids = sorted(int(k[5:]) for k in data.files if k.startswith("mask_"))
    objects = [ObjectPrompt(i, int(data[f"frame_{i}"]), mask=data[f"mask_{i}"]) for i in ids]
    logits = {i: [] for i in ids}
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    counting = warnings.catch_warnings(record=True) if cuda else contextlib.nullcontext([])
    start = time.perf_counter()
    with counting as caught:
        if cuda:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
        try:
            frames_seen = 0
            for frame in track_frames(tracker, VideoSource(frames), objects):
                frames_seen += 1
                for obj, frame_logits in zip(frame.obj_ids, frame.logits):
                    logits[obj].append(np.asarray(frame_logits, dtype=np.float32))
        finally:
            if cuda:
                torch.cuda.set_sync_debug_mode(0)
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    syncs = len([w for w in caught if "synchroniz" in str(w.message)]) / max(1, frames_seen) if cuda else None
    peak = torch.cuda.max_memory_allocated() if cuda else None
    return {i: np.stack(v) for i, v in logits.items()}, seconds, peak, syncs


def agreement(a: dict, b: dict) -> tuple[float, float, float]:
    """(min, mean per-frame mask IoU, max abs logit difference) over every object."""
    from sam2long.runtime.metrics import mask_iou

    ious, diff = [], 0.0
    for k in a:
        ious += [mask_iou(x > 0, y > 0) for x, y in zip(a[k], b[k])]
        diff = max(diff, float(np.abs(a[k] - b[k]).max()))
    return min(ious), float(np.mean(ious)), diff


@functools.cache
def torch_backend(cfg, checkpoint, device, precision="fp32"):
    from sam2long.engine.factory import build_backend

    return build_backend("torch", cfg, checkpoint, device, None, precision)


# -- the report --------------------------------------------------------------------------------
def checks(args, tmp: Path, lines: list[str]) -> bool:
    device = args.device
    cuda = device != "cpu"
    checkpoint = lively_checkpoint(MICRO, tmp)
    frames, prompts = write_video(tmp / "checks", args.frames, (args.video_h, args.video_w), 2)
    lines += ["", "#### Checks (micro lively model, 2 objects, P=3)", "",
              "| check | result | gate | ok |", "|---|---|---|---|"]
    ok = True

    def row(name, value, gate, passed):
        nonlocal ok
        ok &= bool(passed) if passed is not None else True
        lines.append(f"| {name} | {value} | {gate} | {'-' if passed is None else ('yes' if passed else 'NO')} |")

    cpu, _, _, _ = track(torch_backend(MICRO, checkpoint, "cpu"), frames, prompts, 3)
    fp32 = torch_backend(MICRO, checkpoint, device)
    eager, seconds, peak, syncs = track(fp32, frames, prompts, 3, fixed_shapes=True)
    low, mean, diff = agreement(eager, cpu)
    row(f"torch {device} fp32 vs CPU fp32", f"min IoU {low:.4f}, mean {mean:.4f}, max abs {diff:.2e}",
        f"min IoU >= {MIN_IOU_FP32}", low >= MIN_IOU_FP32)
    row("host syncs per frame (eager)", "-" if syncs is None else f"{syncs:.1f}", "reported", None)
    row("peak GPU memory (eager)", "-" if peak is None else f"{peak / 2**20:.0f} MiB", "reported", None)
    if cuda:
        graphed, _, graph_peak, graph_syncs = track(fp32, frames, prompts, 3, cuda_graphs=True)
        same = all(np.array_equal(graphed[k], eager[k]) for k in eager)
        row("CUDA graphs on vs off", "identical" if same else f"differ (IoU {agreement(graphed, eager)[0]:.4f})",
            "identical", same)
        row("host syncs per frame (CUDA graphs)", f"{graph_syncs:.1f}", "reported", None)
        row("peak GPU memory (CUDA graphs)", f"{graph_peak / 2**20:.0f} MiB", "reported", None)
    else:
        row("CUDA graphs on vs off", "not run: needs CUDA", "identical", None)
    if args.fixture:
        fixture_check(args, row)
    for precision in ("bf16", "fp16"):
        reduced, _, _, _ = track(torch_backend(MICRO, checkpoint, device, precision), frames, prompts, 3,
                                 fixed_shapes=True)
        low, mean, _ = agreement(reduced, eager)
        row(f"{precision} vs fp32", f"min IoU {low:.4f}, mean {mean:.4f}", f"min IoU >= {MIN_IOU_REDUCED}",
            low >= MIN_IOU_REDUCED)
    return ok


def fixture_check(args, row):
    """Ours on this device against the original's own outputs in the parity fixture (its
    lively micro model at 1024 px, P=3), every frame and object, as the parity test does."""
    folder = Path(args.fixture)
    backend = torch_backend(str(folder / "micro_sam2.1.yaml"), str(folder / "micro_lively_seed0.pt"), args.device)
    ours, _, _, _ = track(backend, str(folder / "frames"), str(folder / "prompts.npz"), 3)
    expected = np.load(folder / "expected_lively_p3_iou0.1_unc2.npz")
    # A full fixture has the original's logits; the project's compact copy (tests/data/parity)
    # its masks only, which is all the IoU bar needs.
    want = {k: expected[f"logits_{k}"].astype(np.float32) if f"logits_{k}" in expected
            else np.where(expected[f"masks_{k}"], 1.0, -1.0).astype(np.float32) for k in ours}
    low, mean, _ = agreement(ours, want)
    row(f"torch {args.device} fp32 vs the original (parity fixture, lively)", f"min IoU {low:.4f}, mean {mean:.4f}",
        f"min IoU >= {MIN_IOU_FP32}", low >= MIN_IOU_FP32)


def original_seconds(args, cfg, checkpoint, frames, prompts, num_pathway, out: Path) -> float | str:
    """The original's seconds, or why there are none."""
    if not args.reference_repo:
        return "not run: no --reference_repo"
    from bench_vs_reference import run_side

    from sam2long.engine.model_loading import resolve_config_path

    side = argparse.Namespace(python=sys.executable, config=str(resolve_config_path(cfg)), checkpoint=checkpoint,
                              frames=frames,
                              prompts=prompts, num_pathway=num_pathway, iou_thre=0.1, uncertainty=2.0)
    try:
        return run_side(ROOT / "benchmarks" / "reference_runner.py", str(Path(args.reference_repo).resolve()),
                        side, out, ["--device", args.device, "--no_trace"])
    except SystemExit as e:  # e.g. the original assumes 1024 px (64 x 64 tokens): not the micro model
        print(f"original: FAILED ({e})", flush=True)
        return "FAILED (its output is above)"


def matrix(args, tmp: Path, lines: list[str]):
    cuda = args.device != "cpu"
    configs = {"micro": MICRO} if args.dry_run else MATRIX_CONFIGS
    sides = [("ours fp32 eager", "fp32", False), ("ours fp32 CUDA graphs", "fp32", True),
             ("ours bf16 CUDA graphs", "bf16", True)]
    for name, cfg in configs.items():
        checkpoint = lively_checkpoint(cfg, tmp)
        backends = {p: torch_backend(cfg, checkpoint, args.device, p) for p in {s[1] for s in sides if cuda or not s[2]}}
        lines += ["", f"#### Speed: {name} ({Path(cfg).name}, seeded random lively weights), {args.frames} frames "
                      f"of {args.video_w}x{args.video_h}", "",
                  "| P | objects | side | frames/s | x original | peak GPU MiB | host syncs / frame |",
                  "|---|---|---|---|---|---|---|"]
        for num_objects in (1, 3):
            frames, prompts = write_video(tmp / f"{name}_{num_objects}", args.frames, (args.video_h, args.video_w),
                                          num_objects)
            for num_pathway in (1, 3):
                tracked = args.frames * num_objects
                ref = original_seconds(args, cfg, checkpoint, frames, prompts, num_pathway,
                                       tmp / f"ref_{name}_{num_objects}_{num_pathway}.npz")
                ref_fps = tracked / ref if isinstance(ref, float) else None
                lines.append(f"| {num_pathway} | {num_objects} | original ({'bf16 autocast' if cuda else 'fp32'}) | "
                             + (f"{ref_fps:.2f} | 1.00 | - | - |" if ref_fps else f"{ref} | - | - | - |"))
                for side, precision, graphs in sides:
                    if graphs and not cuda:
                        lines.append(f"| {num_pathway} | {num_objects} | {side} | not run: needs CUDA | - | - | - |")
                        continue
                    runs = [track(backends[precision], frames, prompts, num_pathway, cuda_graphs=graphs,
                                  fixed_shapes=True if not cuda else None) for _ in range(args.repeats)]
                    fps = tracked / statistics.median(r[1] for r in runs)
                    peak, syncs = runs[-1][2], runs[-1][3]
                    lines.append(f"| {num_pathway} | {num_objects} | {side} | {fps:.2f} | "
                                 f"{'-' if ref_fps is None else f'{fps / ref_fps:.2f}'} | "
                                 f"{'-' if peak is None else f'{peak / 2**20:.0f}'} | "
                                 f"{'-' if syncs is None else f'{syncs:.1f}'} |")
                print(f"{name} P={num_pathway} objects={num_objects} done", flush=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dry_run", action="store_true", help="the whole run on the CPU with tiny inputs")
    p.add_argument("--out", required=True, help="markdown report to write")
    p.add_argument("--reference_repo", help="the original SAM2Long repository, for its column of the matrix")
    p.add_argument("--fixture", help="the parity fixture's folder (../shared/fixtures/sam2long_parity, or its copy "
                                     "in .gpu_carry): ours against the original's outputs on it")
    p.add_argument("--frames", type=int, default=None, help="frames per video (default 24; 2 with --dry_run)")
    p.add_argument("--repeats", type=int, default=None, help="timed runs per cell, median (default 2; 1 dry)")
    args = p.parse_args(argv)
    import torch

    args.device = "cpu" if args.dry_run else "cuda"
    if not args.dry_run and not torch.cuda.is_available():
        print("error: the GPU acceptance run needs a CUDA GPU (use --dry_run on a CPU)", file=sys.stderr)
        return 2
    args.frames = args.frames or (2 if args.dry_run else 24)
    args.repeats = args.repeats or (1 if args.dry_run else 2)
    args.video_h, args.video_w = (120, 160) if args.dry_run else (480, 640)
    where = "CPU (dry run)" if args.dry_run else torch.cuda.get_device_name()
    lines = [f"### GPU acceptance run: {where}, torch {torch.__version__}"]
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        ok = checks(args, tmp, lines)
        Path(args.out).write_text("\n".join(lines) + "\n")  # the checks survive a matrix cut short
        matrix(args, tmp, lines)
    lines.append("")
    Path(args.out).write_text("\n".join(lines))
    print("\n".join(lines))
    print("all checks passed" if ok else "SOME CHECKS FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
