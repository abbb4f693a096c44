"""Where the shipped data (the micro model's config, the sample clip) and the user's cache are,
and the `--version` every tool has.

Installed from a wheel, `configs/` and `samples/` are package data inside `sam2long/`; in a
checkout they are the repository's folders beside it. Code that needs them asks here, never
relative to the working directory, so the tools run the same from any folder.
"""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent

MICRO_CONFIG = "micro_sam2.1_256.yaml"
SAMPLE_VIDEO = "shapes.mp4"


def data_dir(name: str) -> Path:
    """`configs` or `samples`: inside the installed package, else the checkout's folder."""
    installed = PACKAGE_DIR / name
    return installed if installed.is_dir() else PACKAGE_DIR.parent / name


def config_file(name: str = MICRO_CONFIG) -> Path:
    return data_dir("configs") / name


def sample_file(name: str = SAMPLE_VIDEO) -> Path:
    return data_dir("samples") / name


def cache_dir() -> Path:
    """The user's cache for files the tools make once (the random micro checkpoint):
    `$XDG_CACHE_HOME/sam2long`, else `~/.cache/sam2long`. Never the working directory, so a
    run does not leave files in whatever folder it started from."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "sam2long"


def add_version(parser) -> None:
    """--version: the package's version (light: the torch-free tools use it too)."""
    from sam2long import __version__

    parser.add_argument("--version", action="version", version=f"%(prog)s (sam2long) {__version__}")
