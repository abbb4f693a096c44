"""The PyTorch reference backend: the four stages run eagerly on CPU or CUDA."""

from __future__ import annotations

import torch

from engine.stages import DecoderOutput, ImageFeatures, MemoryInputs, StageBackend
from engine.torch_stages import (
    ImageEncoderStage,
    MaskDecoderStage,
    MemoryAttentionStage,
    MemoryEncoderStage,
    model_geometry,
)


class TorchBackend(StageBackend):
    name = "torch"

    def __init__(self, model: torch.nn.Module, device: str | torch.device = "cpu"):
        self.device = torch.device(device)
        model = model.to(self.device).eval()
        self.geometry = model_geometry(model)
        self.image_encoder = ImageEncoderStage(model).to(self.device)
        self.memory_attention = MemoryAttentionStage(model).to(self.device)
        self.mask_decoder = MaskDecoderStage(model).to(self.device)
        self.memory_encoder = MemoryEncoderStage(model).to(self.device)
        self.no_mem_embed = model.no_mem_embed.detach().reshape(-1).to(self.device)

    @torch.inference_mode()
    def encode_image(self, image: torch.Tensor) -> ImageFeatures:
        feat, hr0, hr1 = self.image_encoder(image.to(self.device))
        return ImageFeatures(feat=feat, hr0=hr0, hr1=hr1)

    @torch.inference_mode()
    def attend_memory(self, feat: torch.Tensor, memory: MemoryInputs, mem_ids=None) -> torch.Tensor:
        # Slots empty in every row carry no information: drop them before attention so
        # early frames (few memories) cost what they need. Masked slots give the same
        # result, so this only saves time.
        used_frames = memory.mem_valid.any(0)
        used_ptrs = memory.ptr_valid.any(0)
        return self.memory_attention(
            feat,
            memory.mem_feats[:, used_frames],
            memory.mem_valid[:, used_frames],
            memory.mem_tpos[:, used_frames],
            memory.mem_weight[:, used_frames],
            memory.ptrs[:, used_ptrs],
            memory.ptr_valid[:, used_ptrs],
            memory.ptr_pos[:, used_ptrs],
            memory.ptr_weight[:, used_ptrs],
            # Shared frame blocks need the CPU flash kernel's log-sum-exp output.
            None if mem_ids is None or self.device.type != "cpu" else mem_ids[:, used_frames],
        )

    @torch.inference_mode()
    def decode_masks(
        self, pix_feat, image, point_coords=None, point_labels=None, mask_input=None
    ) -> DecoderOutput:
        mask_prompt = None if mask_input is None else self.mask_decoder.mask_downsample(mask_input.float())
        outputs = self.mask_decoder(
            pix_feat, image.hr0, image.hr1, point_coords, point_labels, mask_prompt
        )
        return DecoderOutput(*outputs)

    @torch.inference_mode()
    def encode_memory(self, feat, masks, obj_score, from_prompt=False) -> torch.Tensor:
        return self.memory_encoder(feat, masks, obj_score, from_prompt)
