"""The parity fixture in the project: `tests/data/parity/`, compact, and unpacked on demand.

The full fixture (the original SAM2Long's outputs on a micro SAM 2.1 model with seeded random
weights, see tests/data/parity/README.md) is 60 MB: two 24 MB checkpoints and float16 logits
at video resolution. The project keeps what the comparisons need, in about 1.3 MB:
- the reference's masks (`logits > 0`) bit-packed with `np.packbits`, and its per-slot
  object-score / IoU / accumulated-score traces, for each weight set;
- the prompt mask, bit-packed, and the 16 JPEG frames;
- each checkpoint as its recipe (seed, lively scalings) plus the SHA-256 of its state dict:
  `unpack` regenerates it with tools/make_random_checkpoint.py and refuses a mismatch (a
  torch or sam2 version that initialises differently would silently change the model).

`unpack(dest)` writes the fixture's usual layout (config, checkpoints, frames/, frames16/,
prompts.npz, expected_*.npz with `masks_<id>` instead of `logits_<id>`); the tests use it.
`fixture_dir()` is what the benchmarks run on: ../shared's full fixture when it is there,
else this copy unpacked once into the user cache (SAM2LONG_PARITY_FIXTURE chooses). benchmarks/make_parity_data.py rebuilds
tests/data/parity from a full fixture or by rerunning the original.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import uuid
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data" / "parity"
SHARED = ROOT.parent / "shared" / "fixtures" / "sam2long_parity"
CONFIG = "micro_sam2.1.yaml"
FIRST_FRAMES = 8  # frames/ is the first 8 of frames16/: the expected outputs cover those

# checkpoint file -> the make_random_checkpoint recipe that made it (README of the fixture)
CHECKPOINTS = {
    "micro_seed0.pt": {"seed": 0, "lively": False},
    "micro_lively_seed0.pt": {"seed": 0, "lively": True, "obj_score_bias": -5.2},
}
# expected file -> (checkpoint, num_pathway, iou_thre, uncertainty)
CASES = {
    "expected_p3_iou0.1_unc2.npz": ("micro_seed0.pt", 3, 0.1, 2.0),
    "expected_lively_p3_iou0.1_unc2.npz": ("micro_lively_seed0.pt", 3, 0.1, 2.0),
}
TRACES = ("obj_scores", "ious", "acc")


class ParityDataError(RuntimeError):
    """The project's parity data cannot be unpacked as recorded."""


def state_dict_sha256(state_dict) -> str:
    """SHA-256 over every tensor's name, dtype, shape and bytes, in name order: the same for
    the same weights however torch pickles them."""
    import torch

    digest = hashlib.sha256()
    for name in sorted(state_dict):
        tensor = state_dict[name].detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def regenerate_checkpoint(config: Path, name: str, out: Path, expected_sha256: str | None) -> str:
    """Write checkpoint `name` from its recipe; returns its state-dict hash, checked against
    `expected_sha256` when given (a mismatch is refused, nothing is left at `out`)."""
    import torch

    sys.path.insert(0, str(ROOT))
    from sam2long.tools.make_random_checkpoint import random_model

    state = random_model(str(config), **CHECKPOINTS[name]).state_dict()
    digest = state_dict_sha256(state)
    if expected_sha256 is not None and digest != expected_sha256:
        raise ParityDataError(
            f"{name} regenerated from its recipe {CHECKPOINTS[name]} has state-dict SHA-256 {digest}, "
            f"not the recorded {expected_sha256}: this torch/sam2 initialises the model differently "
            "(see tests/data/parity/README.md)")
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": state}, out)
    return digest


def pack_mask(mask: np.ndarray) -> dict:
    return {"bits": np.packbits(np.asarray(mask, bool), axis=-1), "width": np.int64(mask.shape[-1])}


def unpack_mask(bits: np.ndarray, width) -> np.ndarray:
    return np.unpackbits(bits, axis=-1, count=int(width)).astype(bool)


def unpack(dest: Path, data: Path = DATA) -> Path:
    """The fixture's layout in `dest` (made atomically: a half-written folder never shows)."""
    dest = Path(dest)
    if (dest / ".complete").is_file():
        return dest
    record = json.loads((data / "checkpoints.json").read_text())
    work = dest.with_name(f"{dest.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        work.mkdir(parents=True)
        shutil.copy(data / CONFIG, work / CONFIG)
        shutil.copytree(data / "frames16", work / "frames16")
        (work / "frames").mkdir()
        for frame in sorted((data / "frames16").glob("*.jpg"))[:FIRST_FRAMES]:
            shutil.copy(frame, work / "frames" / frame.name)
        for name in CHECKPOINTS:
            regenerate_checkpoint(work / CONFIG, name, work / name, record[name]["state_dict_sha256"])
        with np.load(data / "prompts.npz") as packed:
            np.savez(work / "prompts.npz", mask_1=unpack_mask(packed["mask_1_bits"], packed["mask_1_width"]),
                     frame_1=packed["frame_1"])
        for name in CASES:
            with np.load(data / name) as packed:
                out = {k: packed[k] for k in packed.files if not k.startswith("masks_")}
                for key in [k for k in packed.files if k.startswith("masks_") and k.endswith("_bits")]:
                    obj = key[len("masks_"):-len("_bits")]
                    out[f"masks_{obj}"] = unpack_mask(packed[key], packed[f"masks_{obj}_width"])
            np.savez(work / name, **out)
        (work / ".complete").write_text("unpacked from tests/data/parity\n")
        try:
            work.rename(dest)
        except OSError:
            if not (dest / ".complete").is_file():  # not another process's finished copy
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return dest


def data_version(data: Path = DATA) -> str:
    """A short hash of the packed files: a cache of an older copy is not reused."""
    digest = hashlib.sha256()
    for path in sorted(p for p in data.rglob("*") if p.is_file()):
        digest.update(path.relative_to(data).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def fixture_dir() -> Path:
    """For the benchmarks: $SAM2LONG_PARITY_FIXTURE (a full fixture's folder, or `project` for
    the project's copy), else ../shared's full fixture when present (it also has the
    reference's logits), else the project copy, unpacked once into the user cache."""
    chosen = os.environ.get("SAM2LONG_PARITY_FIXTURE", "")
    if chosen and chosen != "project":
        if not (Path(chosen) / "frames16").is_dir():
            raise SystemExit(f"SAM2LONG_PARITY_FIXTURE={chosen} is not a parity fixture folder (no frames16/)")
        return Path(chosen)
    if not chosen and (SHARED / "README.md").is_file():
        return SHARED
    if not (DATA / "checkpoints.json").is_file():
        raise SystemExit(f"the parity fixture is missing: neither {SHARED} nor {DATA} is there")
    sys.path.insert(0, str(ROOT))
    from sam2long.resources import cache_dir

    return unpack(cache_dir() / f"parity_fixture_{data_version()}")


if __name__ == "__main__":
    print(fixture_dir())
