#!/usr/bin/env python
"""Build inference engines from a SAM 2 checkpoint: the four stages as ONNX graphs, then
(with --targets trt, on the GPU that will run them) TensorRT engines.

Writes <out_dir>/<stage>.onnx (fp32, the contract every backend is checked against),
constants.npz (small tensors the runtime applies itself) and manifest.json (model identity,
geometry, opset, tool versions), which the runtime checks before use. TensorRT engines go to
<out_dir>/trt/<gpu>_sm<cc>_trt<version>_<precision>/ with their own manifest: they only run
on that GPU model and TensorRT version. A rerun with the same inputs reuses what is built
(--force to redo).
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from dataclasses import asdict
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch
from tqdm import tqdm

from engine.graph_backend import load_geometry
from engine.manifest import CONSTANTS_NAME, MANIFEST_NAME, STAGES, EngineMismatchError, Manifest, file_sha256
from engine.model_loading import ModelLoadError, load_sam2_model
from engine.profiles import DEFAULT_OPT_BATCH
from engine.stages import PRECISIONS
from engine.torch_stages import model_geometry
from engine.trt_backend import TensorRTUnavailable
from export.trt_build import TrtBuildError

OPSET = 18
EXTERNAL_DATA_BYTES = 512 << 20  # bigger graphs keep their weights in a side file


def export_stage(stage: str, module, inputs: dict, path: Path):
    import onnx

    from export.wrappers import dynamic_axes, output_names

    tmp = path.with_suffix(".tmp.onnx")
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, tuple(inputs.values()), str(tmp), input_names=list(inputs),
                          output_names=output_names(stage), dynamic_axes=dynamic_axes(stage, inputs),
                          opset_version=OPSET, dynamo=False, do_constant_folding=True)
    if tmp.stat().st_size > EXTERNAL_DATA_BYTES:
        graph = onnx.load(str(tmp))
        onnx.save_model(graph, str(tmp), save_as_external_data=True, all_tensors_to_one_file=True,
                        location=path.name + ".data")
    onnx.checker.check_model(str(tmp))  # by path: works with external data too
    tmp.replace(path)  # the weights side file already has its final name


def write_constants(model, geo, path: Path):
    np.savez(
        path,
        no_mem_embed=model.no_mem_embed.detach().reshape(-1).numpy(),
        mask_downsample_weight=model.mask_downsample.weight.detach().numpy(),
        mask_downsample_bias=model.mask_downsample.bias.detach().numpy(),
        **{f"geometry_{k}": np.array(v) for k, v in asdict(geo).items()},
    )


def build(sam2_cfg: str, sam2_checkpoint: str, out_dir: str, precision: str = "fp32",
          max_batch: int = 24, force: bool = False, targets=("onnx",),
          opt_batch: int = DEFAULT_OPT_BATCH) -> Path:
    """ONNX graphs in `out_dir` (always fp32), then TensorRT engines in `precision` when
    "trt" is among `targets`. Returns the folder of what was built last."""
    if "trt" in targets:  # fail before the long ONNX export, not after it
        from engine.trt_backend import gpu_identity, import_tensorrt

        import_tensorrt()
        gpu_identity()
    out = build_onnx(sam2_cfg, sam2_checkpoint, out_dir, max_batch, force)
    if "trt" not in targets:
        return out
    from export.trt_build import build_trt_engines

    manifest = Manifest.load(out)
    with tqdm(total=len(STAGES), desc="build TensorRT engines", unit="engine") as steps:
        folder = build_trt_engines(out, manifest, load_geometry(out), precision, opt_batch,
                                   force, EXTERNAL_DATA_BYTES, progress=steps)
    print(f"TensorRT engines ({precision}) in {folder}")
    return folder


def build_onnx(sam2_cfg: str, sam2_checkpoint: str, out_dir: str, max_batch: int = 24,
               force: bool = False) -> Path:
    import onnx
    import onnxruntime

    from export.wrappers import example_inputs, stage_modules

    out = Path(out_dir)
    steps = tqdm(total=len(STAGES) + 2, desc="build engines", unit="step")
    steps.set_postfix_str("loading model")
    loaded = load_sam2_model(sam2_cfg, sam2_checkpoint)
    model = loaded.model
    if model.binarize_mask_from_pts_for_mem_enc:
        raise ModelLoadError("binarize_mask_from_pts_for_mem_enc=true is not supported by the exported memory encoder")
    geo = model_geometry(model)
    manifest = Manifest(
        config_sha256=file_sha256(loaded.config_path),
        checkpoint_sha256=file_sha256(loaded.checkpoint_path),
        config_name=str(sam2_cfg), image_size=geo.image_size, num_maskmem=geo.num_maskmem,
        max_obj_ptrs=geo.max_obj_ptrs, precision="fp32", opset=OPSET, max_batch=max_batch,
        versions={"torch": torch.__version__, "onnx": onnx.__version__,
                  "onnxruntime": onnxruntime.__version__},
        files={stage: f"{stage}.onnx" for stage in STAGES},
    )
    steps.update()
    try:
        previous = Manifest.load(out)
    except (FileNotFoundError, EngineMismatchError):
        previous = None
    reusable = (not force and previous is not None
                and {k: v for k, v in asdict(previous).items() if k != "versions"}
                == {k: v for k, v in asdict(manifest).items() if k != "versions"}
                and all((out / f).is_file() for f in manifest.files.values()))
    if reusable:
        steps.set_postfix_str("up to date")
        steps.update(steps.total - steps.n)
        steps.close()
        print(f"engines in {out} are up to date (use --force to rebuild)")
        return out
    out.mkdir(parents=True, exist_ok=True)
    (out / MANIFEST_NAME).unlink(missing_ok=True)  # an interrupted build is never reused
    modules, inputs = stage_modules(model), example_inputs(geo)
    for stage in STAGES:
        steps.set_postfix_str(stage)
        export_stage(stage, modules[stage], inputs[stage], out / manifest.files[stage])
        steps.update()
    write_constants(model, geo, out / CONSTANTS_NAME)
    manifest.save(out)
    steps.update()
    steps.close()
    print(f"wrote {', '.join(manifest.files.values())}, {CONSTANTS_NAME} and manifest.json to {out}")
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
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
    p.add_argument("--max_batch", type=int, default=24,
                   help="objects x pathways the engines accept at most (checked at run time)")
    p.add_argument("--opt_batch", type=int, default=DEFAULT_OPT_BATCH,
                   help="objects x pathways TensorRT tunes its kernels for (the common case)")
    p.add_argument("--force", action="store_true", help="rebuild even if up to date")
    args = p.parse_args(argv)
    if args.max_batch < 1 or not 1 <= args.opt_batch <= args.max_batch:
        print("error: need 1 <= --opt_batch <= --max_batch", file=sys.stderr)
        return 2
    if args.precision != "fp32" and "trt" not in args.targets:
        print("error: --precision fp16/bf16 applies to TensorRT engines: add --targets trt "
              "(the ONNX graphs are always fp32)", file=sys.stderr)
        return 2
    try:
        build(args.sam2_cfg, args.sam2_checkpoint, args.out_dir, args.precision, args.max_batch,
              args.force, args.targets, args.opt_batch)
    except (ModelLoadError, TrtBuildError, TensorRTUnavailable) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    sys.exit(main())
