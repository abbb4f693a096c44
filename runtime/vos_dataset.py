"""Dataset I/O for semi-supervised VOS benchmarks (DAVIS and SA-V layouts), no model code.

* The video list and each video's prompts from its input masks: DAVIS (one palette PNG per
  frame, pixel value = object id, 255 = void) or SA-V (``<video>/<obj:03d>/<frame>.png``).
* Completion records: a finished video's output folder holds ``.complete``, which says what
  produced it (model hashes and every setting that changes masks) and what it wrote (each
  file's size and SHA-256, and the trace file when one was asked for). A rerun skips a
  video only when that record matches the current settings and every file is still there
  with its recorded content; a record made with other settings stops the run before any
  work unless ``--overwrite`` (old and new masks are never mixed).

Frame and PNG I/O shared with the other tools lives in runtime/image_io.py.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np

from sam2long.runtime.image_io import VOID_LABEL, DatasetError, atomic_write, load_palette_png
from sam2long.runtime.records import changed_file, describe_files

#: Name of the per-video completion record.
COMPLETE_MARKER = ".complete"
_RECORD_VERSION = 3  # 3: files with their SHA-256 and the trace; 2: sizes only


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
    for number, line in enumerate(lines, 1):
        name = line.strip()
        if not name or name.startswith("#") or name in seen:
            continue
        check_video_name(name, f"{video_list_file} line {number}")
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



def check_video_name(name: str, where: str) -> None:
    """A video name is a name: one path component, so its output folder is a child of the
    output folder and nothing else (``../x`` or ``/data/x`` would write, and replace,
    elsewhere). Names starting with '.' are this tool's records, locks and staging."""
    seps = {os.sep, os.altsep or os.sep, "/", "\\"}
    if name in (".", "..") or name.startswith(".") or any(c in name for c in seps) \
            or os.path.isabs(name) or "\0" in name:
        raise DatasetError(
            f"{where}: {name!r} is not a video name (a folder name without separators, "
            "'..' or a leading '.'); list the videos by their folder names inside --base_video_dir",
            video=None)


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
        ids = [int(i) for i in ids if i != 0 and i != VOID_LABEL]
        return {i: arr == i for i in ids}, palette


def _integer_folders(folder: str) -> list[os.DirEntry]:
    return [e for e in os.scandir(folder) if e.is_dir() and e.name.isdigit()]


def _has_pngs(folder: str) -> bool:
    return any(e.is_file() and e.name.lower().endswith(".png") for e in os.scandir(folder))


def _mask_sources(video_mask_dir: str, video: str, per_obj_png_file: bool) -> list[_MaskSource]:
    if not os.path.isdir(video_mask_dir):
        raise DatasetError("input mask folder not found", video=video, path=video_mask_dir)
    objects = _integer_folders(video_mask_dir)
    if not per_obj_png_file:
        if objects and not _has_pngs(video_mask_dir):
            raise DatasetError(
                "this input mask folder has per-object folders (SA-V layout: "
                f"{objects[0].name}/<frame>.png), not one palette PNG per frame: pass --per_obj_png_file",
                video=video, path=video_mask_dir)
        return [_MaskSource(video_mask_dir, None)]
    if not objects:
        hint = (" It holds PNGs directly: that is the DAVIS layout (one palette PNG per frame); "
                "run without --per_obj_png_file." if _has_pngs(video_mask_dir) else "")
        raise DatasetError(
            "no per-object mask folders (named by integer object id, e.g. '001') "
            "in SA-V style input mask folder." + hint,
            video=video,
            path=video_mask_dir,
        )
    return sorted((_MaskSource(e.path, int(e.name)) for e in objects), key=lambda s: s.obj_id)


@dataclass
class VideoPrompts:
    """The prompt of each object of one video, as the input masks give them."""

    objects: dict[int, tuple[int, np.ndarray]]  # obj_id -> (frame index, bool HxW mask)
    palette: list[int] | None  # of the first mask PNG read that has one (outputs reuse it)
    # SA-V layout: objects whose folder holds no usable prompt (never non-empty where
    # looked); they are not tracked, and their outputs are empty masks.
    empty_objects: list[int] = field(default_factory=list)
    # Without track_later: objects of the input masks that first appear after the first
    # frame (obj_id -> that frame's name). They are not tracked, as in SAM 2's tool; the
    # dataset tool names each one and the flag that would track it.
    later_objects: dict[int, str] = field(default_factory=dict)


def load_prompts(
    input_mask_dir: str,
    video_name: str,
    frame_names: Sequence[str],
    per_obj_png_file: bool,
    track_later: bool,
) -> VideoPrompts:
    """Read the prompt mask of each object of one video (frame indexes index
    ``frame_names``).

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

    empty = sorted(s.obj_id for s in sources if s.obj_id is not None and s.obj_id not in prompts)
    later = {} if track_later else _first_seen_later(sources, frame_names, set(prompts), video_name)
    return VideoPrompts({oid: prompts[oid] for oid in sorted(prompts)}, palette, empty, later)


def _first_seen_later(sources: list[_MaskSource], frame_names: Sequence[str], known: set[int],
                      video: str) -> dict[int, str]:
    """{obj_id: frame name} of the objects whose first non-empty mask is after frame 0."""
    seen: dict[int, str] = {}
    for name in frame_names[1:]:
        for source in sources:
            if source.obj_id is not None and (source.obj_id in known or source.obj_id in seen):
                continue
            if not source.has(name):
                continue
            arr, _ = load_palette_png(source.path(name), video=video)
            if source.obj_id is not None:
                if arr.any():
                    seen[source.obj_id] = name
                continue
            for oid in np.unique(arr):
                oid = int(oid)
                if oid not in (0, VOID_LABEL) and oid not in known and oid not in seen:
                    seen[oid] = name
    return dict(sorted(seen.items()))



# --------------------------------------------------------------------------
# Completion records
# --------------------------------------------------------------------------


def _marker_path(output_mask_dir: str, video_name: str) -> str:
    return os.path.join(output_mask_dir, video_name, COMPLETE_MARKER)


def write_completion(video_dir: str, produced_by: Mapping, frames: Sequence[str],
                     obj_ids: Sequence[int], files: Sequence[str], trace: str | None = None) -> str:
    """Record, last, that `video_dir` holds a whole result: who made it, what is in it (each
    file's size and SHA-256) and the trace file written for it, if any."""
    payload = {
        "version": _RECORD_VERSION,
        "produced_by": dict(produced_by),
        "frames": list(frames),
        "obj_ids": [int(o) for o in obj_ids],
        "files": describe_files(video_dir, files),
    }
    if trace is not None:
        payload["trace"] = {"path": os.path.realpath(trace), **describe_files("", [trace])[trace]}
    path = os.path.join(video_dir, COMPLETE_MARKER)
    atomic_write(path, lambda f: f.write(json.dumps(payload, sort_keys=True).encode("utf-8")))
    return path


def read_completion(output_mask_dir: str, video_name: str) -> dict | None:
    """A video's completion record, or None when it has none or it cannot be read."""
    try:
        with open(_marker_path(output_mask_dir, video_name), encoding="utf-8") as f:
            record = json.load(f)
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


@dataclass(frozen=True)
class VideoStatus:
    state: str  # "todo" (no result), "complete", "incomplete" (redo) or "other_settings"
    reason: str = ""


def settings_changed(before: Mapping, now: Mapping) -> str:
    """The settings that differ between two records' produced_by, '' when none."""
    changed = sorted(k for k in set(before) | set(now) if before.get(k) != now.get(k))
    return ", ".join(f"{k}: {before.get(k)!r} -> {now.get(k)!r}" for k in changed[:4])


def mixed_settings(pred_root: str, videos: Sequence[str] | None = None) -> str | None:
    """Why the completion records of a prediction folder disagree on what produced them
    (two runs with different settings wrote into one folder), or None when they agree."""
    if videos is None:
        try:
            videos = sorted(e.name for e in os.scandir(pred_root) if e.is_dir() and not e.name.startswith("."))
        except OSError:
            return None
    first = None
    for video in videos:
        record = read_completion(pred_root, video)
        if record is None:
            continue
        made = record.get("produced_by") or {}
        if first is None:
            first = (video, made)
            continue
        changed = settings_changed(first[1], made)
        if changed:
            return f"videos {first[0]!r} and {video!r} were made with different settings ({changed})"
    return None


def video_status(output_mask_dir: str, video_name: str, frame_names: Sequence[str],
                 produced_by: Mapping, trace: str | None = None) -> VideoStatus:
    """What a previous run left for this video, judged against the current settings (and,
    when `trace` names the trace file this run wants, whether that was written)."""
    try:
        with open(_marker_path(output_mask_dir, video_name), encoding="utf-8") as f:
            record = json.load(f)
    except FileNotFoundError:
        return VideoStatus("todo")
    except (OSError, ValueError):
        return VideoStatus("incomplete", "its completion record is unreadable")
    if not isinstance(record, dict) or record.get("version") not in (2, _RECORD_VERSION):
        return VideoStatus("other_settings", "made by an older version of this tool (settings unknown)")
    changed = settings_changed(record.get("produced_by") or {}, produced_by)
    if changed:
        return VideoStatus("other_settings", f"made with other settings ({changed})")
    if record.get("version") != _RECORD_VERSION:
        return VideoStatus("incomplete", "its record has no content hashes (an older version)")
    if record.get("frames") != list(frame_names):
        return VideoStatus("incomplete", "its frames changed since it was made")
    changed_path = changed_file(os.path.join(output_mask_dir, video_name), record.get("files") or {})
    if changed_path is not None:
        return VideoStatus("incomplete", f"{changed_path} is missing or changed")
    if trace is not None:
        wanted = record.get("trace")
        if not isinstance(wanted, dict) or wanted.get("path") != os.path.realpath(trace) \
                or changed_file("", {trace: wanted}) is not None:
            return VideoStatus("incomplete", f"its trace {trace} was not written or changed")
    return VideoStatus("complete")


def is_video_complete(output_mask_dir: str, video_name: str, frame_names: Sequence[str],
                      produced_by: Mapping) -> bool:
    return video_status(output_mask_dir, video_name, frame_names, produced_by).state == "complete"
