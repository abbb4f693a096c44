"""Frames as a stream: read and prepare the next frame while the current one computes."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator

import numpy as np
import torch
from PIL import Image

IMAGENET_MEAN = torch.tensor([0.485, 0.456, 0.406], dtype=torch.float32)[:, None, None]
IMAGENET_STD = torch.tensor([0.229, 0.224, 0.225], dtype=torch.float32)[:, None, None]


def preprocess_frame(image: Image.Image, image_size: int) -> torch.Tensor:
    """PIL image -> [1, 3, S, S] normalised float32, exactly as SAM 2's frame loader
    (Pillow's bicubic resize of the RGB image, /255 in float64, ImageNet mean/std)."""
    return normalize_frame(np.array(image.convert("RGB").resize((image_size, image_size))))


def normalize_frame(resized: np.ndarray) -> torch.Tensor:
    """An RGB frame already at the model's size [S, S, 3] uint8 -> [1, 3, S, S] as SAM 2
    normalises it (/255 in float64, then float32, ImageNet mean/std)."""
    tensor = torch.from_numpy(resized / 255.0).permute(2, 0, 1).float()
    return ((tensor - IMAGENET_MEAN) / IMAGENET_STD)[None]


def prefetch(items: Iterable, prepare: Callable, depth: int = 2) -> Iterator:
    """Yield prepare(item) for each item, computed `depth` ahead on a worker thread.
    Errors raised by `prepare` are re-raised here, in order."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def work():
        try:
            for item in items:
                if stop.is_set():
                    return
                q.put((True, prepare(item)))
        except BaseException as e:  # handed to the consumer
            q.put((False, e))
            return
        q.put((True, done))

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    try:
        while True:
            ok, value = q.get()
            if not ok:
                raise value
            if value is done:
                return
            yield value
    finally:
        stop.set()
        while thread.is_alive():
            try:
                q.get_nowait()
            except queue.Empty:
                thread.join(timeout=0.05)
