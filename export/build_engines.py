#!/usr/bin/env python
"""Build inference engines from a SAM 2 checkpoint: the four stages as ONNX graphs, then
(with --targets trt, on the GPU that will run them) TensorRT engines.

Writes <out_dir>/<stage>.onnx (fp32, the contract every backend is checked against),
constants.npz (small tensors the runtime applies itself) and manifest.json (model identity,
geometry, opset, tool versions), which the runtime checks before use. TensorRT engines go to
<out_dir>/trt/<gpu>_sm<cc>_trt<version>_<precision>/ with their own manifest: they only run
on that GPU model and TensorRT version. Both manifests record every file's size and SHA-256:
a rerun with the same inputs reuses what is built only when every file is whole (--force
to redo), and the runtime names a damaged file with the command that rebuilds it.
"""

from __future__ import annotations

if __name__ == "__main__":  # Ctrl-C or SIGTERM while importing: one line, not a traceback
    from sam2long.tools.startup import quiet_interrupts

    quiet_interrupts()

import argparse
import os
import sys
import warnings
from dataclasses import asdict
from pathlib import Path


import numpy as np
import torch
from sam2long.runtime.progress import progress

from sam2long.engine.file_hashes import known_sha256
from sam2long.engine.graph_backend import load_geometry
from sam2long.engine.manifest import (CONSTANTS_NAME, GRAPH_FORMAT, MANIFEST_NAME, STAGES, EngineMismatchError, Manifest,
                             build_command, record_files, verify_files)
from sam2long.engine.model_loading import ModelLoadError, load_sam2_model
from sam2long.engine.profiles import DEFAULT_OPT_BATCH
from sam2long.engine.stages import (DYNAMIC_DIMS, PRECISIONS, SLOT_DIMS, STAGE_SPECS, ModelGeometry, dynamic_axes, output_names,
                           resolve_dims)
from sam2long.engine.torch_stages import MemoryAttentionStage, model_geometry
from sam2long.export.graph_io import save_graph

OPSET = 18
EXTERNAL_DATA_BYTES = 512 << 20  # bigger graphs keep their weights in a side file
DEFAULT_MAX_OBJECTS, DEFAULT_NUM_PATHWAY = 4, 3


def spec_io_shapes(graph, stage: str, geo: ModelGeometry, dynamic: tuple[str, ...] = DYNAMIC_DIMS):
    """Write the stage spec's shapes on the graph's inputs and outputs: fixed dims as
    numbers, dynamic ones named (B, N; M, K in the memory attention). The exporter leaves outputs it cannot infer with
    made-up names ("Addfeat_dim_0"); the spec knows them."""
    specs = {t.name: t for t in (*STAGE_SPECS[stage].inputs, *STAGE_SPECS[stage].outputs)}
    for value in (*graph.input, *graph.output):
        spec = specs[value.name]
        dims = value.type.tensor_type.shape.dim
        for dim, name, size in zip(dims, spec.dims, resolve_dims(spec, geo, -1, -1)):
            if name in dynamic:
                dim.Clear()
                dim.dim_param = name
            else:
                dim.Clear()
                dim.dim_value = size


# Both memory-attention graphs take any number of frame and pointer slots: ONNX Runtime
# leaves out empty ones, SAM 2 with several prompt frames per object has more than M and K.
ATTENTION_DIMS = DYNAMIC_DIMS + SLOT_DIMS
TRT_SOURCES = {"memory_attention": "memory_attention.trt.onnx"}


def export_stage(stage: str, module, inputs: dict, path: Path, geo: ModelGeometry,
                 dynamic: tuple[str, ...] = DYNAMIC_DIMS) -> list[str]:
    """Export one stage to `path`, constants folded (export/onnx_fold.py) and I/O shapes
    from the stage spec; returns the files written (the graph, and its weights side file
    when large)."""
    import onnx

    from sam2long.export.onnx_fold import fold_constants

    traced = path.with_name(path.stem + ".traced.onnx")
    axes = {name: dims for name, dims in dynamic_axes(stage, dynamic).items()
            if name in inputs or name in output_names(stage)}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, tuple(inputs.values()), str(traced), input_names=list(inputs),
                          output_names=output_names(stage), dynamic_axes=axes,
                          opset_version=OPSET, dynamo=False, do_constant_folding=True,
                          custom_opsets={"com.microsoft": 1} if getattr(module, "fused", False) else None)
    graph = fold_constants(onnx.load(str(traced)))
    spec_io_shapes(graph.graph, stage, geo, dynamic)
    traced.unlink()
    for leftover in traced.parent.glob(traced.name + "*"):  # the exporter's own side files, if any
        leftover.unlink()
    return save_graph(graph, path, EXTERNAL_DATA_BYTES)


def write_constants(model, geo, path: Path):
    np.savez(
        path,
        no_mem_embed=model.no_mem_embed.detach().reshape(-1).numpy(),
        mask_downsample_weight=model.mask_downsample.weight.detach().numpy(),
        mask_downsample_bias=model.mask_downsample.bias.detach().numpy(),
        **{f"geometry_{k}": np.array(v) for k, v in asdict(geo).items()},
    )


def memory_cost(geo: ModelGeometry, max_batch: int) -> str:
    """What a batch row costs a TensorRT engine that does not fuse the memory attention."""
    row = 2 * geo.attention_score_bytes(4)
    return (f"memory attention: {geo.attention_keys} keys per query; an engine that does not fuse attention "
            f"holds about {row / 2**20:.0f} MiB per batch row in fp32 ({row / 2**21:.0f} MiB in fp16/bf16), "
            f"{max_batch * row / 2**30:.1f} GiB at --max_batch {max_batch}")


def build(sam2_cfg: str, sam2_checkpoint: str, out_dir: str, precision: str = "fp32",
          max_batch: int = DEFAULT_MAX_OBJECTS * DEFAULT_NUM_PATHWAY, force: bool = False, targets=("onnx",),
          opt_batch: int = DEFAULT_OPT_BATCH) -> Path:
    """ONNX graphs in `out_dir` (always fp32), then TensorRT engines in `precision` when
    "trt" is among `targets`. Returns the folder of what was built last."""
    if "trt" in targets:  # fail before the long ONNX export, not after it
        from sam2long.engine.trt_backend import gpu_identity, import_tensorrt

        import_tensorrt()
        gpu_identity()
    out = build_onnx(sam2_cfg, sam2_checkpoint, out_dir, max_batch, force)
    if "trt" not in targets:
        return out
    from sam2long.export.trt_build import build_trt_engines

    manifest = Manifest.load(out)
    with progress(total=len(STAGES), desc="build TensorRT engines", unit="engine") as steps:
        folder = build_trt_engines(out, manifest, load_geometry(out), precision, opt_batch,
                                   force, EXTERNAL_DATA_BYTES, progress=steps,
                                   rebuild=build_command(sam2_cfg, sam2_checkpoint, out_dir, precision, "trt"))
    print(f"TensorRT engines ({precision}) in {folder}")
    return folder


def _reusable(out: Path, manifest: Manifest, force: bool, rebuild: str) -> bool:
    """The graphs in `out` were built from the same inputs and every file is whole."""
    if force:
        return False
    try:
        previous = Manifest.load(out)
    except (FileNotFoundError, EngineMismatchError):
        return False
    def same(m):
        return {k: v for k, v in asdict(m).items() if k not in ("versions", "file_records")}

    if same(previous) != same(manifest):
        return False
    try:
        verify_files(out, previous.file_records, previous.required_files(), rebuild)
    except EngineMismatchError as e:
        print(f"rebuilding: {str(e).splitlines()[0]}")
        return False
    return True


def build_onnx(sam2_cfg: str, sam2_checkpoint: str, out_dir: str,
               max_batch: int = DEFAULT_MAX_OBJECTS * DEFAULT_NUM_PATHWAY, force: bool = False) -> Path:
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise EngineMismatchError(f"--out_dir {out} is a file, not a folder")
    steps = progress(total=len(STAGES) + 2, desc="build engines", unit="step")
    try:
        return _build_onnx(sam2_cfg, sam2_checkpoint, out, max_batch, force, steps)
    finally:
        steps.close()  # an error then starts on its own line


def _build_onnx(sam2_cfg: str, sam2_checkpoint: str, out: Path, max_batch: int, force: bool, steps) -> Path:
    import onnx
    import onnxruntime

    from sam2long.export.wrappers import example_inputs, stage_modules

    out_dir = str(out)
    steps.set_postfix_str("loading model")
    loaded = load_sam2_model(sam2_cfg, sam2_checkpoint)
    model = loaded.model
    if model.binarize_mask_from_pts_for_mem_enc:
        raise ModelLoadError("binarize_mask_from_pts_for_mem_enc=true is not supported by the exported memory encoder")
    geo = model_geometry(model)
    manifest = Manifest(
        config_sha256=known_sha256(loaded.config_path),
        checkpoint_sha256=known_sha256(loaded.checkpoint_path),
        config_name=str(sam2_cfg), image_size=geo.image_size, num_maskmem=geo.num_maskmem,
        max_obj_ptrs=geo.max_obj_ptrs, precision="fp32", opset=OPSET, max_batch=max_batch,
        versions={"torch": torch.__version__, "onnx": onnx.__version__,
                  "onnxruntime": onnxruntime.__version__},
        files={stage: f"{stage}.onnx" for stage in STAGES},
        trt_sources=dict(TRT_SOURCES), graph_format=GRAPH_FORMAT,
    )
    steps.update()
    if _reusable(out, manifest, force, build_command(sam2_cfg, sam2_checkpoint, out_dir)):
        steps.set_postfix_str("up to date")
        steps.update(steps.total - steps.n)
        steps.close()
        print(f"engines in {out} are up to date (use --force to rebuild)")
        return out
    out.mkdir(parents=True, exist_ok=True)
    (out / MANIFEST_NAME).unlink(missing_ok=True)  # an interrupted build is never reused
    modules, inputs = stage_modules(model), example_inputs(geo)
    written = [CONSTANTS_NAME]
    for stage in STAGES:
        steps.set_postfix_str(stage)
        if stage in manifest.trt_sources:  # two graphs: TensorRT's, and ONNX Runtime's (fused)
            written += export_stage(stage, modules[stage], inputs[stage], out / manifest.trt_sources[stage], geo,
                                    ATTENTION_DIMS)
            fused = MemoryAttentionStage(model, fused_attention=True).eval()
            written += export_stage(stage, fused, inputs[stage], out / manifest.files[stage], geo, ATTENTION_DIMS)
        else:
            written += export_stage(stage, modules[stage], inputs[stage], out / manifest.files[stage], geo)
        steps.update()
    write_constants(model, geo, out / CONSTANTS_NAME)
    manifest.file_records = record_files(out, written)
    manifest.save(out)
    steps.update()
    steps.close()
    print(f"wrote {', '.join(manifest.files.values())}, {CONSTANTS_NAME} and manifest.json to {out}")
    print(memory_cost(geo, max_batch))
    return out


class _DefaultsFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Defaults shown, except None: there the help says what giving nothing means."""

    def _get_help_string(self, action):
        return action.help if action.default is None else super()._get_help_string(action)


def main(argv=None) -> int:
    from sam2long.resources import add_version

    p = argparse.ArgumentParser(description=__doc__, formatter_class=_DefaultsFormatter)
    add_version(p)
    p.add_argument("--sam2_cfg", default="configs/sam2.1/sam2.1_hiera_b+.yaml",
                   help="SAM 2 config: a name inside the sam2 package or a path to a YAML file")
    p.add_argument("--sam2_checkpoint", default="./checkpoints/sam2.1_hiera_base_plus.pt",
                   help='checkpoint in the official layout {"model": state_dict}')
    p.add_argument("--out_dir", default="engines/sam2.1_hiera_b+", help="where the engines go")
    p.add_argument("--targets", nargs="+", default=["onnx"], choices=["onnx", "trt"],
                   help="what to build: onnx (graphs for --backend onnx; always built, the TensorRT "
                        "engines are made from them) and trt (TensorRT engines for this GPU, --backend trt)")
    p.add_argument("--precision", default="fp32", choices=list(PRECISIONS),
                   help="TensorRT engine precision: convolutions and matrix products in fp16/bf16, "
                        "normalisation, softmax and I/O in fp32 (ONNX graphs are always fp32)")
    p.add_argument("--max_objects", type=int, default=DEFAULT_MAX_OBJECTS,
                   help="objects tracked at once that the engines must serve (sets the default --max_batch)")
    p.add_argument("--num_pathway", type=int, default=DEFAULT_NUM_PATHWAY,
                   help="SAM2Long pathways the engines must serve (sets the default --max_batch)")
    p.add_argument("--max_batch", type=int, default=None,
                   help="rows (objects x pathways) one engine call takes at most (default: --max_objects x "
                        "--num_pathway, 12 with theirs). The memory attention's cross-attention scores are heads x H*W x "
                        "(M*H*W + K*C/Cm) values per row: about 450 MiB in fp32 for SAM 2.1 at 1024 px "
                        "(4096 queries x 28736 keys), and an engine that does not fuse attention holds "
                        "about two such tensors per row it runs. The runtime sizes that working memory "
                        "for the rows it runs (objects x pathways), not for --max_batch; the build "
                        "prints the model's figure")
    p.add_argument("--opt_batch", type=int, default=DEFAULT_OPT_BATCH,
                   help="objects x pathways TensorRT tunes its kernels for (the common case)")
    p.add_argument("--force", action="store_true", help="rebuild even if up to date")
    args = p.parse_args(argv)
    if args.max_batch is None:
        args.max_batch = args.max_objects * args.num_pathway
    if args.max_batch < 1 or not 1 <= args.opt_batch <= args.max_batch:
        print("error: need 1 <= --opt_batch <= --max_batch", file=sys.stderr)
        return 2
    if args.precision != "fp32" and "trt" not in args.targets:
        print("error: --precision fp16/bf16 applies to TensorRT engines: add --targets trt "
              "(the ONNX graphs are always fp32)", file=sys.stderr)
        return 2
    from sam2long.tools.cli import run_main

    def body() -> int:
        check_out_dir(args.out_dir, [args.sam2_cfg, args.sam2_checkpoint])
        build(args.sam2_cfg, args.sam2_checkpoint, args.out_dir, args.precision, args.max_batch,
              args.force, args.targets, args.opt_batch)
        return 0

    # Errors (a full or read-only disk included, naming the file) are one line and exit 2.
    return run_main(body, interrupted="a rerun rebuilds what is not whole")


def check_out_dir(out_dir: str, inputs: list[str]) -> None:
    """--out_dir, before the model loads: a folder (not a file), writable, and apart from
    the config and checkpoint (no engine file may replace an input)."""
    from sam2long.runtime.output_paths import OutputError, check_apart, probe_writable

    if Path(out_dir).exists() and not Path(out_dir).is_dir():
        raise OutputError(f"--out_dir {out_dir} is a file, not a folder")
    check_apart(out_dir, [p for p in inputs if os.path.exists(p)], "--out_dir")
    probe_writable(out_dir, "--out_dir")


if __name__ == "__main__":
    from sam2long.tools.startup import restore_interrupts

    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    restore_interrupts()
    sys.exit(main())
