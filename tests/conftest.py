"""Shared test fixtures: small random-weight models, synthetic videos, the parity fixture."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MICRO_CFG = str(ROOT / "configs" / "micro_sam2.1_256.yaml")
PARITY_DIR = ROOT.parent / "shared" / "fixtures" / "sam2long_parity"

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def parity_dir() -> Path:
    if not (PARITY_DIR / "README.md").is_file():
        pytest.skip(f"parity fixture not found at {PARITY_DIR} (it ships in ../shared beside the repo)")
    return PARITY_DIR


@pytest.fixture(scope="session")
def micro_checkpoints(tmp_path_factory) -> dict[str, Path]:
    from tools.make_random_checkpoint import write_checkpoint

    folder = tmp_path_factory.mktemp("ckpt")
    return {
        "plain": write_checkpoint(folder / "plain.pt", MICRO_CFG, seed=0),
        "lively": write_checkpoint(folder / "lively.pt", MICRO_CFG, seed=0, lively=True),
    }


@pytest.fixture(scope="session")
def lively_backend(micro_checkpoints):
    from engine.model_loading import load_sam2_model
    from engine.torch_backend import TorchBackend

    return TorchBackend(load_sam2_model(MICRO_CFG, micro_checkpoints["lively"]).model, "cpu")


def synthetic_frame(t: int, height: int = 120, width: int = 160) -> np.ndarray:
    """A textured background with a bright ellipse drifting right: uint8 [H, W, 3]."""
    yy, xx = np.mgrid[0:height, 0:width]
    background = (40 + 30 * np.sin(xx / 7.0) * np.cos(yy / 5.0)).astype(np.float32)
    cx, cy = 40 + 1.5 * (t % 60), 60 + 10 * np.sin(t / 9.0)
    inside = ((xx - cx) / 22.0) ** 2 + ((yy - cy) / 15.0) ** 2 <= 1.0
    image = np.stack([background, background * 0.8, background * 0.6], -1)
    image[inside] = (220, 180, 60)
    return image.clip(0, 255).astype(np.uint8)


def synthetic_mask(t: int, height: int = 120, width: int = 160) -> np.ndarray:
    yy, xx = np.mgrid[0:height, 0:width]
    cx, cy = 40 + 1.5 * (t % 60), 60 + 10 * np.sin(t / 9.0)
    return ((xx - cx) / 22.0) ** 2 + ((yy - cy) / 15.0) ** 2 <= 1.0
