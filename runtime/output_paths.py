"""Where results go, checked before the first frame, and written so that nothing half-done
ever looks like a result.

* ``check_output_file`` / ``check_output_dir`` run before any work: an output that would
  replace an input, a folder where a file should go (or the reverse), a folder that cannot
  be written, or a mask folder that already holds other results is one clear error.
* No output is, lies inside, or (a folder) holds an input: every path is compared after
  resolving links, and a file also by identity (``os.path.samefile``: hard links).
* ``OutputLock`` makes one process the only writer of an output (``fcntl.flock`` on a hidden
  ``.<name>.lock`` beside it); a second writer is refused with the first one's pid and host.
* ``StagedDir`` fills a hidden sibling folder and swaps it into place only when the whole
  result is there; on failure the staging folder is removed.
"""

from __future__ import annotations

import fcntl
import os
import re
import secrets
import shutil
import socket
import tempfile
from collections.abc import Iterable

from sam2long.engine.errors import SAM2LongError

_MASK_FILE = re.compile(r"[^.].*\.png$", re.IGNORECASE)
# Names of work in progress: ".<name>.partial@<host>@<pid>@<random>[suffix]", so that a later
# run on the same host can tell the leftovers of a killed process from live work.
_PARTIAL = re.compile(r"^\..+\.partial@(?P<host>[^@/]+)@(?P<pid>\d+)@[0-9a-f]+")
_OBJECT_FOLDER = re.compile(r"\d+$")


class OutputError(SAM2LongError):
    """An output location that cannot be used; the message names it and what to do."""


def _real(path: str) -> str:
    return os.path.realpath(os.path.abspath(path))


def _is_within(inner: str, outer: str) -> bool:
    inner, outer = _real(inner), _real(outer)
    return inner == outer or inner.startswith(outer.rstrip(os.sep) + os.sep)


def overlaps(a: str, b: str) -> bool:
    """Whether one of two paths is, or lies inside, the other (links resolved)."""
    return _is_within(a, b) or _is_within(b, a)


def _same_file(a: str, b: str) -> bool:
    """Same file by any path: links (symbolic or hard) included."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return _real(a) == _real(b)


def probe_writable(folder: str, what: str) -> None:
    """Create `folder` if needed and write a file in it, or an OutputError naming it."""
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise OutputError(f"{what}: {folder} is a file, not a folder")
    try:
        os.makedirs(folder, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-probe-", dir=folder)
        os.close(fd)
        os.remove(probe)
    except OSError as e:
        raise OutputError(f"{what}: cannot write into {folder} ({e.strerror or e}); "
                          "choose a folder you can write to") from e


def check_not_input(path: str, inputs: Iterable[str | None], what: str) -> None:
    """`path` (an output file) is no input by any name, and lies inside no input folder."""
    for source in inputs:
        if not source:
            continue
        if _same_file(path, source):
            raise OutputError(f"{what} {path} is the input {source}: writing it would destroy "
                              "the input; choose another output path")
        if _is_within(path, source):
            raise OutputError(f"{what} {path} lies inside the input {source}: choose an output "
                              "path outside every input")
    try:
        links = os.stat(path).st_nlink if os.path.isfile(path) else 1
    except OSError:
        links = 1
    if links > 1:
        # Finding which input it is would mean listing every input folder; a result of ours
        # has one name.
        raise OutputError(f"{what} {path} has {links} hard links: it may be an input under another "
                          "name; remove it or choose another output path")


def check_output_file(path: str, inputs: Iterable[str | None], what: str) -> None:
    """`path` can receive a new file (replacing an old result, never an input)."""
    check_not_input(path, inputs, what)
    if os.path.isdir(path):
        raise OutputError(f"{what} {path} is a folder; give a file name such as {os.path.join(path, 'out.mp4')}")
    probe_writable(os.path.dirname(os.path.abspath(path)), what)


def _only_masks(folder: str) -> bool:
    """Whether `folder` holds nothing but mask PNGs (per frame, or per object folder)."""
    for entry in os.scandir(folder):
        if entry.name.startswith("."):
            continue  # our staging leftovers and markers
        if entry.is_file() and _MASK_FILE.match(entry.name):
            continue
        if entry.is_dir() and _OBJECT_FOLDER.match(entry.name) and _only_masks(entry.path):
            continue
        return False
    return True


def check_apart(path: str, inputs: Iterable[str | None], what: str) -> None:
    """`path` (an output folder) is no input, lies inside none and holds none."""
    for source in inputs:
        if source and (overlaps(path, source) or _same_file(path, source)):
            raise OutputError(f"{what} {path} and the input {source} overlap: writing there could "
                              "destroy the input; choose a separate folder")


def check_output_dir(path: str, inputs: Iterable[str | None], what: str, overwrite: bool,
                     overwrite_flag: str = "--overwrite", ours: bool = False) -> None:
    """`path` can become a folder of results: not an input or inside one (or holding
    one), not a file, writable, and empty unless `ours` (what a previous run of the same
    tool wrote, unchanged) or `overwrite` (then only masks in it)."""
    check_apart(path, inputs, what)
    if os.path.exists(path) and not os.path.isdir(path):
        raise OutputError(f"{what} {path} is an existing file, not a folder")
    if not ours and os.path.isdir(path) and any(not e.name.startswith(".") for e in os.scandir(path)):
        if not overwrite:
            raise OutputError(f"{what} {path} already holds files; pass {overwrite_flag} to replace "
                              "them, or choose an empty folder (old and new masks are never mixed)")
        if not _only_masks(path):
            raise OutputError(f"{what} {path} holds files that are not mask PNGs; refusing to "
                              "replace it even with " + overwrite_flag + "; choose another folder")
    probe_writable(os.path.dirname(os.path.abspath(path)) or ".", what)


def partial_path(target: str, suffix: str = "") -> str:
    """A hidden sibling of `target` for work in progress, named after this host and process."""
    parent, name = os.path.split(os.path.abspath(target))
    host = socket.gethostname().replace("@", "_") or "host"
    return os.path.join(parent, f".{name}.partial@{host}@{os.getpid()}@{secrets.token_hex(3)}{suffix}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_partials(folder: str) -> list[str]:
    """Remove what killed processes of this host left in `folder` (a SIGKILL or a cancelled
    job skips every cleanup); work of live processes and of other hosts is left alone."""
    removed = []
    host = socket.gethostname().replace("@", "_") or "host"
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        match = _PARTIAL.match(entry.name)
        if not match or match["host"] != host or _alive(int(match["pid"])):
            continue
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path, ignore_errors=True)
        else:
            try:
                os.remove(entry.path)
            except FileNotFoundError:
                pass
        removed.append(entry.path)
    return removed


def lock_path(target: str) -> str:
    """The lock file of an output: a hidden sibling, removed when the lock ends."""
    parent, name = os.path.split(os.path.abspath(target).rstrip(os.sep))
    return os.path.join(parent, f".{name}.lock")


# Locks this process holds, by lock file: [open file, holders]. flock belongs to an open
# file, so a second acquire in the same process shares the first one's instead of
# refusing itself.
_HELD: dict[str, list] = {}


class OutputLock:
    """This process is the only writer of `target` while held (a context manager).

    A second process is refused at once with the holder's pid and host, which the holder
    writes into the lock file. The lock ends with the process however it ends (the
    kernel releases flock), so a killed run never blocks the next one; the lock file it
    leaves is taken over by the next writer."""

    def __init__(self, target: str, what: str):
        self.target, self.what = target, what
        self.path = _real(lock_path(target))
        self._held = False

    def acquire(self) -> "OutputLock":
        if self._held:
            return self
        held = _HELD.get(self.path)
        if held is not None:
            held[1] += 1
            self._held = True
            return self
        probe_writable(os.path.dirname(self.path), self.what)
        while True:
            f = open(self.path, "a+", encoding="utf-8")
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                f.seek(0)
                holder = f.read().strip() or "another process"
                f.close()
                raise OutputError(f"{self.what} {self.target} is being written by {holder}; wait for "
                                  "it to finish or choose another output") from None
            except BaseException:
                f.close()
                raise
            try:
                current = os.stat(self.path).st_ino
            except FileNotFoundError:
                current = None
            if current == os.fstat(f.fileno()).st_ino:
                break
            f.close()  # its holder removed it as we opened it: take the new one
        f.seek(0)
        f.truncate()
        f.write(f"process {os.getpid()} on {socket.gethostname()}\n")
        f.flush()
        _HELD[self.path] = [f, 1]
        self._held = True
        return self

    def release(self) -> None:
        if not self._held:
            return
        self._held = False
        held = _HELD[self.path]
        held[1] -= 1
        if held[1] == 0:
            del _HELD[self.path]
            try:
                os.remove(self.path)  # still locked: a process that opened it retries (inode check)
            except OSError:
                pass
            held[0].close()  # closing the file releases the flock

    def __enter__(self) -> "OutputLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


class StagedDir:
    """A folder that appears at `target` whole, or not at all.

    Write into ``.path`` (a hidden sibling); ``commit()`` swaps it into place (an older
    folder at `target` is removed after the swap); ``discard()`` removes it.
    """

    def __init__(self, target: str):
        self.target = os.path.abspath(target)
        os.makedirs(os.path.dirname(self.target), exist_ok=True)
        self.path = partial_path(self.target)
        os.makedirs(self.path)

    def commit(self) -> str:
        old = None
        if os.path.lexists(self.target):
            old = f"{self.path}.old"
            os.replace(self.target, old)
        os.replace(self.path, self.target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return self.target

    def discard(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
