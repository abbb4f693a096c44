"""Masks that wait for their frame's answer, in RAM up to a budget and past it in an unnamed
temporary file.

SAM2Long's answer for a frame is known only once the surviving pathways share an ancestor
there (runtime/lineage.py). On some videos they never do before the end, and then every
frame's candidate masks wait: P x 256 KiB per object and frame at 1024 px, 150 MiB over 200
frames, gigabytes over a long video. Past the budget they go to a file, so resident memory
stays flat in video length. The file (in TMPDIR) holds at most what is waiting: space freed
by taken arrays is reused by arrays of the same size, and the file is emptied whenever
nothing on it is waiting.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass

import numpy as np

from sam2long.engine.errors import SAM2LongError

# Enough for about 85 waiting frames of one object at P=3 and 1024 px before any file I/O.
RAM_BYTES = 64 << 20


@dataclass(frozen=True)
class Held:
    """An array given to a SpillStore: in RAM (`array`) or at `offset` in its file."""

    array: np.ndarray | None
    offset: int
    shape: tuple[int, ...]
    dtype: np.dtype

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape)) * self.dtype.itemsize


class SpillStore:
    """put an array, get it back later (whole, or one index of its first axis), release it."""

    def __init__(self, ram_bytes: int | None = None, folder: str | None = None):
        self.ram_bytes = RAM_BYTES if ram_bytes is None else ram_bytes
        self.folder = folder
        self._file = None
        self._end = 0  # the file's length
        self._free: dict[int, list[int]] = {}  # size -> offsets of released arrays of that size
        self.bytes_in_ram = 0
        self.bytes_on_disk = 0  # of arrays not yet released

    def put(self, array: np.ndarray) -> Held:
        array = np.ascontiguousarray(array)
        if self.bytes_in_ram + array.nbytes <= self.ram_bytes:
            self.bytes_in_ram += array.nbytes
            # A view would keep its whole base alive, more than the budget counts.
            return Held(array if array.base is None else array.copy(), -1, array.shape, array.dtype)
        free = self._free.get(array.nbytes)
        offset = free.pop() if free else self._end
        try:
            if self._file is None:
                self._file = tempfile.TemporaryFile(dir=self.folder)
            self._file.seek(offset)
            self._file.write(memoryview(array).cast("B"))
        except OSError as e:
            if free is not None and offset != self._end:
                free.append(offset)
            raise SAM2LongError(
                f"cannot write masks that wait for SAM2Long's decision to a temporary "
                f"file in {self.folder or tempfile.gettempdir()} ({e.strerror or e}); free space "
                f"there or point TMPDIR at a disk with room") from None
        self._end = max(self._end, offset + array.nbytes)
        self.bytes_on_disk += array.nbytes
        return Held(None, offset, array.shape, array.dtype)

    def get(self, held: Held, index: int | None = None) -> np.ndarray:
        """The array, or its `index`-th sub-array along the first axis (read alone from disk)."""
        if held.array is not None:
            return held.array if index is None else held.array[index]
        shape, offset = held.shape, held.offset
        if index is not None:
            shape = shape[1:]
            offset += index * int(np.prod(shape)) * held.dtype.itemsize
        out = np.empty(shape, held.dtype)
        self._file.seek(offset)
        if self._file.readinto(memoryview(out).cast("B")) != out.nbytes:
            raise SAM2LongError(f"the temporary file of waiting masks was cut short ({self._file.name})")
        return out

    def release(self, held: Held):
        if held.array is not None:
            self.bytes_in_ram -= held.nbytes
            return
        self.bytes_on_disk -= held.nbytes
        if self.bytes_on_disk == 0:  # nothing waits on the file: give its space back
            self._file.truncate(0)
            self._end, self._free = 0, {}
        else:
            self._free.setdefault(held.nbytes, []).append(held.offset)

    def take(self, held: Held) -> np.ndarray:
        """get, then release."""
        out = self.get(held)
        self.release(held)
        return out

    def close(self):
        if self._file is not None:
            self._file.close()
            self._file = None
