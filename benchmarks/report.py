"""Where a benchmark's tables and numbers go: printed, appended to --markdown, written to --json."""

from __future__ import annotations

import json
from pathlib import Path


def publish(lines: list[str], report: dict, markdown: str | None, json_path: str | None,
            indent: int = 2, default=float) -> None:
    text = "\n".join(lines) + "\n"
    print(text)
    if markdown:
        with open(markdown, "a") as f:
            f.write(text)
    if json_path:
        Path(json_path).write_text(json.dumps(report, indent=indent, default=default))
