"""Ctrl-C or SIGTERM while a tool is still starting (importing torch takes seconds): one line
and a clean exit instead of a traceback from deep inside an import. Nothing is written
before a tool's `main` runs, so there is nothing to clean up.

Each tool script calls ``quiet_interrupts()`` before its heavy imports and
``restore_interrupts()`` just before ``main``, whose own handling (tools/cli.py run_main)
takes over from there.
"""

from __future__ import annotations

import os
import signal
import sys


def _quit(signum, frame):
    what = "terminated" if signum == signal.SIGTERM else "interrupted"
    sys.stderr.write(f"\n{what} while starting: nothing was done\n")
    sys.stderr.flush()
    os._exit(128 + signum)  # 130 for Ctrl-C, 143 for SIGTERM, as run_main


def quiet_interrupts() -> None:
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _quit)


def restore_interrupts() -> None:
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
