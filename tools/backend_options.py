"""The backend flags every tool shares, and what `--backend auto` means."""

from __future__ import annotations

import argparse

from engine.stages import PRECISIONS

BACKEND_CHOICES = ("auto", "torch", "onnx", "trt")


def add_backend_args(parser, default: str = "auto"):
    """--backend --engine_dir --device --precision --cuda_graphs on `parser` (or a group)."""
    parser.add_argument("--backend", default=default, choices=BACKEND_CHOICES,
                        help="torch: the PyTorch reference (CPU or CUDA); onnx: ONNX Runtime over the "
                             "graphs in --engine_dir; trt: TensorRT engines built for this GPU in "
                             "--engine_dir; auto: trt when CUDA, TensorRT and engines for this GPU are "
                             "there, else torch (on CUDA when available), and says which")
    parser.add_argument("--engine_dir", default=None,
                        help="folder written by export/build_engines.py (for onnx and trt)")
    parser.add_argument("--device", default="auto", help="torch device: auto (CUDA when available), "
                                                         "cpu, cuda, cuda:1, ...")
    parser.add_argument("--precision", default="fp32", choices=PRECISIONS,
                        help="fp32 reproduces the original's masks; bf16/fp16: faster on GPUs "
                             "(torch autocast, or TensorRT engines built with that --precision)")
    parser.add_argument("--cuda_graphs", action="store_true",
                        help="on CUDA: capture each frame's work as CUDA graphs (less launch overhead)")


def build_chosen_backend(backend: str, sam2_cfg: str, sam2_checkpoint: str, device: str,
                         engine_dir: str | None, precision: str):
    """build_backend, with `auto` resolved: TensorRT engines for this GPU when they are
    usable here, otherwise torch (a note says why TensorRT was not used)."""
    from engine.factory import build_backend, resolve_device

    if backend != "auto":
        return build_backend(backend, sam2_cfg, sam2_checkpoint, device, engine_dir, precision)
    if resolve_device(device).type == "cuda" and engine_dir:
        from engine.manifest import EngineMismatchError
        from engine.trt_backend import TensorRTUnavailable

        try:
            return build_backend("trt", sam2_cfg, sam2_checkpoint, device, engine_dir, precision)
        except (TensorRTUnavailable, EngineMismatchError) as e:
            print(f"NOTE: --backend auto: not using TensorRT ({e}); using torch")
    return build_backend("torch", sam2_cfg, sam2_checkpoint, device, engine_dir, precision)


def check_cuda_graphs(args: argparse.Namespace, backend) -> bool:
    if args.cuda_graphs and backend.device.type != "cuda":
        raise ValueError(f"--cuda_graphs needs a CUDA device; the backend runs on {backend.device}")
    return bool(args.cuda_graphs)
