"""The TensorRT backend: the four engines built by `export/build_engines.py --targets trt`.

One execution context per engine and input shape: shapes are set once per context, so a
CUDA graph captured over one context stays valid whatever other shapes (a prompt frame's
batch of one) run in between. Inputs and outputs are torch CUDA tensors bound by address
(`set_tensor_address`); outputs come from torch's caching allocator, so after the first
frames no call allocates device memory, and the runtime may keep them as long as it likes.
The engines run one after another on the caller's current stream (the tracker runs on one
non-default stream, and a CUDA-graph capture records them there), so every context shares
one scratch buffer (USER_MANAGED context memory).
"""

from __future__ import annotations

from pathlib import Path

import torch

from engine.errors import SAM2LongError

from engine.graph_backend import GraphBackend, check_stage_io
from engine.manifest import STAGES, EngineMismatchError, TrtManifest
from engine.stages import STAGE_SPECS


class TensorRTUnavailable(SAM2LongError, RuntimeError):
    """TensorRT or CUDA is missing on this machine."""


def import_tensorrt():
    try:
        import tensorrt as trt
    except ImportError as e:
        raise TensorRTUnavailable(
            f"TensorRT is not installed in this environment ({e}); install it with "
            "`pip install tensorrt` on a machine with an NVIDIA GPU, or use --backend torch") from None
    if int(trt.__version__.split(".")[0]) < 10:
        raise TensorRTUnavailable(f"TensorRT {trt.__version__} is too old: 10.x or 11.x is needed")
    return trt


def gpu_identity(device: torch.device | None = None) -> tuple[str, str]:
    """(GPU name, compute capability 'major.minor'): what engines are keyed by."""
    if not torch.cuda.is_available():
        raise TensorRTUnavailable("TensorRT needs a CUDA GPU; this machine has none")
    major, minor = torch.cuda.get_device_capability(device)
    return torch.cuda.get_device_name(device), f"{major}.{minor}"


def torch_dtype(trt, dtype) -> torch.dtype:
    table = {trt.DataType.FLOAT: torch.float32, trt.DataType.HALF: torch.float16,
             trt.DataType.INT32: torch.int32, trt.DataType.INT64: torch.int64,
             trt.DataType.BOOL: torch.bool, trt.DataType.INT8: torch.int8,
             trt.DataType.UINT8: torch.uint8, trt.DataType.BF16: torch.bfloat16}
    return table[dtype]


class TrtBackend(GraphBackend):
    name = "trt"

    def __init__(self, engine_dir: str | Path, trt_folder: Path, manifest: TrtManifest,
                 device: str | torch.device = "cuda"):
        trt = import_tensorrt()
        self.trt = trt
        self.device = torch.device(device)
        if self.device.type != "cuda":
            raise TensorRTUnavailable(f"--backend trt runs on a CUDA device, not {self.device}")
        self.manifest = manifest
        self.max_batch = manifest.max_batch
        self._load_constants(Path(engine_dir))
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.runtime = trt.Runtime(self.logger)
        self.engines, self.contexts, self.io = {}, {}, {}
        with torch.cuda.device(self.device):
            for stage in STAGES:
                self._load_stage(stage, Path(trt_folder) / manifest.files[stage])
            # Engines run one after another on one stream: one scratch buffer serves all
            # (device_memory_size_v2 covers every shape of the profile).
            sizes = [self._scratch_size(e) for e in self.engines.values()]
            self.scratch = torch.empty(max(sizes + [1]), dtype=torch.uint8, device=self.device)

    def _load_stage(self, stage: str, path: Path):
        trt = self.trt
        engine = self.runtime.deserialize_cuda_engine(path.read_bytes())
        if engine is None:  # another GPU, TensorRT version or a damaged file
            raise EngineMismatchError(
                f"TensorRT could not load {path} (built by TensorRT {self.manifest.tensorrt_version} "
                f"for {self.manifest.gpu_name}; this is TensorRT {trt.__version__}); rebuild the "
                f"engines on this machine with export/build_engines.py --targets trt --force")
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        check_stage_io(stage, inputs, outputs)
        self.engines[stage] = engine
        self.io[stage] = (
            {n: (torch_dtype(trt, engine.get_tensor_dtype(n)), -1 in tuple(engine.get_tensor_shape(n)))
             for n in inputs},
            {n: torch_dtype(trt, engine.get_tensor_dtype(n)) for n in outputs},
        )

    @staticmethod
    def _scratch_size(engine) -> int:
        size = getattr(engine, "device_memory_size_v2", None)  # 10.1+; all profiles
        return int(size if size is not None else engine.device_memory_size)

    def _context(self, stage: str, shapes: dict[str, tuple]):
        """The execution context of `stage` for these input shapes (made on first use)."""
        key = (stage, tuple(sorted(shapes.items())))
        ctx = self.contexts.get(key)
        if ctx is None:
            strategy = self.trt.ExecutionContextAllocationStrategy.USER_MANAGED
            ctx = self.engines[stage].create_execution_context(strategy)
            ctx.set_device_memory(self.scratch.data_ptr(), self.scratch.numel())
            input_types = self.io[stage][0]
            for name, shape in shapes.items():
                if input_types[name][1] and not ctx.set_input_shape(name, shape):
                    raise ValueError(f"stage {stage}: input {name} of shape {shape} is outside the "
                                     "engine's optimization profile; rebuild with a larger --max_batch")
            self.contexts[key] = ctx
        return ctx

    def _run(self, stage: str, feeds: dict[str, torch.Tensor], batch: int) -> list[torch.Tensor]:
        self._check_batch(stage, batch)
        input_types, output_types = self.io[stage]
        bound = {name: value.to(self.device, input_types[name][0]).contiguous() for name, value in feeds.items()}
        ctx = self._context(stage, {name: tuple(value.shape) for name, value in bound.items()})
        for name, value in bound.items():  # `bound` keeps them alive until the work is queued
            ctx.set_tensor_address(name, value.data_ptr())
        outputs = []
        for name in (t.name for t in STAGE_SPECS[stage].outputs):
            shape = tuple(ctx.get_tensor_shape(name))
            if any(d < 0 for d in shape):
                raise RuntimeError(f"stage {stage}: output {name} has unresolved shape {shape}")
            out = torch.empty(shape, dtype=output_types[name], device=self.device)
            ctx.set_tensor_address(name, out.data_ptr())
            outputs.append(out)
        stream = torch.cuda.current_stream(self.device)
        if not ctx.execute_async_v3(stream.cuda_stream):
            raise RuntimeError(f"TensorRT failed to enqueue stage {stage}")
        return outputs  # the graphs' outputs are fp32 at every precision (export/onnx_precision.py)
