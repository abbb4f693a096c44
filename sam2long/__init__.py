"""SAM2Long inference engine: SAM 2 with SAM2Long's training-free memory tree.

The repository keeps the folders users know (`engine/`, `runtime/`, `export/`, `tools/`);
installed, they are subpackages of this one import name (`sam2long.engine`, ...), so nothing
generic like `tools` or `runtime` lands at the top level of a user's environment.
"""

from __future__ import annotations

from pathlib import Path as _Path

__version__ = "0.1.0"

# Run from a checkout (tests, `python tools/x.py`, a git worktree), the subpackages are the
# repository's top-level folders beside this one; in an installed wheel they sit inside it.
_checkout = _Path(__file__).resolve().parent.parent
if (_checkout / "pyproject.toml").is_file() and (_checkout / "runtime" / "__init__.py").is_file():
    __path__.append(str(_checkout))  # type: ignore[name-defined]  # noqa: F821


def __getattr__(name: str):
    # The predictor pulls in torch and the engine: loaded on first use, so `import sam2long`
    # stays light (the tools import their subpackages directly).
    if name in ("build_sam2long_video_predictor", "SAM2LongVideoPredictor"):
        from sam2long import predictor

        return getattr(predictor, name)
    raise AttributeError(f"module 'sam2long' has no attribute {name!r}")
