"""The four-stage interface every backend implements (see DESIGN.md "The four stages").

Shapes use: B = rows (objects x pathways), N = decoder clicks, C = hidden dim (256),
Cm = memory dim (64), S = image size, H x W = S/16 x S/16 feature map, M = num_maskmem
frame slots, K = max_obj_ptrs_in_encoder pointer slots. One spec per stage, inputs in the
exported graph's order, drives everything else: the ONNX export's names and dynamic axes,
the TensorRT profiles, the graphs' I/O checks at load and the check of every engine call's
feeds (`check_feeds`). `tests/test_stage_specs.py` keeps the typed outputs and the specs in
agreement.
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from dataclasses import dataclass, fields

import torch


# What a backend can compute in: fp32 is the parity mode, the others trade it for speed.
PRECISIONS = ("fp32", "fp16", "bf16")


@dataclass(frozen=True)
class ModelGeometry:
    image_size: int
    feat_hw: tuple[int, int]
    hidden_dim: int
    mem_dim: int
    num_maskmem: int
    max_obj_ptrs: int
    hr0_channels: int
    hr1_channels: int
    multimask_points: tuple[int, int] = (0, 1)  # click counts that get 3 candidate masks
    attn_heads: int = 1  # heads of the memory attention's cross-attention

    @property
    def tokens_per_ptr(self) -> int:
        """Tokens an object pointer splits into (C/Cm), as memory-attention keys."""
        return max(1, self.hidden_dim // self.mem_dim)

    @property
    def attention_keys(self) -> int:
        """Keys of the memory attention's cross-attention: M frames of H*W tokens, and K
        pointers of C/Cm tokens each."""
        return self.num_maskmem * self.mem_tokens + self.max_obj_ptrs * self.tokens_per_ptr

    def attention_score_bytes(self, bytes_per_value: int = 4, frames: int | None = None,
                              pointers: int | None = None) -> int:
        """One batch row's cross-attention scores [heads, H*W, keys], over every slot or over
        `frames` frame slots and `pointers` pointer slots: what an attention that is not fused
        keeps per row (an engine's working memory holds about two of them: the scores and
        their softmax), and what a fused kernel holds per row at once."""
        keys = self.attention_keys if frames is None else frames * self.mem_tokens + pointers * self.tokens_per_ptr
        return self.attn_heads * self.mem_tokens * keys * bytes_per_value

    @property
    def low_res(self) -> int:
        """Side of the decoder's low-res masks (S/4)."""
        return self.image_size // 4

    @property
    def mem_tokens(self) -> int:
        return self.feat_hw[0] * self.feat_hw[1]


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: str
    dims: tuple  # ints or symbolic names resolved against ModelGeometry


@dataclass(frozen=True)
class StageSpec:
    name: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]


@dataclass
class ImageFeatures:
    """Image encoder outputs for one frame (batch 1, shared by every row)."""

    feat: torch.Tensor  # [1, C, H, W] lowest-resolution features
    hr0: torch.Tensor  # [1, C0, 4H, 4W] projected by the decoder's conv_s0
    hr1: torch.Tensor  # [1, C1, 2H, 2W] projected by the decoder's conv_s1


@dataclass
class MemoryInputs:
    """Fixed-size memory for B rows; slot validity replaces variable token counts."""

    mem_feats: torch.Tensor  # [B, M, H*W, Cm] float32 (values stored rounded to bf16)
    mem_valid: torch.Tensor  # [B, M] bool
    mem_tpos: torch.Tensor  # [B, M] int64 index into maskmem_tpos_enc
    mem_weight: torch.Tensor  # [B, M] float32 SAM2Long key weight
    ptrs: torch.Tensor  # [B, K, C] object pointers
    ptr_valid: torch.Tensor  # [B, K] bool
    ptr_pos: torch.Tensor  # [B, K] float32 temporal distance / (max pointers - 1)
    ptr_weight: torch.Tensor  # [B, K] float32 SAM2Long key weight

    def used_slots(self) -> tuple[torch.Tensor, torch.Tensor]:
        """[M], [K] bool: the frame and pointer slots valid in at least one row. The others
        carry no information (masked slots give the same result as absent ones)."""
        return self.mem_valid.any(0), self.ptr_valid.any(0)

    def row_groups(self) -> list[torch.Tensor]:
        """Row indices grouped by the frame slots they hold (equal mem_valid rows). Rows differ
        when pathways have different numbers of good frames; attended together, each row
        pays for the slots of the row with the most."""
        patterns, group = torch.unique(self.mem_valid, dim=0, return_inverse=True)
        return [torch.nonzero(group == g).flatten() for g in range(len(patterns))]

    def select(self, rows=slice(None), frames=slice(None), pointers=slice(None)) -> "MemoryInputs":
        """These rows, frame slots and pointer slots (indices, slices or bool masks)."""
        return MemoryInputs(*(value[rows][:, frames if name.startswith("mem") else pointers]
                              for name, value in vars(self).items()))


def attend_row_groups(memory: MemoryInputs, attend, apart: bool = True) -> torch.Tensor:
    """Memory attention on the CPU, one call per group of rows holding the same frame slots
    (MemoryInputs.row_groups), each with only the frame and pointer slots its rows use: a
    masked slot costs the attention as much as a real one (tiny's steady state: 3 pathways
    holding 14 frame blocks between them, attended as 3 rows x the fullest one's 6 slots;
    apart, the stage took 28% less time). Layer one's self-attention, the same for every
    row, then runs once per group.
    `attend(rows, frames, memory)` gets the group's row indices, its frame slots ([M]
    bool) and its memory; the results come back in row order. `apart=False`: every row in
    one call, over the slots any row holds."""
    groups = memory.row_groups() if apart else [torch.arange(memory.mem_valid.shape[0])]
    parts = []
    for rows in groups:
        group = memory.select(rows=rows) if len(groups) > 1 else memory
        frames, pointers = group.used_slots()
        parts.append(attend(rows, frames, group.select(frames=frames, pointers=pointers)))
    if len(parts) == 1:
        return parts[0]
    out = parts[0].new_empty((memory.mem_feats.shape[0], *parts[0].shape[1:]))
    for rows, pix in zip(groups, parts):
        out[rows] = pix
    return out


@dataclass
class DecoderOutput:
    """Mask decoder outputs: all three candidates plus the single-mask token."""

    masks: torch.Tensor  # [B, 3, S/4, S/4] logits, -1024 where the object is absent
    ious: torch.Tensor  # [B, 3] predicted IoUs
    obj_score: torch.Tensor  # [B] object-score logit
    obj_ptrs: torch.Tensor  # [B, 3, C] one pointer per candidate mask
    single_mask: torch.Tensor  # [B, 1, S/4, S/4] the single-output token's mask
    single_iou: torch.Tensor  # [B]
    single_ptr: torch.Tensor  # [B, C]


def _t(name, dtype, *dims):
    return TensorSpec(name, dtype, tuple(dims))


# The four stages by their short names (auto's timings, a mixed backend's plan) and their
# full ones (the graphs, the torch backend's modules).
STAGE_NAMES = {"image": "image_encoder", "attention": "memory_attention", "decoder": "mask_decoder",
               "memory": "memory_encoder"}

STAGE_SPECS = {
    "image_encoder": StageSpec(
        "image_encoder",
        inputs=(_t("image", "float32", 1, 3, "S", "S"),),
        outputs=(
            _t("feat", "float32", 1, "C", "H", "W"),
            _t("hr0", "float32", 1, "C0", "4H", "4W"),
            _t("hr1", "float32", 1, "C1", "2H", "2W"),
        ),
    ),
    "memory_attention": StageSpec(
        "memory_attention",
        inputs=(
            _t("feat", "float32", 1, "C", "H", "W"),
            _t("mem_feats", "float32", "B", "M", "HW", "Cm"),
            _t("mem_valid", "bool", "B", "M"),
            _t("mem_tpos", "int64", "B", "M"),
            _t("mem_weight", "float32", "B", "M"),
            _t("ptrs", "float32", "B", "K", "C"),
            _t("ptr_valid", "bool", "B", "K"),
            _t("ptr_pos", "float32", "B", "K"),
            _t("ptr_weight", "float32", "B", "K"),
        ),
        outputs=(_t("pix_feat", "float32", "B", "C", "H", "W"),),
    ),
    "mask_decoder": StageSpec(
        "mask_decoder",
        inputs=(
            _t("pix_feat", "float32", "B", "C", "H", "W"),
            _t("hr0", "float32", 1, "C0", "4H", "4W"),
            _t("hr1", "float32", 1, "C1", "2H", "2W"),
            # Clicks in image-size pixels (no clicks: one padding point with label -1).
            _t("point_coords", "float32", "B", "N", 2),
            _t("point_labels", "int32", "B", "N"),
            # A mask prompt already through SAM 2's 4x4 downsampling, used by rows whose
            # mask_valid is 1 (the others get the no-mask embedding).
            _t("mask_prompt", "float32", "B", 1, "S/4", "S/4"),
            _t("mask_valid", "float32", "B"),
        ),
        outputs=(
            _t("masks", "float32", "B", 3, "S/4", "S/4"),
            _t("ious", "float32", "B", 3),
            _t("obj_score", "float32", "B"),
            _t("obj_ptrs", "float32", "B", 3, "C"),
            _t("single_mask", "float32", "B", 1, "S/4", "S/4"),
            _t("single_iou", "float32", "B"),
            _t("single_ptr", "float32", "B", "C"),
        ),
    ),
    "memory_encoder": StageSpec(
        "memory_encoder",
        inputs=(
            _t("feat", "float32", 1, "C", "H", "W"),
            _t("masks", "float32", "B", 1, "S/4", "S/4"),
            _t("obj_score", "float32", "B"),
        ),
        outputs=(_t("mem_feat", "float32", "B", "Cm", "H", "W"),),
    ),
}


# The symbolic dims that vary between calls of one graph (its dynamic axes); every other
# dim is fixed by the model.
DYNAMIC_DIMS = ("B", "N")
# Memory frame and pointer slots: dynamic in both memory-attention graphs. ONNX Runtime on
# the CPU takes only the slots a call's rows hold (attend_row_groups); SAM 2 with several conditioning frames per
# object attends to more frames (and pointers) than the model's M (K). TensorRT's profile
# covers M..M+EXTRA_SLOTS (engine/profiles.py) with M as its opt shape, the batch
# tracker's one shape.
SLOT_DIMS = ("M", "K")
TORCH_DTYPES = {"float32": torch.float32, "int64": torch.int64, "int32": torch.int32, "bool": torch.bool}


def resolve_dims(spec: TensorSpec, geo: ModelGeometry, batch: int, clicks: int = 1,
                 slots: dict[str, int] | None = None) -> tuple[int, ...]:
    """A spec's symbolic dims as numbers for this model, batch and click count (and slot
    counts M / K, when a graph takes fewer than the model's)."""
    h, w = geo.feat_hw
    table = {"S": geo.image_size, "C": geo.hidden_dim, "H": h, "W": w, "C0": geo.hr0_channels,
             "C1": geo.hr1_channels, "4H": 4 * h, "4W": 4 * w, "2H": 2 * h, "2W": 2 * w,
             "B": batch, "N": clicks, "M": geo.num_maskmem, "K": geo.max_obj_ptrs, "HW": h * w,
             "Cm": geo.mem_dim, "S/4": geo.low_res, **(slots or {})}
    return tuple(table.get(d, d) for d in spec.dims)


def input_names(stage: str) -> list[str]:
    return [t.name for t in STAGE_SPECS[stage].inputs]


def output_names(stage: str) -> list[str]:
    return [t.name for t in STAGE_SPECS[stage].outputs]


def dynamic_axes(stage: str, dynamic: tuple[str, ...] = DYNAMIC_DIMS) -> dict[str, dict[int, str]]:
    """name -> {axis: symbolic dim} for every input and output with a dynamic dim."""
    spec = STAGE_SPECS[stage]
    axes = {t.name: {i: d for i, d in enumerate(t.dims) if d in dynamic} for t in (*spec.inputs, *spec.outputs)}
    return {name: dims for name, dims in axes.items() if dims}


class FeedError(ValueError):
    """An engine call whose feeds do not match the stage spec (a bug in the caller)."""


def on_device(tensor_device: torch.device, device: torch.device) -> bool:
    """Whether a tensor on `tensor_device` is on `device` ("cuda" means the current
    CUDA device: tensors always carry their index, a backend's device may not)."""
    return tensor_device.type == device.type and (device.index is None or tensor_device.index == device.index)


def check_feeds(stage: str, feeds: dict[str, torch.Tensor], geo: ModelGeometry,
                device: torch.device, dynamic_dims: tuple[str, ...] = DYNAMIC_DIMS) -> int:
    """Check one engine call's feeds against the stage spec: the names, in order, then each
    tensor's dtype, device and shape (B and N the same across tensors). Returns the batch.
    Nothing is converted: a mismatch is a FeedError naming the stage and tensor."""
    spec = STAGE_SPECS[stage]
    names = list(feeds)
    if names != input_names(stage):
        raise FeedError(f"stage {stage}: feeds {names}, expected {input_names(stage)}")
    dynamic: dict[str, int] = {}
    for t in spec.inputs:
        value = feeds[t.name]
        want_dtype = TORCH_DTYPES[t.dtype]
        if value.dtype != want_dtype or not on_device(value.device, device):
            raise FeedError(f"stage {stage}: input {t.name} is {value.dtype} on {value.device}, "
                            f"expected {want_dtype} on {device}")
        if value.dim() != len(t.dims):
            raise FeedError(f"stage {stage}: input {t.name} has shape {tuple(value.shape)}, expected dims {t.dims}")
        for size, dim in zip(value.shape, t.dims):
            if dim in dynamic_dims:
                dynamic.setdefault(dim, size)
        want = resolve_dims(t, geo, dynamic.get("B", 1), dynamic.get("N", 1),
                            {d: dynamic[d] for d in SLOT_DIMS if d in dynamic})
        if tuple(value.shape) != want:
            raise FeedError(f"stage {stage}: input {t.name} has shape {tuple(value.shape)}, expected {want}")
    return dynamic.get("B", 1)


def dataclass_field_names(cls) -> tuple[str, ...]:
    return tuple(f.name for f in fields(cls))


class StageBackend(ABC):
    """What the runtime calls, one method per stage. Tensors in and out on `device`."""

    geometry: ModelGeometry
    device: torch.device
    name: str
    # [C] added to the frame features of a point-prompted first frame (SAM 2's
    # `no_mem_embed`): that frame has no memory to attend to.
    no_mem_embed: torch.Tensor
    # The most clicks (a box counts as two) one object's prompt may have; None: any.
    max_clicks: int | None = None

    def describe(self) -> str:
        """The backend in a few words, for notes and completion records."""
        return self.name

    # -- optional hooks for the runtime's CUDA-graph cache (runtime/cuda_graphs.py) --------
    def graph_scope(self, scope):
        """Calls made inside belong to the CUDA graph `scope` (its eager warm-up and its
        capture). A backend with per-call state that a captured graph keeps (TensorRT
        execution contexts) gives each scope its own; others need nothing."""
        return contextlib.nullcontext()

    def release_graph_scope(self, scope):
        """The graph of `scope` is gone: what was kept for it may be freed."""

    def reserve_batch(self, rows: int):
        """The runtime will run up to `rows` rows per call (objects x pathways): a backend
        may size its working memory once for that."""

    @abstractmethod
    def encode_image(self, image: torch.Tensor) -> ImageFeatures:
        """image [1, 3, S, S] normalised -> ImageFeatures."""

    @abstractmethod
    def attend_memory(self, feat: torch.Tensor, memory: MemoryInputs,
                      mem_ids: torch.Tensor | None = None) -> torch.Tensor:
        """feat [1, C, H, W] + memory for B rows -> pix_feat [B, C, H, W]. `mem_ids`
        [B, M] (equal = the same stored entry) is a hint a backend may use or ignore."""

    @abstractmethod
    def decode_masks(
        self,
        pix_feat: torch.Tensor,
        image: ImageFeatures,
        point_coords: torch.Tensor | None = None,
        point_labels: torch.Tensor | None = None,
        mask_input: torch.Tensor | None = None,
        mask_logits: torch.Tensor | None = None,
    ) -> DecoderOutput:
        """pix_feat [B, C, H, W] (+ points [B, N, 2] in image-size pixels with labels
        [B, N], or a binary mask [B, 1, S, S], or low-res logits [B, 1, S/4, S/4] that the
        prompt encoder takes as they are: SAM 2's previous mask under refinement clicks)
        -> DecoderOutput."""

    @abstractmethod
    def encode_memory(
        self, feat: torch.Tensor, masks: torch.Tensor, obj_score: torch.Tensor, from_prompt: bool = False
    ) -> torch.Tensor:
        """feat [1, C, H, W], low-res mask logits [B, 1, S/4, S/4], obj_score [B]
        -> memory features [B, Cm, H, W] (upsampling to S happens inside)."""
