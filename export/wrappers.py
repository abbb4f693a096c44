"""Export wrappers: the engine's pure-tensor stage modules, with example inputs named and
ordered as the stage specs (engine/stages.py) say.

Batch (objects x pathways) is a dynamic axis, with the decoder's click count. Memory slots (M)
and pointer slots (K) come with validity masks; they are dynamic axes too (traced with the
model's M and K): TensorRT's profile is tuned for those, and takes a few more for SAM 2's
several conditioning frames per object (engine/profiles.py).
"""

from __future__ import annotations

import torch
from torch import nn

from sam2long.engine.stages import ModelGeometry, input_names
from sam2long.engine.torch_stages import (
    ImageEncoderStage,
    MaskDecoderStage,
    MemoryAttentionStage,
    MemoryEncoderStage,
)


# The image encoder's global attention, exported unfused, holds its scores and their
# softmax: [heads, N, N] each, 512 MiB apiece for b+ at 1024 px (N = 4096), which ONNX
# Runtime's arena then keeps for the whole run. In query chunks of at most this much:
# 64 MiB (8 chunks for b+, 4 for tiny).
IMAGE_ATTENTION_SCORE_BYTES = 64 << 20


def stage_modules(model) -> dict[str, nn.Module]:
    """The modules exported; each takes the spec's inputs positionally, in spec order
    (the decoder's prompt inputs are its optional arguments). These are the standard-op
    graphs; build_engines exports the memory attention a second time, fused, for ONNX Runtime."""
    return {
        "image_encoder": ImageEncoderStage(model, IMAGE_ATTENTION_SCORE_BYTES).eval(),
        "memory_attention": MemoryAttentionStage(model).eval(),
        "mask_decoder": MaskDecoderStage(model).eval(),
        "memory_encoder": MemoryEncoderStage(model).eval(),
    }


def example_inputs(geo: ModelGeometry, batch: int = 2) -> dict[str, dict[str, torch.Tensor]]:
    """Inputs that trace every branch (valid and empty slots, a mask prompt row), in the
    order of the stage specs."""
    h, w = geo.feat_hw
    M, K, C, Cm = geo.num_maskmem, geo.max_obj_ptrs, geo.hidden_dim, geo.mem_dim
    valid = torch.ones(batch, M, dtype=torch.bool)
    valid[0, -1] = False
    ptr_valid = torch.ones(batch, K, dtype=torch.bool)
    ptr_valid[0, 1:] = False
    feat = torch.randn(1, C, h, w)
    examples = {
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
    for stage, inputs in examples.items():
        assert list(inputs) == input_names(stage), stage  # the spec is the contract
    return examples
