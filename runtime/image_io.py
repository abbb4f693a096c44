"""Frames and mask PNGs on disk: the DAVIS palette, frame folders in temporal order, palette
PNG reading and atomic writing. Shared by the video tool, the dataset tool, the demo and
the evaluator; no model code.

Every failure caused by a file is a :class:`DatasetError` whose message names the video
and the file at fault: on a thousand-video benchmark "cannot identify image file" alone
is useless.
"""

from __future__ import annotations

import os
import re
import secrets
from typing import Callable, Sequence

import numpy as np
from PIL import Image, ImageOps

from sam2long.engine.errors import SAM2LongError

_JPEG_EXTS = (".jpg", ".jpeg")
_PNG_EXTS = (".png",)
_DIGIT_RUN = re.compile(r"\d+")
VOID_LABEL = 255  # DAVIS: pixels to ignore

# PIL raises a zoo of exception types for damaged files (OSError for
# truncated/unidentified data, SyntaxError for broken PNG chunks, ValueError
# and EOFError for some decoders).
_PIL_ERRORS = (OSError, ValueError, SyntaxError, EOFError)


def _voc_color_map(num_colors: int = 256) -> bytes:
    """Generate the PASCAL VOC / DAVIS colour map as flat RGB bytes.

    Each index's bits are spread over the three channels, starting from the
    most significant bit: bit 0 -> red, bit 1 -> green, bit 2 -> blue, then the
    next three bits one position lower, and so on.  Generating it (instead of
    embedding a 768-byte literal) makes it reviewable.
    """
    out = bytearray()
    for index in range(num_colors):
        r = g = b = 0
        c = index
        for shift in range(7, -1, -1):
            r |= (c & 1) << shift
            g |= ((c >> 1) & 1) << shift
            b |= ((c >> 2) & 1) << shift
            c >>= 3
        out += bytes((r, g, b))
    return bytes(out)


#: The standard DAVIS 2017 palette (768 bytes): 0 black, 1 (128,0,0),
#: 2 (0,128,0), 3 (128,128,0), 4 (0,0,128), ...
DAVIS_PALETTE: bytes = _voc_color_map()


class DatasetError(SAM2LongError):
    """A problem with the input data, naming the video and the path at fault.

    ``video`` and ``path`` are kept as attributes so callers can log or skip
    the video programmatically.  The composed message is the only positional
    argument, which keeps the exception picklable (it crosses process
    boundaries in multi-GPU runs).
    """

    def __init__(
        self, reason: str, *, video: str | None = None, path: str | None = None
    ) -> None:
        self.video = video
        self.path = path
        message = reason
        if video is not None:
            message = f"video '{video}': {message}"
        if path is not None:
            message = f"{message} [{path}]"
        super().__init__(message)




def _frame_sort_key(name: str) -> tuple[int, int, str]:
    """Sort by the last run of digits (numerically), then lexically.

    ``00010`` sorts after ``00009`` and ``frame_00012`` works too.  Names
    without digits come after all numbered names, in lexical order.
    """
    runs = _DIGIT_RUN.findall(name)
    if runs:
        return (0, int(runs[-1]), name)
    return (1, 0, name)


def _video_name_of(video_dir: str) -> str:
    return os.path.basename(os.path.normpath(video_dir))


def list_frames(video_dir: str) -> list[str]:
    """Return the frame names (no extension) of a video, in temporal order.

    JPEG files (``.jpg``/``.jpeg``, any case) are used when present; PNG
    frames only when the folder has no JPEG at all (so mask PNGs stored next
    to JPEG frames are never mistaken for frames).  Hidden files such as
    macOS ``._0001.jpg`` are ignored.
    """
    video = _video_name_of(video_dir)
    if not os.path.isdir(video_dir):
        raise DatasetError("frame folder not found", video=video, path=video_dir)

    jpeg_names: list[str] = []
    png_names: list[str] = []
    for entry in os.scandir(video_dir):
        if entry.name.startswith(".") or not entry.is_file():
            continue
        stem, ext = os.path.splitext(entry.name)
        ext = ext.lower()
        if ext in _JPEG_EXTS:
            jpeg_names.append(stem)
        elif ext in _PNG_EXTS:
            png_names.append(stem)

    names = jpeg_names if jpeg_names else png_names
    if not names:
        raise DatasetError(
            "no .jpg/.jpeg/.png frames in frame folder", video=video, path=video_dir
        )
    if len(set(names)) != len(names):
        dupes = sorted({n for n in names if names.count(n) > 1})
        raise DatasetError(
            f"ambiguous frames: several files share the name(s) {dupes[:5]} "
            "with different extensions",
            video=video,
            path=video_dir,
        )
    return sorted(names, key=_frame_sort_key)


def frame_path(video_dir: str, name: str) -> str:
    """Return the existing image file for frame ``name`` in ``video_dir``.

    Common spellings are probed first (cheap); otherwise the folder is
    scanned for a case-insensitive match such as ``.Jpg``.  JPEG wins over
    PNG, consistent with :func:`list_frames`.
    """
    for ext in (".jpg", ".jpeg", ".JPG", ".JPEG", ".png", ".PNG"):
        candidate = os.path.join(video_dir, name + ext)
        if os.path.isfile(candidate):
            return candidate
    if os.path.isdir(video_dir):
        matches: dict[str, str] = {}
        for entry in os.scandir(video_dir):
            stem, ext = os.path.splitext(entry.name)
            if stem == name and ext.lower() in _JPEG_EXTS + _PNG_EXTS:
                matches[ext.lower()] = entry.path
        for ext in _JPEG_EXTS + _PNG_EXTS:
            if ext in matches:
                return matches[ext]
    raise DatasetError(
        f"frame '{name}' not found (.jpg/.jpeg/.png)",
        video=_video_name_of(video_dir),
        path=video_dir,
    )


def read_frame_rgb(path: str) -> Image.Image:
    """Decode one video frame as an RGB image, fully loaded in memory, as it is displayed:
    a camera JPEG's EXIF orientation is applied (prompts and masks are in the coordinates
    the user sees)."""
    try:
        with Image.open(path) as img:
            return ImageOps.exif_transpose(img).convert("RGB")
    except _PIL_ERRORS as e:
        raise DatasetError(
            f"cannot read frame image ({e})",
            video=_video_name_of(os.path.dirname(path)),
            path=path,
        ) from e


# --------------------------------------------------------------------------
# PNG masks
# --------------------------------------------------------------------------


def load_palette_png(
    path: str, video: str | None = None
) -> tuple[np.ndarray, list[int] | None]:
    """Load a mask PNG as ``(uint8 HxW array, palette or None)``.

    Palette ("P") and grayscale PNGs are accepted; colour PNGs are rejected
    because their pixel values are not object ids.  ``video`` only enriches
    the error message.
    """
    try:
        with Image.open(path) as img:
            img.load()
            mode = img.mode
            palette = img.getpalette() if mode in ("P", "PA") else None
            arr = np.array(img)
    except _PIL_ERRORS as e:
        raise DatasetError(f"cannot read mask PNG ({e})", video=video, path=path) from e

    if mode in ("PA", "LA"):
        arr = arr[..., 0]
    elif arr.ndim != 2:
        raise DatasetError(
            f"mask PNG has colour mode {mode!r}; expected a palette (P) or "
            "grayscale (L) image whose pixel values are object ids",
            video=video,
            path=path,
        )
    if arr.dtype == np.bool_:
        arr = arr.astype(np.uint8)
    elif arr.dtype != np.uint8:
        if arr.size and (arr.min() < 0 or arr.max() > 255):
            raise DatasetError(
                f"mask PNG values span {arr.min()}..{arr.max()}, which does not fit "
                "in 8-bit object ids",
                video=video,
                path=path,
            )
        arr = arr.astype(np.uint8)
    return arr, palette


def atomic_write(path: str, write: Callable[[object], None]) -> None:
    """Write a file via a temporary sibling and ``os.replace``.

    Readers (and a resumed run) therefore see either the old file or the
    complete new one, never a truncated PNG.  The temporary name is hidden
    and does not end in ``.png`` so it is never mistaken for an output.  It
    is created with ``os.open(..., 0o666)`` so the final file gets the usual
    umask-derived permissions (``mkstemp`` would make it private).
    """
    folder, base = os.path.split(path)
    tmp = os.path.join(folder, f".{base}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def save_palette_png(
    path: str, mask: np.ndarray, palette: bytes | Sequence[int] | None
) -> None:
    """Save a uint8 HxW mask as a palette PNG, atomically.

    ``palette=None`` uses :data:`DAVIS_PALETTE`.
    """
    mask = np.asarray(mask)
    if mask.dtype != np.uint8 or mask.ndim != 2:
        raise ValueError(
            f"mask must be a 2-D uint8 array, got dtype={mask.dtype} shape={mask.shape}"
        )
    img = Image.fromarray(mask)
    img.putpalette(DAVIS_PALETTE if palette is None else palette)
    atomic_write(path, lambda f: img.save(f, format="PNG"))

