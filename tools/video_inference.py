#!/usr/bin/env python
"""Track one object through a video with SAM2Long and write the video with the mask drawn on.

Prompt the object on one frame with clicks (--points, positive or negative via --labels)
and/or a box (--box). The input is any video FFmpeg opens (mp4, mov, avi, webm, ...) or a
folder of frames, decoded as a stream. The output is an H.264 MP4 of the same size and
frame rate with the mask overlaid (audio is dropped), plus optional per-frame PNG masks.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
from tqdm import tqdm

from runtime.config import TrackerConfig
from runtime.prompts import ObjectPrompt, PromptError
from runtime.video_io import VideoError, VideoSource
from runtime.video_job import track_video
from tools.backend_options import add_backend_args, build_chosen_backend, check_cuda_graphs

OBJ_ID = 1
RANDOM_CFG = str(Path(__file__).resolve().parents[1] / "configs" / "micro_sam2.1_256.yaml")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--video_path", required=True, help="video file or folder of frames")
    p.add_argument("--points", type=float, nargs="+", metavar="X Y",
                   help="click coordinates in video pixels: x1 y1 x2 y2 ...")
    p.add_argument("--labels", type=int, nargs="+",
                   help="one per point: 1 positive, 0 negative (default: all positive)")
    p.add_argument("--box", type=float, nargs=4, metavar=("X0", "Y0", "X1", "Y1"),
                   help="box around the object in video pixels")
    p.add_argument("--frame", type=int, default=0, help="frame the prompt is on")
    p.add_argument("--output_video", default=None,
                   help="output MP4 (default: outputs/<video name>_sam2long.mp4)")
    p.add_argument("--output_mask_dir", default=None,
                   help="also write one PNG mask per frame (palette, object = 1) here")
    p.add_argument("--sam2_cfg", default="configs/sam2.1/sam2.1_hiera_b+.yaml",
                   help="SAM 2 config: a name inside the sam2 package or a path to a YAML file")
    p.add_argument("--sam2_checkpoint", default="./checkpoints/sam2.1_hiera_base_plus.pt",
                   help="checkpoint; an official one that is missing is downloaded first")
    p.add_argument("--random_weights", action="store_true",
                   help="offline check of the whole pipeline: a seeded random micro model "
                        "instead of SAM 2.1 (the masks are meaningless)")
    p.add_argument("--num_pathway", type=int, default=3, help="SAM2Long pathways (1..8)")
    p.add_argument("--iou_thre", type=float, default=0.1,
                   help="a frame enters memory only if its predicted IoU is above this")
    p.add_argument("--uncertainty", type=float, default=2.0,
                   help="when every |object score| is at most this, favour diverse masks")
    add_backend_args(p)
    p.add_argument("--fps", type=float, default=24.0, help="frame rate for a folder of frames")
    return p


def _prompt(args, info) -> ObjectPrompt:
    points = labels = None
    if args.points is not None:
        if len(args.points) % 2:
            raise PromptError(f"--points needs x y pairs, got {len(args.points)} numbers")
        points = np.asarray(args.points, dtype=np.float64).reshape(-1, 2)
        labels = np.asarray(args.labels if args.labels is not None else [1] * len(points))
        if len(labels) != len(points):
            raise PromptError(f"--labels has {len(labels)} values for {len(points)} points")
    elif args.labels is not None:
        raise PromptError("--labels needs --points")
    if points is None and args.box is None:
        raise PromptError("give the object with --points and/or --box")
    box = None if args.box is None else np.asarray(args.box, dtype=np.float64)
    prompt = ObjectPrompt(OBJ_ID, args.frame, points=points, labels=labels, box=box)
    prompt.validate((info.height, info.width), info.num_frames)
    return prompt


def load_backend(sam2_cfg: str, sam2_checkpoint: str, random_weights: bool, device: str,
                 backend: str = "auto", engine_dir: str | None = None, precision: str = "fp32"):
    """The model the user asked for (shared with the Gradio demo): random micro weights,
    or a checkpoint, downloading an official one that is missing."""
    if random_weights:
        from tools.make_random_checkpoint import write_checkpoint

        path = Path("outputs/checkpoints/micro_random_seed0.pt")
        if not path.is_file():
            write_checkpoint(path, RANDOM_CFG, seed=0)
        print("NOTE: --random_weights: a random micro model, the masks are meaningless.")
        return build_chosen_backend(backend, RANDOM_CFG, str(path), device, engine_dir, precision)
    checkpoint = Path(sam2_checkpoint)
    if not checkpoint.is_file():
        from tools.download_checkpoints import OFFICIAL, download

        if checkpoint.name not in OFFICIAL:
            raise FileNotFoundError(
                f"checkpoint not found: {checkpoint}. Official SAM 2.1 checkpoints: "
                f"python tools/download_checkpoints.py ({', '.join(OFFICIAL)})")
        print(f"{checkpoint} is missing: downloading the official checkpoint")
        download(checkpoint.name, checkpoint.parent)
    return build_chosen_backend(backend, sam2_cfg, str(checkpoint), device, engine_dir, precision)


def run(args) -> int:
    source = VideoSource(args.video_path, folder_fps=args.fps)
    info = source.info
    prompt = _prompt(args, info)
    output = args.output_video or os.path.join(
        "outputs", f"{Path(args.video_path.rstrip('/')).stem}_sam2long.mp4")
    config = TrackerConfig(args.num_pathway, args.iou_thre, args.uncertainty)
    backend = load_backend(args.sam2_cfg, args.sam2_checkpoint, args.random_weights, args.device,
                           args.backend, args.engine_dir, args.precision)
    cuda_graphs = check_cuda_graphs(args, backend)
    print(f"{args.video_path}: {info.num_frames} frames, {info.width}x{info.height} at "
          f"{float(info.fps):.2f} fps; backend {backend.name} ({args.precision}) on {backend.device}")
    fps = track_video(backend, source, [prompt], config, output, args.output_mask_dir, progress=tqdm,
                      cuda_graphs=cuda_graphs)
    print(f"wrote {output} ({info.num_frames} frames, {fps:.2f} frames/s)")
    return 0


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from engine.manifest import EngineMismatchError
    from engine.model_loading import ModelLoadError
    from engine.trt_backend import TensorRTUnavailable
    from tools.download_checkpoints import DownloadError

    try:
        return run(args)
    except (VideoError, PromptError, ModelLoadError, EngineMismatchError, TensorRTUnavailable, DownloadError,
            FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
