#!/usr/bin/env python
"""Regenerate samples/shapes and samples/shapes.mp4: a small synthetic clip (two moving objects on a textured,
slowly panning background) in the DAVIS layout, with the first frame's annotation.

Made here from scratch, so it carries no licence beyond this repository's own.
"""

import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from sam2long.runtime.image_io import DAVIS_PALETTE  # noqa: E402

NUM_FRAMES, HEIGHT, WIDTH = 24, 240, 320
ROOT = Path(__file__).resolve().parent / "shapes"


def frame_and_labels(t: int):
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
    pan = 2.0 * t
    base = 90 + 40 * np.sin((xx + pan) / 11.0) * np.cos(yy / 9.0) + 20 * np.sin((xx + yy + pan) / 23.0)
    rgb = np.stack([base * 0.7, base * 0.9, base], -1)
    labels = np.zeros((HEIGHT, WIDTH), np.uint8)
    # object 1: an ellipse drifting right and bobbing
    cx, cy = 70 + 6.0 * t, 120 + 25 * np.sin(t / 4.0)
    ellipse = ((xx - cx) / 38.0) ** 2 + ((yy - cy) / 26.0) ** 2 <= 1.0
    rgb[ellipse] = (230, 170, 40)
    labels[ellipse] = 1
    # object 2: a square moving up-left, partly occluding the background only
    sx, sy = 250 - 3.0 * t, 190 - 2.5 * t
    square = (np.abs(xx - sx) <= 22) & (np.abs(yy - sy) <= 22) & ~ellipse
    rgb[square] = (40, 120, 220)
    labels[square] = 2
    return rgb.clip(0, 255).astype(np.uint8), labels


def main():
    frames = ROOT / "JPEGImages" / "shapes"
    annotations = ROOT / "Annotations" / "shapes"
    frames.mkdir(parents=True, exist_ok=True)
    annotations.mkdir(parents=True, exist_ok=True)
    for t in range(NUM_FRAMES):
        rgb, labels = frame_and_labels(t)
        Image.fromarray(rgb).save(frames / f"{t:05d}.jpg", quality=90)
        if t == 0:
            png = Image.fromarray(labels, mode="P")
            png.putpalette(DAVIS_PALETTE)
            png.save(annotations / f"{t:05d}.png")
    print(f"wrote {NUM_FRAMES} frames to {frames}")
    write_mp4(ROOT.parent / "shapes.mp4")


def write_mp4(path: Path, fps: int = 12):
    """The same clip as an H.264 MP4, the video tool's sample input."""
    import av

    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        stream.options = {"crf": "23"}
        for t in range(NUM_FRAMES):
            frame = av.VideoFrame.from_ndarray(frame_and_labels(t)[0], format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
