"""What every benchmark's scorer shares: reading masks, listing folders, running videos in
parallel with a progress bar, the result record, the CSV form the official tools write, and
the summary table."""

from __future__ import annotations

import contextlib
import csv
import io
import math
import multiprocessing
import os
import sys
from dataclasses import dataclass, field
from typing import Callable, Iterable, Sequence, TypeVar

import numpy as np
from PIL import Image
from tqdm import tqdm

from sam2long.runtime.image_io import DatasetError, atomic_write, load_palette_png

__all__ = ["DatasetError", "EvaluationResult", "read_labels", "list_pngs", "list_dirs",
           "check_same_shape", "map_videos", "csv_text", "print_summary"]

T = TypeVar("T")
R = TypeVar("R")


def read_labels(path: str, video: str | None = None, as_palette: bool = False) -> np.ndarray:
    """A mask PNG's pixel values (palette indices or grey levels) as uint8, which is what the
    official tools get from `np.array(Image.open(path))`; with `as_palette`, what they get from
    `Image.open(path).convert("P")` (MOSEv2), which turns a 1-bit PNG's set pixels into 255.
    A missing file is a DatasetError naming it (the official tools exit, some with status 0)."""
    if not os.path.isfile(path):
        raise DatasetError("mask PNG not found", video=video, path=path)
    labels = load_palette_png(path, video=video)[0]
    if as_palette and _is_one_bit(path):
        labels = labels * np.uint8(255)
    return labels


def _is_one_bit(path: str) -> bool:
    with Image.open(path) as img:  # reads the header only
        return img.mode == "1"


def list_pngs(folder: str) -> list[str]:
    """The non-hidden `*.png` file names of a folder, sorted as strings (as `glob` + `sort`)."""
    return sorted(e.name for e in os.scandir(folder)
                  if e.name.endswith(".png") and not e.name.startswith(".") and e.is_file())


def list_dirs(folder: str) -> list[str]:
    """The non-hidden subfolder names of a folder, sorted."""
    return sorted(e.name for e in os.scandir(folder) if e.is_dir() and not e.name.startswith("."))


def check_same_shape(gt: np.ndarray, pred: np.ndarray, video: str, pred_path: str) -> None:
    if gt.shape != pred.shape:
        raise DatasetError(
            f"prediction is {pred.shape[-1]}x{pred.shape[0]}, the ground truth "
            f"{gt.shape[-1]}x{gt.shape[0]}", video=video, path=pred_path)


def map_videos(work: Callable[[T], R], items: Sequence[T], num_processes: int, desc: str) -> list[R]:
    """`[work(item) for item in items]`, over `num_processes` worker processes when above one,
    with a progress bar; results keep the input order. `work` must be picklable (a module-level
    function or a functools.partial of one), so this works with any start method."""
    with contextlib.ExitStack() as stack:
        bar = stack.enter_context(tqdm(total=len(items), desc=desc, unit="video", file=sys.stderr,
                                       disable=None if len(items) > 1 else True))
        if num_processes > 1 and len(items) > 1:
            pool = stack.enter_context(multiprocessing.get_context().Pool(min(num_processes, len(items))))
            results = pool.imap(work, items)
        else:
            results = map(work, items)
        out = []
        for result in results:
            out.append(result)
            bar.update()
        return out


def csv_text(columns: Sequence[str], rows: Iterable[Sequence[object]], float_format: str = "%.3f") -> str:
    """A table as `pandas.DataFrame.to_csv(index=False, float_format=...)` writes it: floats
    formatted with `float_format`, NaN as an empty field, minimal quoting, '\\n' line ends."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_csv_field(v, float_format) for v in row])
    return out.getvalue()


def _csv_field(value: object, float_format: str) -> object:
    if isinstance(value, (float, np.floating)):
        return "" if math.isnan(value) else float_format % value
    return value


@dataclass
class EvaluationResult:
    """One benchmark's scores.

    summary: the global numbers under the official names, in the official order.
    objects: per-object numbers under flat display names ("<video>_<n>" or "<video>/<obj>").
    rank_key: the per-object number the summary's "lowest objects" list sorts by.
    data: the whole result as written to --json (benchmark-specific layout, documented there).
    records: {"options": ..., "videos": [...]}, the input of the benchmark's `*_from_records`.
    files: the files the official tool writes (name -> exact text).
    percent: True when numbers are on the x100 scale (SA-V, MOSE), False for fractions.
    """

    benchmark: str
    title: str
    summary: dict[str, float]
    objects: dict[str, dict[str, float]]
    rank_key: str
    data: dict
    files: dict[str, str] = field(default_factory=dict)
    percent: bool = False
    notes: list[str] = field(default_factory=list)
    # The per-video scores and the options the globals were computed with (JSON-ready, floats
    # exact): what a shard keeps so that shards' results merge into the whole set's numbers.
    records: dict | None = None

    def write_files(self, output_dir: str) -> list[str]:
        """Write the official tool's files into `output_dir`; returns their paths."""
        os.makedirs(output_dir, exist_ok=True)
        paths = []
        for name, text in self.files.items():
            path = os.path.join(output_dir, name)
            # Replaced, never written through: a link there to another file leaves it intact.
            atomic_write(path, lambda f, text=text: f.write(text.encode("utf-8")))
            paths.append(path)
        return paths


def print_summary(result: EvaluationResult, file=None, lowest: int = 5) -> None:
    """A one-screen table: the global numbers, then the lowest-scoring objects."""
    file = file or sys.stdout
    digits = 2 if result.percent else 3
    names = list(result.summary)
    widths = [max(len(n), 6) + 2 for n in names]
    print(result.title, file=file)
    print("".join(f"{n:>{w}}" for n, w in zip(names, widths)), file=file)
    print("".join(f"{_fmt(result.summary[n], digits):>{w}}" for n, w in zip(names, widths)), file=file)
    ranked = [(v[result.rank_key], name) for name, v in result.objects.items()
              if not math.isnan(v[result.rank_key])]
    if ranked and lowest:
        ranked.sort()
        shown = ", ".join(f"{name} {_fmt(value, digits)}" for value, name in ranked[:lowest])
        print(f"{len(result.objects)} objects; lowest {result.rank_key}: {shown}", file=file)
    for note in result.notes:
        print(f"note: {note}", file=file)


def _fmt(value: float, digits: int) -> str:
    return "nan" if value is None or math.isnan(value) else f"{value:.{digits}f}"
