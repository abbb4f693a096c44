"""The ONNX Runtime backend: the exported graphs behind the same stage interface.

CPU everywhere; on CUDA machines with onnxruntime-gpu, the TensorRT or CUDA execution
provider with I/O bound to torch device tensors. Asking for a GPU provider that is not
there is an error, never a silent fall back to the CPU.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from engine.manifest import CONSTANTS_NAME, STAGES, EngineMismatchError, Manifest
from engine.stages import (
    STAGE_SPECS,
    DecoderOutput,
    ImageFeatures,
    MemoryInputs,
    ModelGeometry,
    StageBackend,
    resolve_dims,
)

DECODER_EXTRA_INPUTS = ("point_coords", "point_labels", "mask_prompt", "mask_valid")
TORCH_TO_NUMPY = {torch.float32: np.float32, torch.int64: np.int64, torch.int32: np.int32,
                  torch.bool: np.bool_}


MAX_CLICKS = 16  # decoder point inputs: boxes count as two


def _trt_profiles(stage: str, geo: ModelGeometry, max_batch: int, opt_batch: int = 3) -> dict:
    """Explicit min/opt/max shapes for every dynamic input of a stage (TensorRT EP)."""
    shapes = {}
    for name, batch in (("min", 1), ("opt", min(opt_batch, max_batch)), ("max", max_batch)):
        dims = {t.name: resolve_dims(t, geo, batch) for t in STAGE_SPECS[stage].inputs if t.dims[0] == "B"}
        if stage == "mask_decoder":
            clicks = {"min": 1, "opt": 1, "max": MAX_CLICKS}[name]
            dims.update(point_coords=(batch, clicks, 2), point_labels=(batch, clicks),
                        mask_prompt=(batch, 1, geo.low_res, geo.low_res), mask_valid=(batch,))
        if stage == "memory_encoder":
            dims["obj_score"] = (batch,)
        if not dims:  # a static graph (the image encoder) needs no profile
            return {}
        shapes[f"trt_profile_{name}_shapes"] = ",".join(
            f"{k}:{'x'.join(map(str, v))}" for k, v in dims.items())
    return shapes


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
                   **_trt_profiles(stage, geo, max_batch))
        return [("TensorrtExecutionProvider", trt), ("CUDAExecutionProvider", options)]
    if "CUDAExecutionProvider" in available:
        return [("CUDAExecutionProvider", options)]
    raise RuntimeError(
        f"--backend onnx on {device}: this onnxruntime has no GPU execution provider "
        f"(available: {', '.join(available)}); install onnxruntime-gpu or use --device cpu")


class OnnxBackend(StageBackend):
    name = "onnx"

    def __init__(self, engine_dir: str | Path, manifest: Manifest, device: str | torch.device = "cpu"):
        import onnxruntime as ort

        self.engine_dir = Path(engine_dir)
        self.device = torch.device(device)
        self.manifest = manifest
        constants = np.load(self.engine_dir / CONSTANTS_NAME)
        geo = {k[len("geometry_"):]: constants[k].tolist() for k in constants.files if k.startswith("geometry_")}
        geo["feat_hw"], geo["multimask_points"] = tuple(geo["feat_hw"]), tuple(geo["multimask_points"])
        self.geometry = ModelGeometry(**geo)
        self.no_mem_embed = torch.from_numpy(constants["no_mem_embed"]).to(self.device)
        self._downsample_w = torch.from_numpy(constants["mask_downsample_weight"]).to(self.device)
        self._downsample_b = torch.from_numpy(constants["mask_downsample_bias"]).to(self.device)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3  # errors only: shape-merge notes are noise
        if self.device.type != "cpu":
            options.add_session_config_entry("session.disable_cpu_ep_fallback", "1")
        self.sessions = {}
        for stage in STAGES:
            providers = _providers(stage, self.device, self.engine_dir, self.geometry, manifest.max_batch)
            session = ort.InferenceSession(str(self.engine_dir / manifest.files[stage]), options,
                                           providers=providers)
            self._check_io(stage, session)
            self.sessions[stage] = session

    @staticmethod
    def _check_io(stage, session):
        spec = STAGE_SPECS[stage]
        want_in = [t.name for t in spec.inputs] + (list(DECODER_EXTRA_INPUTS) if stage == "mask_decoder" else [])
        want_out = [t.name for t in spec.outputs]
        got_in = [i.name for i in session.get_inputs()]
        got_out = [o.name for o in session.get_outputs()]
        if sorted(got_in) != sorted(want_in) or got_out != want_out:
            raise EngineMismatchError(
                f"stage {stage}: the graph's inputs {got_in} / outputs {got_out} are not the "
                f"expected {want_in} / {want_out}; rebuild the engines with export/build_engines.py")

    def _run(self, stage: str, feeds: dict[str, torch.Tensor], batch: int) -> list[torch.Tensor]:
        if batch > self.manifest.max_batch:
            raise ValueError(f"stage {stage}: batch {batch} exceeds the engines' --max_batch "
                             f"{self.manifest.max_batch}; rebuild with a larger --max_batch")
        session = self.sessions[stage]
        if self.device.type == "cpu":
            outputs = session.run(None, {k: v.contiguous().numpy() for k, v in feeds.items()})
            return [torch.from_numpy(o) for o in outputs]
        # GPU: bind torch device tensors in and out, no host copies.
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

    def encode_image(self, image: torch.Tensor) -> ImageFeatures:
        return ImageFeatures(*self._run("image_encoder", {"image": image.to(self.device).float()}, 1))

    def attend_memory(self, feat: torch.Tensor, memory: MemoryInputs, mem_ids=None) -> torch.Tensor:
        feeds = {"feat": feat, **vars(memory)}
        return self._run("memory_attention", feeds, memory.mem_feats.shape[0])[0]

    def decode_masks(self, pix_feat, image, point_coords=None, point_labels=None, mask_input=None):
        b, low = pix_feat.shape[0], self.geometry.low_res
        if point_coords is None:  # no clicks: SAM 2's single padding point
            point_coords = pix_feat.new_zeros(b, 1, 2)
            point_labels = -torch.ones(b, 1, dtype=torch.int32, device=self.device)
        if mask_input is None:
            mask_prompt, mask_valid = pix_feat.new_zeros(b, 1, low, low), pix_feat.new_zeros(b)
        else:  # SAM 2's learned 4x4 mask downsampling, applied here with its weights
            mask_prompt = F.conv2d(mask_input.float(), self._downsample_w, self._downsample_b, stride=4)
            mask_valid = pix_feat.new_ones(b)
        feeds = {"pix_feat": pix_feat, "hr0": image.hr0, "hr1": image.hr1,
                 "point_coords": point_coords.float(), "point_labels": point_labels.int(),
                 "mask_prompt": mask_prompt, "mask_valid": mask_valid}
        return DecoderOutput(*self._run("mask_decoder", feeds, b))

    def encode_memory(self, feat, masks, obj_score, from_prompt=False) -> torch.Tensor:
        # from_prompt matters only with binarize_mask_from_pts_for_mem_enc, which the
        # export refuses; the graph is the same for prompt and tracked masks.
        feeds = {"feat": feat, "masks": masks.float(), "obj_score": obj_score.float()}
        return self._run("memory_encoder", feeds, masks.shape[0])[0]
