"""One place that turns `--backend` + model flags into a StageBackend."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from sam2long.engine.errors import ConfigError
from sam2long.engine.model_loading import load_sam2_model
from sam2long.engine.stages import PRECISIONS, StageBackend

BACKENDS = ("torch", "onnx", "trt")
_ANNOUNCED: set[str] = set()


def local_process(environ=None) -> tuple[int, int | None, str] | None:
    """(index of this process on its node, processes on the node or None, what said so) under
    a launcher that starts one process per GPU: torchrun's LOCAL_RANK / LOCAL_WORLD_SIZE, or
    an srun step's SLURM_LOCALID (only inside a step: a batch script inherits no task)."""
    environ = os.environ if environ is None else environ

    def number(name):
        value = environ.get(name, "").strip()
        return int(value) if value.isdigit() else None

    local = number("LOCAL_RANK")
    if local is not None:
        return local, number("LOCAL_WORLD_SIZE"), f"torchrun LOCAL_RANK={local}"
    local = number("SLURM_LOCALID")
    if local is not None and (number("SLURM_STEP_ID") is not None or number("SLURM_STEPID") is not None):
        per_node = environ.get("SLURM_STEP_TASKS_PER_NODE", environ.get("SLURM_TASKS_PER_NODE", ""))
        head = per_node.split("(")[0].split(",")[0]
        return local, int(head) if head.isdigit() else None, f"srun SLURM_LOCALID={local}"
    return None


def _rank_gpu(count: int, environ=None) -> tuple[int, str] | None:
    """The GPU of this process when a launcher started several per node: the node's
    local index among the visible GPUs. A launcher that gives each task its own GPU
    (SLURM's --gpus-per-task, or CUDA_VISIBLE_DEVICES set per process) leaves one visible:
    that one. More processes than GPUs is an error, not a pile-up on cuda:0."""
    found = local_process(environ)
    if found is None:
        return None
    local, per_node, source = found
    if count == 1:
        return 0, f"{source}: the one GPU visible to this process"
    if local >= count:
        raise ConfigError(f"{source}, but this node has {count} visible CUDA devices: start at most "
                          f"{count} processes per node (one per GPU)")
    return local, f"{source} of {per_node if per_node is not None else '?'} on this node"


def resolve_device(device: str, environ=None) -> torch.device:
    """`auto` and `cuda` are the CUDA device of this process: under torchrun or srun, the
    GPU of its local rank (each process its own, and it says which); an explicit cuda:N that
    is not that GPU is refused."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise ConfigError(f"--device {device!r} is not a device: use auto, cpu, cuda or cuda:N") from None
    if dev.type not in ("cpu", "cuda"):
        raise ConfigError(f"--device {device}: only cpu and cuda devices are supported")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"--device {device}: CUDA is not available on this machine")
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise ConfigError(f"--device {device}: this machine has {count} CUDA device(s)")
        rank = _rank_gpu(count, environ)
        if rank is not None:
            index, why = rank
            if dev.index is not None and dev.index != index:
                raise ConfigError(f"--device {device} clashes with the launcher: {why} is cuda:{index}; "
                                  "leave --device auto (each process takes its own GPU)")
            dev = torch.device("cuda", index)
            note = f"NOTE: this process runs on cuda:{index} ({why})"
            if note not in _ANNOUNCED:  # once, though the CLI resolves the device twice
                _ANNOUNCED.add(note)
                print(note, flush=True)
    return dev


def build_backend(backend: str, sam2_cfg: str, sam2_checkpoint: str, device: str = "auto",
                  engine_dir: str | None = None, precision: str = "fp32",
                  stages: tuple[str, ...] | None = None) -> StageBackend:
    """torch: the sam2 modules (autocast for bf16/fp16); onnx: the fp32 graphs in
    `engine_dir`; trt: the TensorRT engines built for this GPU under `engine_dir`. Graphs
    and engines are checked against this config and checkpoint first (a mismatch says how
    to rebuild). `stages` (onnx): open only these graphs, for a mixed backend."""
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

        return OnnxBackend(engine_dir, manifest, dev, stages)
    from sam2long.engine.manifest import check_trt_manifest
    from sam2long.engine.trt_backend import TensorRTUnavailable, TrtBackend, gpu_identity, import_tensorrt

    if dev.type != "cuda":
        raise TensorRTUnavailable(f"--backend trt runs on a CUDA GPU, not on {dev}")
    trt = import_tensorrt()
    gpu_name, capability = gpu_identity(dev)
    folder, trt_manifest = check_trt_manifest(Path(engine_dir), manifest, gpu_name, capability,
                                              trt.__version__, precision, sam2_cfg, sam2_checkpoint)
    return TrtBackend(engine_dir, folder, trt_manifest, dev)


def build_auto_backend(sam2_cfg: str, sam2_checkpoint: str, device: str = "auto", engine_dir: str | None = None,
                       precision: str = "fp32", build_graphs: bool = True,
                       torch_stages: tuple[str, ...] = ()) -> StageBackend:
    """`--backend auto`: on a GPU, the TensorRT engines in `engine_dir` when they are usable
    here; on a CPU in fp32, the faster of torch and onnx for this model, or each stage in the
    faster one, measured on its stages (engine/auto_backend.py; `torch_stages` stay in
    torch); otherwise torch. A note says which and why."""
    from sam2long.engine.manifest import EngineMismatchError

    on_cuda = resolve_device(device).type == "cuda"
    if on_cuda and engine_dir:
        from sam2long.engine.trt_backend import TensorRTUnavailable

        try:
            return build_backend("trt", sam2_cfg, sam2_checkpoint, device, engine_dir, precision)
        except (TensorRTUnavailable, EngineMismatchError) as e:
            print(f"NOTE: --backend auto: not using TensorRT ({e}); using torch")
    elif not on_cuda and precision == "fp32":
        from sam2long.engine.auto_backend import build_graphs_allowed, choose_cpu_backend

        choice = choose_cpu_backend(sam2_cfg, sam2_checkpoint, device, engine_dir,
                                    build=build_graphs_allowed(not build_graphs), torch_stages=torch_stages)
        print(f"NOTE: --backend auto: {choice.reason}")
        return choice.backend
    return build_backend("torch", sam2_cfg, sam2_checkpoint, device, engine_dir, precision)
