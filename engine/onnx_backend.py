"""The ONNX Runtime backend: the exported graphs behind the same stage interface.

CPU everywhere; on CUDA machines with onnxruntime-gpu, the TensorRT or CUDA execution
provider with I/O bound to torch device tensors. Asking for a GPU provider that is not
there is an error, never a silent fall back to the CPU.

ONNX Runtime's CUDA providers run on a stream of their own, not on the caller's: inputs
the tracker wrote on its stream are not ordered before them. So each GPU call first waits
for the caller's stream (one host wait per stage call; this backend is the portable
path, TensorRT the fast one), and ONNX Runtime's Run returns once its own work is done, so
the outputs are ready for the caller's stream. The host waits make these calls impossible
to capture in a CUDA graph: with --cuda_graphs the capture fails and the tracker runs
eagerly, with a warning.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from sam2long.engine.errors import SAM2LongError
from sam2long.engine.graph_backend import GraphBackend, check_stage_io
from sam2long.engine.manifest import STAGES, EngineMismatchError, Manifest, check_graph_format
from sam2long.engine.profiles import ort_trt_profile_options, slot_limits
from sam2long.engine.stages import (STAGE_SPECS, MemoryInputs, ModelGeometry, attend_row_groups, output_names,
                                    resolve_dims)

# ONNX Runtime's errors for a graph file it cannot read (damaged, truncated, not ONNX).
UNREADABLE_GRAPH = ("InvalidProtobuf", "InvalidGraph", "NoSuchFile", "Fail")
TORCH_TO_NUMPY = {torch.float32: np.float32, torch.int64: np.int64, torch.int32: np.int32,
                  torch.bool: np.bool_}


def _providers(stage: str, device: torch.device, engine_dir: Path, geo: ModelGeometry, max_batch: int):
    import onnxruntime as ort

    available = ort.get_available_providers()
    if device.type == "cpu":
        return ["CPUExecutionProvider"]
    options = {"device_id": device.index or 0}
    if "TensorrtExecutionProvider" in available:
        cache = engine_dir / "ort_trt_cache"  # engines and timing cache survive restarts
        cache.mkdir(exist_ok=True)
        trt = dict(options, trt_engine_cache_enable=True, trt_engine_cache_path=str(cache),
                   trt_timing_cache_enable=True, trt_timing_cache_path=str(cache),
                   **ort_trt_profile_options(stage, geo, max_batch))
        return [("TensorrtExecutionProvider", trt), ("CUDAExecutionProvider", options)]
    if "CUDAExecutionProvider" in available:
        return [("CUDAExecutionProvider", options)]
    raise RuntimeError(
        f"--backend onnx on {device}: this onnxruntime has no GPU execution provider "
        f"(available: {', '.join(available)}); install onnxruntime-gpu or use --device cpu")


def graph_file(manifest: Manifest, stage: str, tensorrt: bool) -> str:
    """The graph a stage's session runs. ONNX Runtime's TensorRT provider gets the graphs
    TensorRT engines are built from (standard ops): it takes them whole, so its
    one subgraph's inputs are the graph's, all profiled. The fused MultiHeadAttention of the
    other graph is not TensorRT's, splits the graph, and leaves subgraph inputs that no
    profile names (ONNX Runtime then fails asking for their shapes)."""
    return manifest.trt_source(stage) if tensorrt else manifest.files[stage]


class OnnxRuntimeError(SAM2LongError, RuntimeError):
    """ONNX Runtime failed to prepare or run a stage (its message, in one line)."""


def _from_onnxruntime(e: BaseException) -> bool:
    return type(e).__module__.startswith("onnxruntime")


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0][:300] if text else ''}"


ATTENTION_SCORE_BYTES = 2 << 30  # per memory-attention call

_SHARED_ARENA = False
ARENA_CONFIG = {"arena_extend_strategy": 0, "initial_chunk_size_bytes": 1 << 30}


def share_cpu_arena(ort) -> None:
    """Register one CPU arena in ONNX Runtime's process-wide environment (once), which
    sessions opting in with `session.use_env_allocators` then share."""
    global _SHARED_ARENA
    if _SHARED_ARENA:
        return
    info = ort.OrtMemoryInfo("Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT)
    # One 1 GiB region first (kNextPowerOfTwo after it), of which only the pages used are
    # ever resident: every stage's buffers come from it, and freed neighbours merge for
    # the next request. Grown by each request instead (kSameAsRequested), a freed buffer
    # sat in its own region and a larger request made another: tiny's peak RSS, 48 frames,
    # 1145 against 1321 MiB, flat either way; b+'s image encoder alone 1354 against 1465.
    ort.create_and_register_allocator(info, ort.OrtArenaCfg(ARENA_CONFIG))
    _SHARED_ARENA = True


def session_options(ort, device: torch.device, stage: str):
    """One stage's ONNX Runtime session options."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # errors only: shape-merge notes are noise
    if device.type != "cpu":
        options.add_session_config_entry("session.disable_cpu_ep_fallback", "1")
        return options
    # One arena for the four sessions: each session's own arena kept its largest call's
    # buffers, so the process held the sum of the four stages' peaks (2.3x the torch
    # backend's peak resident memory on micro, 1.3x shared); shared, it holds the largest.
    share_cpu_arena(ort)
    options.add_session_config_entry("session.use_env_allocators", "1")
    # No memory pattern: after its first run a session asks the arena for one block the
    # size of all its intermediate tensors, a region beside the first run's, which the
    # arena then keeps too (tiny, probe frame: peak 1975 against 1362 MiB, at the same
    # speed; torch 1179). Without it each run reuses the first run's chunks.
    options.enable_mem_pattern = False
    # No busy-waiting between calls: the tracker's torch ops, and in a mixed backend torch's
    # stages, run on the same cores right after each call, and threads spinning there
    # slowed them (tiny, one frame: the decoder 58 against 90 ms after onnx's attention, the
    # whole frame 3-5% faster).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


class OnnxBackend(GraphBackend):
    name = "onnx"

    def __init__(self, engine_dir: str | Path, manifest: Manifest, device: str | torch.device = "cpu",
                 stages: tuple[str, ...] | None = None):
        """`stages`: the graphs to open (default all; a mixed backend runs the others
        elsewhere); calling a stage left out is an error."""
        import onnxruntime as ort

        self.engine_dir = Path(engine_dir)
        self.device = torch.device(device)
        check_graph_format(self.engine_dir, manifest.graph_format, "export/build_engines.py")
        self.manifest = manifest
        self.max_batch = manifest.max_batch
        self._load_constants(self.engine_dir)
        self.sessions = {}
        self.profiled = False  # the TensorRT provider's profiles cap the batch
        stages = STAGES if stages is None else stages
        unknown = set(stages) - set(STAGES)
        if unknown:
            raise ValueError(f"stages {sorted(unknown)}: choose from {STAGES}")
        for stage in stages:
            providers = _providers(stage, self.device, self.engine_dir, self.geometry, manifest.max_batch)
            tensorrt = any(p[0] == "TensorrtExecutionProvider" for p in providers if isinstance(p, tuple))
            self.profiled |= tensorrt
            path = self.engine_dir / graph_file(manifest, stage, tensorrt)
            try:
                session = ort.InferenceSession(str(path), session_options(ort, self.device, stage),
                                               providers=providers)
            except Exception as e:
                if type(e).__name__ in UNREADABLE_GRAPH:
                    raise EngineMismatchError(
                        f"ONNX Runtime cannot load {path} ({_first_line(e)}); rebuild the "
                        f"engines with export/build_engines.py --force") from None
                if _from_onnxruntime(e):
                    raise OnnxRuntimeError(f"ONNX Runtime could not prepare stage {stage} from {path} on "
                                           f"{self.device} ({_first_line(e)})") from None
                raise
            check_stage_io(stage, [i.name for i in session.get_inputs()],
                           [o.name for o in session.get_outputs()])
            self.sessions[stage] = session
        # Graphs exported with dynamic memory slots take only the slots a call's rows hold,
        # and more than the model's M with several prompt frames per object.
        if "memory_attention" in self.sessions:
            slots = {i.name: i.shape for i in self.sessions["memory_attention"].get_inputs()}["mem_feats"][1]
            if isinstance(slots, str):
                self.slot_dynamic_stages = frozenset({"memory_attention"})

    def attend_memory(self, feat: torch.Tensor, memory: MemoryInputs, mem_ids=None) -> torch.Tensor:
        """Rows go in groups whose attention scores fit ATTENTION_SCORE_BYTES, on every
        device (a fused kernel holds a row's scores at once, an unfused one two copies):
        memory stays flat in the object count. On the CPU each call takes rows holding the
        same frame slots, with only the slots they use (attend_row_groups); on a GPU that
        would wait for the device, and the slots stay."""
        self.check_slots(memory)
        if "memory_attention" in self.slot_dynamic_stages and self.device.type == "cpu":
            return attend_row_groups(memory, lambda rows, frames, group: self._attend_in_chunks(feat, group))
        return self._attend_in_chunks(feat, memory)

    def _attend_in_chunks(self, feat: torch.Tensor, memory: MemoryInputs) -> torch.Tensor:
        row_bytes = self.geometry.attention_score_bytes(4, memory.mem_feats.shape[1], memory.ptrs.shape[1])
        rows = max(1, ATTENTION_SCORE_BYTES // row_bytes)
        batch = memory.mem_feats.shape[0]
        if batch <= rows:
            return super().attend_memory(feat, memory)
        return torch.cat([super(OnnxBackend, self).attend_memory(feat, memory.select(rows=slice(r, r + rows)))
                          for r in range(0, batch, rows)])

    def row_limit(self) -> int | None:
        return self.max_batch if self.profiled else None  # the CPU and CUDA providers take any batch

    def slot_limits(self) -> dict[str, int] | None:
        return slot_limits(self.geometry) if self.profiled else None  # and any number of slots

    def _run(self, stage: str, feeds: dict[str, torch.Tensor], batch: int) -> list[torch.Tensor]:
        try:
            return self._run_session(stage, feeds, batch)
        except Exception as e:
            if not _from_onnxruntime(e):
                raise
            raise OnnxRuntimeError(f"ONNX Runtime failed to run stage {stage} with {batch} row(s) on "
                                   f"{self.device} ({_first_line(e)})") from None

    def _run_session(self, stage: str, feeds: dict[str, torch.Tensor], batch: int) -> list[torch.Tensor]:
        session = self.sessions.get(stage)
        if session is None:
            raise RuntimeError(f"stage {stage}: this onnx backend opened only {sorted(self.sessions)}")
        if self.device.type == "cpu":
            outputs = session.run(output_names(stage), {k: v.contiguous().numpy() for k, v in feeds.items()})
            return [torch.from_numpy(o) for o in outputs]
        # GPU: bind torch device tensors in and out, no host copies. The provider's stream
        # is not the caller's: wait until the caller's stream has written the inputs, and
        # the dense copies of any strided ones, which are queued on it too.
        feeds = {name: value.contiguous() for name, value in feeds.items()}  # alive until the run returns
        torch.cuda.current_stream(self.device).synchronize()
        binding = session.io_binding()
        device_id = self.device.index or 0
        for name, value in feeds.items():
            binding.bind_input(name, "cuda", device_id, TORCH_TO_NUMPY[value.dtype],
                               list(value.shape), value.data_ptr())
        outputs = []
        for spec in STAGE_SPECS[stage].outputs:
            out = torch.empty(resolve_dims(spec, self.geometry, batch), dtype=getattr(torch, spec.dtype),
                              device=self.device)
            binding.bind_output(spec.name, "cuda", device_id, TORCH_TO_NUMPY[out.dtype],
                                list(out.shape), out.data_ptr())
            outputs.append(out)
        session.run_with_iobinding(binding)
        return outputs
