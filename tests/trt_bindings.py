"""TensorRT's real Python bindings binaries, for checking names without a GPU.

NVIDIA's `tensorrt-cu12-bindings` wheels (about 1.2 MB each) hold one extension module,
`tensorrt_bindings/tensorrt.so`, built with pybind11: every class, method, property and
enum member it registers is a C string literal in that file. They install from the
package index anywhere; the TensorRT libraries they load do not, so the module cannot be
imported here, but its names can be read. `fetch` downloads the wheels of BINARIES into a
cache (default .venv/trt-bindings/, which tools/run_tests.sh fills before the tests) and
keeps only the extension module; `registered_names` reads it.

    python -m tests.trt_bindings [cache folder]     # download what is missing
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".venv" / "trt-bindings"
# Label -> wheel version: the oldest version the README claims, the table's 10.x the fake
# defaults to, the table's newest 11.x and the newest 11.x released.
BINARIES = {"10.1": "10.1.0", "10.13": "10.13.3.9", "11.1": "11.1.0.106", "11.4": "11.4.0.106"}
MEMBER = "tensorrt_bindings/tensorrt.so"
_IDENTIFIER = re.compile(rb"[A-Za-z_][A-Za-z0-9_]*(?=\x00)")


def binary_path(version: str, cache: Path = CACHE) -> Path:
    return Path(cache) / BINARIES[version] / "tensorrt.so"


def fetch(versions=None, cache: Path = CACHE) -> dict[str, Path | str]:
    """version -> the extension module's path, or why it could not be had."""
    found: dict[str, Path | str] = {}
    for version in versions or BINARIES:
        target = binary_path(version, cache)
        if not target.is_file():
            try:
                _download(BINARIES[version], target)
            except (OSError, subprocess.SubprocessError, zipfile.BadZipFile, KeyError, StopIteration) as e:
                found[version] = f"tensorrt-cu12-bindings=={BINARIES[version]} could not be downloaded ({e})"
                continue
        found[version] = target
    return found


def _download(wheel_version: str, target: Path):
    with tempfile.TemporaryDirectory() as tmp:
        # Any CPython tag will do: the names are the same in each; the platforms are those
        # NVIDIA publishes for (manylinux_2_17 up to 10.7, manylinux_2_28 after).
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
                        "--python-version", "3.12", "--platform", "manylinux_2_28_x86_64",
                        "--platform", "manylinux_2_17_x86_64", "--dest", tmp,
                        f"tensorrt-cu12-bindings=={wheel_version}"],
                       check=True, capture_output=True, timeout=300)
        wheel = next(Path(tmp).glob("*.whl"))
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(".partial")
        with zipfile.ZipFile(wheel) as z:
            partial.write_bytes(z.read(MEMBER))
        partial.replace(target)


def registered_names(binary: Path) -> "Names":
    return Names(Path(binary).read_bytes())


class Names:
    """The C strings of a binary. A name is there when some string is it or ends with it:
    linkers merge a string into the tail of a longer one ("serialize" into "deserialize")."""

    def __init__(self, data: bytes):
        self._data = data
        self._strings = {m.group().decode() for m in _IDENTIFIER.finditer(data)}

    def __contains__(self, name: str) -> bool:
        return name in self._strings or name.encode() + b"\0" in self._data


if __name__ == "__main__":
    for label, result in fetch(cache=Path(sys.argv[1]) if len(sys.argv) > 1 else CACHE).items():
        print(f"TensorRT {label} bindings: {result}")
