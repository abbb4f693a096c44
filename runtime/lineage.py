"""Which slot's mask is the answer for each frame, decided as early as possible.

The reference answers every frame with the mask on the lineage of slot 0 at the last
frame. A frame's answer is already certain once every surviving slot descends from one
slot at that frame (lineages coalesced); slots that are exact copies count as one. Until
then the frame's P low-res masks wait here, on the host (in a SpillStore: in RAM up to a
budget, then in a temporary file, so a video whose pathways never coalesce does not fill RAM).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from sam2long.runtime.spill import Held, SpillStore


@dataclass
class _Pending:
    frame_idx: int
    masks: Held  # [U, h, w] float32 low-res logits, one per distinct slot
    mask_of_slot: np.ndarray  # [P_f] index into `masks`
    parent: np.ndarray  # [P_f] slot at the previous frame each slot descends from
    copy_class: np.ndarray  # [P_f] equal values: identical slots (same masks, same past)


class ObjectLineage:
    def __init__(self, store: SpillStore | None = None):
        self._pending: deque[_Pending] = deque()
        self._store = SpillStore() if store is None else store  # a tracker shares one among its objects

    def __len__(self):
        return len(self._pending)

    def push(self, frame_idx: int, masks: np.ndarray, mask_of_slot: np.ndarray,
             parent: np.ndarray, copy_class: np.ndarray):
        """Record frame `frame_idx`: slot k's mask is masks[mask_of_slot[k]]; `parent`
        indexes the slots of the frame pushed before (ignored for the first pending
        frame, whose ancestors are already decided)."""
        self._pending.append(_Pending(frame_idx, self._store.put(masks), np.asarray(mask_of_slot),
                                      np.asarray(parent), np.asarray(copy_class)))

    def _emit_through(self, newest_index: int, slot: int) -> list[tuple[int, np.ndarray]]:
        """Pop pending frames 0..newest_index following `slot` at the newest of them."""
        chain = []
        for index in range(newest_index, -1, -1):
            entry = self._pending[index]
            chain.append((entry.frame_idx, self._store.get(entry.masks, int(entry.mask_of_slot[slot]))))
            slot = int(entry.parent[slot])
        for _ in range(newest_index + 1):
            self._store.release(self._pending.popleft().masks)
        return chain[::-1]

    def pop_decided(self) -> list[tuple[int, np.ndarray]]:
        """Frames whose answer no later frame can change, oldest first."""
        if not self._pending:
            return []
        slots = np.arange(len(self._pending[-1].parent))
        for index in range(len(self._pending) - 1, -1, -1):
            entry = self._pending[index]
            if len(np.unique(entry.copy_class[slots])) == 1:
                return self._emit_through(index, int(slots.min()))
            slots = np.unique(entry.parent[slots])
        return []

    def snapshot(self) -> list[_Pending]:
        """The waiting frames as they are now (records are never changed in place; their
        masks stay valid while the store keeps them: an interactive session's store does)."""
        return list(self._pending)

    def restore(self, pending: list[_Pending]):
        self._pending = deque(pending)

    def finish(self) -> list[tuple[int, np.ndarray]]:
        """At the end of the video: follow slot 0 of the last frame."""
        if not self._pending:
            return []
        return self._emit_through(len(self._pending) - 1, 0)
