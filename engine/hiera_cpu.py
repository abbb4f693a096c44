"""SAM 2's image encoder in fp32 on the CPU, with its products fused the way oneDNN runs them.

`ImageEncoderStage.forward` runs sam2's own Hiera blocks and FPN neck (what the graphs are
exported from, and what CUDA and autocast run). On the CPU a quarter of that time is memory
traffic around the products: `F.linear` first fills its output with the bias and then
accumulates the product into it, GELU reads and writes the MLP's widest tensor once more,
each residual add another full pass, max pooling on the channels-last maps goes through an
NCHW copy, and the neck's 1x1 convolutions run at a fifth of the product rate on those
channels-last maps. Here the same weights run with the bias and GELU inside oneDNN's
product (`mkldnn._linear_pointwise`), the residual and the following layer's bias summed
first and the product accumulated into that sum in place (`addmm_`), pooling as the max of
strided views, and 1x1 convolutions as products over the channels of the NHWC tokens.
Windowed blocks run a band of whole window rows at a time (about 2048 tokens), so each
band's tensors are a few MiB, near the core's L2, instead of the map's 100 MB: on tiny at
1024 px the first two blocks take 124 and 142 ms against 198 and 183, and an encoding
raises peak resident memory by 287 MiB against 575.

Every value is the same function of the same weights; only the order of float additions
differs (features within a few 1e-6 of sam2's path at unit scale, tests/test_hiera_cpu.py).
On this project's 2-core AVX-512 machine the stage takes about 13% less time on tiny and
base+ (RESULTS.md). `supports(stage)` says whether a model's encoder is one this covers;
otherwise, or off the CPU, or under autocast, sam2's path runs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from sam2.modeling.backbones.utils import window_partition, window_unpartition
from torch import nn
from torch.nn.modules.utils import _pair


def available() -> bool:
    """oneDNN's fused linear is registered (CPU builds of torch with mkldnn)."""
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


def _pointwise_1x1(conv) -> bool:
    return (isinstance(conv, nn.Conv2d) and conv.kernel_size == (1, 1) and conv.stride == (1, 1)
            and conv.padding == (0, 0) and conv.dilation == (1, 1) and conv.groups == 1)


def _pool_ok(pool) -> bool:
    """MaxPool2d whose windows tile the map (kernel = stride, no padding), as Hiera builds it."""
    if pool is None:
        return True
    return (isinstance(pool, nn.MaxPool2d) and _pair(pool.kernel_size) == _pair(pool.stride)
            and _pair(pool.padding) == (0, 0) and _pair(pool.dilation) == (1, 1) and not pool.ceil_mode)


def _block_ok(block) -> bool:
    mlp = getattr(block, "mlp", None)
    act = getattr(mlp, "act", None)
    return (mlp is not None and len(mlp.layers) == 2 and not mlp.sigmoid_output
            and isinstance(act, nn.GELU) and act.approximate == "none"
            and isinstance(block.norm1, nn.LayerNorm) and isinstance(block.norm2, nn.LayerNorm)
            and isinstance(block.drop_path, nn.Identity) and _pool_ok(block.pool)
            and block.attn.q_pool is block.pool
            and (block.pool is None or block.window_size % block.q_stride[0] == 0))


def supports(stage) -> bool:
    """Whether `stage` (an ImageEncoderStage) is a Hiera + FPN encoder this module runs."""
    trunk, neck = stage.trunk, stage.neck
    return (available() and hasattr(trunk, "blocks") and all(_block_ok(b) for b in trunk.blocks)
            and neck.fpn_interp_model == "nearest" and neck.fuse_type in ("sum", "avg")
            and all(_pointwise_1x1(c.conv) for c in neck.convs)
            and _pointwise_1x1(stage.conv_s0) and _pointwise_1x1(stage.conv_s1))


# -- the pieces ----------------------------------------------------------------------------------
def _linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, post: str = "none"):
    """x @ weight.T + bias over the last dim, then `post` ("none" or "gelu"), in one call."""
    shape = x.shape
    y = torch.ops.mkldnn._linear_pointwise(x.reshape(-1, shape[-1]), weight, bias, post, [],
                                           "none" if post == "gelu" else "")
    return y.view(*shape[:-1], y.shape[-1])


def _max_pool(x: torch.Tensor, stride: tuple[int, int]) -> torch.Tensor:
    """MaxPool2d(kernel=stride, stride) on an NHWC map, as the max of its strided views."""
    sh, sw = stride
    h, w = x.shape[1] // sh * sh, x.shape[2] // sw * sw
    x = x[:, :h, :w]
    out = x[:, 0::sh, 0::sw].clone()
    for i in range(sh):
        for j in range(sw):
            if i or j:
                torch.maximum(out, x[:, i::sh, j::sw], out=out)
    return out


def _conv1x1(x: torch.Tensor, conv: nn.Conv2d) -> torch.Tensor:
    """A 1x1 convolution on NHWC tokens (NHWC out)."""
    return _linear(x, conv.weight.reshape(conv.weight.shape[0], -1), conv.bias)


# Tokens per band of a windowed block: the band's widest tensor (the MLP's hidden, 4 x the
# width) is then 3 MiB on the first stage, near this machine's 2 MiB L2, and the first
# stages' narrow products (96 and 192 inputs) run 1.4-1.6x faster than over the whole map
# (100 MB); 2048 was the fastest of 512-8192 on tiny.
BAND_TOKENS = 2048


def _padded(n: int, size: int) -> int:
    """n rounded up to whole windows of `size`, as sam2's window_partition pads."""
    return n + (size - n % size) % size


def _band_rows(block, height: int, width: int) -> int:
    """Rows of the input map per band: whole rows of windows, about BAND_TOKENS tokens."""
    size = block.window_size
    if size <= 0:  # global attention: every token attends to every other
        return height
    return size * max(1, BAND_TOKENS // (size * _padded(width, size)))


def _block(block, x: torch.Tensor) -> torch.Tensor:
    """MultiScaleBlock.forward (sam2's hieradet), a band of window rows at a time.

    Windows never look across each other and everything after the attention is per token,
    so each band is the whole block on its rows; the bands' results are written in place."""
    batch, height, width, _ = x.shape
    sh, sw = block.q_stride if block.pool is not None else (1, 1)
    out = x.new_empty(batch, height // sh, width // sw, block.dim_out)
    rows = _band_rows(block, height, width) if batch == 1 else height
    for top in range(0, height, rows):
        _block_band(block, x[:, top:top + rows], out[:, top // sh:(top + rows) // sh])
    return out


def _block_band(block, x: torch.Tensor, out: torch.Tensor):
    """The block on the rows `x` (whole rows of windows), into `out` (contiguous)."""
    normed = block.norm1(x)
    shortcut = x
    if block.dim != block.dim_out:
        shortcut = _linear(normed, block.proj.weight, block.proj.bias)
        if block.pool is not None:
            shortcut = _max_pool(shortcut, block.q_stride)
    size = block.window_size
    tokens, padded = window_partition(normed, size) if size > 0 else (normed, None)

    attn = block.attn
    rows, h, w, _ = tokens.shape
    qkv = _linear(tokens, attn.qkv.weight, attn.qkv.bias).reshape(rows, h * w, 3, attn.num_heads, -1)
    q, k, v = torch.unbind(qkv, 2)
    if block.pool is not None:
        q = _max_pool(q.reshape(rows, h, w, -1), block.q_stride)
        h, w = q.shape[1:3]
        q = q.reshape(rows, h * w, attn.num_heads, -1)
    att = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
    att = att.transpose(1, 2).reshape(rows, h, w, -1)
    if size > 0:
        hw = tuple(shortcut.shape[1:3])
        if block.pool is not None:  # windows shrunk by the q stride: padded again as sam2 does
            size //= block.q_stride[0]
            padded = tuple(_padded(n, size) for n in hw)
        att = window_unpartition(att, size, padded, hw)
    # Each residual sum: the residual plus the layer's bias, the product accumulated into it
    # in place (proj is per token, so it runs after the windows are put back).
    flat = out.view(-1, out.shape[-1])
    _add_bias(shortcut, attn.proj.bias, out)
    flat.addmm_(att.reshape(flat.shape[0], -1), attn.proj.weight.t())
    fc1, fc2 = block.mlp.layers
    hidden = _linear(block.norm2(out), fc1.weight, fc1.bias, "gelu")
    _add_bias(out, fc2.bias, out)
    flat.addmm_(hidden.view(flat.shape[0], -1), fc2.weight.t())


def _add_bias(x: torch.Tensor, bias: torch.Tensor | None, out: torch.Tensor):
    """out = x + bias (x itself without a bias); `out` may be `x`."""
    if bias is not None:
        torch.add(x, bias, out=out)
    elif x is not out:
        out.copy_(x)


def _upsample2(x: torch.Tensor) -> torch.Tensor:
    """Nearest-neighbour x2 upsampling of an NHWC map."""
    b, h, w, c = x.shape
    return x[:, :, None, :, None, :].expand(b, h, 2, w, 2, c).reshape(b, 2 * h, 2 * w, c)


def _nchw(x: torch.Tensor) -> torch.Tensor:
    return x.permute(0, 3, 1, 2).contiguous()


@torch.inference_mode()
def encode(stage, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """ImageEncoderStage.forward(image) for a stage `supports` accepts: (feat, hr0, hr1), NCHW."""
    levels = stage.trunk_levels(image, _block)
    fpn = stage.fpn(levels, lambda conv, x: _conv1x1(x, conv.conv), _upsample2)
    return _nchw(fpn[-1]), _nchw(_conv1x1(fpn[-3], stage.conv_s0)), _nchw(_conv1x1(fpn[-2], stage.conv_s1))
