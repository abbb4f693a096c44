"""One place that turns `--backend` + model flags into a StageBackend."""

from __future__ import annotations

from pathlib import Path

import torch

from sam2long.engine.errors import ConfigError
from sam2long.engine.model_loading import load_sam2_model
from sam2long.engine.stages import PRECISIONS, StageBackend

BACKENDS = ("torch", "onnx", "trt")


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise ConfigError(f"--device {device!r} is not a device: use auto, cpu, cuda or cuda:N") from None
    if dev.type not in ("cpu", "cuda"):
        raise ConfigError(f"--device {device}: only cpu and cuda devices are supported")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"--device {device}: CUDA is not available on this machine")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ConfigError(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return dev


def build_backend(backend: str, sam2_cfg: str, sam2_checkpoint: str, device: str = "auto",
                  engine_dir: str | None = None, precision: str = "fp32") -> StageBackend:
    """torch: the sam2 modules (autocast for bf16/fp16); onnx: the fp32 graphs in
    `engine_dir`; trt: the TensorRT engines built for this GPU under `engine_dir`. Graphs
    and engines are checked against this config and checkpoint first (a mismatch says how
    to rebuild)."""
    if backend not in BACKENDS:
        raise ConfigError(f"--backend {backend!r} is not available; choose from {BACKENDS}")
    if precision not in PRECISIONS:
        raise ConfigError(f"--precision {precision!r}: choose from {PRECISIONS}")
    dev = resolve_device(device)
    if backend == "torch":
        from sam2long.engine.torch_backend import TorchBackend

        return TorchBackend(load_sam2_model(sam2_cfg, sam2_checkpoint, device=dev).model, dev, precision)
    if backend == "onnx" and precision != "fp32":
        raise ConfigError("--backend onnx runs the fp32 graphs; reduced precision is for --backend trt or torch")
    from sam2long.engine.manifest import check_manifest
    from sam2long.engine.model_loading import resolve_config_path

    if not engine_dir:
        raise ConfigError(f"--backend {backend} needs --engine_dir (built by export/build_engines.py)")
    checkpoint = Path(sam2_checkpoint)
    if not checkpoint.is_file():
        raise ConfigError(f"checkpoint not found: {checkpoint} (needed to check the engines)")
    manifest = check_manifest(Path(engine_dir), resolve_config_path(sam2_cfg), checkpoint,
                              "fp32", sam2_cfg, sam2_checkpoint)
    if backend == "onnx":
        from sam2long.engine.onnx_backend import OnnxBackend

        return OnnxBackend(engine_dir, manifest, dev)
    from sam2long.engine.manifest import check_trt_manifest
    from sam2long.engine.trt_backend import TensorRTUnavailable, TrtBackend, gpu_identity, import_tensorrt

    if dev.type != "cuda":
        raise TensorRTUnavailable(f"--backend trt runs on a CUDA GPU, not on {dev}")
    trt = import_tensorrt()
    gpu_name, capability = gpu_identity(dev)
    folder, trt_manifest = check_trt_manifest(Path(engine_dir), manifest, gpu_name, capability,
                                              trt.__version__, precision, sam2_cfg, sam2_checkpoint)
    return TrtBackend(engine_dir, folder, trt_manifest, dev)
