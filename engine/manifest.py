"""The manifest written beside exported graphs, and the check the runtime makes before use.

A mismatch between engines and the model the user asked for (another config, another
checkpoint, another image size or precision) is a clear error telling how to rebuild,
never wrong masks.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from sam2long.engine.errors import SAM2LongError
from sam2long.engine.file_hashes import file_sha256, known_sha256

MANIFEST_NAME = "manifest.json"
TRT_MANIFEST_NAME = "trt_manifest.json"
CONSTANTS_NAME = "constants.npz"
STAGES = ("image_encoder", "memory_attention", "mask_decoder", "memory_encoder")
# What the exported graphs take, raised when a graph's inputs change meaning. 1 (manifests
# without the field): the memory attention's graph for TensorRT has fixed frame and
# pointer slots, and ONNX Runtime's rotates the keys of only the model's M frames (more
# frames would give wrong masks, no error). 2: both take any number of slots. 3: ONNX
# Runtime's cross-attention attends to the memory's own channels and projects the values
# afterwards (the same product, faster). 4: the image encoder's global attention in query
# chunks (the same numbers; ONNX Runtime held 0.5 GiB less for b+).
GRAPH_FORMAT = 4


class EngineMismatchError(SAM2LongError, RuntimeError):
    """Engines that do not belong to the requested model; the message says how to rebuild."""


class _JsonManifest:
    """save/load of a manifest dataclass as `FILE_NAME` in an engine folder."""

    FILE_NAME: str

    def save(self, folder: Path):
        path = Path(folder) / self.FILE_NAME
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2, sort_keys=True))
        tmp.replace(path)

    @classmethod
    def load(cls, folder: Path):
        path = Path(folder) / cls.FILE_NAME
        if Path(folder).exists() and not Path(folder).is_dir():
            raise EngineMismatchError(f"{folder} is a file, not an engine folder")
        try:
            return cls(**json.loads(path.read_text()))
        except FileNotFoundError:
            raise
        except (ValueError, TypeError) as e:
            raise EngineMismatchError(f"{path} is not a manifest this version can read ({e})") from e


def _missing_stages(folder: Path, files: dict) -> list[str]:
    return [stage for stage in STAGES if not (Path(folder) / files.get(stage, "?")).is_file()]


def inside(folder: Path, name: str) -> Path:
    """`folder / name` for a manifest entry; an entry pointing outside the folder (an
    absolute path, `..`) is refused: a manifest only ever names its own files."""
    path = Path(name)
    if not name or path.is_absolute() or ".." in path.parts or path.drive:
        raise EngineMismatchError(f"the manifest in {folder} names {name!r}, outside its folder; "
                                  f"rebuild the engines with export/build_engines.py --force")
    return Path(folder) / path


def record_files(folder: Path, names) -> dict:
    """name -> {"size", "sha256"} of files in `folder`, as written at build time."""
    return {name: {"size": inside(folder, name).stat().st_size, "sha256": file_sha256(inside(folder, name))}
            for name in sorted(set(names))}


def verify_files(folder: Path, records: dict, required, rebuild: str):
    """Every required file has a record, and every recorded file is there with its size
    and hash: a truncated or damaged graph, weights file, constants.npz or engine is an
    EngineMismatchError naming it, with the rebuild command."""
    if not records:
        raise EngineMismatchError(f"the manifest in {folder} records no file sizes and hashes (built by an older "
                                  f"version); rebuild with: {rebuild} --force")
    for name in sorted(set(required) | set(records)):
        path = inside(folder, name)
        record = records.get(name)
        if record is None:
            raise EngineMismatchError(f"the manifest in {folder} has no record of {name}; rebuild with: {rebuild} --force")
        if not path.is_file():
            raise EngineMismatchError(f"{path} is missing; rebuild with: {rebuild} --force")
        size = path.stat().st_size
        if size != record["size"]:
            raise EngineMismatchError(f"{path} is damaged ({size} bytes, built as {record['size']}); "
                                      f"rebuild with: {rebuild} --force")
        if known_sha256(path) != record["sha256"]:
            raise EngineMismatchError(f"{path} is damaged (its SHA-256 differs from the build's); "
                                      f"rebuild with: {rebuild} --force")


@dataclass
class Manifest(_JsonManifest):
    FILE_NAME = MANIFEST_NAME

    config_sha256: str
    checkpoint_sha256: str
    config_name: str
    image_size: int
    num_maskmem: int
    max_obj_ptrs: int
    precision: str
    opset: int
    max_batch: int
    versions: dict = field(default_factory=dict)
    files: dict = field(default_factory=dict)  # stage -> graph file name (what ONNX Runtime runs)
    # stage -> graph TensorRT engines are built from, where it is not files[stage] (the
    # memory attention: standard attention ops and fixed slots instead of ONNX Runtime's
    # fused op and dynamic slots)
    trt_sources: dict = field(default_factory=dict)
    # every file the graphs need (graphs, weight side files, constants.npz) -> size, sha256
    file_records: dict = field(default_factory=dict)
    graph_format: int = 1  # GRAPH_FORMAT of the build; older manifests lack it

    def required_files(self) -> list[str]:
        return [*self.files.values(), *self.trt_sources.values(), CONSTANTS_NAME]

    def trt_source(self, stage: str) -> str:
        return self.trt_sources.get(stage, self.files[stage])

    def identity(self) -> dict:
        """What must match for the graphs to serve a model."""
        return {"config_sha256": self.config_sha256, "checkpoint_sha256": self.checkpoint_sha256,
                "precision": self.precision}


def build_command(sam2_cfg: str, sam2_checkpoint: str, out_dir: str, precision: str = "fp32",
                  targets: str = "onnx") -> str:
    return (f"python export/build_engines.py --sam2_cfg {sam2_cfg} --sam2_checkpoint "
            f"{sam2_checkpoint} --out_dir {out_dir} --targets {targets} --precision {precision}")


def check_manifest(folder: Path, config_path: Path, checkpoint_path: Path, precision: str,
                   sam2_cfg: str, sam2_checkpoint: str) -> Manifest:
    """The manifest in `folder`, after checking it was built for this config and checkpoint."""
    rebuild = build_command(sam2_cfg, sam2_checkpoint, str(folder), precision)
    try:
        manifest = Manifest.load(folder)
    except FileNotFoundError:
        raise EngineMismatchError(f"no engines in {folder} (no {MANIFEST_NAME}); build them with: {rebuild}") from None
    wanted = {"config_sha256": known_sha256(config_path),
              "checkpoint_sha256": known_sha256(checkpoint_path), "precision": precision}
    wrong = [k for k, v in wanted.items() if manifest.identity()[k] != v]
    if wrong:
        raise EngineMismatchError(
            f"the engines in {folder} were built for another model ({', '.join(wrong)} differ: "
            f"built from {manifest.config_name}); rebuild them with: {rebuild}")
    check_graph_format(folder, manifest.graph_format, rebuild)
    for name in (*manifest.files.values(), *manifest.trt_sources.values()):
        inside(folder, name)
    missing = _missing_stages(folder, manifest.files)
    if missing:
        raise EngineMismatchError(f"{folder} lacks the graphs of {', '.join(missing)}; rebuild with: {rebuild} --force")
    verify_files(folder, manifest.file_records, manifest.required_files(), rebuild)
    return manifest


def check_graph_format(folder: Path, graph_format: int, rebuild: str):
    """Graphs (or engines built from them) of another GRAPH_FORMAT are refused: a memory
    attention before format 2 would take a memory of several prompt frames and give wrong
    masks; later formats changed what the graphs cost (see GRAPH_FORMAT)."""
    if graph_format != GRAPH_FORMAT:
        age = "an older" if graph_format < GRAPH_FORMAT else "a newer"
        raise EngineMismatchError(
            f"the engines in {folder} were built by {age} version of export/build_engines.py (graph format "
            f"{graph_format}, this version takes {GRAPH_FORMAT}); rebuild them with: {rebuild} --force")


# -- TensorRT engines: per GPU model, compute capability, TensorRT version and precision --


@dataclass
class TrtManifest(_JsonManifest):
    FILE_NAME = TRT_MANIFEST_NAME

    config_sha256: str
    checkpoint_sha256: str
    config_name: str
    precision: str
    gpu_name: str
    compute_capability: str  # "9.0"
    tensorrt_version: str
    max_batch: int
    opt_batch: int
    files: dict = field(default_factory=dict)  # stage -> engine file name
    file_records: dict = field(default_factory=dict)  # engine file -> size, sha256
    graph_format: int = 1  # GRAPH_FORMAT of the graphs the engines were built from
    # the memory attention profile's most frame and pointer slots (M and K, with the
    # extra conditioning frames); {} before graph format 2 (fixed slots)
    slot_limits: dict = field(default_factory=dict)


def trt_engine_key(gpu_name: str, compute_capability: str, tensorrt_version: str, precision: str) -> str:
    """Folder name of one engine set: 'NVIDIA H100 80GB HBM3', '9.0', '10.13.0.35', 'fp16'
    -> 'nvidia-h100-80gb-hbm3_sm90_trt10.13.0.35_fp16'."""
    gpu = "-".join("".join(c if c.isalnum() else " " for c in gpu_name.lower()).split())
    return f"{gpu}_sm{compute_capability.replace('.', '')}_trt{tensorrt_version}_{precision}"


def trt_engine_dir(engine_dir: str | Path, key: str) -> Path:
    return Path(engine_dir) / "trt" / key


def check_trt_manifest(engine_dir: Path, onnx_manifest: Manifest, gpu_name: str,
                       compute_capability: str, tensorrt_version: str, precision: str,
                       sam2_cfg: str, sam2_checkpoint: str) -> tuple[Path, TrtManifest]:
    """The engine folder for this GPU / TensorRT / precision, after checking it serves the
    model whose ONNX graphs are in `engine_dir`."""
    rebuild = build_command(sam2_cfg, sam2_checkpoint, str(engine_dir), precision, "trt")
    key = trt_engine_key(gpu_name, compute_capability, tensorrt_version, precision)
    folder = trt_engine_dir(engine_dir, key)
    try:
        manifest = TrtManifest.load(folder)
    except FileNotFoundError:
        found = sorted(p.name for p in (Path(engine_dir) / "trt").glob("*") if (p / TRT_MANIFEST_NAME).is_file())
        have = f"; engines there are for: {', '.join(found)}" if found else ""
        raise EngineMismatchError(
            f"no TensorRT engines for {gpu_name} (sm{compute_capability.replace('.', '')}), TensorRT "
            f"{tensorrt_version}, {precision} in {folder}{have}. Engines are specific to a GPU "
            f"model and TensorRT version; build them on this machine with: {rebuild}") from None
    built_for = (manifest.gpu_name, manifest.compute_capability, manifest.tensorrt_version, manifest.precision)
    if built_for != (gpu_name, compute_capability, tensorrt_version, precision):
        raise EngineMismatchError(
            f"the engines in {folder} were built for {built_for}, not for "
            f"{(gpu_name, compute_capability, tensorrt_version, precision)}; rebuild with: {rebuild}")
    model = (manifest.config_sha256, manifest.checkpoint_sha256)
    if model != (onnx_manifest.config_sha256, onnx_manifest.checkpoint_sha256):
        raise EngineMismatchError(
            f"the TensorRT engines in {folder} were built from another model than the ONNX graphs "
            f"in {engine_dir}; rebuild with: {rebuild} --force")
    check_graph_format(folder, manifest.graph_format, rebuild)
    for name in manifest.files.values():
        inside(folder, name)
    missing = _missing_stages(folder, manifest.files)
    if missing:
        raise EngineMismatchError(f"{folder} lacks the engines of {', '.join(missing)}; rebuild with: {rebuild} --force")
    verify_files(folder, manifest.file_records, manifest.files.values(), rebuild)
    return folder, manifest
