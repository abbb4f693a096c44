"""Pure-tensor modules for the four stages, built around the `sam2` modules' weights.

These are the PyTorch reference backend and the modules the ONNX export wraps. Compared
with SAM 2's own code paths they differ only where export and batching need it:
RoPE in real cos/sin form, fixed-size memory with per-slot validity, temporal positions
and SAM2Long key weights as tensors, and all candidate masks / pointers as outputs.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn

from sam2long.engine.stages import ModelGeometry

NO_OBJ_SCORE = -1024.0


def model_geometry(model) -> ModelGeometry:
    side = model.image_size // model.backbone_stride
    return ModelGeometry(
        image_size=model.image_size,
        feat_hw=(side, side),
        hidden_dim=model.hidden_dim,
        mem_dim=model.mem_dim,
        num_maskmem=model.num_maskmem,
        max_obj_ptrs=model.max_obj_ptrs_in_encoder,
        hr0_channels=model.sam_mask_decoder.conv_s0.out_channels,
        hr1_channels=model.sam_mask_decoder.conv_s1.out_channels,
        multimask_points=(model.multimask_min_pt_num, model.multimask_max_pt_num),
        attn_heads=model.memory_attention.layers[0].cross_attn_image.num_heads,
    )


def rope_tables(attn, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin [H*W, head_dim/2] of SAM 2's axial RoPE for one RoPEAttention module."""
    from sam2.modeling.position_encoding import compute_axial_cis

    head_dim = attn.internal_dim // attn.num_heads
    theta = attn.compute_cis.keywords.get("theta", 10000.0)
    cis = compute_axial_cis(dim=head_dim, end_x=width, end_y=height, theta=theta)
    return cis.real.contiguous(), cis.imag.contiguous()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate interleaved channel pairs of x [..., N, D] by angles with cos/sin [N, D/2]."""
    pairs = x.float().unflatten(-1, (-1, 2))
    real, imag = pairs[..., 0], pairs[..., 1]
    rotated = torch.stack((real * cos - imag * sin, real * sin + imag * cos), dim=-1)
    return rotated.flatten(-2).type_as(x)


def _split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    b, n, c = x.shape
    return x.reshape(b, n, heads, c // heads).transpose(1, 2)


def _merge_heads(x: torch.Tensor) -> torch.Tensor:
    b, h, n, d = x.shape
    return x.transpose(1, 2).reshape(b, n, h * d)


def key_bias(valid: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Additive attention bias [B, N] for key validity [B, N]: 0 where valid, -inf where not.
    Every row has a valid key (slot 0, the conditioning frame), so no softmax row is all
    -inf. Added to the scores, this exports as one Add before the Softmax, where a boolean
    mask exports as Where(IsNaN(Softmax)) between the two matrix products, which keeps
    TensorRT from fusing the attention."""
    return torch.zeros(valid.shape, dtype=dtype, device=valid.device).masked_fill(~valid, float("-inf"))


def biased_attention(q, k, v, bias: torch.Tensor | None) -> torch.Tensor:
    """Scaled dot-product attention with an additive key bias [B, Nk] (None for none)."""
    mask = None if bias is None else bias[:, None, None, :].to(q.dtype)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)


# A masked key's bias inside the fused attention graph: finite, so that it can ride in an
# extra key channel (0 * -inf would be NaN); scaled by 1/sqrt(d) it is still far below any
# real score, and exp() of it is exactly 0 in fp32.
FUSED_MASKED_BIAS = -1e9


class FusedAttention(torch.autograd.Function):
    """Scaled dot-product attention of q [B, h, Nq, d], k [B, h, Nk, d], v [B, h, Nk, d] with
    an additive key bias [B, Nk] (0 or -inf; None for none). It runs as SDPA, and exports as
    ONNX Runtime's fused `com.microsoft.MultiHeadAttention` (the graphs `--backend onnx`
    runs). The bias rides in one extra channel of the queries (a constant 1) and keys (the
    bias), zero channels after it making the head size a multiple of 8: the kernel then
    needs no mask, and ONNX Runtime's CPU kernel runs masked
    attention as fast as unmasked (a key-padding mask takes it to a slower path). The
    TensorRT graphs keep the standard MatMul-Add-Softmax-MatMul that TensorRT fuses."""

    @staticmethod
    def forward(ctx, q, k, v, bias, heads: int, head_dim: int):
        return biased_attention(q, k, v, bias)

    @staticmethod
    def symbolic(g, q, k, v, bias, heads: int, head_dim: int):
        def const(values, dtype=torch.int64):
            return g.op("Constant", value_t=torch.tensor(values, dtype=dtype))

        def merge(x):  # [B, h, N, e] -> [B, N, h*e]
            return g.op("Reshape", g.op("Transpose", x, perm_i=[0, 2, 1, 3]), const([0, 0, -1]))

        if bias is not None and not bias.node().mustBeNone():
            ones_last = const([0, 0, 0, 0, 0, 0, 0, 1])
            q = g.op("Pad", q, ones_last, const(1.0, torch.float32))
            finite = g.op("Max", bias, const(FUSED_MASKED_BIAS, torch.float32))
            column = g.op("Unsqueeze", finite, const([1, 3]))  # [B, 1, Nk, 1]
            column_shape = g.op("Concat", g.op("Slice", g.op("Shape", k), const([0]), const([3])),
                                const([1]), axis_i=0)
            k = g.op("Concat", k, g.op("Expand", column, column_shape), axis_i=3)
            # Zero channels up to a head size divisible by 8: ONNX Runtime's CUDA
            # memory-efficient attention (the fused kernel for fp32) needs one; with the
            # bias channel alone (257) it falls back to the unfused kernel.
            zeros = (-(head_dim + 1)) % 8
            if zeros:
                zeros_last = const([0, 0, 0, 0, 0, 0, 0, zeros])
                q = g.op("Pad", q, zeros_last, const(0.0, torch.float32))
                k = g.op("Pad", k, zeros_last, const(0.0, torch.float32))
        out = g.op("com.microsoft::MultiHeadAttention", merge(q), merge(k), merge(v),
                   num_heads_i=heads, scale_f=float(head_dim) ** -0.5)
        split = g.op("Reshape", out, const([0, 0, heads, -1]))  # v's head size may differ
        return g.op("Transpose", split, perm_i=[0, 2, 1, 3])


def rope_attention(
    attn,
    q_in: torch.Tensor,
    k_in: torch.Tensor,
    v_in: torch.Tensor,
    rope: tuple[torch.Tensor, torch.Tensor],
    rope_k: tuple[torch.Tensor, torch.Tensor],
    bias: torch.Tensor | None = None,
    fused: bool = False,
    rope_k_blocks: int = 1,
) -> torch.Tensor:
    """SAM 2's RoPEAttention with real RoPE. `rope` (cos, sin [Nq, D/2]) rotates the
    queries, `rope_k` (cos, sin [n, D/2]) the first `rope_k_blocks` blocks of n keys, the
    same table for every block (one block per memory frame: SAM 2's rope_k_repeat); later
    keys (object pointers) are not rotated. The table is broadcast over the blocks, not
    repeated, so one exported graph takes any number of memory frames. `bias` [B, Nk] is
    added to the attention scores (`key_bias`). `fused`: as FusedAttention (the same
    numbers; it exports as ONNX Runtime's fused attention)."""
    heads = attn.num_heads
    head_dim = attn.internal_dim // heads
    q = _split_heads(attn.q_proj(q_in), heads)
    k = _split_heads(attn.k_proj(k_in), heads)
    q = apply_rope(q, *rope)
    b, _, _, d = k.shape
    num_k_rope = rope_k_blocks * rope_k[0].shape[0]
    k_rot = apply_rope(k[:, :, :num_k_rope].reshape(b, heads, rope_k_blocks, -1, d), *rope_k)
    k = torch.cat((k_rot.reshape(b, heads, num_k_rope, d), k[:, :, num_k_rope:]), dim=2)
    if fused and v_in.shape[-1] < head_dim:
        # The value projection is affine and every softmax row sums to one, so attending
        # to the unprojected values and projecting the result is the same product: with
        # the memory's 64 channels against a 256-wide head, a quarter of the
        # probability-times-value multiplications (ONNX Runtime's fused kernel takes a
        # narrower value head; torch's CPU flash kernel does not, so only the graphs do).
        v = v_in[:, None].expand(-1, heads, -1, -1)  # every head reads the same inputs
        out = FusedAttention.apply(q, k, v, bias, heads, head_dim)  # [B, h, Nq, Cv]
        weight = attn.v_proj.weight.reshape(heads, head_dim, -1).transpose(1, 2)  # [h, Cv, d]
        out = torch.matmul(out, weight) + attn.v_proj.bias.reshape(heads, 1, head_dim)
    else:
        v = _split_heads(attn.v_proj(v_in), heads)
        if fused:
            out = FusedAttention.apply(q, k, v, bias, heads, head_dim)
        else:
            out = biased_attention(q, k, v, bias)
    return attn.out_proj(_merge_heads(out))


def model_device(model) -> torch.device:
    return next(model.parameters()).device


def position_caches(model) -> list[dict]:
    """The per-shape caches of sam2's sine position encoders (`PositionEmbeddingSine.cache`):
    plain dicts, so `model.to(device)` does not move what they hold."""
    return [m.cache for m in model.modules() if isinstance(getattr(m, "cache", None), dict)]


def move_position_caches(model, device: torch.device):
    """Put what sam2's position encoders cached on `device`. sam2 fills the caches on CUDA
    when CUDA is present (warmup_cache) and with whatever device a call used otherwise; an
    entry elsewhere than the model is copied to the model's device on every call."""
    for cache in position_caches(model):
        for key, value in cache.items():
            if torch.is_tensor(value) and value.device != device:
                cache[key] = value.to(device)


def query_chunked_block(block, x: torch.Tensor, score_bytes: int) -> torch.Tensor:
    """sam2's MultiScaleBlock.forward(x), with a global block's attention run over chunks of
    its queries whose scores ([rows, heads, queries, keys], fp32) stay within `score_bytes`.
    Each query's softmax is over all keys either way, with the ops torch.onnx writes for
    SDPA, so an exported graph gives the unchunked graph's numbers (bit for bit in ONNX
    Runtime) and holds a chunk's scores at a time. Windowed and pooling blocks, and global
    ones within the bound, run as they are."""
    attn = block.attn
    b, h, w, _ = x.shape
    n = h * w
    rows = max(1, score_bytes // (4 * b * attn.num_heads * n))
    if block.window_size > 0 or block.pool is not None or block.dim != block.dim_out or rows >= n:
        return block(x)
    qkv = attn.qkv(block.norm1(x)).reshape(b, n, 3, attn.num_heads, -1)
    q, k, v = (t.transpose(1, 2) for t in torch.unbind(qkv, 2))
    # SDPA as torch.onnx exports it (both sides scaled by the root of 1/sqrt(head dim)), with
    # the keys transposed and scaled once for all chunks.
    root = q.shape[-1] ** -0.25
    keys = k.transpose(-2, -1) * root
    out = torch.cat([torch.softmax((q[:, :, i:i + rows] * root) @ keys, dim=-1) @ v for i in range(0, n, rows)],
                    dim=2)
    x = x + block.drop_path(attn.proj(out.transpose(1, 2).reshape(b, h, w, -1)))
    return x + block.drop_path(block.mlp(block.norm2(x)))


class ImageEncoderStage(nn.Module):
    """SAM 2's image encoder (Hiera trunk + FPN neck) and the decoder's high-res
    projections, with the per-frame constants computed once: the trunk's positional
    embedding (a bicubic resize of a parameter, which exports as a Resize TensorRT does not
    take and costs a kernel per frame) is a buffer, and the neck's sine position encodings,
    which only the memory attention reads (as its own buffers), are not computed. The ops
    on the image are SAM 2's, in its order, so the features are the same numbers.

    `query_chunk_bytes`: run global blocks' attention in query chunks whose scores stay
    within it (query_chunked_block); the exported graphs do, as standard ONNX has no fused
    attention to keep those scores from being held whole."""

    def __init__(self, model, query_chunk_bytes: int | None = None):
        super().__init__()
        self.query_chunk_bytes = query_chunk_bytes
        encoder = model.image_encoder
        self.trunk, self.neck, self.scalp = encoder.trunk, encoder.neck, encoder.scalp
        self.conv_s0 = model.sam_mask_decoder.conv_s0
        self.conv_s1 = model.sam_mask_decoder.conv_s1
        proj = self.trunk.patch_embed.proj
        side = [(model.image_size + 2 * p - k) // s + 1
                for p, k, s in zip(proj.padding, proj.kernel_size, proj.stride)]
        with torch.no_grad():
            pos = self.trunk._get_pos_embed(tuple(side))
        self.register_buffer("trunk_pos", pos, persistent=False)

    def trunk_levels(self, image, run_block=None) -> list[torch.Tensor]:
        """Hiera.forward with the positional embedding precomputed: the stages' outputs, NHWC.
        `run_block(block, x)` runs one block (default: the block itself)."""
        trunk = self.trunk
        x = trunk.patch_embed(image) + self.trunk_pos
        levels, ends = [], trunk.stage_ends
        for i, block in enumerate(trunk.blocks):
            x = block(x) if run_block is None else run_block(block, x)
            if i == ends[-1] or (i in ends and trunk.return_interm_layers):
                levels.append(x)
        return levels

    def fpn(self, levels, lateral, top_down) -> list[torch.Tensor]:
        """FpnNeck.forward without the position encodings, the scalp dropped, in the levels'
        layout: `lateral(conv, x)` applies a level's 1x1 convolution, `top_down(x)` the x2
        upsampling of the coarser level."""
        neck = self.neck
        n = len(neck.convs) - 1
        out, prev = [None] * len(neck.convs), None
        for i in range(n, -1, -1):
            x = lateral(neck.convs[n - i], levels[i])
            if i in neck.fpn_top_down_levels and prev is not None:
                prev = x + top_down(prev)
                if neck.fuse_type == "avg":
                    prev /= 2
            else:
                prev = x
            out[i] = prev
        return out[: -self.scalp] if self.scalp > 0 else out

    def _upsample(self, x):
        mode = self.neck.fpn_interp_model
        return F.interpolate(x.to(dtype=torch.float32), scale_factor=2.0, mode=mode,
                             align_corners=None if mode == "nearest" else False, antialias=False)

    def forward(self, image: torch.Tensor):
        run_block = (None if self.query_chunk_bytes is None
                     else functools.partial(query_chunked_block, score_bytes=self.query_chunk_bytes))
        levels = [x.permute(0, 3, 1, 2) for x in self.trunk_levels(image, run_block)]
        fpn = self.fpn(levels, lambda conv, x: conv(x), self._upsample)
        return fpn[-1], self.conv_s0(fpn[-3]), self.conv_s1(fpn[-2])


class MemoryAttentionStage(nn.Module):
    """Memory attention over frame slots of H*W tokens and pointer slots of C/Cm tokens: the
    model's M and K, fewer when a backend leaves out empty ones, more with several
    conditioning frames per object (the exported graphs take any number too).

    `fused_attention` exports the attention as ONNX Runtime's fused op (FusedAttention), for
    the graphs `--backend onnx` runs; the TensorRT graphs keep the standard ops."""

    def __init__(self, model, fused_attention: bool = False):
        super().__init__()
        self.fused = fused_attention
        geo = model_geometry(model)
        self.geo = geo
        h, w = geo.feat_hw
        self.attention = model.memory_attention
        self.maskmem_tpos_enc = model.maskmem_tpos_enc  # [M, 1, 1, Cm]
        self.obj_ptr_tpos_proj = model.obj_ptr_tpos_proj
        self.add_tpos_enc_to_obj_ptrs = model.add_tpos_enc_to_obj_ptrs
        self.tpos_dim = geo.hidden_dim if model.proj_tpos_enc_in_obj_ptrs else geo.mem_dim
        self.tokens_per_ptr = geo.tokens_per_ptr
        # Asked with tensors on the model's device: sam2's sine encoders cache what they
        # return per shape, and a host tensor cached here would be copied to the device
        # on every later call of the same shape (a host wait that breaks CUDA graphs).
        device = model_device(model)
        with torch.no_grad():
            feat_shape = torch.zeros(1, geo.hidden_dim, h, w, device=device)
            curr_pos = model.image_encoder.neck.position_encoding(feat_shape)
            mem_shape = torch.zeros(1, geo.mem_dim, h, w, device=device)
            mem_pos = model.memory_encoder.position_encoding(mem_shape)
        self.register_buffer("curr_pos", curr_pos.flatten(2).transpose(1, 2), persistent=False)
        self.register_buffer("mem_pos", mem_pos.flatten(2).transpose(1, 2), persistent=False)
        # RoPE tables once for every layer (SAM 2 rebuilds them per call): [HW, D/2], for
        # the queries and, once per memory frame, for the keys.
        layer0 = self.attention.layers[0]
        self_rope = rope_tables(layer0.self_attn, h, w)
        cross_rope = rope_tables(layer0.cross_attn_image, h, w)
        self.register_buffer("self_cos", self_rope[0].to(device), persistent=False)
        self.register_buffer("self_sin", self_rope[1].to(device), persistent=False)
        self.register_buffer("cross_cos", cross_rope[0].to(device), persistent=False)
        self.register_buffer("cross_sin", cross_rope[1].to(device), persistent=False)

    def _memory_tokens(self, mem_feats, mem_tpos, ptrs, ptr_pos):
        b, m, hw, cm = mem_feats.shape
        tpos = self.maskmem_tpos_enc[:, 0, 0, :][mem_tpos]  # [B, M, Cm]
        frame_pos = self.mem_pos[:, None] + tpos[:, :, None, :]  # [B, M, HW, Cm]
        k = ptrs.shape[1]
        # An explicit width: a batch with no pointer slot at all (k = 0) must reshape too.
        ptr_tokens = ptrs.reshape(b, k * self.tokens_per_ptr, ptrs.shape[2] // self.tokens_per_ptr)
        if self.add_tpos_enc_to_obj_ptrs:
            from sam2.modeling.sam2_utils import get_1d_sine_pe

            ptr_pos_enc = self.obj_ptr_tpos_proj(get_1d_sine_pe(ptr_pos, dim=self.tpos_dim))
        else:
            ptr_pos_enc = ptrs.new_zeros(b, k, cm)
        ptr_pos_enc = ptr_pos_enc.repeat_interleave(self.tokens_per_ptr, dim=1)
        memory = torch.cat((mem_feats.reshape(b, m * hw, cm), ptr_tokens), dim=1)
        memory_pos = torch.cat((frame_pos.reshape(b, m * hw, cm), ptr_pos_enc), dim=1)
        return memory, memory_pos

    def forward(
        self, feat, mem_feats, mem_valid, mem_tpos, mem_weight, ptrs, ptr_valid, ptr_pos, ptr_weight,
        mem_ids=None,
    ):
        """With `mem_ids` ([B, M] int64, equal ids = the same stored entry; CPU only), layer
        one's cross-attention computes each distinct frame block once for all rows."""
        b, m, hw, _ = mem_feats.shape
        c, (h, w) = self.geo.hidden_dim, self.geo.feat_hw
        memory, memory_pos = self._memory_tokens(mem_feats, mem_tpos, ptrs, ptr_pos)
        per = self.tokens_per_ptr
        token_weight = torch.cat(
            (mem_weight.repeat_interleave(hw, dim=1), ptr_weight.repeat_interleave(per, dim=1)), 1
        )
        token_valid = torch.cat(
            (mem_valid.repeat_interleave(hw, dim=1), ptr_valid.repeat_interleave(per, dim=1)), 1
        )
        bias = key_bias(token_valid)
        self_rope = (self.self_cos, self.self_sin)
        cross_rope = (self.cross_cos, self.cross_sin)
        tgt = feat.flatten(2).transpose(1, 2)  # [1, HW, C]: the same for every row
        if self.attention.pos_enc_at_input:
            tgt = tgt + 0.1 * self.curr_pos
        for index, layer in enumerate(self.attention.layers):
            x = layer.norm1(tgt)
            qk = x + self.curr_pos if layer.pos_enc_at_attn else x
            tgt = tgt + rope_attention(layer.self_attn, qk, qk, x, self_rope, self_rope, fused=self.fused)
            # Until layer one's cross-attention every row holds the same values: its
            # self-attention ran once, and its cross-attention queries are shared too.
            x = layer.norm2(tgt)
            q = x + self.curr_pos if layer.pos_enc_at_cross_attn_queries else x
            if index == 0 and mem_ids is not None:
                tgt = tgt + self._shared_cross_attention(
                    layer, q, mem_feats, mem_valid, mem_tpos, mem_weight, mem_ids,
                    memory[:, m * hw:], memory_pos[:, m * hw:], token_weight[:, m * hw:],
                    bias[:, m * hw:])
            else:
                tgt = tgt.expand(b, -1, -1)
                key = memory + memory_pos if layer.pos_enc_at_cross_attn_keys else memory
                key = key * token_weight[..., None]
                # m frame slots, fewer than the model's M when a backend left out empty
                # ones, more with several conditioning frames (SAM 2 attends to them all).
                tgt = tgt + rope_attention(
                    layer.cross_attn_image, q.expand(b, -1, -1), key, memory, cross_rope, cross_rope, bias,
                    fused=self.fused, rope_k_blocks=m)
            x = layer.norm3(tgt)
            tgt = tgt + layer.linear2(layer.activation(layer.linear1(x)))
        out = self.attention.norm(tgt.expand(b, -1, -1))
        return out.transpose(1, 2).reshape(b, c, h, w)

    def _shared_cross_attention(self, layer, q_in, mem_feats, mem_valid, mem_tpos, mem_weight,
                                mem_ids, ptr_tokens, ptr_pos, ptr_weight, ptr_bias):
        """Cross-attention for B rows sharing one query [1, HW, C]: each distinct frame
        block (entry id, temporal position, key weight) is attended once, each row's
        pointers once per row, and the pieces are merged by their log-sum-exp."""
        attn, cos, sin = layer.cross_attn_image, self.cross_cos, self.cross_sin
        heads, b = attn.num_heads, mem_feats.shape[0]
        flash = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
        q = apply_rope(_split_heads(attn.q_proj(q_in), heads), cos, sin)  # [1, h, HW, d]

        rows, slots = torch.nonzero(mem_valid, as_tuple=True)
        signature = torch.stack((mem_ids[rows, slots], mem_tpos[rows, slots],
                                 mem_weight[rows, slots].view(torch.int32).long()), 1)
        unique, inverse = torch.unique(signature, dim=0, return_inverse=True)
        first = torch.full((len(unique),), len(rows), dtype=torch.long, device=rows.device)
        first = first.scatter_reduce(0, inverse, torch.arange(len(rows), device=rows.device), "amin")
        r, s = rows[first], slots[first]
        feats = mem_feats[r, s]  # [U, HW, Cm]
        key_in = feats
        if layer.pos_enc_at_cross_attn_keys:
            key_in = feats + self.mem_pos + self.maskmem_tpos_enc[:, 0, 0, :][mem_tpos[r, s]][:, None, :]
        key_in = key_in * mem_weight[r, s][:, None, None]
        k = apply_rope(_split_heads(attn.k_proj(key_in), heads), cos, sin)
        v = _split_heads(attn.v_proj(feats), heads)
        block_out, block_lse = flash(q.expand(len(unique), -1, -1, -1), k, v)  # [U,h,HW,d], [U,h,HW]

        key_p = (ptr_tokens + ptr_pos if layer.pos_enc_at_cross_attn_keys else ptr_tokens) * ptr_weight[..., None]
        k_p, v_p = _split_heads(attn.k_proj(key_p), heads), _split_heads(attn.v_proj(ptr_tokens), heads)
        ptr_out, ptr_lse = flash(q.expand(b, -1, -1, -1), k_p, v_p, attn_mask=ptr_bias[:, None, None, :].to(q.dtype))

        member = torch.zeros(b, len(unique), dtype=torch.bool, device=q.device)
        member[rows, inverse] = True
        lse = torch.where(member[:, :, None, None], block_lse[None], float("-inf"))  # [B,U,h,HW]
        total = torch.logsumexp(torch.cat((lse, ptr_lse[:, None]), 1), dim=1)  # [B,h,HW]
        share = torch.exp(lse - total[:, None])  # 0 for blocks a row does not hold
        out = torch.einsum("buhn,uhnd->bhnd", share, block_out)
        out = out + torch.exp(ptr_lse - total)[..., None] * ptr_out
        return attn.out_proj(_merge_heads(out))


class MaskDecoderStage(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.prompt_encoder = model.sam_prompt_encoder
        self.decoder = model.sam_mask_decoder
        self.mask_downsample = model.mask_downsample
        self.obj_ptr_proj = model.obj_ptr_proj
        self.no_obj_ptr = model.no_obj_ptr
        with torch.no_grad():
            self.register_buffer("image_pe", self.prompt_encoder.get_dense_pe(), persistent=False)

    def _pointer(self, tokens, present):
        # SAM 2.1's fixed no-object pointer: the decoder's pointer when the object is
        # present, the learned `no_obj_ptr` when it is not.
        return present * self.obj_ptr_proj(tokens) + (1 - present) * self.no_obj_ptr

    def _dense_prompt(self, pix_feat, mask_prompt, mask_valid):
        b, _, h, w = pix_feat.shape
        no_mask = self.prompt_encoder.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(b, -1, h, w)
        if mask_prompt is None:
            return no_mask
        embedded = self.prompt_encoder._embed_masks(mask_prompt)
        if mask_valid is None:
            return embedded
        return torch.where(mask_valid[:, None, None, None] > 0, embedded, no_mask)

    def forward(self, pix_feat, hr0, hr1, point_coords=None, point_labels=None,
                mask_prompt=None, mask_valid=None):
        """mask_prompt [B, 1, S/4, S/4] is a mask already through `mask_downsample`; with
        mask_valid [B] only the rows where it is 1 use it (the exported form)."""
        b = pix_feat.shape[0]
        if point_coords is None:  # no clicks: SAM 2's single padding point
            point_coords = pix_feat.new_zeros(b, 1, 2)
            point_labels = -torch.ones(b, 1, dtype=torch.int32, device=pix_feat.device)
        sparse = self.prompt_encoder._embed_points(point_coords, point_labels, pad=True)
        dense = self._dense_prompt(pix_feat, mask_prompt, mask_valid)
        masks, ious, tokens, score = self.decoder.predict_masks(
            image_embeddings=pix_feat,
            image_pe=self.image_pe,
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            repeat_image=False,
            high_res_features=[hr0.expand(b, -1, -1, -1), hr1.expand(b, -1, -1, -1)],
        )
        present = (score > 0).float()  # [B, 1]
        masks = torch.where(present[:, :, None, None] > 0, masks, NO_OBJ_SCORE).float()
        obj_ptrs = self._pointer(tokens[:, 1:], present[:, :, None])
        single_ptr = self._pointer(tokens[:, 0], present)
        return (
            masks[:, 1:],
            ious[:, 1:],
            score[:, 0],
            obj_ptrs,
            masks[:, :1],
            ious[:, 0],
            single_ptr,
        )


class MemoryEncoderStage(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.memory_encoder = model.memory_encoder
        self.scale = model.sigmoid_scale_for_mem_enc
        self.bias = model.sigmoid_bias_for_mem_enc
        self.binarize_prompt_masks = model.binarize_mask_from_pts_for_mem_enc
        self.no_obj_embed_spatial = model.no_obj_embed_spatial

    def forward(self, feat, masks, obj_score, from_prompt: bool = False):
        b = masks.shape[0]
        # By scale, not size: exported graphs keep a dynamic batch (same coordinates).
        high = F.interpolate(masks, scale_factor=4.0, mode="bilinear", align_corners=False)
        if from_prompt and self.binarize_prompt_masks:
            mask_for_mem = (high > 0).float()
        else:
            mask_for_mem = torch.sigmoid(high)
        if self.scale != 1.0:
            mask_for_mem = mask_for_mem * self.scale
        if self.bias != 0.0:
            mask_for_mem = mask_for_mem + self.bias
        out = self.memory_encoder(feat.expand(b, -1, -1, -1), mask_for_mem, skip_mask_sigmoid=True)
        mem = out["vision_features"]
        if self.no_obj_embed_spatial is not None:
            absent = 1 - (obj_score > 0).float()
            mem = mem + absent[:, None, None, None] * self.no_obj_embed_spatial[..., None, None]
        return mem
