"""One backend whose four stages come from different backends: each stage in the library
that runs it faster on this machine (auto's per-stage timings, engine/auto_backend.py).

The stages meet only through the stage interface's tensors (the same shapes, dtypes and
numbers in every backend: the parity tests hold each backend to the torch reference), so
a frame may take its image features from torch's image encoder and its memory attention
from ONNX Runtime's graph. On a 2-core CPU of 2026-12-06, for hiera tiny at 1024 px, torch
ran the image encoder faster (1.55 against 1.72 s) and ONNX Runtime the memory attention
(1.73 against 2.40 s with the narrow values torch's CPU kernel does not take): together
3.38 s a frame against 3.65 (onnx) and 4.07 (torch)."""

from __future__ import annotations

from sam2long.engine.stages import STAGE_NAMES, DecoderOutput, ImageFeatures, MemoryInputs, StageBackend


class MixedBackend(StageBackend):
    name = "mixed"

    def __init__(self, plan: dict[str, StageBackend]):
        if set(plan) != set(STAGE_NAMES):
            raise ValueError(f"a mixed backend needs a backend for each stage {tuple(STAGE_NAMES)}, got {sorted(plan)}")
        first = plan["image"]
        for stage, backend in plan.items():
            if backend.geometry != first.geometry or backend.device != first.device:
                raise ValueError(f"stage {stage}: {backend.name}'s model ({backend.geometry}, {backend.device}) "
                                 f"is not {first.name}'s ({first.geometry}, {first.device})")
        self.plan = dict(plan)
        self.geometry, self.device = first.geometry, first.device
        # Added in place of the memory attention's output: the attention stage's constant.
        self.no_mem_embed = plan["attention"].no_mem_embed
        self.max_clicks = plan["decoder"].max_clicks
        # The torch memory encoder's switch for binarised prompt masks (sam2's
        # post-processing), when that stage is torch's.
        self.memory_encoder = getattr(plan["memory"], "memory_encoder", None)

    def describe(self) -> str:
        """"mixed (image torch, attention onnx, ...)": which backend runs each stage."""
        return f"mixed ({', '.join(f'{stage} {backend.name}' for stage, backend in self.plan.items())})"

    def reserve_batch(self, rows: int):
        for backend in {id(b): b for b in self.plan.values()}.values():
            backend.reserve_batch(rows)

    def encode_image(self, image) -> ImageFeatures:
        return self.plan["image"].encode_image(image)

    def attend_memory(self, feat, memory: MemoryInputs, mem_ids=None):
        return self.plan["attention"].attend_memory(feat, memory, mem_ids)

    def decode_masks(self, pix_feat, image, point_coords=None, point_labels=None, mask_input=None,
                     mask_logits=None) -> DecoderOutput:
        return self.plan["decoder"].decode_masks(pix_feat, image, point_coords, point_labels, mask_input, mask_logits)

    def encode_memory(self, feat, masks, obj_score, from_prompt=False):
        return self.plan["memory"].encode_memory(feat, masks, obj_score, from_prompt)
