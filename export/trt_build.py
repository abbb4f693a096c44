"""TensorRT engines from the exported ONNX graphs (TensorRT 10.x and 11.x Python API).

Strongly typed networks only: the precision comes from the graph (export/onnx_precision.py
casts it), which is the one route that exists on TensorRT 11 and that 10.x also takes.
One optimization profile per engine (engine/profiles.py), one timing cache shared by the
four builds and kept across rebuilds, and a manifest recording GPU, compute capability,
TensorRT version, precision and the model hash. Engines live under
<out_dir>/trt/<gpu>_sm<cc>_trt<version>_<precision>/.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from sam2long.engine.errors import SAM2LongError
from sam2long.engine.manifest import (STAGES, TRT_MANIFEST_NAME, EngineMismatchError, Manifest, TrtManifest,
                             check_graph_format, record_files, trt_engine_dir, trt_engine_key, verify_files)
from sam2long.engine.profiles import DEFAULT_OPT_BATCH, slot_limits, stage_profile
from sam2long.engine.stages import ModelGeometry
from sam2long.engine.trt_backend import gpu_identity, import_tensorrt

TIMING_CACHE_NAME = "timing.cache"
WORKSPACE_BYTES = 8 << 30


class TrtBuildError(SAM2LongError, RuntimeError):
    """A failed engine build; the message carries TensorRT's own errors in full."""


def strongly_typed_network(trt, builder):
    # STRONGLY_TYPED (1 on 10.x) is required there to honour the graph's types; 11.x
    # networks are always strongly typed and keep the flag as a deprecated, ignored 0. It
    # exists in every version we support (tests/data/tensorrt/tensorrt_api.json), and the
    # creation flags are a bit field of the members' values.
    return builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))


def parse_onnx(trt, network, logger, path: Path):
    parser = trt.OnnxParser(network, logger)
    # By path, so weights in an external-data side file are found.
    if not parser.parse_from_file(str(path)):
        errors = "\n".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise TrtBuildError(f"TensorRT could not parse {path}:\n{errors}")
    return parser


def build_stage_engine(trt, logger, onnx_path: Path, profile_shapes: dict, timing_cache_path: Path,
                       workspace_bytes: int = WORKSPACE_BYTES, precision: str = "fp32") -> bytes:
    builder = trt.Builder(logger)
    network = strongly_typed_network(trt, builder)
    parser = parse_onnx(trt, network, logger, onnx_path)  # noqa: F841 (keeps the parser alive)
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_bytes)
    tf32 = getattr(trt.BuilderFlag, "TF32", None)
    if precision == "fp32" and tf32 is not None:
        config.clear_flag(tf32)  # TensorRT allows TF32 by default: fp32 engines mean fp32
    # Without this preview feature (10.10 and newer), whether the working memory an
    # execution context asks for shrinks with the shapes really run depends on the plan:
    # it may stay at the profile's --max_batch (about 26 GiB for hiera-large at 10 objects x
    # 3 pathways). Older versions lack it and keep the profile maximum.
    resize = getattr(trt.PreviewFeature, "RUNTIME_ACTIVATION_RESIZE_10_10", None)
    if resize is not None:
        config.set_preview_feature(resize, True)
    cache_bytes = timing_cache_path.read_bytes() if timing_cache_path.is_file() else b""
    cache = config.create_timing_cache(cache_bytes)
    config.set_timing_cache(cache, ignore_mismatch=False)
    if profile_shapes:
        profile = builder.create_optimization_profile()
        for name, (lo, opt, hi) in profile_shapes.items():
            profile.set_shape(name, lo, opt, hi)
        config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise TrtBuildError(f"TensorRT failed to build an engine from {onnx_path} (see the log above)")
    tmp = timing_cache_path.with_suffix(".tmp")
    tmp.write_bytes(memoryview(config.get_timing_cache().serialize()))
    tmp.replace(timing_cache_path)
    return bytes(serialized)


def write_cast_graph(onnx_path: Path, precision: str, out_path: Path, external_data_bytes: int) -> Path:
    """The fp32 graph with the precision put into it (fp32: the graph itself)."""
    if precision == "fp32":
        return onnx_path
    import onnx

    from sam2long.export.onnx_precision import cast_graph

    from sam2long.export.graph_io import save_graph

    save_graph(cast_graph(onnx.load(str(onnx_path)), precision), out_path, external_data_bytes)
    return out_path


def build_trt_engines(onnx_dir: Path, manifest: Manifest, geo: ModelGeometry, precision: str,
                      opt_batch: int = DEFAULT_OPT_BATCH, force: bool = False,
                      external_data_bytes: int = 512 << 20, progress=None,
                      rebuild: str = "export/build_engines.py --targets trt") -> Path:
    """Build (or reuse) the four engines for this GPU next to the ONNX graphs."""
    check_graph_format(onnx_dir, manifest.graph_format, rebuild)
    trt = import_tensorrt()
    gpu_name, capability = gpu_identity()
    key = trt_engine_key(gpu_name, capability, trt.__version__, precision)
    folder = trt_engine_dir(onnx_dir, key)
    wanted = TrtManifest(
        config_sha256=manifest.config_sha256, checkpoint_sha256=manifest.checkpoint_sha256,
        config_name=manifest.config_name, precision=precision, gpu_name=gpu_name,
        compute_capability=capability, tensorrt_version=trt.__version__,
        max_batch=manifest.max_batch, opt_batch=opt_batch,
        files={stage: f"{stage}.engine" for stage in STAGES},
        graph_format=manifest.graph_format, slot_limits=slot_limits(geo))
    try:
        previous = TrtManifest.load(folder)
    except (FileNotFoundError, ValueError, RuntimeError):
        previous = None
    if not force and previous is not None and replace(previous, file_records={}) == wanted:
        try:
            verify_files(folder, previous.file_records, wanted.files.values(), rebuild)
            print(f"TensorRT engines in {folder} are up to date (use --force to rebuild)")
            return folder
        except EngineMismatchError as e:
            print(f"rebuilding: {str(e).splitlines()[0]}")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / TRT_MANIFEST_NAME).unlink(missing_ok=True)  # an interrupted build is never reused
    logger = trt.Logger(trt.Logger.WARNING)
    for stage in STAGES:
        if progress is not None:
            progress.set_postfix_str(f"TensorRT {stage} ({precision})")
        source = write_cast_graph(onnx_dir / manifest.trt_source(stage), precision,
                                  folder / f"{stage}.{precision}.onnx", external_data_bytes)
        profile = stage_profile(stage, geo, manifest.max_batch, opt_batch)
        engine = build_stage_engine(trt, logger, source, profile, folder / TIMING_CACHE_NAME,
                                    precision=precision)
        tmp = folder / (wanted.files[stage] + ".tmp")
        tmp.write_bytes(engine)
        tmp.replace(folder / wanted.files[stage])
        if progress is not None:
            progress.update()
    wanted.file_records = record_files(folder, wanted.files.values())
    wanted.save(folder)
    return folder
