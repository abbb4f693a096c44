"""Shape profiles for TensorRT (its own builder and ONNX Runtime's TensorRT EP).

Every dynamic input gets min / opt / max shapes. The batch (objects x pathways) runs from 1
to the engines' max_batch with opt at the common size (one object, three pathways); the
decoder's click count runs from 1 to MAX_CLICKS with opt at one click. Memory slots are
fixed, so the steady state needs no separate profile (PRIOR_ART: dynamic memory sizes
fuse poorly).
"""

from __future__ import annotations

from sam2long.engine.stages import DYNAMIC_DIMS, STAGE_SPECS, ModelGeometry, resolve_dims

MAX_CLICKS = 16  # decoder point inputs: boxes count as two
DEFAULT_OPT_BATCH = 3
PROFILE_KINDS = ("min", "opt", "max")


def stage_profile(stage: str, geo: ModelGeometry, max_batch: int,
                  opt_batch: int = DEFAULT_OPT_BATCH) -> dict[str, tuple[tuple[int, ...], ...]]:
    """input name -> (min, opt, max) shapes for every input of `stage` with a dynamic dim
    in the stage spec (batch B, clicks N); {} when the stage's graph is static (the image
    encoder)."""
    if max_batch < 1:
        raise ValueError(f"max_batch must be >= 1, got {max_batch}")
    batches = {"min": 1, "opt": max(1, min(opt_batch, max_batch)), "max": max_batch}
    clicks = {"min": 1, "opt": 1, "max": MAX_CLICKS}
    dynamic = [t for t in STAGE_SPECS[stage].inputs if any(d in DYNAMIC_DIMS for d in t.dims)]
    return {t.name: tuple(resolve_dims(t, geo, batches[k], clicks[k]) for k in PROFILE_KINDS) for t in dynamic}


def ort_trt_profile_options(stage: str, geo: ModelGeometry, max_batch: int,
                            opt_batch: int = DEFAULT_OPT_BATCH) -> dict[str, str]:
    """The same profile as ONNX Runtime TensorRT EP options (`trt_profile_*_shapes`)."""
    profile = stage_profile(stage, geo, max_batch, opt_batch)
    if not profile:
        return {}
    return {f"trt_profile_{kind}_shapes": ",".join(
        f"{name}:{'x'.join(map(str, shapes[i]))}" for name, shapes in profile.items())
        for i, kind in enumerate(PROFILE_KINDS)}
