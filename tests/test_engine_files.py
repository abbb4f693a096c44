"""Damaged or missing engine files: the manifests record every file's size and SHA-256 at
build time (graphs, their weights side files, constants.npz; TensorRT engines in
tests/test_trt_offline.py), the build re-verifies before reusing, and loading names the
damaged file with the command that rebuilds it, as one EngineMismatchError line, never a
protobuf or numpy traceback. Manifest entries pointing outside the engine folder are
refused. A rebuild of a graph with a weights side file does not grow the side file."""

from __future__ import annotations

import json
import shutil

import pytest

from sam2long.engine.manifest import CONSTANTS_NAME, MANIFEST_NAME, EngineMismatchError, Manifest
from tests.conftest import MICRO_CFG

pytest.importorskip("onnxruntime", reason="onnxruntime is installed by tools/setup_env.sh")


@pytest.fixture(scope="module")
def built(tmp_path_factory, micro_checkpoints):
    from sam2long.export.build_engines import build

    return build(MICRO_CFG, str(micro_checkpoints["lively"]), str(tmp_path_factory.mktemp("files") / "eng"))


@pytest.fixture
def engines(built, tmp_path):
    """A copy of the built engines this test may damage."""
    return shutil.copytree(built, tmp_path / "eng")


def _load(engines, micro_checkpoints):
    from sam2long.engine.factory import build_backend

    return build_backend("onnx", MICRO_CFG, str(micro_checkpoints["lively"]), "cpu", str(engines))


def _one_line_naming(error, path):
    message = str(error.value)
    assert "\n" not in message, message
    assert str(path) in message and "export/build_engines.py" in message and "--force" in message, message


def test_the_manifest_records_every_file(engines):
    manifest = Manifest.load(engines)
    assert set(manifest.file_records) == {*manifest.files.values(), *manifest.trt_sources.values(), CONSTANTS_NAME}
    for name, record in manifest.file_records.items():
        assert record["size"] == (engines / name).stat().st_size and len(record["sha256"]) == 64


@pytest.mark.parametrize("victim", ["mask_decoder.onnx", CONSTANTS_NAME])
def test_a_truncated_file_is_named_with_the_rebuild_command(engines, micro_checkpoints, victim):
    path = engines / victim
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(EngineMismatchError) as caught:
        _load(engines, micro_checkpoints)
    _one_line_naming(caught, path)
    assert "is damaged" in str(caught.value)


def test_a_flipped_byte_is_found_by_its_hash(engines, micro_checkpoints):
    path = engines / "memory_encoder.onnx"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(EngineMismatchError, match="SHA-256") as caught:
        _load(engines, micro_checkpoints)
    _one_line_naming(caught, path)


def test_a_missing_constants_file_is_named(engines, micro_checkpoints):
    (engines / CONSTANTS_NAME).unlink()
    with pytest.raises(EngineMismatchError, match="is missing") as caught:
        _load(engines, micro_checkpoints)
    _one_line_naming(caught, engines / CONSTANTS_NAME)


def test_vos_inference_reports_a_missing_constants_file(engines, micro_checkpoints, tmp_path, capsys):
    """The dataset tool prints the named file and the rebuild command, exit code 2."""
    from sam2long.tools import vos_inference

    (engines / CONSTANTS_NAME).unlink()
    code = vos_inference.main([
        "--backend", "onnx", "--engine_dir", str(engines), "--device", "cpu", "--sam2_cfg", MICRO_CFG,
        "--sam2_checkpoint", str(micro_checkpoints["lively"]), "--base_video_dir", "samples/shapes/JPEGImages",
        "--input_mask_dir", "samples/shapes/Annotations", "--output_mask_dir", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and f"{engines / CONSTANTS_NAME} is missing" in err and "Traceback" not in err


def test_entries_outside_the_folder_are_refused(engines, micro_checkpoints):
    manifest = json.loads((engines / MANIFEST_NAME).read_text())
    for outside in ("../elsewhere.onnx", "/etc/passwd"):
        changed = dict(manifest, files={**manifest["files"], "mask_decoder": outside})
        (engines / MANIFEST_NAME).write_text(json.dumps(changed))
        with pytest.raises(EngineMismatchError, match="outside its folder"):
            _load(engines, micro_checkpoints)
    changed = dict(manifest, file_records={**manifest["file_records"], "../x": {"size": 1, "sha256": "0"}})
    (engines / MANIFEST_NAME).write_text(json.dumps(changed))
    with pytest.raises(EngineMismatchError, match="outside its folder"):
        _load(engines, micro_checkpoints)


def test_the_build_rebuilds_damaged_files_instead_of_reusing_them(engines, micro_checkpoints, capsys):
    from sam2long.export.build_engines import build

    stamp = (engines / "mask_decoder.onnx").stat().st_mtime_ns
    path = engines / CONSTANTS_NAME
    path.write_bytes(path.read_bytes()[:100])
    build(MICRO_CFG, str(micro_checkpoints["lively"]), str(engines))
    out = capsys.readouterr().out
    assert "constants.npz is damaged" in out and "up to date" not in out
    assert (engines / "mask_decoder.onnx").stat().st_mtime_ns != stamp
    _load(engines, micro_checkpoints)  # whole again
    build(MICRO_CFG, str(micro_checkpoints["lively"]), str(engines))
    assert "up to date" in capsys.readouterr().out


def test_out_dir_that_is_a_file_is_a_one_line_error(tmp_path, micro_checkpoints, capsys):
    from sam2long.export.build_engines import main

    target = tmp_path / "a_file"
    target.write_text("not a folder")
    code = main(["--sam2_cfg", MICRO_CFG, "--sam2_checkpoint", str(micro_checkpoints["lively"]),
                 "--out_dir", str(target)])
    err = capsys.readouterr().err
    assert code == 2 and err.strip() == f"error: --out_dir {target} is a file, not a folder"


def test_rebuilt_weights_side_files_do_not_grow(tmp_path, micro_checkpoints, monkeypatch):
    """onnx.save_model appends to an existing side file: a --force rebuild of a graph with
    external weights (hiera-large's encoder) must give the same file, not a longer one;
    the same for the fp16/bf16 graphs the TensorRT build writes."""
    import onnx

    import sam2long.export.build_engines as build_engines
    from sam2long.export.trt_build import write_cast_graph

    monkeypatch.setattr(build_engines, "EXTERNAL_DATA_BYTES", 1)  # treat every graph as large
    out = tmp_path / "eng"
    sizes = []
    for _ in range(2):
        build_engines.build(MICRO_CFG, str(micro_checkpoints["lively"]), str(out), force=True)
        sizes.append((out / "mask_decoder.onnx.data").stat().st_size)
    assert sizes[0] == sizes[1]
    assert "mask_decoder.onnx.data" in Manifest.load(out).file_records
    cast = []
    for _ in range(2):
        write_cast_graph(out / "mask_decoder.onnx", "fp16", tmp_path / "mask_decoder.fp16.onnx", 1)
        cast.append((tmp_path / "mask_decoder.fp16.onnx.data").stat().st_size)
    assert cast[0] == cast[1]
    onnx.checker.check_model(str(tmp_path / "mask_decoder.fp16.onnx"))
