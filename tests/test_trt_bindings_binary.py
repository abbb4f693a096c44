"""Every TensorRT name the project uses, checked against NVIDIA's shipped bindings binaries.

tests/test_trt_api_surface.py checks the names against a table extracted from TensorRT's
binding sources; here the same names are looked up in the real extension modules of the
`tensorrt-cu12-bindings` wheels (tests/trt_bindings.py) for the oldest version the README
claims (10.1), 10.13, the table's newest 11.x (11.1) and the newest 11.x released (11.4).
The table itself is checked against the binaries of its versions, and the check is shown
to tell versions apart. tools/run_tests.sh downloads the wheels (about 5 MB, cached in
.venv/trt-bindings/); without them the test downloads them, and skips only where that is
impossible (no package index), saying why.
"""

from __future__ import annotations

import pytest

from tests.fake_tensorrt import API
from tests.test_trt_api_surface import OPTIONAL, USED
from tests.trt_bindings import BINARIES, fetch, registered_names

_names: dict = {}


def _binary(version: str):
    if version not in _names:
        found = fetch([version])[version]
        _names[version] = found if isinstance(found, str) else registered_names(found)
    if isinstance(_names[version], str):
        pytest.skip(_names[version])
    return _names[version]


def _table_names(api: dict) -> set[str]:
    names = set(api["classes"]) | set(api["module"]) | {q.split(".")[-1] for q in api["enums"]}
    for entry in api["classes"].values():
        names |= set(entry["attrs"]) | set(entry["enums"])
    for members in api["enums"].values():
        names |= set(members)
    return names


@pytest.mark.parametrize("version", list(BINARIES))
def test_every_name_the_project_uses_is_in_the_binary(version):
    """USED in every version; OPTIONAL (looked up with a default) where the version has it:
    RUNTIME_ACTIVATION_RESIZE_10_10 from 10.10 on."""
    names = _binary(version)
    missing = sorted(f"{owner}.{name}" for owner, name in USED
                     if name not in names or (owner != "tensorrt" and owner not in names))
    assert not missing, f"TensorRT {BINARIES[version]} bindings lack {missing}"
    has_optional = tuple(map(int, version.split("."))) >= (10, 10)
    for owner, name in OPTIONAL:
        assert (name in names) == has_optional, (version, owner, name)


@pytest.mark.parametrize("version", [v for v in BINARIES if v in API])
def test_the_extracted_table_matches_the_binary(version):
    """Every name the table lists for a version is registered by that version's binary,
    and the names the table adds in 10.13 are (nearly all) absent from 10.1's binary: the
    lookup tells versions apart."""
    names = _binary(version)
    missing = sorted(n for n in _table_names(API[version]) if n not in names)
    assert not missing, f"the table lists names TensorRT {BINARIES[version]} does not register: {missing}"
    if version == "10.1":
        added = _table_names(API["10.13"]) - _table_names(API["10.1"])
        assert len(added) > 50 and len([n for n in added if n in names]) <= 2, sorted(n for n in added if n in names)
