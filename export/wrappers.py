"""Export wrappers: the engine's pure-tensor stage modules with every input a tensor.

Batch (objects x pathways) is the only dynamic axis; memory slots (M) and pointer slots (K)
are fixed, with validity masks, so one shape profile serves every frame.
"""

from __future__ import annotations

import torch
from torch import nn

from engine.stages import STAGE_SPECS, ModelGeometry
from engine.torch_stages import (
    ImageEncoderStage,
    MaskDecoderStage,
    MemoryAttentionStage,
    MemoryEncoderStage,
)


class DecoderExport(nn.Module):
    """The decoder with clicks and a (downsampled) mask prompt as plain tensor inputs."""

    def __init__(self, model):
        super().__init__()
        self.stage = MaskDecoderStage(model)

    def forward(self, pix_feat, hr0, hr1, point_coords, point_labels, mask_prompt, mask_valid):
        return self.stage(pix_feat, hr0, hr1, point_coords, point_labels, mask_prompt, mask_valid)


DECODER_PROMPT_INPUTS = ("point_coords", "point_labels", "mask_prompt", "mask_valid")


def stage_modules(model) -> dict[str, nn.Module]:
    return {
        "image_encoder": ImageEncoderStage(model).eval(),
        "memory_attention": MemoryAttentionStage(model).eval(),
        "mask_decoder": DecoderExport(model).eval(),
        "memory_encoder": MemoryEncoderStage(model).eval(),
    }


def example_inputs(geo: ModelGeometry, batch: int = 2) -> dict[str, dict[str, torch.Tensor]]:
    """Inputs that trace every branch (valid and empty slots, a mask prompt row)."""
    h, w = geo.feat_hw
    M, K, C, Cm = geo.num_maskmem, geo.max_obj_ptrs, geo.hidden_dim, geo.mem_dim
    valid = torch.ones(batch, M, dtype=torch.bool)
    valid[0, -1] = False
    ptr_valid = torch.ones(batch, K, dtype=torch.bool)
    ptr_valid[0, 1:] = False
    feat = torch.randn(1, C, h, w)
    return {
        "image_encoder": {"image": torch.randn(1, 3, geo.image_size, geo.image_size)},
        "memory_attention": {
            "feat": feat, "mem_feats": torch.randn(batch, M, h * w, Cm), "mem_valid": valid,
            "mem_tpos": torch.randint(0, M, (batch, M)), "mem_weight": torch.ones(batch, M),
            "ptrs": torch.randn(batch, K, C), "ptr_valid": ptr_valid,
            "ptr_pos": torch.rand(batch, K), "ptr_weight": torch.ones(batch, K),
        },
        "mask_decoder": {
            "pix_feat": torch.randn(batch, C, h, w),
            "hr0": torch.randn(1, geo.hr0_channels, 4 * h, 4 * w),
            "hr1": torch.randn(1, geo.hr1_channels, 2 * h, 2 * w),
            "point_coords": torch.rand(batch, 1, 2) * geo.image_size,
            "point_labels": torch.ones(batch, 1, dtype=torch.int32),
            "mask_prompt": torch.randn(batch, 1, geo.low_res, geo.low_res),
            "mask_valid": torch.tensor([1.0] + [0.0] * (batch - 1)),
        },
        "memory_encoder": {
            "feat": feat, "masks": torch.randn(batch, 1, geo.low_res, geo.low_res),
            "obj_score": torch.randn(batch),
        },
    }


def output_names(stage: str) -> list[str]:
    return [t.name for t in STAGE_SPECS[stage].outputs]


def dynamic_axes(stage: str, inputs: dict) -> dict:
    """Batch is dynamic for every B-shaped tensor; the decoder's click count N too."""
    spec = STAGE_SPECS[stage]
    axes = {t.name: {0: "B"} for t in (*spec.inputs, *spec.outputs) if t.dims and t.dims[0] == "B"}
    if stage == "mask_decoder":
        for name in DECODER_PROMPT_INPUTS:
            axes[name] = {0: "B"}
        axes["point_coords"] = {0: "B", 1: "N"}
        axes["point_labels"] = {0: "B", 1: "N"}
    if stage == "memory_encoder":
        axes["obj_score"] = {0: "B"}
    return {name: axes[name] for name in axes if name in inputs or name in output_names(stage)}
