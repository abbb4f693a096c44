#!/usr/bin/env python
"""Rebuild tests/data/parity, the project's compact copy of the parity fixture.

From a full fixture (../shared's layout: checkpoints, frames16/, prompts.npz, expected_*.npz
with float16 logits), packing what the tests compare:

    .venv/bin/python benchmarks/make_parity_data.py --fixture ../shared/fixtures/sam2long_parity

Or from the original itself: the checkpoints are regenerated from their recipes, and the
original SAM2Long (a local checkout of Mark12Ding/SAM2Long) is run on the frames and prompt
already in tests/data/parity (or --frames / --prompts) through benchmarks/reference_runner.py,
float32 on the CPU, about a minute per case on two cores:

    .venv/bin/python benchmarks/make_parity_data.py --reference_repo .reference/SAM2Long

Either way the checkpoints' state-dict hashes are recorded in checkpoints.json, so a torch or
sam2 version that initialises the model differently is caught when the tests unpack them.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from parity_data import (CASES, CHECKPOINTS, CONFIG, DATA, FIRST_FRAMES, ROOT,  # noqa: E402
                         pack_mask, regenerate_checkpoint, state_dict_sha256, unpack_mask)


def pack_expected(source: Path, out: Path) -> None:
    """The reference's npz -> masks (logits > 0) bit-packed, traces and scalars as they are."""
    with np.load(source) as full:
        packed = {}
        for key in full.files:
            if key.startswith("logits_"):
                obj = key[len("logits_"):]
                bits = pack_mask(full[key] > 0)
                packed[f"masks_{obj}_bits"], packed[f"masks_{obj}_width"] = bits["bits"], bits["width"]
            else:  # traces, start frames, frame count, the reference's seconds
                packed[key] = full[key]
    np.savez_compressed(out, **packed)


def checkpoint_hashes(config: Path, fixture: Path | None) -> dict:
    """Each checkpoint's recipe and state-dict hash; with a fixture, its files must be what
    the recipes make (else the packed copy would not regenerate them)."""
    import torch

    record = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, recipe in CHECKPOINTS.items():
            digest = regenerate_checkpoint(config, name, Path(tmp) / name, None)
            if fixture is not None:
                shipped = torch.load(fixture / name, map_location="cpu", weights_only=True)["model"]
                if state_dict_sha256(shipped) != digest:
                    raise SystemExit(f"{fixture / name} is not what its recipe {recipe} makes here")
            record[name] = {**recipe, "state_dict_sha256": digest}
    return record


def run_reference(reference_repo: Path, work: Path, frames: Path, prompts: Path) -> dict[str, Path]:
    """The original's outputs for every case, as reference_runner.py writes them."""
    outputs = {}
    for name, (checkpoint, pathways, iou_thre, uncertainty) in CASES.items():
        if not (work / checkpoint).is_file():
            regenerate_checkpoint(work / CONFIG, checkpoint, work / checkpoint, None)
        out = work / name
        subprocess.run([sys.executable, str(ROOT / "benchmarks" / "reference_runner.py"),
                        "--config", str(work / CONFIG), "--checkpoint", str(work / checkpoint),
                        "--frames", str(frames), "--prompts", str(prompts), "--num_pathway", str(pathways),
                        "--iou_thre", str(iou_thre), "--uncertainty", str(uncertainty), "--out", str(out)],
                       env=dict(os.environ, PYTHONPATH=str(reference_repo.resolve())), check=True, cwd=ROOT)
        outputs[name] = out
    return outputs


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--fixture", type=Path, help="a full fixture folder to pack")
    source.add_argument("--reference_repo", type=Path, help="a checkout of the original SAM2Long to rerun")
    p.add_argument("--frames", type=Path, default=DATA / "frames16",
                   help="with --reference_repo: folder of the 16 JPEG frames (the first 8 are tracked)")
    p.add_argument("--prompts", type=Path, default=None,
                   help="with --reference_repo: npz with mask_1 and frame_1 (default: the packed prompt)")
    p.add_argument("--out", type=Path, default=DATA, help="folder to (re)write")
    args = p.parse_args(argv)
    if args.out.exists() and any(args.out.iterdir()) and not (args.out / "checkpoints.json").is_file():
        raise SystemExit(f"{args.out} holds other files: --out must be a parity data folder or a new one")
    if args.fixture and not (args.fixture / "frames16").is_dir():
        raise SystemExit(f"{args.fixture} is not a full parity fixture (no frames16/)")
    if args.reference_repo and not (args.reference_repo / "sam2" / "sam2_video_predictor.py").is_file():
        raise SystemExit(f"{args.reference_repo} is not a checkout of the original SAM2Long")
    with tempfile.TemporaryDirectory() as tmp_name:
        work = Path(tmp_name)
        # Inputs are read into the work folder first: --out may be where they come from.
        config_source = (args.fixture or DATA) / CONFIG
        shutil.copy(config_source, work / CONFIG)
        frames16 = sorted(((args.fixture / "frames16") if args.fixture else args.frames).glob("*.jpg"))
        (work / "frames16").mkdir()
        (work / "frames").mkdir()
        for i, frame in enumerate(frames16):
            shutil.copy(frame, work / "frames16" / frame.name)
            if i < FIRST_FRAMES:
                shutil.copy(frame, work / "frames" / frame.name)
        if args.fixture:
            shutil.copy(args.fixture / "prompts.npz", work / "prompts.npz")
            expected = {name: args.fixture / name for name in CASES}
        else:
            if args.prompts:
                shutil.copy(args.prompts, work / "prompts.npz")
            else:
                with np.load(DATA / "prompts.npz") as packed:
                    np.savez(work / "prompts.npz", frame_1=packed["frame_1"],
                             mask_1=unpack_mask(packed["mask_1_bits"], packed["mask_1_width"]))
            expected = run_reference(args.reference_repo, work, work / "frames", work / "prompts.npz")
        record = checkpoint_hashes(work / CONFIG, args.fixture)

        staging = work / "out"
        (staging / "frames16").mkdir(parents=True)
        shutil.copy(work / CONFIG, staging / CONFIG)
        for frame in sorted((work / "frames16").glob("*.jpg")):
            shutil.copy(frame, staging / "frames16" / frame.name)
        with np.load(work / "prompts.npz") as prompts:
            bits = pack_mask(prompts["mask_1"])
            np.savez_compressed(staging / "prompts.npz", mask_1_bits=bits["bits"], mask_1_width=bits["width"],
                                frame_1=prompts["frame_1"])
        for name, path in expected.items():
            pack_expected(path, staging / name)
        (staging / "checkpoints.json").write_text(json.dumps(record, indent=2) + "\n")
        readme = (args.out / "README.md") if (args.out / "README.md").is_file() else None
        if readme:
            shutil.copy(readme, staging / "README.md")
        if args.out.exists():
            shutil.rmtree(args.out)
        shutil.copytree(staging, args.out)
    size = sum(p.stat().st_size for p in args.out.rglob("*") if p.is_file())
    print(f"wrote {args.out} ({size / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
