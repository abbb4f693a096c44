"""The image encoder's global attention in query chunks (engine/torch_stages.py
query_chunked_block): the same features as sam2's blocks, no score tensor above the bound,
and the exported graphs built that way (an unfused ONNX attention holds its scores whole:
512 MiB apiece for b+ at 1024 px)."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
import torch.nn.functional as F

from sam2long.export.wrappers import IMAGE_ATTENTION_SCORE_BYTES, stage_modules
from tests.conftest import MICRO_CFG
from tests.test_hiera_cpu import tiny_shaped_stage

BOUND = 1 << 20  # bites at 448 px: a global block there holds 4 x 784 x 784 fp32 scores (9.4 MiB)


def _attention_calls(monkeypatch, keys: int) -> dict[str, list[int]]:
    """Score bytes of every attention over `keys` keys from now on: "whole" (sam2's SDPA)
    and "chunked" (the softmax of query_chunked_block's scores)."""
    calls = {"whole": [], "chunked": []}
    sdpa, softmax = F.scaled_dot_product_attention, torch.softmax

    def counting_sdpa(q, k, v, *args, **kwargs):
        if k.shape[-2] == keys:
            calls["whole"].append(4 * q.shape[0] * q.shape[1] * q.shape[-2] * k.shape[-2])
        return sdpa(q, k, v, *args, **kwargs)

    def counting_softmax(scores, *args, **kwargs):
        if scores.shape[-1] == keys:
            calls["chunked"].append(4 * scores.numel())
        return softmax(scores, *args, **kwargs)

    monkeypatch.setattr(F, "scaled_dot_product_attention", counting_sdpa)
    monkeypatch.setattr(torch, "softmax", counting_softmax)
    return calls


def test_chunked_global_attention_gives_sam2s_features(monkeypatch):
    """At 448 px the global blocks attend over 784 keys (the windowed ones over 196)."""
    stage = tiny_shaped_stage(448)
    image = torch.randn(1, 3, 448, 448, generator=torch.Generator().manual_seed(3))
    calls = _attention_calls(monkeypatch, 784)
    with torch.inference_mode():
        want = stage(image)
        assert calls == {"whole": [4 * 4 * 784 * 784] * 3, "chunked": []}  # tiny's three global blocks
        calls["whole"].clear()
        got = tiny_shaped_stage(448, query_chunk_bytes=BOUND)(image)
    assert not calls["whole"] and len(calls["chunked"]) == 3 * 10 and max(calls["chunked"]) <= BOUND, calls
    for name, w, g in zip(("feat", "hr0", "hr1"), want, got):
        assert torch.allclose(g, w, atol=1e-5, rtol=0), f"{name}: max diff {(g - w).abs().max().item():.2e}"


def test_real_sizes_chunk_within_the_export_bound(monkeypatch):
    """tiny's shape at 1024 px, on the meta device: each global block's scores (4 heads x
    4096 x 4096, 256 MiB) go in 64 MiB chunks."""
    stage = tiny_shaped_stage(1024, query_chunk_bytes=IMAGE_ATTENTION_SCORE_BYTES).to("meta")
    calls = _attention_calls(monkeypatch, 4096)
    with torch.inference_mode():
        stage(torch.empty(1, 3, 1024, 1024, device="meta"))
    assert calls == {"whole": [], "chunked": [IMAGE_ATTENTION_SCORE_BYTES] * 3 * 4}


def test_exported_image_encoder_is_chunked(micro_checkpoints, tmp_path):
    """stage_modules exports with the bound; a graph exported with one that bites has a
    Softmax per chunk and gives sam2's features in ONNX Runtime."""
    import onnx
    import onnxruntime as ort

    from sam2long.engine.model_loading import load_sam2_model
    from sam2long.export.build_engines import export_stage
    from sam2long.engine.torch_stages import model_geometry

    model = load_sam2_model(MICRO_CFG, micro_checkpoints["lively"]).model
    assert stage_modules(model)["image_encoder"].query_chunk_bytes == IMAGE_ATTENTION_SCORE_BYTES

    stage = tiny_shaped_stage(448)
    path = tmp_path / "image_encoder.onnx"
    image = torch.randn(1, 3, 448, 448, generator=torch.Generator().manual_seed(4))
    geo = dataclasses.replace(model_geometry(model), image_size=448, feat_hw=(28, 28), hidden_dim=256, hr0_channels=32,
                              hr1_channels=64)
    export_stage("image_encoder", tiny_shaped_stage(448, query_chunk_bytes=BOUND), {"image": image}, path, geo)
    softmaxes = sum(n.op_type == "Softmax" for n in onnx.load(str(path)).graph.node)
    assert softmaxes == 9 + 3 * 10, softmaxes  # 9 windowed blocks, the three global ones in 10 chunks each
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {"image": image.numpy()})
    with torch.inference_mode():
        want = stage(image)
    for w, g in zip(want, got):
        np.testing.assert_allclose(g, w.numpy(), atol=1e-4, rtol=0)
