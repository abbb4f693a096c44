"""Specs, typed outputs and the torch stages agree on names, order and shapes."""

import torch

from engine.stages import (STAGE_SPECS, DecoderOutput, ImageFeatures, MemoryInputs,
                           dataclass_field_names, resolve_dims)


def _dims(spec, geo, batch):
    return resolve_dims(spec, geo, batch)


def test_dataclasses_follow_spec_order():
    assert dataclass_field_names(ImageFeatures) == tuple(t.name for t in STAGE_SPECS["image_encoder"].outputs)
    assert dataclass_field_names(MemoryInputs) == tuple(t.name for t in STAGE_SPECS["memory_attention"].inputs[1:])
    assert dataclass_field_names(DecoderOutput) == tuple(t.name for t in STAGE_SPECS["mask_decoder"].outputs)


def test_torch_stages_produce_spec_shapes(lively_backend):
    geo, batch = lively_backend.geometry, 3
    image = torch.randn(_dims(STAGE_SPECS["image_encoder"].inputs[0], geo, batch))
    feats = lively_backend.encode_image(image)
    for spec, value in zip(STAGE_SPECS["image_encoder"].outputs, vars(feats).values()):
        assert tuple(value.shape) == _dims(spec, geo, batch), spec.name
    memory = MemoryInputs(*[
        (torch.ones if t.dtype == "bool" else torch.zeros)(_dims(t, geo, batch),
                                                             dtype=getattr(torch, t.dtype))
        for t in STAGE_SPECS["memory_attention"].inputs[1:]
    ])
    pix = lively_backend.attend_memory(feats.feat, memory)
    assert tuple(pix.shape) == _dims(STAGE_SPECS["memory_attention"].outputs[0], geo, batch)
    dec = lively_backend.decode_masks(pix, feats)
    for spec, value in zip(STAGE_SPECS["mask_decoder"].outputs, vars(dec).values()):
        assert tuple(value.shape) == _dims(spec, geo, batch), spec.name
        assert str(value.dtype) == f"torch.{spec.dtype}", spec.name
    mem = lively_backend.encode_memory(feats.feat, dec.masks[:, :1], dec.obj_score)
    assert tuple(mem.shape) == _dims(STAGE_SPECS["memory_encoder"].outputs[0], geo, batch)
