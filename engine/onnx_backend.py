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

from sam2long.engine.graph_backend import GraphBackend, check_stage_io
from sam2long.engine.manifest import STAGES, EngineMismatchError, Manifest
from sam2long.engine.profiles import ort_trt_profile_options
from sam2long.engine.stages import STAGE_SPECS, MemoryInputs, ModelGeometry, output_names, resolve_dims

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


ATTENTION_SCORE_BYTES = 2 << 30  # per memory-attention call on the CPU


class OnnxBackend(GraphBackend):
    name = "onnx"

    def __init__(self, engine_dir: str | Path, manifest: Manifest, device: str | torch.device = "cpu"):
        import onnxruntime as ort

        self.engine_dir = Path(engine_dir)
        self.device = torch.device(device)
        self.manifest = manifest
        self.max_batch = manifest.max_batch
        self._load_constants(self.engine_dir)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3  # errors only: shape-merge notes are noise
        if self.device.type != "cpu":
            options.add_session_config_entry("session.disable_cpu_ep_fallback", "1")
        self.sessions = {}
        self.profiled = False  # the TensorRT provider's profiles cap the batch
        for stage in STAGES:
            providers = _providers(stage, self.device, self.engine_dir, self.geometry, manifest.max_batch)
            self.profiled |= any(p[0] == "TensorrtExecutionProvider" for p in providers if isinstance(p, tuple))
            path = self.engine_dir / manifest.files[stage]
            try:
                session = ort.InferenceSession(str(path), options, providers=providers)
            except Exception as e:
                if type(e).__name__ not in UNREADABLE_GRAPH:
                    raise
                raise EngineMismatchError(
                    f"ONNX Runtime cannot load {path} ({str(e).splitlines()[0][:200]}); rebuild the "
                    f"engines with export/build_engines.py --force") from None
            check_stage_io(stage, [i.name for i in session.get_inputs()],
                           [o.name for o in session.get_outputs()])
            self.sessions[stage] = session
        # Graphs exported with dynamic memory slots (ONNX Runtime's fused attention) take
        # only the slots some row uses; older graphs take them all.
        slots = {i.name: i.shape for i in self.sessions["memory_attention"].get_inputs()}["mem_feats"][1]
        if isinstance(slots, str):
            self.slot_dynamic_stages = frozenset({"memory_attention"})

    def attend_memory(self, feat: torch.Tensor, memory: MemoryInputs, mem_ids=None) -> torch.Tensor:
        """On the CPU, slots empty in every row are left out (early frames cost what they
        need) and rows go in groups whose attention scores fit ATTENTION_SCORE_BYTES (the
        fused kernel holds a row's scores at once: memory stays flat in the object count)."""
        if "memory_attention" not in self.slot_dynamic_stages or self.device.type != "cpu":
            return super().attend_memory(feat, memory)
        used_frames, used_ptrs = memory.used_slots()
        memory = memory.select(frames=used_frames, pointers=used_ptrs)
        row_bytes = self.geometry.attention_score_bytes(4, memory.mem_feats.shape[1], memory.ptrs.shape[1])
        rows = max(1, ATTENTION_SCORE_BYTES // row_bytes)
        batch = memory.mem_feats.shape[0]
        return torch.cat([super(OnnxBackend, self).attend_memory(feat, memory.select(rows=slice(r, r + rows)))
                          for r in range(0, batch, rows)])

    def row_limit(self) -> int | None:
        return self.max_batch if self.profiled else None  # the CPU and CUDA providers take any batch

    def _run(self, stage: str, feeds: dict[str, torch.Tensor], batch: int) -> list[torch.Tensor]:
        session = self.sessions[stage]
        if self.device.type == "cpu":
            outputs = session.run(output_names(stage), {k: v.contiguous().numpy() for k, v in feeds.items()})
            return [torch.from_numpy(o) for o in outputs]
        # GPU: bind torch device tensors in and out, no host copies. The provider's stream
        # is not the caller's: wait until the caller's stream has written the inputs.
        torch.cuda.current_stream(self.device).synchronize()
        binding = session.io_binding()
        device_id = self.device.index or 0
        for name, value in feeds.items():
            value = value.contiguous()
            feeds[name] = value  # keep alive until the run returns
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
