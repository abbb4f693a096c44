#!/usr/bin/env python
"""GPU benchmark matrix, side by side on one video: frames/s and GPU memory for 1 and 3
pathways and 1 and 4 objects.

Sides (each where it exists on the machine; every run is its own process):
- original:    the original SAM2Long (`--reference_repo`), eager, its own CUDA defaults
               (bf16 autocast);
- sam2_vos:    SAM 2's own `SAM2VideoPredictorVOS` (torch.compile, bf16), 1 pathway only;
- torch_<p>:   our torch backend on CUDA, eager, and `_graphs` with CUDA graphs, for
               fp32 and bf16;
- onnx:        ONNX Runtime with a CUDA execution provider (needs onnxruntime-gpu);
- trt_<p>:     TensorRT engines (built first, untimed) for fp32/fp16/bf16, with CUDA graphs.

Per configuration it prints frames/s, the ratio over the original and over sam2_vos, the
minimum per-frame mask IoU against our torch fp32 (the parity reference) and peak memory
(torch's peak allocation and the process's device memory in use). `--markdown` appends
the tables for benchmarks/RESULTS.md. Objects beyond the prompts file's first are copies
of its mask, shifted sideways. The timed runs collect no score traces (`--no_trace`: their
host reads are not tracking work). An engine set that fails to build (bf16 before Ampere)
drops its side with a note; the rest of the matrix runs. No timing assertions.

    python benchmarks/bench_gpu.py --reference_repo .reference/SAM2Long --markdown /tmp/gpu.md
"""

from __future__ import annotations

import argparse
import copy
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
from sam2long.engine.stages import PRECISIONS  # noqa: E402
from bench_vs_reference import (  # noqa: E402
    add_input_args,
    agreement,
    resolve_input_args,
    run_side,
    tracked_frames,
)

BENCH = ROOT / "benchmarks"


def make_prompts(source: str, num_objects: int, out: Path) -> str:
    """The source's first object plus shifted copies, ids 1..num_objects."""
    data = np.load(source)
    first = sorted(int(k[5:]) for k in data.files if k.startswith("mask_"))[0]
    mask, frame = data[f"mask_{first}"], data[f"frame_{first}"]
    shift = mask.shape[1] // (2 * num_objects)
    arrays = {}
    for i in range(num_objects):
        arrays[f"mask_{i + 1}"] = np.roll(mask, i * shift, axis=1)
        arrays[f"frame_{i + 1}"] = frame
    np.savez(out, **arrays)
    return str(out)


def available_sides(args, engine_dirs) -> dict[str, tuple[Path, str, list[str]]]:
    """name -> (script, PYTHONPATH, extra args), for what this machine can run."""
    ours = (BENCH / "engine_runner.py", str(ROOT))
    sides = {}
    if args.reference_repo:
        sides["original"] = (BENCH / "reference_runner.py", str(Path(args.reference_repo).resolve()),
                             ["--device", "cuda"])
    sides["sam2_vos"] = (BENCH / "sam2_vos_runner.py", str(ROOT), ["--device", "cuda", "--vos_optimized"])
    for precision in ("fp32", "bf16"):
        base = ["--backend", "torch", "--device", "cuda", "--precision", precision]
        sides[f"torch_{precision}"] = (*ours, base)
        sides[f"torch_{precision}_graphs"] = (*ours, base + ["--cuda_graphs"])
    if "onnx" in engine_dirs:
        sides["onnx"] = (*ours, ["--backend", "onnx", "--device", "cuda", "--engine_dir", engine_dirs["onnx"]])
    for precision in engine_dirs.get("trt_precisions", ()):
        sides[f"trt_{precision}"] = (*ours, ["--backend", "trt", "--device", "cuda", "--precision", precision,
                                             "--engine_dir", engine_dirs["trt"], "--cuda_graphs"])
    return sides


def _built(cmd: list[str], what: str) -> bool:
    """Run one engine build; a failure is a note, not the end of the matrix."""
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        last = (done.stderr.strip() or done.stdout.strip()).splitlines()[-1:] or ["no output"]
        print(f"{what} skipped: the engine build failed ({last[0]})")
    return done.returncode == 0


def build_engines(args, tmp: Path) -> dict:
    """Engines for the onnx / trt sides, when their runtimes are here (untimed): the
    folder, and the TensorRT precisions that built."""
    dirs = {}
    out = tmp / "engines"
    cmd = [args.python, str(ROOT / "export" / "build_engines.py"), "--sam2_cfg", args.config,
           "--sam2_checkpoint", args.checkpoint, "--out_dir", str(out)]
    if not _built(cmd, "onnx and trt sides"):
        return dirs
    try:
        import onnxruntime

        if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
            dirs["onnx"] = str(out)
        else:
            print("onnx side skipped: this onnxruntime has no CUDA execution provider")
    except ImportError:
        print("onnx side skipped: onnxruntime is not installed")
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        print("trt sides skipped: TensorRT is not installed")
        return dirs
    built = [p for p in args.trt_precisions
             if _built(cmd + ["--targets", "trt", "--precision", p], f"trt_{p} side")]
    if built:
        dirs["trt"], dirs["trt_precisions"] = str(out), built
    return dirs


def run_config(args, sides, num_pathway, prompts, tmp, lines):
    cfg = copy.copy(args)
    cfg.num_pathway, cfg.prompts = num_pathway, prompts
    results = {}
    for name, (script, pythonpath, extra) in sides.items():
        if name == "sam2_vos" and num_pathway != 1:
            continue
        out = tmp / f"{name}_p{num_pathway}.npz"
        try:  # no score traces inside the timings: they add host reads every frame
            seconds = [run_side(script, pythonpath, cfg, out, [*extra, "--no_trace"]) for _ in range(args.repeats)]
        except SystemExit as e:  # one side failing must not lose the others' numbers
            print(f"  {name}: FAILED ({e})")
            continue
        data = dict(np.load(out))
        fps = tracked_frames(data) / statistics.median(seconds)
        results[name] = (fps, data)
        print(f"  {name}: {fps:.2f} frames/s", flush=True)
    ref = results.get("torch_fp32", (None, None))[1]
    num_obj = len([k for k in np.load(prompts).files if k.startswith("mask_")])
    lines += [f"\n**P={num_pathway}, {num_obj} object(s)**\n",
              "| side | frames/s | x original | x sam2_vos | min IoU vs torch fp32 | peak torch MiB | GPU in use MiB |",
              "|---|---|---|---|---|---|---|"]
    for name, (fps, data) in results.items():
        def ratio(other):
            return f"{fps / results[other][0]:.2f}" if other in results else "-"
        iou = "-"
        if ref is not None and name != "torch_fp32":
            agree = [v["min_iou"] for v in agreement(data, ref).values() if v["min_iou"] is not None]
            iou = f"{min(agree):.4f}" if agree else "-"
        mib = [f"{float(data[k]) / 2**20:.0f}" if k in data else "-" for k in ("peak_torch_bytes", "gpu_bytes_used")]
        lines.append(f"| {name} | {fps:.2f} | {ratio('original')} | {ratio('sam2_vos')} | {iou} | {mib[0]} | {mib[1]} |")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_input_args(p, "frames16")
    p.add_argument("--pathways", type=int, nargs="+", default=[1, 3])
    p.add_argument("--objects", type=int, nargs="+", default=[1, 4])
    p.add_argument("--trt_precisions", nargs="+", default=list(PRECISIONS))
    p.add_argument("--repeats", type=int, default=1, help="timed runs per side (median)")
    p.add_argument("--python", default=sys.executable)
    p.add_argument("--markdown", help="append the result tables to this file")
    args = p.parse_args(argv)
    import torch

    if not torch.cuda.is_available():  # before anything is prepared
        raise SystemExit("bench_gpu.py needs a CUDA GPU; benchmarks/bench_vs_reference.py covers the CPU")
    resolve_input_args(p, args)
    lines = [f"\n### {torch.cuda.get_device_name()} ({Path(args.config).name}, {Path(args.frames).name})\n"]
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        sides = available_sides(args, build_engines(args, tmp))
        for num_obj in args.objects:
            prompts = make_prompts(args.prompts, num_obj, tmp / f"prompts_{num_obj}.npz")
            for num_pathway in args.pathways:
                print(f"P={num_pathway}, {num_obj} object(s)", flush=True)
                run_config(args, sides, num_pathway, prompts, tmp, lines)
    text = "\n".join(lines) + "\n"
    print(text)
    if args.markdown:
        with open(args.markdown, "a") as f:
            f.write(text)


if __name__ == "__main__":
    main()
