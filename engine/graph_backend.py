"""What the ONNX Runtime and TensorRT backends share: the exported graphs' constants and
the stage methods written as feeds for one `_run(stage, feeds, batch)` per graph, each call
checked against the stage spec first (`_call`)."""

from __future__ import annotations

from abc import abstractmethod
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from sam2long.engine.errors import SAM2LongError
from sam2long.engine.manifest import CONSTANTS_NAME, EngineMismatchError
from sam2long.engine.profiles import MAX_CLICKS
from sam2long.engine.stages import (DYNAMIC_DIMS, SLOT_DIMS, STAGE_SPECS, DecoderOutput, ImageFeatures, MemoryInputs,
                           ModelGeometry, StageBackend, check_feeds, input_names, output_names)


def stage_io_names(stage: str) -> tuple[list[str], list[str]]:
    """The input and output names a stage's graph (and engine) must have: the spec's."""
    return input_names(stage), output_names(stage)


def check_stage_io(stage: str, got_in: list[str], got_out: list[str]):
    want_in, want_out = stage_io_names(stage)
    if sorted(got_in) != sorted(want_in) or sorted(got_out) != sorted(want_out):
        raise EngineMismatchError(
            f"stage {stage}: the graph's inputs {got_in} / outputs {got_out} are not the "
            f"expected {want_in} / {want_out}; rebuild the engines with export/build_engines.py")


def load_geometry(folder: Path) -> ModelGeometry:
    return _geometry(np.load(Path(folder) / CONSTANTS_NAME))


def _geometry(constants) -> ModelGeometry:
    geo = {k[len("geometry_"):]: constants[k].tolist() for k in constants.files if k.startswith("geometry_")}
    geo["feat_hw"], geo["multimask_points"] = tuple(geo["feat_hw"]), tuple(geo["multimask_points"])
    return ModelGeometry(**geo)


class ProfileError(SAM2LongError, ValueError):
    """A prompt beyond what the engines' profiles take (more clicks than MAX_CLICKS, more
    prompt frames per object than the memory attention's slots allow)."""


def slot_error(backend: str, geo: ModelGeometry, frames: int, pointers: int, limits: dict[str, int]) -> str:
    """Why a memory of `frames` frame slots and `pointers` pointer slots is beyond `limits`."""
    extra = limits["M"] - geo.num_maskmem
    return (f"a memory of {frames} frames and {pointers} object pointers: the {backend} engines' memory "
            f"attention takes at most {limits['M']} frames and {limits['K']} pointers (the model's "
            f"{geo.num_maskmem} and {geo.max_obj_ptrs}, and {extra} more for prompt frames beyond an "
            f"object's first; prompt frames per object: at most {extra + 1}); clear some prompt frames "
            f"or use backend torch")


class GraphBackend(StageBackend):
    """Stage methods over exported graphs; subclasses run one graph with `_run`.

    Every engine call goes through `_call`, which checks the feeds against the stage spec
    (names in order, dtypes, device, shapes) and converts nothing: the stage methods build
    feeds of the exact types, so the per-frame path has no hidden copies or casts."""

    max_batch: int

    def _load_constants(self, folder: Path):
        path = Path(folder) / CONSTANTS_NAME
        try:
            constants = np.load(path)
            self.geometry = _geometry(constants)
            no_mem_embed = constants["no_mem_embed"]
            weight, bias = constants["mask_downsample_weight"], constants["mask_downsample_bias"]
        except (OSError, ValueError, KeyError, EOFError) as e:  # missing, truncated or not ours
            raise EngineMismatchError(
                f"{path} is missing or damaged ({type(e).__name__}: {e}); rebuild the engines with "
                f"export/build_engines.py --force") from None
        self.no_mem_embed = torch.from_numpy(no_mem_embed).to(self.device)
        self._downsample_w = torch.from_numpy(weight).to(self.device)
        self._downsample_b = torch.from_numpy(bias).to(self.device)

    @abstractmethod
    def _run(self, stage: str, feeds: dict[str, torch.Tensor], batch: int) -> list[torch.Tensor]:
        """Run one graph on checked feeds; outputs in the stage spec's order, on `self.device`."""

    # Stages whose graphs take other memory / pointer slot counts than the model's M / K.
    slot_dynamic_stages: frozenset = frozenset()

    def slot_limits(self) -> dict[str, int] | None:
        """The most frame slots ("M") and pointer slots ("K") one memory-attention call
        takes (the profile's); None: any."""
        return None

    def check_slots(self, memory: MemoryInputs):
        """A memory beyond `slot_limits` is a ProfileError naming the limits, before any
        engine runs (else: TensorRT's refusal of the shape, in the middle of a frame)."""
        limits = self.slot_limits()
        frames, pointers = memory.mem_feats.shape[1], memory.ptrs.shape[1]
        if limits is not None and (frames > limits["M"] or pointers > limits["K"]):
            raise ProfileError(slot_error(self.name, self.geometry, frames, pointers, limits))

    def _call(self, stage: str, feeds: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        """One stage call of any number of rows: split into calls of at most the engines'
        rows (`row_limit`), each inside the profile, and the outputs joined. The runtime
        asks for objects x pathways rows, which no profile can bound (a video may have any
        number of objects)."""
        dims = DYNAMIC_DIMS + SLOT_DIMS if stage in self.slot_dynamic_stages else DYNAMIC_DIMS
        batch = check_feeds(stage, feeds, self.geometry, self.device, dims)
        limit = self.row_limit()
        if limit is None or batch <= limit:
            return self._run(stage, feeds, batch)
        spec = STAGE_SPECS[stage]
        per_row = {t.name for t in spec.inputs if t.dims[0] == "B"}
        parts = [self._run(stage, {name: value[start:start + limit] if name in per_row else value
                                   for name, value in feeds.items()}, min(limit, batch - start))
                 for start in range(0, batch, limit)]
        return [torch.cat(outs) for outs in zip(*parts)]  # every output of a batched stage is per row

    def row_limit(self) -> int | None:
        """The most rows one engine call takes (the profiles' --max_batch); None: any."""
        return self.max_batch

    @property
    def max_clicks(self) -> int | None:
        """The most clicks (a box counts as two) a decoder call takes; None: any."""
        return None if self.row_limit() is None else MAX_CLICKS

    def encode_image(self, image: torch.Tensor) -> ImageFeatures:
        # The one conversion at the API boundary (a frame from the host); the tracker
        # passes a float32 device tensor, for which it is a no-op.
        return ImageFeatures(*self._call("image_encoder", {"image": image.to(self.device, torch.float32)}))

    def attend_memory(self, feat: torch.Tensor, memory: MemoryInputs, mem_ids=None) -> torch.Tensor:
        self.check_slots(memory)
        return self._call("memory_attention", {"feat": feat, **vars(memory)})[0]

    def decode_masks(self, pix_feat, image, point_coords=None, point_labels=None, mask_input=None,
                     mask_logits=None):
        b, low = pix_feat.shape[0], self.geometry.low_res
        if point_coords is not None and self.max_clicks is not None and point_coords.shape[1] > self.max_clicks:
            raise ProfileError(f"{point_coords.shape[1]} clicks on one object: the {self.name} engines take at "
                               f"most {self.max_clicks} (a box counts as two); give fewer clicks or a mask")
        if point_coords is None:  # no clicks: SAM 2's single padding point
            point_coords = pix_feat.new_zeros(b, 1, 2)
            point_labels = torch.full((b, 1), -1, dtype=torch.int32, device=self.device)
        else:  # prompt frames: the API takes clicks of any float / integer dtype
            point_coords, point_labels = point_coords.float(), point_labels.int()
        if mask_logits is not None:  # already at the prompt encoder's size: taken as is
            mask_prompt, mask_valid = mask_logits.float(), pix_feat.new_ones(b)
        elif mask_input is None:
            mask_prompt, mask_valid = pix_feat.new_zeros(b, 1, low, low), pix_feat.new_zeros(b)
        else:  # SAM 2's learned 4x4 mask downsampling, applied here with its weights
            mask_prompt = F.conv2d(mask_input.float(), self._downsample_w, self._downsample_b, stride=4)
            mask_valid = pix_feat.new_ones(b)
        feeds = {"pix_feat": pix_feat, "hr0": image.hr0, "hr1": image.hr1, "point_coords": point_coords,
                 "point_labels": point_labels, "mask_prompt": mask_prompt, "mask_valid": mask_valid}
        return DecoderOutput(*self._call("mask_decoder", feeds))

    def encode_memory(self, feat, masks, obj_score, from_prompt=False) -> torch.Tensor:
        # from_prompt matters only with binarize_mask_from_pts_for_mem_enc, which the
        # export refuses; the graph is the same for prompt and tracked masks.
        return self._call("memory_encoder", {"feat": feat, "masks": masks, "obj_score": obj_score})[0]
