"""Writing ONNX graphs: one file, or the graph plus one weights side file when large."""

from __future__ import annotations

from pathlib import Path

import onnx


def side_file(path: Path) -> Path:
    """The external-data file of graph `path` (`<name>.data` beside it)."""
    return path.with_name(path.name + ".data")


def save_graph(model: onnx.ModelProto, path: Path, external_data_bytes: int) -> list[str]:
    """Write `model` to `path`, its weights in `<name>.data` when the graph is larger than
    `external_data_bytes` (protobuf caps a file at 2 GiB). Returns the names of the files
    written. onnx.save_model appends to an existing side file, so a rebuild removes the old
    one first (else every --force rebuild grows it); a graph saved small removes a stale one."""
    path = Path(path)
    data = side_file(path)
    data.unlink(missing_ok=True)
    tmp = path.with_name(path.stem + ".tmp.onnx")
    large = model.ByteSize() > external_data_bytes
    onnx.save_model(model, str(tmp), save_as_external_data=large, all_tensors_to_one_file=True,
                    location=data.name)
    onnx.checker.check_model(str(tmp))  # by path: external data included
    tmp.replace(path)  # the side file already has its final name
    return [path.name, data.name] if large else [path.name]
