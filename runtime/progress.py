"""Progress bars for the tools: tqdm on a terminal, plain lines in a log.

A bar redraws itself with carriage returns and, when bars are nested, cursor-movement escape
codes; in a redirected log those are noise. Written to anything but a terminal, each update
is one plain line instead (no `\\r`, no escape codes), at most one per `TQDM_MININTERVAL`
seconds (default 10; the SLURM launcher sets 30), plus the last.
"""

from __future__ import annotations

import os
import re
import sys

from tqdm import tqdm

_ESCAPE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
LOG_INTERVAL_S = 10.0


class PlainLines:
    """A stream for tqdm that turns its redraws into whole lines, each status once."""

    def __init__(self, stream):
        self.stream = stream
        self.last = None

    def write(self, text: str) -> None:
        for part in re.split(r"[\r\n]", _ESCAPE.sub("", text)):
            line = part.rstrip()
            if line and line != self.last:
                self.stream.write(line + "\n")
                self.last = line

    def flush(self) -> None:
        self.stream.flush()


def _is_terminal(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def progress(iterable=None, **kwargs) -> tqdm:
    """`tqdm(iterable, **kwargs)`, as plain periodic lines when its stream is not a terminal."""
    stream = kwargs.get("file") or sys.stderr
    if not _is_terminal(stream):
        kwargs["file"] = PlainLines(stream)
        kwargs.setdefault("mininterval", float(os.environ.get("TQDM_MININTERVAL") or LOG_INTERVAL_S))
        kwargs.setdefault("ascii", True)
        kwargs.setdefault("ncols", 100)
        kwargs["leave"] = True  # a bar cleared from a log would leave nothing
    return tqdm(iterable, **kwargs)


def write(message: str, file=None) -> None:
    """A message between bars (tqdm.write on a terminal, a plain line otherwise)."""
    stream = file or sys.stderr
    if _is_terminal(stream):
        tqdm.write(message, file=stream)
    else:
        print(message, file=stream, flush=True)
