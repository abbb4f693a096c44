"""The TensorRT backend: the four engines built by `export/build_engines.py --targets trt`.

TensorRT 10.1 or newer (10.x and 11.x): 10.0 lacks `IExecutionContext.set_device_memory(ptr,
size)`, which the shared working memory below needs (tests/data/tensorrt/tensorrt_api.json).

Execution contexts. A context holds its input shapes and its tensors' addresses, and a CUDA
graph captured over a context keeps the addresses bound at capture: an eager call that
later rebinds the same context would corrupt the graph. So contexts are keyed by the CUDA
graph scope they serve (runtime/cuda_graphs.py tells the backend, through `graph_scope`,
which captured graph a call belongs to; None for eager calls), the stage, the input shapes
and the call's position within the scope. A captured graph's contexts are never used
outside its scope, and eager calls (a prompt frame of the same batch) get their own.
Contexts are made in the eager warm-up call that precedes every capture, never during a
capture: making one allocates (TensorRT's own resources, our working memory), which a
CUDA graph capture in global mode forbids; a context missing during a capture is an error
the graph cache answers by running eagerly.

Working memory. The engines run one after another on the caller's current stream (the
tracker runs on one non-default stream, and a capture records them there), so every
context shares one scratch buffer (USER_MANAGED context memory). It is sized for the shapes
really run (`update_device_memory_size_for_shapes`), not for the profile's --max_batch: the
tracker announces its rows (objects x pathways) through `reserve_batch`. When a bigger
shape comes, a bigger buffer is made for the contexts made from then on; the older one
stays as long as a context made earlier uses it.

Inputs and outputs are torch CUDA tensors bound by address (`set_tensor_address`, whose
refusal is an error); outputs come from torch's caching allocator, so after the first frames
no call allocates device memory, and the runtime may keep them as long as it likes.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from pathlib import Path

import torch

from sam2long.engine.errors import SAM2LongError

from sam2long.engine.graph_backend import GraphBackend, check_stage_io
from sam2long.engine.manifest import STAGES, EngineMismatchError, TrtManifest, check_graph_format
from sam2long.engine.profiles import MAX_CLICKS
from sam2long.engine.stages import STAGE_SPECS, TORCH_DTYPES, resolve_dims

MIN_TENSORRT = (10, 1)


class TensorRTUnavailable(SAM2LongError, RuntimeError):
    """TensorRT or CUDA is missing on this machine."""


def import_tensorrt():
    try:
        import tensorrt as trt
    except ImportError as e:
        raise TensorRTUnavailable(
            f"TensorRT is not installed in this environment ({e}); install it with "
            "`pip install tensorrt` on a machine with an NVIDIA GPU, or use --backend torch") from None
    version = tuple(int(p) for p in trt.__version__.split(".")[:2])
    if version < MIN_TENSORRT:
        raise TensorRTUnavailable(
            f"TensorRT {trt.__version__} is too old: 10.1 or newer is needed (10.x or 11.x). "
            "TensorRT 10.0 lacks IExecutionContext.set_device_memory(ptr, size), which the engines' "
            "shared working memory uses; upgrade with `pip install -U tensorrt`")
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


ALIGNMENT = 256  # bytes, what TensorRT wants of every bound address


def _dense(value: torch.Tensor) -> torch.Tensor:
    """`value` as TensorRT binds it: contiguous, at an aligned address. The tracker's
    tensors already are (whole allocations); a view at an odd offset is copied."""
    value = value.contiguous()
    return value if value.data_ptr() % ALIGNMENT == 0 else value.clone()


def capturing() -> bool:
    """Whether the current CUDA stream is being captured into a graph."""
    return torch.cuda.is_available() and torch.cuda.is_current_stream_capturing()


class TrtBackend(GraphBackend):
    name = "trt"
    # Frame and pointer slots from the model's M and K to the profile's most (the manifest's
    # slot_limits): the batch tracker always gives M and K, SAM 2 with several prompt
    # frames per object more.
    slot_dynamic_stages = frozenset({"memory_attention"})

    def __init__(self, engine_dir: str | Path, trt_folder: Path, manifest: TrtManifest,
                 device: str | torch.device = "cuda"):
        trt = import_tensorrt()
        device = torch.device(device)
        if device.type != "cuda":
            raise TensorRTUnavailable(f"--backend trt runs on a CUDA device, not {device}")
        with torch.cuda.device(device):
            self._setup(trt, engine_dir, trt_folder, manifest, device)

    def _setup(self, trt, engine_dir, trt_folder, manifest: TrtManifest, device: torch.device):
        """Everything but the checks that need CUDA (the offline tests run this on the CPU)."""
        self.trt = trt
        self.device = device
        check_graph_format(Path(trt_folder), manifest.graph_format, "export/build_engines.py --targets trt")
        self.manifest = manifest
        self.max_batch = manifest.max_batch
        self._load_constants(Path(engine_dir))
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.runtime = trt.Runtime(self.logger)
        self.engines, self.dynamic = {}, {}
        self.contexts: dict = {}  # (scope, stage, shapes, call) -> (context, its scratch buffer)
        self.scratch: torch.Tensor | None = None  # the buffer new contexts get
        self._scope, self._calls, self._released = None, Counter(), set()
        for stage in STAGES:
            self._load_stage(stage, Path(trt_folder) / manifest.files[stage])

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
        spec = STAGE_SPECS[stage]
        for t in (*spec.inputs, *spec.outputs):  # the spec's dtypes, so calls convert nothing
            got = torch_dtype(trt, engine.get_tensor_dtype(t.name))
            if got != TORCH_DTYPES[t.dtype]:
                raise EngineMismatchError(
                    f"stage {stage}: engine tensor {t.name} is {got}, the stage spec says {t.dtype}; "
                    f"rebuild the engines with export/build_engines.py --targets trt --force")
        if stage == "memory_attention" and any(engine.get_tensor_shape(n)[1] != -1 for n in ("mem_feats", "ptrs")):
            raise EngineMismatchError(
                f"{path} has fixed memory slots (built from an older graph); rebuild the engines with "
                f"export/build_engines.py --targets trt --force")
        self.engines[stage] = engine
        self.dynamic[stage] = {n for n in inputs if -1 in tuple(engine.get_tensor_shape(n))}

    def slot_limits(self) -> dict[str, int] | None:
        return dict(self.manifest.slot_limits)

    # -- CUDA graph scopes (runtime/cuda_graphs.py) -----------------------------------------
    @contextlib.contextmanager
    def graph_scope(self, scope):
        outer = (self._scope, self._calls)
        self._scope, self._calls = scope, Counter()
        try:
            yield
        finally:
            self._scope, self._calls = outer

    def release_graph_scope(self, scope):
        # Freed now unless another graph is being captured, when destroying a context
        # (which frees TensorRT resources) is not allowed: then at the next safe point.
        self._released.add(scope)
        with self._on_device():
            self._drop_released()

    def _drop_released(self):
        if self._released and not capturing():
            self.contexts = {k: v for k, v in self.contexts.items() if k[0] not in self._released}
            self._released.clear()
            if self.scratch is not None and not self.contexts:
                self.scratch = None  # the next context sizes its own

    # -- contexts and working memory ----------------------------------------------------------
    def reserve_batch(self, rows: int):
        """Size the working memory once for `rows` rows (and the prompt frames' batch of
        one with up to the profile's clicks), before any capture."""
        if capturing():
            return
        with self._on_device():
            self._reserve(rows)

    def _reserve(self, rows: int):
        self._drop_released()
        rows = max(1, min(rows, self.max_batch))
        needed = 0
        for stage in STAGES:
            for batch, clicks in ((rows, 1), (1, MAX_CLICKS)):
                shapes = {t.name: resolve_dims(t, self.geometry, batch, clicks) for t in STAGE_SPECS[stage].inputs}
                ctx = self._new_context(stage, shapes)
                needed = max(needed, int(ctx.update_device_memory_size_for_shapes()))
                del ctx
        self._grow_scratch(needed)

    def _grow_scratch(self, needed: int) -> torch.Tensor:
        if self.scratch is None or self.scratch.numel() < needed:
            self.scratch = torch.empty(max(needed, 1), dtype=torch.uint8, device=self.device)
        return self.scratch

    def _new_context(self, stage: str, shapes: dict[str, tuple]):
        strategy = self.trt.ExecutionContextAllocationStrategy.USER_MANAGED
        ctx = self.engines[stage].create_execution_context(strategy)
        if ctx is None:
            raise RuntimeError(f"TensorRT could not create an execution context for stage {stage} "
                               "(out of device memory?)")
        for name in self.dynamic[stage]:
            if not ctx.set_input_shape(name, shapes[name]):  # calls are split and prompts checked: a bug
                limits = self.manifest.slot_limits
                raise RuntimeError(f"stage {stage}: input {name} of shape {shapes[name]} is outside the "
                                   f"engine's optimization profile (rows 1..{self.max_batch}, clicks "
                                   f"1..{MAX_CLICKS}, memory frames {self.geometry.num_maskmem}.."
                                   f"{limits['M']}, pointers {self.geometry.max_obj_ptrs}..{limits['K']})")
        return ctx

    def _context(self, stage: str, shapes: dict[str, tuple]):
        """The context of this call: per graph scope, stage, input shapes and the call's
        position in the scope; made (with its share of working memory) on first use."""
        index = 0
        if self._scope is not None:  # eager calls share a context per stage and shapes
            index = self._calls[stage]
            self._calls[stage] += 1
        key = (self._scope, stage, tuple(shapes.items()), index)
        entry = self.contexts.get(key)
        if entry is not None:
            return entry[0]
        if capturing():
            raise RuntimeError(
                f"stage {stage}: no TensorRT execution context for this call was made in the graph's "
                "eager warm-up, and one cannot be made during a CUDA graph capture")
        self._drop_released()
        ctx = self._new_context(stage, shapes)
        scratch = self._grow_scratch(int(ctx.update_device_memory_size_for_shapes()))
        ctx.set_device_memory(scratch.data_ptr(), scratch.numel())
        self.contexts[key] = (ctx, scratch)
        return ctx

    # -- one engine call -----------------------------------------------------------------------
    def _on_device(self):
        """TensorRT makes contexts and runs on the current CUDA device: make it this
        backend's (a demo preview on --device cuda:1 runs outside the tracker's stream)."""
        if self.device.type != "cuda" or self.device.index is None:
            return contextlib.nullcontext()
        return torch.cuda.device(self.device)

    def _run(self, stage: str, feeds: dict[str, torch.Tensor], batch: int) -> list[torch.Tensor]:
        with self._on_device():
            return self._run_here(stage, feeds, batch)

    def _run_here(self, stage: str, feeds: dict[str, torch.Tensor], batch: int) -> list[torch.Tensor]:
        # Feeds are checked against the spec (GraphBackend._call): dtypes and device are
        # the engine's; TensorRT needs dense tensors at 256-byte aligned addresses.
        bound = {name: _dense(value) for name, value in feeds.items()}  # alive until queued
        ctx = self._context(stage, {name: tuple(value.shape) for name, value in bound.items()})
        for name, value in bound.items():
            self._bind(ctx, stage, name, value)
        outputs = []
        for spec in STAGE_SPECS[stage].outputs:
            shape = tuple(ctx.get_tensor_shape(spec.name))
            if any(d < 0 for d in shape):
                raise RuntimeError(f"stage {stage}: output {spec.name} has unresolved shape {shape}")
            out = torch.empty(shape, dtype=TORCH_DTYPES[spec.dtype], device=self.device)
            self._bind(ctx, stage, spec.name, out)
            outputs.append(out)
        stream = torch.cuda.current_stream(self.device)
        if not ctx.execute_async_v3(stream.cuda_stream):
            raise RuntimeError(f"TensorRT failed to enqueue stage {stage}")
        return outputs  # the graphs' outputs are fp32 at every precision (export/onnx_precision.py)

    @staticmethod
    def _bind(ctx, stage: str, name: str, value: torch.Tensor):
        if not ctx.set_tensor_address(name, value.data_ptr()):
            raise RuntimeError(f"stage {stage}: TensorRT refused the address of {name} "
                               f"({value.data_ptr():#x}, {tuple(value.shape)}): not a tensor of the engine, "
                               "or not aligned")

