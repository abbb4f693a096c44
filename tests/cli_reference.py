"""What the command-line tools' PNG masks must hold, computed in-process: the tracker on the
torch backend run directly on the same frames and prompts, its logits resized and packed here
(not by the tools' pipeline or mask writer). A tool that drops a prompt, shifts a click or
writes empty masks differs from this."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from sam2long.engine.model_loading import load_sam2_model
from sam2long.engine.torch_backend import TorchBackend
from sam2long.runtime.config import TrackerConfig
from sam2long.runtime.frames import preprocess_frame
from sam2long.runtime.tracker import SAM2LongTracker
from tests.conftest import MICRO_CFG


def reference_logits(checkpoint, frames: list[np.ndarray], prompts, num_pathway=3, iou_thre=0.1,
                     uncertainty=2.0) -> list[dict[int, np.ndarray]]:
    """Per frame: {object id: logits at video resolution} for the objects started by then."""
    backend = TorchBackend(load_sam2_model(MICRO_CFG, str(checkpoint)).model, "cpu")
    tracker = SAM2LongTracker(backend, TrackerConfig(num_pathway, iou_thre, uncertainty))
    hw = frames[0].shape[:2]
    size = backend.geometry.image_size
    images = (preprocess_frame(Image.fromarray(rgb), size) for rgb in frames)
    out = []
    for result in tracker.track(images, list(prompts), len(frames), hw):
        low = torch.from_numpy(result.low_res_logits)[:, None]
        high = F.interpolate(low, size=hw, mode="bilinear", align_corners=False)[:, 0].numpy()
        out.append(dict(zip(result.obj_ids, high)))
    return out


def davis_labels(logits: dict[int, np.ndarray], hw) -> np.ndarray:
    """One palette label map: each pixel to the object with the highest logit (lowest id on
    ties) when that logit is positive (SAM 2's non-overlap rule), else background."""
    if not logits:
        return np.zeros(hw, np.uint8)
    ids = sorted(logits)
    stack = np.stack([logits[i] for i in ids])
    winner = np.argmax(stack, axis=0)
    return np.where(stack.max(0) > 0, np.asarray(ids)[winner], 0).astype(np.uint8)


def read_frames(paths) -> list[np.ndarray]:
    return [np.array(Image.open(p).convert("RGB")) for p in paths]


def assert_same_labels(png_path: Path, want: np.ndarray, what: str = ""):
    got = np.array(Image.open(png_path))
    assert got.shape == want.shape, (png_path, got.shape, want.shape)
    # Equal up to a handful of pixels on exact ties of resized logits.
    differ = int((got != want).sum())
    assert differ <= 2, f"{what or png_path}: {differ} pixels differ from the in-process tracker"
