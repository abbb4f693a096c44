#!/usr/bin/env python
"""Write a SAM 2 checkpoint of seeded random weights in the official layout.

For tests and offline runs only: the masks such weights give are meaningless. `--lively`
amplifies the memory read-out and the IoU / object-score heads so that pathways diverge
and the memory tree's branches fire (default random weights barely let memory matter).
`--no_obj_embed_gain` also scales the embedding SAM 2.1 adds to the memory of frames where
the object is absent: where that embedding is strong, an absent frame in memory changes the
next frames' object scores, so SAM 2 (which keeps such frames) and SAM2Long (which leaves
them out) part ways.
"""

from __future__ import annotations

if __name__ == "__main__":  # Ctrl-C or SIGTERM while importing: one line, not a traceback
    from sam2long.tools.startup import quiet_interrupts

    quiet_interrupts()

import argparse
import sys
from pathlib import Path


import torch

from sam2long.engine.errors import SAM2LongError


def random_model(sam2_cfg: str, seed: int, lively: bool, obj_score_bias: float = -4.0,
                 no_obj_embed_gain: float = 1.0):
    from sam2long.engine.model_loading import _instantiate_model, resolve_config_path

    torch.manual_seed(seed)
    model = _instantiate_model(resolve_config_path(sam2_cfg))
    if lively:
        with torch.no_grad():
            for layer in model.memory_attention.layers:
                layer.cross_attn_image.v_proj.weight.mul_(8)
                layer.cross_attn_image.out_proj.weight.mul_(8)
            decoder = model.sam_mask_decoder
            for linear in decoder.iou_prediction_head.layers:
                linear.weight.mul_(3)
            decoder.pred_obj_score_head.layers[-1].weight.mul_(30)
            decoder.pred_obj_score_head.layers[-1].bias.fill_(obj_score_bias)
    if no_obj_embed_gain != 1.0:
        if getattr(model, "no_obj_embed_spatial", None) is None:
            raise ValueError(f"{sam2_cfg} has no no-object memory embedding (no_obj_embed_spatial: false)")
        with torch.no_grad():
            model.no_obj_embed_spatial.mul_(no_obj_embed_gain)
    return model


def write_checkpoint(path: str | Path, sam2_cfg: str, seed: int = 0, lively: bool = False,
                     obj_score_bias: float = -4.0, no_obj_embed_gain: float = 1.0) -> Path:
    from sam2long.runtime.image_io import atomic_write

    path = Path(path)
    model = random_model(sam2_cfg, seed, lively, obj_score_bias, no_obj_embed_gain)
    path.parent.mkdir(parents=True, exist_ok=True)
    # A temporary name of its own and an atomic rename: several first runs at once each
    # write their own file and the last rename wins (the same bytes: the same seed).
    atomic_write(str(path), lambda f: torch.save({"model": model.state_dict()}, f))
    return path


def main(argv=None) -> int:
    from sam2long.resources import add_version, config_file

    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_version(p)
    p.add_argument("--sam2_cfg", default=str(config_file()),
                   help="config name in the sam2 package or YAML path")
    p.add_argument("--out", required=True, help="checkpoint file to write")
    p.add_argument("--seed", type=int, default=0, help="torch.manual_seed before building")
    p.add_argument("--lively", action="store_true",
                   help="amplify memory read-out and score heads so the memory tree matters")
    p.add_argument("--obj_score_bias", type=float, default=-4.0,
                   help="object-score head bias with --lively (centres scores near 0)")
    p.add_argument("--no_obj_embed_gain", type=float, default=1.0,
                   help="scale of the no-object memory embedding (SAM 2.1 configs): absent frames "
                        "in memory then move later object scores")
    args = p.parse_args(argv)
    from sam2long.engine.model_loading import resolve_config_path
    from sam2long.runtime.output_paths import OutputError, check_output_file

    try:
        check_output_file(args.out, [resolve_config_path(args.sam2_cfg)], "--out")
    except (OutputError, SAM2LongError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        out = write_checkpoint(args.out, args.sam2_cfg, args.seed, args.lively, args.obj_score_bias,
                               args.no_obj_embed_gain)
    except ValueError as e:
        p.error(str(e))
    print(f"wrote {out} (random weights: masks are meaningless)")
    return 0


if __name__ == "__main__":
    from sam2long.tools.startup import restore_interrupts

    restore_interrupts()
    sys.exit(main())
