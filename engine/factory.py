"""One place that turns `--backend` + model flags into a StageBackend."""

from __future__ import annotations

from pathlib import Path

import torch

from engine.model_loading import load_sam2_model
from engine.stages import StageBackend

BACKENDS = ("torch", "onnx")


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {device}: CUDA is not available on this machine")
    return dev


def build_backend(backend: str, sam2_cfg: str, sam2_checkpoint: str, device: str = "auto",
                  engine_dir: str | None = None, precision: str = "fp32") -> StageBackend:
    """torch: the sam2 modules; onnx: the graphs in `engine_dir`, after checking their
    manifest against this config and checkpoint (a mismatch says how to rebuild)."""
    if backend not in BACKENDS:
        raise ValueError(f"--backend {backend!r} is not available; choose from {BACKENDS}")
    dev = resolve_device(device)
    if backend == "onnx":
        from engine.manifest import check_manifest
        from engine.model_loading import resolve_config_path
        from engine.onnx_backend import OnnxBackend

        if not engine_dir:
            raise ValueError("--backend onnx needs --engine_dir (built by export/build_engines.py)")
        checkpoint = Path(sam2_checkpoint)
        if not checkpoint.is_file():
            raise ValueError(f"checkpoint not found: {checkpoint} (needed to check the engines)")
        manifest = check_manifest(Path(engine_dir), resolve_config_path(sam2_cfg), checkpoint,
                                  precision, sam2_cfg, sam2_checkpoint)
        return OnnxBackend(engine_dir, manifest, dev)
    loaded = load_sam2_model(sam2_cfg, sam2_checkpoint, device=dev)
    from engine.torch_backend import TorchBackend

    return TorchBackend(loaded.model, dev)
