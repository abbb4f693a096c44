"""Device cleanliness: with `meta` standing in for CUDA, the torch backend is built and its
four stages and the tracker's fixed-shape step run with every tensor on the device. A host
tensor mixed into device work (a constant made on the CPU, a cache filled from the CPU) is
a host-to-device copy on every call: a wait that also breaks CUDA-graph capture. Checked by
a dispatch mode on every op (tests/capture_checks.py) and by a look at every tensor the
backend and sam2's position-encoding caches hold afterwards.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sam2long.runtime.config import TrackerConfig
from sam2long.runtime.tracker import SAM2LongTracker
from tests.capture_checks import DeviceChecker, WrongDevice
from tests.conftest import MICRO_CFG

META = torch.device("meta")


def _sam2_warmup(model, device):
    """What sam2's PositionEmbeddingSine does at construction on a CUDA machine
    (warmup_cache): cache the encodings of a 1024-px model's four strides on the device."""
    from sam2.modeling.position_encoding import PositionEmbeddingSine

    for module in model.modules():
        if isinstance(module, PositionEmbeddingSine):
            for stride in (4, 8, 16, 32):
                module._pe(1, device, 1024 // stride, 1024 // stride)


def position_caches(module):
    """The per-shape caches of sam2's sine position encoders under `module`."""
    return [m.cache for m in module.modules() if isinstance(getattr(m, "cache", None), dict)]


def _held_tensors(backend):
    """Every tensor the backend holds: its stages' parameters and buffers, its own
    attributes and what sam2's position encoders cached."""
    stages = [backend.image_encoder, backend.memory_attention, backend.mask_decoder, backend.memory_encoder]
    found = {f"{type(m).__name__}.{n}": t for m in stages for n, t in (*m.named_parameters(), *m.named_buffers())}
    found.update({k: v for k, v in vars(backend).items() if torch.is_tensor(v)})
    for stage in stages:
        for i, cache in enumerate(position_caches(stage)):
            found.update({f"{type(stage).__name__} position cache {i} {key}": v for key, v in cache.items()})
    return found


@pytest.fixture
def meta_model(micro_checkpoints):
    from sam2long.engine.model_loading import load_sam2_model

    model = load_sam2_model(MICRO_CFG, micro_checkpoints["lively"]).model
    _sam2_warmup(model, META)
    return model


def _meta_backend(model):
    from sam2long.engine.torch_backend import TorchBackend

    backend = TorchBackend(model, META)  # (tables are made on the host once, then moved)
    off = {name: t.device for name, t in _held_tensors(backend).items() if t.device != META}
    assert not off, f"held off the device: {off}"
    return backend


def test_the_backend_and_a_tracking_step_stay_on_the_device(meta_model):
    """Build on meta (sam2's cache warm-up emulated), then the four stages and the
    captured tracking step: no op sees a host tensor, and afterwards the backend and the
    position caches hold device tensors only."""
    from sam2long.engine.stages import MemoryInputs, resolve_dims, STAGE_SPECS

    backend = _meta_backend(meta_model)
    geo = backend.geometry
    assert not backend.compact_memory  # as on CUDA: fixed shapes
    with DeviceChecker(META):
        feats = backend.encode_image(torch.empty(1, 3, geo.image_size, geo.image_size, device=META))
        memory = MemoryInputs(*[torch.zeros(resolve_dims(t, geo, 3), dtype=getattr(torch, t.dtype), device=META)
                                for t in STAGE_SPECS["memory_attention"].inputs[1:]])
        pix = backend.attend_memory(feats.feat, memory)
        dec = backend.decode_masks(pix, feats)
        backend.encode_memory(feats.feat, dec.masks[:, :1], dec.obj_score)
        backend.decode_masks(pix[:1], feats, point_coords=torch.zeros(1, 2, 2, device=META),
                             point_labels=torch.ones(1, 2, dtype=torch.int32, device=META))

    # A video's setup (banks, prompt memories) is eager work; the step is what is captured.
    tracker = SAM2LongTracker(backend, TrackerConfig(3, 0.1, 2.0), fixed_shapes=True)
    session = tracker._new_session([_prompt(0), _prompt(1)], 10, None)
    for obj in range(2):
        session.bank.set_condition(obj, torch.zeros(geo.mem_tokens, geo.mem_dim, device=META),
                                   torch.zeros(geo.hidden_dim, device=META), 0)
    objs = torch.zeros(2, dtype=torch.int64, device=META)
    with DeviceChecker(META):
        for t in (1, 2):  # the first tracked frame, then a tree step
            tracker._fixed_step(session, objs, torch.full((), t, dtype=torch.int64, device=META),
                                feats.feat, feats.hr0, feats.hr1)
    off = {name: t.device for name, t in _held_tensors(backend).items() if t.device != META}
    assert not off, f"held off the device after running: {off}"


def _prompt(obj):
    from sam2long.runtime.prompts import ObjectPrompt

    return ObjectPrompt(obj + 1, 0, mask=np.ones((4, 4), bool))


def test_position_caches_filled_on_the_host_are_moved(micro_checkpoints):
    """A model whose sam2 position caches were filled on the CPU (it ran there first)
    gets them on the device when the backend is built."""
    from sam2long.engine.model_loading import load_sam2_model
    from sam2long.engine.torch_backend import TorchBackend

    model = load_sam2_model(MICRO_CFG, micro_checkpoints["lively"]).model
    TorchBackend(model, "cpu")  # fills the caches with CPU tensors at the model's shapes
    assert any(v.device.type == "cpu" for cache in position_caches(model) for v in cache.values())
    backend = _meta_backend(model)
    assert all(v.device == META for cache in position_caches(backend.image_encoder) for v in cache.values())


def test_the_checker_catches_host_tensors():
    x = torch.zeros(3, device=META)
    with pytest.raises(WrongDevice, match="on cpu"), DeviceChecker(META):
        x + torch.ones(3)
    with pytest.raises(WrongDevice), DeviceChecker(META):
        x + torch.tensor(2.0)  # a host scalar tensor: baked into a captured graph
    with pytest.raises(WrongDevice), DeviceChecker(META):
        x.cpu()
    with DeviceChecker(META):
        torch.where(x > 0, x, 0.0) * 0.5
