"""Dataset I/O for semi-supervised VOS evaluation (DAVIS and SA-V layouts).

This module is everything ``tools/vos_inference.py`` needs to read a VOS
benchmark from disk and write predictions back, with no model code in it, so
that it can be tested on tiny synthetic folders without a GPU.

Two on-disk layouts are supported (they mirror the SAM 2 evaluation scripts):

* DAVIS (``per_obj_png_file=False``): one palette PNG per frame,
  ``<mask_dir>/<video>/<frame>.png``; pixel value = object id, 0 = background,
  255 = "void" (ignored on input).
* SA-V (``per_obj_png_file=True``): one binary PNG per object and frame,
  ``<mask_dir>/<video>/<obj_id:03d>/<frame>.png``.

Design points:

* Every failure that is caused by the data raises :class:`DatasetError`, whose
  message names the video and the file or folder at fault, because on a
  thousand-video benchmark "cannot identify image file" alone is useless.
* Outputs are written atomically (temporary file + ``os.replace``) and a video
  is only marked complete by a ``.complete`` file written after its last frame,
  so a killed or pre-empted job can be resumed without trusting half-written
  folders.
"""

from __future__ import annotations

import json
import os
import re
import secrets
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np
from PIL import Image

from runtime.background import BackgroundWorker

__all__ = [
    "DAVIS_PALETTE",
    "COMPLETE_MARKER",
    "DatasetError",
    "list_videos",
    "list_frames",
    "frame_path",
    "load_palette_png",
    "save_palette_png",
    "load_prompts",
    "OutputWriter",
    "is_video_complete",
    "read_frame_rgb",
]

#: Name of the per-video completion marker written by :meth:`OutputWriter.finish`.
COMPLETE_MARKER = ".complete"

#: Score given to objects that have no prediction on a frame (same value as the
#: SAM 2 evaluation script): far below any threshold, so they are "absent".
_ABSENT_SCORE = -1024.0

#: Scores of non-winning objects are clamped to at most this value by the
#: non-overlap rule (as in SAM 2's ``_apply_non_overlapping_constraints``).
_NON_WINNER_MAX_SCORE = -10.0

_JPEG_EXTS = (".jpg", ".jpeg")
_PNG_EXTS = (".png",)
_DIGIT_RUN = re.compile(r"\d+")
_VOID_LABEL = 255

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


class DatasetError(Exception):
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


# --------------------------------------------------------------------------
# Videos and frames
# --------------------------------------------------------------------------


def list_videos(base_video_dir: str, video_list_file: str | None = None) -> list[str]:
    """Return the video names to evaluate.

    Without a list file: all (non-hidden) subfolders of ``base_video_dir``,
    sorted.  With a list file: its names in file order, blank lines and
    ``#`` comments skipped, duplicates dropped (a duplicate would make two
    shards write the same output folder).  Every listed video must have a
    frame folder, so a typo fails up front instead of hours into a job.
    """
    if not os.path.isdir(base_video_dir):
        raise DatasetError("video root folder not found", path=base_video_dir)

    if video_list_file is None:
        return sorted(
            entry.name
            for entry in os.scandir(base_video_dir)
            if entry.is_dir() and not entry.name.startswith(".")
        )

    try:
        with open(video_list_file, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError as e:
        raise DatasetError(f"cannot read video list file ({e})", path=video_list_file) from e

    names: list[str] = []
    seen: set[str] = set()
    for line in lines:
        name = line.strip()
        if not name or name.startswith("#") or name in seen:
            continue
        seen.add(name)
        folder = os.path.join(base_video_dir, name)
        if not os.path.isdir(folder):
            raise DatasetError(
                f"listed in {video_list_file} but its frame folder does not exist",
                video=name,
                path=folder,
            )
        names.append(name)
    return names


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
    """Decode one video frame as an RGB image, fully loaded in memory."""
    try:
        with Image.open(path) as img:
            return img.convert("RGB")
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


def _atomic_write(path: str, write: Callable[[object], None]) -> None:
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


_TEMP_NAME = re.compile(r"^\..+\.\d+\.[0-9a-f]{8}\.tmp$")  # what _atomic_write names its temporaries


def _remove_temp_files(folder: str) -> None:
    """Remove the temporaries a killed writer left (SIGKILL or ``scancel`` mid-write skips the
    cleanup in ``_atomic_write``), so that a resumed video's folder holds what an
    uninterrupted run's does."""
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return
    for name in names:
        if _TEMP_NAME.match(name):
            try:
                os.remove(os.path.join(folder, name))
            except FileNotFoundError:
                pass


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
    _atomic_write(path, lambda f: img.save(f, format="PNG"))


# --------------------------------------------------------------------------
# Prompts (input masks)
# --------------------------------------------------------------------------

_LATER_FLAG_HINT = (
    "pass --track_object_appearing_later_in_video for datasets whose objects "
    "do not all appear in the first frame (such as LVOS or YouTube-VOS)"
)


class _MaskSource:
    """One folder of input mask PNGs: a DAVIS video or one SA-V object.

    The folder is listed once so scanning thousands of frames does not cost
    one ``stat`` per frame and object.
    """

    def __init__(self, folder: str, obj_id: int | None) -> None:
        self.folder = folder
        self.obj_id = obj_id  # None for a DAVIS multi-object PNG folder
        self.files = {e.name for e in os.scandir(folder) if e.is_file()}

    def path(self, frame_name: str) -> str:
        return os.path.join(self.folder, f"{frame_name}.png")

    def has(self, frame_name: str) -> bool:
        return f"{frame_name}.png" in self.files

    def read(self, frame_name: str, video: str) -> tuple[dict[int, np.ndarray], list[int] | None]:
        """Return ``{obj_id: bool mask}`` for one frame (empty masks included)."""
        arr, palette = load_palette_png(self.path(frame_name), video=video)
        if self.obj_id is not None:
            return {self.obj_id: arr > 0}, palette
        ids = np.unique(arr)
        ids = [int(i) for i in ids if i != 0 and i != _VOID_LABEL]
        return {i: arr == i for i in ids}, palette


def _mask_sources(video_mask_dir: str, video: str, per_obj_png_file: bool) -> list[_MaskSource]:
    if not os.path.isdir(video_mask_dir):
        raise DatasetError("input mask folder not found", video=video, path=video_mask_dir)
    if not per_obj_png_file:
        return [_MaskSource(video_mask_dir, None)]
    sources = []
    for entry in os.scandir(video_mask_dir):
        if not entry.is_dir():
            continue
        try:
            obj_id = int(entry.name)
        except ValueError:
            continue
        sources.append(_MaskSource(entry.path, obj_id))
    if not sources:
        raise DatasetError(
            "no per-object mask folders (named by integer object id, e.g. '001') "
            "in SA-V style input mask folder",
            video=video,
            path=video_mask_dir,
        )
    return sorted(sources, key=lambda s: s.obj_id)


def load_prompts(
    input_mask_dir: str,
    video_name: str,
    frame_names: Sequence[str],
    per_obj_png_file: bool,
    track_later: bool,
) -> tuple[dict[int, tuple[int, np.ndarray]], list[int] | None]:
    """Read the prompt mask of each object of one video.

    Returns ``({obj_id: (frame_index, bool HxW mask)}, palette)`` where
    ``frame_index`` indexes ``frame_names`` and ``palette`` is the palette of
    the first mask PNG read that has one (reused for the outputs so they
    look like the inputs), or ``None``.

    * ``track_later=False``: objects are defined by the first frame, whose
      mask file(s) must exist.
    * ``track_later=True``: all frames are scanned in order; each object's
      prompt is its first non-empty mask.

    Empty masks are never prompts.  A video with no object to track raises
    :class:`DatasetError`, because silently writing empty outputs would hide
    a broken dataset path.
    """
    if not frame_names:
        raise DatasetError("video has no frames", video=video_name)
    video_mask_dir = os.path.join(input_mask_dir, video_name)
    sources = _mask_sources(video_mask_dir, video_name, per_obj_png_file)

    prompts: dict[int, tuple[int, np.ndarray]] = {}
    palette: list[int] | None = None
    shape: tuple[int, ...] | None = None

    def read(source: _MaskSource, frame_name: str) -> dict[int, np.ndarray]:
        nonlocal palette, shape
        masks, pal = source.read(frame_name, video_name)
        if palette is None and pal is not None:
            palette = pal
        for mask in masks.values():
            if shape is None:
                shape = mask.shape
            elif mask.shape != shape:
                raise DatasetError(
                    f"mask size {mask.shape[1]}x{mask.shape[0]} differs from the "
                    f"video's other masks ({shape[1]}x{shape[0]})",
                    video=video_name,
                    path=source.path(frame_name),
                )
        return {oid: m for oid, m in masks.items() if m.any()}

    if not track_later:
        first = frame_names[0]
        for source in sources:
            if not source.has(first):
                raise DatasetError(
                    f"no input mask for the first frame '{first}'; {_LATER_FLAG_HINT}",
                    video=video_name,
                    path=source.path(first),
                )
            for oid, mask in read(source, first).items():
                prompts[oid] = (0, mask)
        if not prompts:
            where = sources[0].path(first) if not per_obj_png_file else video_mask_dir
            raise DatasetError(
                f"no object to track: every mask of the first frame '{first}' is empty",
                video=video_name,
                path=where,
            )
    else:
        for idx, name in enumerate(frame_names):
            for source in sources:
                if not source.has(name):
                    continue
                # An SA-V object that already has its prompt needs no more reads.
                if source.obj_id is not None and source.obj_id in prompts:
                    continue
                for oid, mask in read(source, name).items():
                    prompts.setdefault(oid, (idx, mask))
        if not prompts:
            raise DatasetError(
                f"no object to track: no non-empty mask in any of the "
                f"{len(frame_names)} frames",
                video=video_name,
                path=video_mask_dir,
            )

    return {oid: prompts[oid] for oid in sorted(prompts)}, palette


# --------------------------------------------------------------------------
# Outputs
# --------------------------------------------------------------------------


def _marker_path(output_mask_dir: str, video_name: str) -> str:
    return os.path.join(output_mask_dir, video_name, COMPLETE_MARKER)


def _apply_non_overlap(scores: np.ndarray) -> np.ndarray:
    """Numpy version of SAM 2's non-overlapping constraint on (N, H, W) scores.

    Per pixel, only the object with the highest score (first one on ties,
    like ``torch.argmax``) keeps its score; the others are clamped to at
    most -10 so they fall below any usual threshold.
    """
    if scores.shape[0] <= 1:
        return scores
    winner = np.argmax(scores, axis=0)[None]
    keep = winner == np.arange(scores.shape[0])[:, None, None]
    return np.where(keep, scores, np.minimum(scores, _NON_WINNER_MAX_SCORE))


class OutputWriter:
    """Writes the predicted masks of one video, frame by frame.

    Creating a writer marks the video as "in progress" by deleting any stale
    ``.complete`` marker, so a run that is killed half-way never leaves a
    video that looks finished.  Call :meth:`finish` after the last frame.
    """

    def __init__(
        self,
        output_mask_dir: str,
        video_name: str,
        per_obj_png_file: bool,
        palette: bytes | Sequence[int] | None,
        height: int,
        width: int,
        obj_ids: Iterable[int],
        score_thresh: float = 0.0,
    ) -> None:
        ids = [int(o) for o in obj_ids]
        if not ids:
            raise ValueError(f"video '{video_name}': no object ids to write")
        if len(set(ids)) != len(ids):
            raise ValueError(f"video '{video_name}': duplicate object ids {ids}")
        if per_obj_png_file:
            if any(o < 0 for o in ids):
                raise ValueError(f"video '{video_name}': negative object ids {ids}")
        else:
            bad = [o for o in ids if not 1 <= o <= 255]
            if bad:
                raise ValueError(
                    f"video '{video_name}': object ids {bad} cannot be stored in a "
                    "DAVIS palette PNG (must be 1..255)"
                )
        if height < 1 or width < 1:
            raise ValueError(f"video '{video_name}': bad frame size {width}x{height}")

        self.output_mask_dir = output_mask_dir
        self.video_name = video_name
        self.per_obj_png_file = per_obj_png_file
        self.palette = DAVIS_PALETTE if palette is None else palette
        self.height = height
        self.width = width
        self.obj_ids = sorted(ids)
        self.score_thresh = float(score_thresh)
        self.video_dir = os.path.join(output_mask_dir, video_name)
        self._frames: set[str] = set()
        self._worker = BackgroundWorker(f"png-writer-{video_name}")  # PNG encoding off the tracking loop

        os.makedirs(self.video_dir, exist_ok=True)
        try:
            os.remove(_marker_path(output_mask_dir, video_name))
        except FileNotFoundError:
            pass
        _remove_temp_files(self.video_dir)
        if per_obj_png_file:
            for oid in self.obj_ids:
                os.makedirs(os.path.join(self.video_dir, f"{oid:03d}"), exist_ok=True)
                _remove_temp_files(os.path.join(self.video_dir, f"{oid:03d}"))

    def _scores(self, per_obj_logits: Mapping[int, np.ndarray]) -> np.ndarray:
        unknown = sorted(set(per_obj_logits) - set(self.obj_ids))
        if unknown:
            raise ValueError(
                f"video '{self.video_name}': logits for unknown object ids {unknown} "
                f"(writer was created for {self.obj_ids})"
            )
        scores = np.full(
            (len(self.obj_ids), self.height, self.width), _ABSENT_SCORE, dtype=np.float32
        )
        for i, oid in enumerate(self.obj_ids):
            if oid not in per_obj_logits:
                continue
            logits = np.asarray(per_obj_logits[oid], dtype=np.float32)
            if logits.size != self.height * self.width:
                raise ValueError(
                    f"video '{self.video_name}': logits of object {oid} have shape "
                    f"{logits.shape}, expected {self.height}x{self.width}"
                )
            scores[i] = logits.reshape(self.height, self.width)
        return scores

    def write(self, frame_name: str, per_obj_logits: Mapping[int, np.ndarray]) -> None:
        """Threshold and write one frame.

        ``per_obj_logits`` maps object id to float logits of shape HxW (or
        anything reshapeable to it, e.g. 1xHxW; move tensors to CPU float32
        first).  Objects missing from the mapping are absent on this frame.
        """
        scores = self._scores(per_obj_logits)  # checked here, so errors name the caller's frame
        self._worker.submit(self._write_pngs, frame_name, scores)
        self._frames.add(frame_name)

    def _write_pngs(self, frame_name: str, scores: np.ndarray) -> None:
        if not self.per_obj_png_file:
            scores = _apply_non_overlap(scores)
            masks = scores > self.score_thresh
            packed = np.zeros((self.height, self.width), dtype=np.uint8)
            # Descending ids so the smallest id ends on top (reference order).
            for i in range(len(self.obj_ids) - 1, -1, -1):
                packed[masks[i]] = self.obj_ids[i]
            save_palette_png(
                os.path.join(self.video_dir, f"{frame_name}.png"), packed, self.palette
            )
        else:
            masks = scores > self.score_thresh
            for i, oid in enumerate(self.obj_ids):
                save_palette_png(
                    os.path.join(self.video_dir, f"{oid:03d}", f"{frame_name}.png"),
                    masks[i].astype(np.uint8),
                    self.palette,
                )

    def abandon(self) -> None:
        """Stop after a failure: let queued frames finish, write no marker."""
        try:
            self._worker.close()
        except Exception:
            pass  # the failure being handled is the one to report

    @property
    def num_frames_written(self) -> int:
        return len(self._frames)

    def finish(self) -> str:
        """Write the ``.complete`` marker (atomically, after all frames).

        Returns the marker path.  The marker records the number of distinct
        frames written and the object ids, which :func:`is_video_complete`
        checks against the expected frame count.
        """
        self._worker.close()  # every PNG is on disk (or its error raised) before the marker
        path = _marker_path(self.output_mask_dir, self.video_name)
        payload = json.dumps(
            {
                "frames": len(self._frames),
                "obj_ids": self.obj_ids,
                "per_obj_png_file": self.per_obj_png_file,
            }
        ).encode("utf-8")
        _atomic_write(path, lambda f: f.write(payload))
        return path


def is_video_complete(output_mask_dir: str, video_name: str, expected_frames: int) -> bool:
    """True if a previous run finished this video with ``expected_frames`` frames.

    A missing, unreadable or malformed marker means "not complete" (the video
    is simply redone), never an error.
    """
    try:
        with open(_marker_path(output_mask_dir, video_name), encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and data.get("frames") == expected_frames
