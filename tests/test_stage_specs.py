"""Specs, typed outputs and the torch stages agree on names, order and shapes."""

import torch

from sam2long.engine.stages import (STAGE_SPECS, DecoderOutput, ImageFeatures, MemoryInputs,
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


def test_the_spec_is_whole_and_drives_the_graphs(lively_backend, tmp_path_factory, micro_checkpoints):
    """Every graph input and output, the decoder's prompt inputs included, is in the spec;
    the exported graphs have the spec's names in order, its types, and its shapes (dynamic
    dims named B / N, and M / K in the memory attention); the profiles and dynamic axes are
    the spec's dynamic dims."""
    import onnx

    from sam2long.engine.manifest import STAGES
    from sam2long.engine.profiles import stage_profile
    from sam2long.engine.stages import DYNAMIC_DIMS, dynamic_axes, input_names, output_names
    assert input_names("mask_decoder")[3:] == ["point_coords", "point_labels", "mask_prompt", "mask_valid"]
    assert dynamic_axes("mask_decoder")["point_coords"] == {0: "B", 1: "N"}
    from sam2long.export.build_engines import build

    from tests.conftest import MICRO_CFG

    folder = build(MICRO_CFG, str(micro_checkpoints["lively"]), str(tmp_path_factory.mktemp("spec")))
    geo = lively_backend.geometry
    types = {"float32": onnx.TensorProto.FLOAT, "int32": onnx.TensorProto.INT32, "int64": onnx.TensorProto.INT64,
             "bool": onnx.TensorProto.BOOL}
    from sam2long.engine.manifest import Manifest
    from sam2long.engine.stages import SLOT_DIMS

    manifest = Manifest.load(folder)
    # ONNX Runtime's graphs and TensorRT's: frame and pointer slots dynamic in both memory
    # attentions (fewer than M when empty ones are left out, more with several prompt frames).
    graphs = [(f, DYNAMIC_DIMS + SLOT_DIMS if s in manifest.trt_sources else DYNAMIC_DIMS, s)
              for s, f in manifest.files.items()]
    graphs += [(f, DYNAMIC_DIMS + SLOT_DIMS, s) for s, f in manifest.trt_sources.items()]
    assert sorted(s for _, _, s in graphs) == sorted([*STAGES, "memory_attention"])
    for name, dynamic_dims, stage in graphs:
        graph = onnx.load(str(folder / name), load_external_data=False).graph
        assert [v.name for v in graph.input] == input_names(stage), stage
        assert [v.name for v in graph.output] == output_names(stage), stage
        for value, spec in zip((*graph.input, *graph.output), (*STAGE_SPECS[stage].inputs, *STAGE_SPECS[stage].outputs)):
            assert value.type.tensor_type.elem_type == types[spec.dtype], (stage, spec.name)
            dims = [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]
            want = [d if d in dynamic_dims else n for d, n in zip(spec.dims, resolve_dims(spec, geo, 0, 0))]
            assert dims == want, (name, spec.name)
        dynamic = {t.name for t in STAGE_SPECS[stage].inputs if set(t.dims) & set(dynamic_dims)}
        assert set(stage_profile(stage, geo, 4)) == dynamic, stage


def test_rope_tables_are_built_once(lively_backend):
    """Memory attention builds no RoPE table per call (SAM 2 rebuilds them per layer and
    frame): no polar / complex construction and no table repeat in a forward pass."""
    from torch.utils._python_dispatch import TorchDispatchMode

    from tests.test_memory_attention import _random_memory

    seen = []

    class Ops(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            seen.append(func.overloadpacket)
            return func(*args, **(kwargs or {}))

    geo = lively_backend.geometry
    gen = torch.Generator().manual_seed(1)
    mem = _random_memory(geo, 3, gen, weighted=True)
    feat = torch.randn(1, geo.hidden_dim, *geo.feat_hw, generator=gen)
    lively_backend.compact_memory = False
    try:
        with Ops():
            lively_backend.attend_memory(feat, mem)
    finally:
        lively_backend.compact_memory = True
    aten = torch.ops.aten  # (sin / cos do run: the pointers' temporal encoding depends on the input)
    assert not {aten.polar, aten.repeat, aten.view_as_complex, aten.view_as_real} & set(seen)


def test_feed_checks_take_a_device_without_index():
    """A backend on "cuda" (no index, as --device cuda gives) takes tensors on cuda:0;
    another device or dtype is refused. (Stand-ins: no CUDA here.)"""
    import types

    import pytest

    from sam2long.engine.stages import FeedError, check_feeds, on_device

    assert on_device(torch.device("cuda", 0), torch.device("cuda"))
    assert not on_device(torch.device("cuda", 1), torch.device("cuda", 0))
    assert not on_device(torch.device("cpu"), torch.device("cuda"))

    def fake(shape, dtype=torch.float32, device=torch.device("cuda", 0)):
        return types.SimpleNamespace(shape=torch.Size(shape), dtype=dtype, device=device, dim=lambda: len(shape))

    from sam2long.engine.stages import ModelGeometry

    geo = ModelGeometry(256, (16, 16), 256, 64, 4, 16, 32, 64)
    feeds = {"feat": fake((1, 256, 16, 16)), "masks": fake((2, 1, 64, 64)), "obj_score": fake((2,))}
    assert check_feeds("memory_encoder", feeds, geo, torch.device("cuda")) == 2
    with pytest.raises(FeedError, match="obj_score is torch.float32 on cpu"):
        check_feeds("memory_encoder", {**feeds, "obj_score": fake((2,), device=torch.device("cpu"))}, geo,
                    torch.device("cuda"))
