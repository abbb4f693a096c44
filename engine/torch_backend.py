"""The PyTorch reference backend: the four stages run eagerly on CPU or CUDA.

`precision` fp32 is the parity mode; bf16 / fp16 run the stages under torch autocast (as
the original implementation does on CUDA with bf16), with fp32 tensors at the boundaries.
"""

from __future__ import annotations

import contextlib
from dataclasses import fields

import torch

from sam2long.engine import hiera_cpu
from sam2long.engine.stages import (STAGE_NAMES, DecoderOutput, ImageFeatures, MemoryInputs, StageBackend,
                                    attend_row_groups)
from sam2long.engine.torch_stages import (
    ImageEncoderStage,
    MaskDecoderStage,
    MemoryAttentionStage,
    MemoryEncoderStage,
    model_geometry,
    move_position_caches,
)


AUTOCAST_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def _fp32(x):
    return x.float() if x.is_floating_point() and x.dtype != torch.float32 else x


class TorchBackend(StageBackend):
    name = "torch"

    def __init__(self, model: torch.nn.Module, device: str | torch.device = "cpu", precision: str = "fp32"):
        if precision not in AUTOCAST_DTYPES:
            raise ValueError(f"precision {precision!r}: choose from {tuple(AUTOCAST_DTYPES)}")
        self.device = torch.device(device)
        self.precision = precision
        model = model.to(self.device).eval()
        move_position_caches(model, self.device)
        self.geometry = model_geometry(model)
        self.image_encoder = ImageEncoderStage(model).to(self.device)
        # fp32 on the CPU: the same encoder with oneDNN's fused products (engine/hiera_cpu.py).
        self.fused_cpu_encoder = (self.device.type == "cpu" and precision == "fp32"
                                  and hiera_cpu.supports(self.image_encoder))
        self.memory_attention = MemoryAttentionStage(model).to(self.device)
        self.mask_decoder = MaskDecoderStage(model).to(self.device)
        self.memory_encoder = MemoryEncoderStage(model).to(self.device)
        self.no_mem_embed = model.no_mem_embed.detach().reshape(-1).to(self.device)
        # Dropping memory slots empty in every row saves work on early frames, but the
        # boolean index makes the host wait for the device and changes shapes: on CUDA
        # (where shapes must stay fixed for CUDA graphs) every slot is kept, masked.
        self.compact_memory = self.device.type == "cpu"

    def drop_stages(self, stages) -> None:
        """Free the modules of `stages` ("image", "attention", "decoder", "memory"): another
        backend runs them (engine/mixed_backend.py). Calling a dropped stage is an error."""
        for stage in stages:
            setattr(self, STAGE_NAMES[stage], None)

    def _autocast(self):
        dtype = AUTOCAST_DTYPES[self.precision]
        if dtype is None:
            return contextlib.nullcontext()
        # No weight-cast cache: a CUDA graph capture must not keep autocast's cached copies.
        return torch.autocast(self.device.type, dtype=dtype, cache_enabled=False)

    @torch.inference_mode()
    def encode_image(self, image: torch.Tensor) -> ImageFeatures:
        with self._autocast():
            image = image.to(self.device)
            if self.fused_cpu_encoder:
                feat, hr0, hr1 = hiera_cpu.encode(self.image_encoder, image)
            else:
                feat, hr0, hr1 = self.image_encoder(image)
        return ImageFeatures(feat=_fp32(feat), hr0=_fp32(hr0), hr1=_fp32(hr1))

    @torch.inference_mode()
    def attend_memory(self, feat: torch.Tensor, memory: MemoryInputs, mem_ids=None) -> torch.Tensor:
        # On the CPU each call takes rows holding the same frame slots, with only the slots
        # they use (attend_row_groups): early frames cost what they need, and a pathway with
        # fewer good frames does not pay for another's.
        if not self.compact_memory:
            with self._autocast():
                return _fp32(self.memory_attention(feat, *(getattr(memory, f.name) for f in fields(memory))))

        def attend(rows, frames, group):
            with self._autocast():
                return _fp32(self.memory_attention(
                    feat, *(getattr(group, f.name) for f in fields(group)),
                    # Shared frame blocks need the CPU flash kernel's log-sum-exp output.
                    None if mem_ids is None else mem_ids[rows][:, frames],
                ))

        # bf16 / fp16 on the CPU stand in for the CUDA path's numbers, which attend every row
        # in one call: one call here too. (Apart, the groups' other shapes round differently,
        # enough to flip a borderline object score on the micro model's random weights.)
        return attend_row_groups(memory, attend, apart=AUTOCAST_DTYPES[self.precision] is None)

    @torch.inference_mode()
    def decode_masks(
        self, pix_feat, image, point_coords=None, point_labels=None, mask_input=None, mask_logits=None
    ) -> DecoderOutput:
        with self._autocast():
            mask_prompt = None if mask_input is None else self.mask_decoder.mask_downsample(mask_input.float())
            if mask_logits is not None:
                mask_prompt = mask_logits.float()
            outputs = self.mask_decoder(
                pix_feat, image.hr0, image.hr1, point_coords, point_labels, mask_prompt
            )
        return DecoderOutput(*(_fp32(o) for o in outputs))

    @torch.inference_mode()
    def encode_memory(self, feat, masks, obj_score, from_prompt=False) -> torch.Tensor:
        with self._autocast():
            return _fp32(self.memory_encoder(feat, masks, obj_score, from_prompt))
