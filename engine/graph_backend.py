"""What the ONNX Runtime and TensorRT backends share: the exported graphs' constants and
the stage methods written as feeds for one `_run(stage, feeds, batch)` per graph."""

from __future__ import annotations

from abc import abstractmethod
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from engine.manifest import CONSTANTS_NAME, EngineMismatchError
from engine.stages import STAGE_SPECS, DecoderOutput, ImageFeatures, MemoryInputs, ModelGeometry, StageBackend

# The decoder graph's inputs beyond the stage spec: clicks and a downsampled mask prompt.
DECODER_EXTRA_INPUTS = ("point_coords", "point_labels", "mask_prompt", "mask_valid")


def stage_io_names(stage: str) -> tuple[list[str], list[str]]:
    """The input and output names a stage's graph (and engine) must have."""
    spec = STAGE_SPECS[stage]
    inputs = [t.name for t in spec.inputs] + (list(DECODER_EXTRA_INPUTS) if stage == "mask_decoder" else [])
    return inputs, [t.name for t in spec.outputs]


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


class GraphBackend(StageBackend):
    """Stage methods over exported graphs; subclasses run one graph with `_run`."""

    max_batch: int

    def _load_constants(self, folder: Path):
        constants = np.load(Path(folder) / CONSTANTS_NAME)
        self.geometry = _geometry(constants)
        self.no_mem_embed = torch.from_numpy(constants["no_mem_embed"]).to(self.device)
        self._downsample_w = torch.from_numpy(constants["mask_downsample_weight"]).to(self.device)
        self._downsample_b = torch.from_numpy(constants["mask_downsample_bias"]).to(self.device)

    @abstractmethod
    def _run(self, stage: str, feeds: dict[str, torch.Tensor], batch: int) -> list[torch.Tensor]:
        """Run one graph; outputs in the stage spec's order, on `self.device`."""

    def _check_batch(self, stage: str, batch: int):
        if batch > self.max_batch:
            raise ValueError(f"stage {stage}: batch {batch} exceeds the engines' --max_batch "
                             f"{self.max_batch}; rebuild with a larger --max_batch")

    def encode_image(self, image: torch.Tensor) -> ImageFeatures:
        return ImageFeatures(*self._run("image_encoder", {"image": image.to(self.device).float()}, 1))

    def attend_memory(self, feat: torch.Tensor, memory: MemoryInputs, mem_ids=None) -> torch.Tensor:
        feeds = {"feat": feat, **vars(memory)}
        return self._run("memory_attention", feeds, memory.mem_feats.shape[0])[0]

    def decode_masks(self, pix_feat, image, point_coords=None, point_labels=None, mask_input=None):
        b, low = pix_feat.shape[0], self.geometry.low_res
        if point_coords is None:  # no clicks: SAM 2's single padding point
            point_coords = pix_feat.new_zeros(b, 1, 2)
            point_labels = -torch.ones(b, 1, dtype=torch.int32, device=self.device)
        if mask_input is None:
            mask_prompt, mask_valid = pix_feat.new_zeros(b, 1, low, low), pix_feat.new_zeros(b)
        else:  # SAM 2's learned 4x4 mask downsampling, applied here with its weights
            mask_prompt = F.conv2d(mask_input.float(), self._downsample_w, self._downsample_b, stride=4)
            mask_valid = pix_feat.new_ones(b)
        feeds = {"pix_feat": pix_feat, "hr0": image.hr0, "hr1": image.hr1,
                 "point_coords": point_coords.float(), "point_labels": point_labels.int(),
                 "mask_prompt": mask_prompt, "mask_valid": mask_valid}
        return DecoderOutput(*self._run("mask_decoder", feeds, b))

    def encode_memory(self, feat, masks, obj_score, from_prompt=False) -> torch.Tensor:
        # from_prompt matters only with binarize_mask_from_pts_for_mem_enc, which the
        # export refuses; the graph is the same for prompt and tracked masks.
        feeds = {"feat": feat, "masks": masks.float(), "obj_score": obj_score.float()}
        return self._run("memory_encoder", feeds, masks.shape[0])[0]
