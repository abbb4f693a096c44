#!/usr/bin/env python
"""Download official SAM 2.1 checkpoints (facebookresearch/sam2) into checkpoints/.

Needs internet access; where there is none it fails with a clear message (the tools'
`--random_weights` option then runs the pipeline offline on meaningless random weights).
"""

from __future__ import annotations

if __name__ == "__main__":  # Ctrl-C or SIGTERM while importing: one line, not a traceback
    from sam2long.tools.startup import quiet_interrupts

    quiet_interrupts()

import argparse
import os
import sys
import urllib.request
from pathlib import Path


from sam2long.engine.errors import SAM2LongError

BASE_URL = "https://dl.fbaipublicfiles.com/segment_anything_2/092824/"
# checkpoint file -> the sam2 package config it goes with
OFFICIAL = {
    "sam2.1_hiera_tiny.pt": "configs/sam2.1/sam2.1_hiera_t.yaml",
    "sam2.1_hiera_small.pt": "configs/sam2.1/sam2.1_hiera_s.yaml",
    "sam2.1_hiera_base_plus.pt": "configs/sam2.1/sam2.1_hiera_b+.yaml",
    "sam2.1_hiera_large.pt": "configs/sam2.1/sam2.1_hiera_l.yaml",
}


class DownloadError(SAM2LongError, RuntimeError):
    pass


def download(name: str, folder: str | os.PathLike = "checkpoints") -> Path:
    """Fetch one official checkpoint (atomically: no partial file is left behind)."""
    if name not in OFFICIAL:
        raise DownloadError(f"{name} is not an official SAM 2.1 checkpoint ({', '.join(OFFICIAL)})")
    target = Path(folder) / name
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".partial")
    url = BASE_URL + name
    from sam2long.runtime.progress import progress

    try:
        with urllib.request.urlopen(url, timeout=30) as response, open(partial, "wb") as out:
            total = int(response.headers.get("Content-Length", 0)) or None
            with progress(total=total, unit="B", unit_scale=True, desc=name) as bar:
                while block := response.read(1 << 20):
                    out.write(block)
                    bar.update(len(block))
    except OSError as e:
        partial.unlink(missing_ok=True)
        raise DownloadError(
            f"could not download {url} ({e}). Without internet access, pass --random_weights "
            "to run the pipeline on seeded random weights (meaningless masks), or copy the "
            f"checkpoint to {target} yourself."
        ) from e
    partial.replace(target)
    return target


def main(argv=None) -> int:
    from sam2long.resources import add_version

    p = argparse.ArgumentParser(description=__doc__)
    add_version(p)
    p.add_argument("names", nargs="*", default=["sam2.1_hiera_base_plus.pt"],
                   help=f"checkpoints to fetch: {', '.join(OFFICIAL)} (or 'all')")
    p.add_argument("--dir", default="checkpoints", help="where to put them")
    args = p.parse_args(argv)
    names = list(OFFICIAL) if args.names == ["all"] else args.names
    try:
        for name in names:
            print(f"{download(name, args.dir)}  (config: {OFFICIAL[name]})")
    except DownloadError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    from sam2long.tools.startup import restore_interrupts

    restore_interrupts()
    sys.exit(main())
