"""One place that turns `--backend` + model flags into a StageBackend."""

from __future__ import annotations

import torch

from engine.model_loading import load_sam2_model
from engine.stages import StageBackend

BACKENDS = ("torch",)


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {device}: CUDA is not available on this machine")
    return dev


def build_backend(backend: str, sam2_cfg: str, sam2_checkpoint: str, device: str = "auto") -> StageBackend:
    if backend not in BACKENDS:
        raise ValueError(f"--backend {backend!r} is not available yet; choose from {BACKENDS}")
    dev = resolve_device(device)
    loaded = load_sam2_model(sam2_cfg, sam2_checkpoint, device=dev)
    from engine.torch_backend import TorchBackend

    return TorchBackend(loaded.model, dev)
