"""Shared test fixtures: small random-weight models, synthetic videos, the parity fixture."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
# Tools run as subprocesses import `sam2long` from this checkout too, not from wherever the
# project was installed editable (a second worktree would otherwise test the first one's code).
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))

MICRO_CFG = str(ROOT / "configs" / "micro_sam2.1_256.yaml")
# The project's compact copy of the original's outputs (benchmarks/parity_data.py unpacks it).
PARITY_DATA = ROOT / "tests" / "data" / "parity"

torch.set_num_threads(2)


@pytest.fixture(scope="session", autouse=True)
def user_cache(tmp_path_factory) -> Path:
    """The tools' user cache (--random_weights' checkpoint, --backend auto's timings and graphs)
    in a session folder, never the tester's ~/.cache; subprocesses inherit it. No ONNX graph
    builds for --backend auto unless a test asks (they cost seconds per model:
    tests/test_auto_backend.py builds them once)."""
    folder = tmp_path_factory.mktemp("xdg_cache")
    saved = {k: os.environ.get(k) for k in ("XDG_CACHE_HOME", "SAM2LONG_NO_BUILD_GRAPHS")}
    os.environ["XDG_CACHE_HOME"] = str(folder)
    os.environ["SAM2LONG_NO_BUILD_GRAPHS"] = "1"
    yield folder
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="session")
def parity_dir(tmp_path_factory) -> Path:
    """The parity fixture's layout, unpacked from tests/data/parity: its checkpoints are
    regenerated from their seeds and must match the recorded state-dict hashes, and the
    expected files hold the original's masks (`masks_<id>`) and traces, not its logits."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from parity_data import unpack

    return unpack(tmp_path_factory.mktemp("parity") / "fixture", PARITY_DATA)


@pytest.fixture(scope="session")
def micro_checkpoints(tmp_path_factory) -> dict[str, Path]:
    from sam2long.tools.make_random_checkpoint import write_checkpoint

    folder = tmp_path_factory.mktemp("ckpt")
    return {
        "plain": write_checkpoint(folder / "plain.pt", MICRO_CFG, seed=0),
        "lively": write_checkpoint(folder / "lively.pt", MICRO_CFG, seed=0, lively=True),
    }


@pytest.fixture(scope="session")
def lively_backend(micro_checkpoints):
    from sam2long.engine.model_loading import load_sam2_model
    from sam2long.engine.torch_backend import TorchBackend

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


# -- tiny PNG / JPEG files for the dataset and mask tests -----------------------------------
H, W = 4, 6


def model_args(checkpoint) -> list[str]:
    """The CLI flags of the random micro model on the torch backend, on the CPU."""
    return ["--sam2_cfg", MICRO_CFG, "--sam2_checkpoint", str(checkpoint), "--device", "cpu", "--backend", "torch"]


def write_frames(folder: Path, count: int, **jpeg) -> Path:
    """`count` synthetic frames as <index:05d>.jpg in `folder` (`jpeg`: PIL's save options)."""
    folder.mkdir(parents=True, exist_ok=True)
    for t in range(count):
        Image.fromarray(synthetic_frame(t)).save(folder / f"{t:05d}.jpg", **jpeg)
    return folder


def write_dataset(root: Path, names=("v1", "v2"), frames: int = 3) -> list[str]:
    """A DAVIS-layout set under `root` (one object on frame 0) -> the dataset tool's folder flags."""
    for name in names:
        write_frames(root / "JPEGImages" / name, frames)
        (root / "Annotations" / name).mkdir(parents=True, exist_ok=True)
        Image.fromarray(synthetic_mask(0).astype(np.uint8)).save(root / "Annotations" / name / "00000.png")
    return ["--base_video_dir", str(root / "JPEGImages"), "--input_mask_dir", str(root / "Annotations"),
            "--output_mask_dir", str(root / "out")]


def write_scored_dataset(root: Path, names, frames: int, offset_per_video: int = 0) -> None:
    """A DAVIS 2017 layout (480p) with ground truth on every frame, for --score and the
    evaluator: video k's frame t is synthetic frame / mask t + k * offset_per_video."""
    for k, name in enumerate(names):
        for t in range(frames):
            shift = t + k * offset_per_video
            folder = root / "JPEGImages" / "480p" / name
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(synthetic_frame(shift)).save(folder / f"{t:05d}.jpg")
            write_png(root / "Annotations" / "480p" / name / f"{t:05d}.png", synthetic_mask(shift))


def write_png(path: Path, arr: np.ndarray, palette=None) -> Path:
    from sam2long.runtime.image_io import DAVIS_PALETTE

    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(np.asarray(arr, dtype=np.uint8))
    img.putpalette(DAVIS_PALETTE if palette is None else palette)
    img.save(path)
    return path


def write_gray_png(path: Path, arr: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(arr, dtype=np.uint8)).save(path)
    return path


def write_jpeg(path: Path, size=(W, H)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (10, 20, 30)).save(path, format="JPEG")
    return path


def box(y0, y1, x0, x1, value=1) -> np.ndarray:
    arr = np.zeros((H, W), dtype=np.uint8)
    arr[y0:y1, x0:x1] = value
    return arr


def read_png(path: Path):
    with Image.open(path) as img:
        return np.array(img), img.mode, img.getpalette()
