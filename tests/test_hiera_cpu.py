"""engine/hiera_cpu.py: SAM 2's image encoder with oneDNN's fused products gives sam2's
features (only float additions reordered), and the torch backend runs it exactly where it
applies (fp32 on the CPU, an encoder it covers)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from sam2long.engine import hiera_cpu
from sam2long.engine.torch_stages import ImageEncoderStage
from tests.conftest import MICRO_CFG

pytestmark = pytest.mark.skipif(not hiera_cpu.available(), reason="this torch build has no oneDNN fused linear")

# fp32 features of unit scale; reordered sums differ by a few 1e-6.
ATOL = 1e-4


def tiny_shaped_stage(image_size: int, seed: int = 0, query_chunk_bytes: int | None = None) -> ImageEncoderStage:
    """sam2.1 hiera tiny's encoder (its blocks, windows, global blocks and neck) with seeded
    random weights at `image_size`, without the rest of the model."""
    from sam2.modeling.backbones.hieradet import Hiera
    from sam2.modeling.backbones.image_encoder import FpnNeck, ImageEncoder
    from sam2.modeling.position_encoding import PositionEmbeddingSine

    torch.manual_seed(seed)
    trunk = Hiera(embed_dim=96, num_heads=1, stages=[1, 2, 7, 2], global_att_blocks=[5, 7, 9],
                  window_pos_embed_bkg_spatial_size=[7, 7])
    neck = FpnNeck(PositionEmbeddingSine(num_pos_feats=256, normalize=True, temperature=10000), d_model=256,
                   backbone_channel_list=[768, 384, 192, 96], fpn_top_down_levels=[2, 3], fpn_interp_model="nearest")
    decoder = SimpleNamespace(conv_s0=nn.Conv2d(256, 32, 1), conv_s1=nn.Conv2d(256, 64, 1))
    model = SimpleNamespace(image_encoder=ImageEncoder(trunk, neck, scalp=1), sam_mask_decoder=decoder,
                            image_size=image_size)
    return ImageEncoderStage(model, query_chunk_bytes).eval()


@pytest.fixture(scope="module")
def micro_stage(micro_checkpoints):
    from sam2long.engine.model_loading import load_sam2_model

    return ImageEncoderStage(load_sam2_model(MICRO_CFG, micro_checkpoints["lively"]).model).eval()


def assert_same_features(stage, seed: int = 1):
    size = stage.trunk_pos.shape[1] * 4
    image = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(seed))
    assert hiera_cpu.supports(stage)
    with torch.inference_mode():
        want = stage(image)
        got = hiera_cpu.encode(stage, image)
    for name, w, g in zip(("feat", "hr0", "hr1"), want, got):
        assert g.shape == w.shape and g.is_contiguous(), name
        assert torch.allclose(g, w, atol=ATOL, rtol=0), f"{name}: max diff {(g - w).abs().max().item():.2e}"


def test_micro_model_features_are_sam2s(micro_stage):
    """The micro config: q pooling, a window padded (14 on a 16-wide map), a global block."""
    assert_same_features(micro_stage)


@pytest.mark.parametrize("image_size", [512, 224])
def test_tiny_shaped_encoder_features_are_sam2s(image_size):
    """tiny's layout at 512 (windows of 14 and 7 padded) and at 224 (odd-sized maps: 7 x 7 at
    the last stage, pooled and upsampled back)."""
    assert_same_features(tiny_shaped_stage(image_size))


def test_windowed_blocks_run_in_bands_of_window_rows(monkeypatch):
    """At 512 px tiny's first block (128 x 128 tokens, windows of 8) runs in 8 bands of 16
    rows (2048 tokens each), global blocks run whole, and the bands give the whole map's
    features (the products' sums may group differently by rows: 1e-6 at unit scale)."""
    stage = tiny_shaped_stage(512)
    image = torch.randn(1, 3, 512, 512, generator=torch.Generator().manual_seed(3))
    bands = []
    real = hiera_cpu._block_band

    def record(block, x, out):
        bands.append((block, tuple(x.shape[1:3])))
        real(block, x, out)

    monkeypatch.setattr(hiera_cpu, "_block_band", record)
    with torch.inference_mode():
        got = hiera_cpu.encode(stage, image)
        first = [shape for block, shape in bands if block is stage.trunk.blocks[0]]
        assert first == [(16, 128)] * 8
        assert all(shape == (32, 32) for block, shape in bands if block.window_size == 0)
        monkeypatch.setattr(hiera_cpu, "BAND_TOKENS", 1 << 40)
        bands.clear()
        whole = hiera_cpu.encode(stage, image)
    assert len(bands) == len(stage.trunk.blocks)
    for name, w, g in zip(("feat", "hr0", "hr1"), whole, got):
        assert torch.allclose(g, w, atol=1e-5, rtol=0), f"{name}: max diff {(g - w).abs().max().item():.2e}"


def test_unsupported_encoders_are_refused(micro_stage):
    """An encoder this module does not cover (tanh GELU, a bilinear neck, a 3x3 head) is left
    to sam2's path."""
    block = micro_stage.trunk.blocks[0]
    saved = block.mlp.act
    block.mlp.act = nn.GELU(approximate="tanh")
    try:
        assert not hiera_cpu.supports(micro_stage)
    finally:
        block.mlp.act = saved
    micro_stage.neck.fpn_interp_model = "bilinear"
    try:
        assert not hiera_cpu.supports(micro_stage)
    finally:
        micro_stage.neck.fpn_interp_model = "nearest"
    saved = micro_stage.conv_s0
    micro_stage.conv_s0 = nn.Conv2d(saved.in_channels, saved.out_channels, 3, padding=1)
    try:
        assert not hiera_cpu.supports(micro_stage)
    finally:
        micro_stage.conv_s0 = saved
    assert hiera_cpu.supports(micro_stage)


def test_torch_backend_uses_it_for_fp32_on_the_cpu_only(micro_checkpoints, monkeypatch):
    """fp32 on the CPU runs the fused encoder (and gets sam2's features); bf16 (autocast)
    runs sam2's path."""
    from sam2long.engine.model_loading import load_sam2_model
    from sam2long.engine.torch_backend import TorchBackend

    calls = []
    real = hiera_cpu.encode
    monkeypatch.setattr(hiera_cpu, "encode", lambda stage, image: calls.append(1) or real(stage, image))
    model = load_sam2_model(MICRO_CFG, micro_checkpoints["lively"]).model
    image = torch.randn(1, 3, 256, 256, generator=torch.Generator().manual_seed(2))

    fp32 = TorchBackend(model, "cpu", "fp32")
    assert fp32.fused_cpu_encoder
    got = fp32.encode_image(image)
    assert calls == [1]
    with torch.inference_mode():
        want = fp32.image_encoder(image)
    assert torch.allclose(got.feat, want[0], atol=ATOL, rtol=0)

    bf16 = TorchBackend(model, "cpu", "bf16")
    assert not bf16.fused_cpu_encoder
    bf16.encode_image(image)
    assert calls == [1]
