"""One worker thread for output work (video encoding, PNG writing), so the tracking loop
never waits on it: functions run in submission order, at most `depth` waiting."""

from __future__ import annotations

import queue
import threading


class BackgroundWorker:
    """After the first error nothing more runs; `submit` and `close` re-raise it."""

    def __init__(self, name: str, depth: int = 8):
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._work, name=name, daemon=True)
        self._thread.start()

    def _work(self):
        while (item := self._queue.get()) is not None:
            if self.error is None:
                fn, args = item
                try:
                    fn(*args)
                except BaseException as e:  # reported to the submitting thread
                    self.error = e

    def submit(self, fn, *args):
        if self.error is not None:
            raise self.error
        self._queue.put((fn, args))

    def close(self):
        """Wait for everything submitted; re-raise the first error."""
        self._queue.put(None)
        self._thread.join()
        if self.error is not None:
            raise self.error
