#!/usr/bin/env python
"""CPU benchmark matrix, side by side in one run: the original SAM2Long, SAM 2's own video
predictor (plain SAM 2, P=1) and our torch and onnx backends, on the same frames.

Models: `micro` (the parity fixture's lively micro model at 1024), `tiny` and `b+` (SAM 2.1
hiera tiny / base+, seeded random weights made lively with tools/make_random_checkpoint.py
--lively and each model's object-score bias and no-object embedding gain, cached in
--checkpoint_dir). For each model, pathway count and object count every
side runs in its own process: --warmup untimed runs, then --repeats timed runs in
alternating order; the median is reported. Per side: frames/s, ratios over the original
and over plain SAM 2, the minimum per-frame mask IoU against the original, peak RSS and
per-stage milliseconds per call. Plain SAM 2's masks are compared with the original's P=3
masks too: they must differ, or the weights do not exercise the memory tree.

`--memory` instead runs each side on a 20-frame and a 200-frame clip (the bedroom frames
played forwards and backwards) and reports peak RSS: ours must stay flat in video length.
A run's peak is set by one frame's temporaries and varies by a few percent from run to run;
`--memory_runs` takes the median of several.

`--floor` prints memory attention's FLOPs per frame and the time they take at this CPU's
measured fp32 matrix-multiply rate, beside each backend's measured time.

    .venv/bin/python benchmarks/bench_cpu.py --reference_repo .reference/SAM2Long \\
        --models micro tiny b+ --markdown /tmp/cpu.md
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(BENCH))
from bench_gpu import make_prompts  # noqa: E402
from bench_vs_reference import agreement, tracked_frames  # noqa: E402
from parity_data import fixture_dir  # noqa: E402
from report import publish  # noqa: E402

STAGES = ("encode_image", "attend_memory", "decode_masks", "encode_memory")
SIDES = ("original", "sam2", "torch", "onnx", "torch_bf16")


def sam2_config(name: str) -> str:
    import sam2

    return str(Path(sam2.__file__).parent / "configs" / "sam2.1" / f"sam2.1_hiera_{name}.yaml")


CONFIG_NAMES = {"tiny": "t", "b+": "b+"}
# Each model's lively recipe: (object-score bias, gain of the no-object memory embedding), read
# from traces on the bedroom clip. tiny: scores fall through 0 mid-clip, where pathways keep or
# drop the object differently and plain SAM 2 (which keeps absent frames in memory) finds it
# again while SAM2Long does not. b+: with the stock embedding its scores only move with the
# memory's presence pattern, which locks at frame 1 (present stays present, absent stays
# absent); an embedding 100x as strong makes an absent frame in memory raise the next score,
# so presence flips mid-clip and the trackers' memory rules part them.
LIVELY = {"tiny": (-5.4, 1.0), "b+": (3.92, 100.0)}


def model_files(name: str, checkpoint_dir: Path, obj_score_bias: float,
                no_obj_embed_gain: float = 1.0) -> tuple[str, str]:
    """(config, lively checkpoint) of a benchmark model; random checkpoints made once."""
    if name == "micro":
        return str(fixture_dir() / "micro_sam2.1.yaml"), str(fixture_dir() / "micro_lively_seed0.pt")
    config = sam2_config(CONFIG_NAMES[name])
    gain = f"_noobj{no_obj_embed_gain:g}" if no_obj_embed_gain != 1.0 else ""
    checkpoint = checkpoint_dir / f"sam2.1_{name}_lively_bias{obj_score_bias:g}{gain}.pt"
    if not checkpoint.is_file():
        from sam2long.tools.make_random_checkpoint import write_checkpoint

        print(f"writing {checkpoint} (seeded random weights, lively)", flush=True)
        write_checkpoint(checkpoint, config, seed=0, lively=True, obj_score_bias=obj_score_bias,
                         no_obj_embed_gain=no_obj_embed_gain)
    return config, str(checkpoint)


def clip(frames: Path, count: int, out: Path) -> str:
    """`count` frames of `frames` played forwards and backwards (links, not copies)."""
    names = sorted(frames.glob("*.jpg"))
    cycle = names + names[-2:0:-1]
    out.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        (out / f"{i:05d}.jpg").symlink_to(cycle[i % len(cycle)])
    return str(out)


def run_side(side, model, frames, prompts, num_pathway, engine_dir, reference_repo, out, python, args):
    script = {"original": "reference_runner.py", "sam2": "sam2_vos_runner.py"}.get(side, "engine_runner.py")
    cmd = [python, str(BENCH / script), "--config", model[0], "--checkpoint", model[1], "--frames", frames,
           "--prompts", prompts, "--num_pathway", str(num_pathway), "--iou_thre", str(args.iou_thre),
           "--uncertainty", str(args.uncertainty), "--out", str(out)]
    cmd += ["--packed_masks"] if args.memory else []
    if side in ("torch", "onnx", "torch_bf16"):
        backend, _, precision = side.partition("_")
        cmd += ["--backend", backend, "--precision", precision or "fp32"]
        cmd += ["--engine_dir", engine_dir] if backend == "onnx" else []
        cmd += [a for extra in args.engine_arg for a in extra.split()]
    elif side == "auto":  # the choice recorded in args.auto_cache (an XDG_CACHE_HOME)
        cmd += ["--backend", "auto", "--engine_dir", engine_dir]
    env = dict(os.environ, PYTHONPATH=str(Path(reference_repo).resolve()) if side == "original" else str(ROOT))
    if side == "auto":
        env["XDG_CACHE_HOME"] = str(args.auto_cache)
    proc = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-3000:])
        raise RuntimeError(f"{side} failed with exit code {proc.returncode}")
    return dict(np.load(out))


def measure(sides, model, frames, prompts, num_pathway, engine_dir, args, tmp) -> dict:
    """side -> {"seconds": [...], "data": last npz}; warm-ups, then alternating timed runs."""
    results = {side: {"seconds": []} for side in sides}
    for _ in range(args.warmup):
        for side in sides:
            run_side(side, model, frames, prompts, num_pathway, engine_dir, args.reference_repo,
                     tmp / f"{side}.npz", args.python, args)
    for r in range(args.repeats):
        for side in (sides if r % 2 == 0 else sides[::-1]):
            data = run_side(side, model, frames, prompts, num_pathway, engine_dir, args.reference_repo,
                            tmp / f"{side}.npz", args.python, args)
            results[side]["seconds"].append(float(data["seconds"]))
            results[side].setdefault("peak_rss_mib", []).append(float(data["peak_rss_bytes"]) / 2**20)
            results[side]["data"] = data
            print(f"    {side}: {data['seconds']:.1f} s", flush=True)
    return results


def keep(sides, tmp: Path, folder: Path):
    """Copy each side's last runner output (the npz `measure` read its numbers from)."""
    folder.mkdir(parents=True, exist_ok=True)
    for side in sides:
        shutil.copyfile(tmp / f"{side}.npz", folder / f"{side}.npz")


def min_iou(a, b) -> float | None:
    values = [v["min_iou"] for v in agreement(a, b).values() if v["min_iou"] is not None]
    return min(values) if values else None


def stage_ms(data) -> dict:
    out = {}
    for stage in STAGES:
        total, calls = data.get(f"stage_seconds_{stage}"), data.get(f"stage_seconds_{stage}_calls")
        out[stage] = 1000 * float(total) / float(calls) if total is not None and calls else None
    return out


def config_table(name, num_pathway, num_objects, results, plain_vs_tree) -> tuple[list[str], dict]:
    fps = {side: tracked_frames(r["data"]) / statistics.median(r["seconds"]) for side, r in results.items()}
    report = {}
    lines = [f"\n**{name}, P={num_pathway}, {num_objects} object(s)**"
             + (f" (plain SAM 2 vs SAM2Long P=3 masks: min IoU {plain_vs_tree:.3f})" if plain_vs_tree is not None else ""),
             "",
             "| side | frames/s | x original | x plain SAM 2 | min IoU vs original | peak RSS MiB | "
             + " | ".join(f"{s} ms" for s in STAGES) + " |",
             "|---" * (6 + len(STAGES)) + "|"]
    ref = results.get("original", {}).get("data")
    for side, r in results.items():
        ratio = {o: fps[side] / fps[o] if o in fps else None for o in ("original", "sam2")}
        iou = min_iou(r["data"], ref) if ref is not None and side != "original" else None
        rss = r["peak_rss_mib"][-1]  # the last timed run, beside its masks and stage times
        ms = stage_ms(r["data"])
        report[side] = {"fps": fps[side], "seconds": r["seconds"], "x_original": ratio["original"],
                        "x_sam2": ratio["sam2"], "min_iou_vs_original": iou, "peak_rss_mib": rss,
                        "stage_ms": ms}
        cells = [f"{fps[side]:.3f}", *(f"{v:.2f}x" if v else "-" for v in ratio.values()),
                 f"{iou:.4f}" if iou is not None else "-", f"{rss:.0f}",
                 *(f"{v:.0f}" if v is not None else "-" for v in ms.values())]
        lines.append(f"| {side} | " + " | ".join(cells) + " |")
    return lines, report


def build_onnx(model, out: Path, python) -> str:
    subprocess.run([python, str(ROOT / "export" / "build_engines.py"), "--sam2_cfg", model[0],
                    "--sam2_checkpoint", model[1], "--out_dir", str(out)], check=True, cwd=ROOT,
                   capture_output=True)
    return str(out)


MATMUL_SIDE = 2048


def matmul_gflops() -> dict[str, float]:
    """This CPU's fp32 matrix-multiply rate in torch and in ONNX Runtime (2048-cubed
    products, best of 10)."""
    from sam2long.engine.cpu_speed import matmul_seconds

    return {lib: 2 * MATMUL_SIDE ** 3 / seconds / 1e9 for lib, seconds in matmul_seconds(MATMUL_SIDE, 10).items()}


def full_memory_attention_seconds(model, engine_dir: str, num_pathway: int) -> dict:
    """One frame's memory attention with every slot full and P distinct rows, per backend
    (best of 3 after a warm-up; layer one's shared blocks do not apply: all rows differ)."""
    import torch

    from sam2long.engine.cpu_speed import best_seconds
    from sam2long.engine.factory import build_backend
    from sam2long.engine.stages import MemoryInputs

    seconds = {}
    for backend_name in ("torch", "onnx"):
        backend = build_backend(backend_name, model[0], model[1], "cpu", engine_dir)
        geo = backend.geometry
        (h, w), m, k, b = geo.feat_hw, geo.num_maskmem, geo.max_obj_ptrs, num_pathway
        gen = torch.Generator().manual_seed(0)
        feat = torch.randn(1, geo.hidden_dim, h, w, generator=gen)
        memory = MemoryInputs(torch.randn(b, m, h * w, geo.mem_dim, generator=gen), torch.ones(b, m, dtype=torch.bool),
                              torch.arange(m).repeat(b, 1), torch.ones(b, m), torch.randn(b, k, geo.hidden_dim, generator=gen),
                              torch.ones(b, k, dtype=torch.bool), torch.rand(b, k, generator=gen), torch.ones(b, k))
        ids = torch.arange(b * m).view(b, m)  # every entry distinct
        seconds[backend_name] = best_seconds(lambda: backend.attend_memory(feat, memory, ids))
    return seconds


def attention_gflop_per_frame(config: str, num_pathway: int, graphs: bool = False) -> float:
    """Memory attention's multiply-adds (x2) for one tracked frame with every memory slot
    full, P rows, layer one's self-attention once (it is the same for every row). `graphs`:
    as our ONNX graphs compute it, the cross-attention's values left at the memory's
    channels and projected after the attention (torch_stages.rope_attention)."""
    from sam2long.engine.model_loading import _instantiate_model, resolve_config_path

    model = _instantiate_model(resolve_config_path(config))
    hw = (model.image_size // 16) ** 2
    layers = model.memory_attention.layers
    c, cm = model.hidden_dim, model.mem_dim
    tokens = model.num_maskmem * hw + model.max_obj_ptrs_in_encoder * (c // cm)
    ffn = layers[0].linear1.out_features
    self_attn = 4 * hw * c * c + 2 * hw * hw * c
    cross = 2 * hw * c * c + 2 * tokens * cm * c + 2 * hw * tokens * c
    if graphs:
        cross = 2 * hw * c * c + tokens * cm * c + hw * cm * c + hw * tokens * c + hw * tokens * cm
    mlp = 2 * hw * c * ffn
    per_row = len(layers) * (cross + mlp) + (len(layers) - 1) * self_attn
    return 2 * (num_pathway * per_row + self_attn) / 1e9


def memory_table(name: str, mem: dict) -> list[str]:
    """Peak RSS by clip length, median of the runs (their range beside it when there are several)."""
    def cell(runs):
        spread = f" ({min(runs):.0f}-{max(runs):.0f})" if len(runs) > 1 else ""
        return f"{np.median(runs):.0f}{spread}"
    lines = [f"\n**{name}, P=3, peak RSS (MiB) by video length**", "",
             "| side | 20 frames | 200 frames | growth |", "|---|---|---|---|"]
    return lines + [f"| {side} | {cell(v[20])} | {cell(v[200])} | "
                    f"{100 * (np.median(v[200]) / np.median(v[20]) - 1):+.1f}% |" for side, v in mem.items()]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--reference_repo", help="local copy of the original SAM2Long (Mark12Ding/SAM2Long)")
    p.add_argument("--models", nargs="+", default=["micro", "tiny", "b+"], choices=["micro", "tiny", "b+"])
    p.add_argument("--pathways", type=int, nargs="+", default=[1, 3])
    p.add_argument("--objects", type=int, nargs="+", default=[1, 3])
    p.add_argument("--sides", nargs="+", default=list(SIDES), choices=SIDES,
                   help="torch_bf16: our torch backend under CPU bf16 autocast (opt-in speed mode)")
    p.add_argument("--frames", default=None, help="folder of JPEG frames (default: the parity fixture's frames16/)")
    p.add_argument("--num_frames", type=int, default=8, help="frames of --frames to track")
    p.add_argument("--prompts", default=None, help="npz with mask_1, frame_1 (default: the parity fixture's)")
    p.add_argument("--iou_thre", type=float, default=0.1)
    p.add_argument("--uncertainty", type=float, default=2.0)
    p.add_argument("--warmup", type=int, default=1, help="untimed runs of each side first")
    p.add_argument("--repeats", type=int, default=3, help="timed runs of each side (median)")
    p.add_argument("--checkpoint_dir", default=str(ROOT / "outputs" / "bench_checkpoints"))
    p.add_argument("--obj_score_bias", type=float, default=None,
                   help="lively object-score bias for tiny / b+ (default: "
                        + ", ".join(f"{k} {v[0]:g}" for k, v in LIVELY.items()) + ")")
    p.add_argument("--no_obj_embed_gain", type=float, default=None,
                   help="lively gain of the no-object memory embedding for tiny / b+ (default: "
                        + ", ".join(f"{k} {v[1]:g}" for k, v in LIVELY.items()) + ")")
    p.add_argument("--engine_arg", action="append", default=[], help="extra engine_runner arguments")
    p.add_argument("--memory", action="store_true", help="peak RSS on 20 and 200 frames instead")
    p.add_argument("--memory_runs", type=int, default=1,
                   help="--memory: runs of each side per clip length (median, range shown); a run's "
                        "peak varies by a few percent with where the allocator places one frame's temporaries")
    p.add_argument("--floor", action="store_true", help="memory attention's FLOP floor on this CPU")
    p.add_argument("--python", default=sys.executable)
    p.add_argument("--markdown", help="append the tables to this file")
    p.add_argument("--json", help="write the numbers to this file")
    p.add_argument("--keep_outputs", help="folder for each side's last runner output (masks, traces, "
                                          "timings) per model, P and object count, for a later look")
    args = p.parse_args(argv)
    args.frames = args.frames or str(fixture_dir() / "frames16")
    args.prompts = args.prompts or str(fixture_dir() / "prompts.npz")
    sides = [s for s in args.sides if s != "original" or args.reference_repo]
    if "original" in args.sides and not args.reference_repo:
        print("no --reference_repo: the original is left out")
    runs = (f"20 and 200 frames of {Path(args.frames).name}, {args.memory_runs} run(s) per length" if args.memory
            else f"{args.num_frames} frames of {Path(args.frames).name}, median of {args.repeats} after "
                 f"{args.warmup} warm-up")
    lines = [f"\n### {time.strftime('%Y-%m-%d')}: {platform.processor() or platform.machine()}, "
             f"{os.cpu_count()} cores, {runs}"]
    report = {}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        for name in args.models:
            bias, gain = LIVELY.get(name, (0.0, 1.0))
            bias = bias if args.obj_score_bias is None else args.obj_score_bias
            gain = gain if args.no_obj_embed_gain is None else args.no_obj_embed_gain
            model = model_files(name, Path(args.checkpoint_dir), bias, gain)
            engine_dir = build_onnx(model, tmp / f"engines_{name}", args.python) if "onnx" in sides else None
            if args.floor:
                rates = matmul_gflops()
                torch_rate, rate = rates["torch"], max(rates.values())  # the floor: the faster library
                lines += [f"\n**{name}: memory attention, every slot full, against the matmul floor** "
                          f"(fp32 matrix products: torch {torch_rate:.0f}, ONNX Runtime {rates['onnx']:.0f} GFLOP/s)", "",
                          "| P | GFLOP per frame (SAM 2's) | floor ms | GFLOP (our graphs) | graphs' floor ms "
                          "| torch ms | onnx ms | torch / floor | onnx / graphs' floor |",
                          "|---|---|---|---|---|---|---|---|---|"]
                for num_pathway in args.pathways:
                    gflop = attention_gflop_per_frame(model[0], num_pathway)
                    graph_gflop = attention_gflop_per_frame(model[0], num_pathway, graphs=True)
                    seconds = full_memory_attention_seconds(model, engine_dir, num_pathway)
                    floor, graph_floor = gflop / rate, graph_gflop / rate
                    lines.append(f"| {num_pathway} | {gflop:.0f} | {1000 * floor:.0f} | {graph_gflop:.0f} "
                                 f"| {1000 * graph_floor:.0f} | {1000 * seconds['torch']:.0f} "
                                 f"| {1000 * seconds['onnx']:.0f} | {seconds['torch'] / floor:.2f}x "
                                 f"| {seconds['onnx'] / graph_floor:.2f}x |")
                    report[f"{name}_floor_p{num_pathway}"] = {"gflop": gflop, "graph_gflop": graph_gflop,
                                                              "matmul_gflops": rate, **seconds}
                print("\n".join(lines[-len(args.pathways) - 4:]), flush=True)
                continue
            if args.memory:
                for count in (20, 200):
                    frames = clip(Path(args.frames), count, tmp / f"clip_{name}_{count}")
                    print(f"{name}: {count} frames", flush=True)
                    results = measure([s for s in sides if s != "sam2"], model, frames, args.prompts, 3,
                                      engine_dir,
                                      argparse.Namespace(**{**vars(args), "repeats": args.memory_runs, "warmup": 0}),
                                      tmp)
                    for side, r in results.items():
                        report.setdefault(f"{name}_memory", {}).setdefault(side, {})[count] = r["peak_rss_mib"]
                lines += memory_table(name, report[f"{name}_memory"])
                continue
            frames = clip(Path(args.frames), args.num_frames, tmp / f"clip_{name}")
            for num_objects in args.objects:
                prompts = make_prompts(args.prompts, num_objects, tmp / f"prompts_{num_objects}.npz")
                tree_p3 = None
                for num_pathway in sorted(args.pathways, reverse=True):
                    run_sides = [s for s in sides if s != "sam2" or num_pathway == 1]
                    print(f"{name}, P={num_pathway}, {num_objects} object(s)", flush=True)
                    results = measure(run_sides, model, frames, prompts, num_pathway, engine_dir, args, tmp)
                    if args.keep_outputs:
                        keep(run_sides, tmp, Path(args.keep_outputs) / f"{name}_p{num_pathway}_o{num_objects}")
                    if num_pathway == 3 and "original" in results:
                        tree_p3 = results["original"]["data"]
                    plain = min_iou(results["sam2"]["data"], tree_p3) if "sam2" in results and tree_p3 else None
                    table, numbers = config_table(name, num_pathway, num_objects, results, plain)
                    lines += table
                    report[f"{name}_p{num_pathway}_o{num_objects}"] = numbers
    publish(lines, report, args.markdown, args.json)


if __name__ == "__main__":
    main()
