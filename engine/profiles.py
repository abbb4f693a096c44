"""Shape profiles for TensorRT (its own builder and ONNX Runtime's TensorRT EP).

Every dynamic input gets min / opt / max shapes. The batch (objects x pathways) runs from 1
to the engines' max_batch with opt at the common size (one object, three pathways); the
decoder's click count runs from 1 to MAX_CLICKS with opt at one click. The memory
attention's frame slots run from the model's M (what the batch tracker always gives) to
M + EXTRA_SLOTS, and its pointer slots from K to K + EXTRA_SLOTS, with opt at M and K: the
tracker's shape is the one TensorRT tunes for (PRIOR_ART: dynamic memory sizes fuse
poorly), and the extra slots serve SAM 2's several conditioning frames per object (each
one beyond the first adds a frame slot and a pointer slot).
"""

from __future__ import annotations

from sam2long.engine.stages import DYNAMIC_DIMS, SLOT_DIMS, STAGE_SPECS, ModelGeometry, resolve_dims

MAX_CLICKS = 16  # decoder point inputs: boxes count as two
# Conditioning (prompt) frames per object beyond the first that the TensorRT profiles take:
# 9 prompt frames per object in all. Not more: an engine's working memory may be sized for
# the profile's largest shape (TensorRT before 10.10), and an unfused attention's scores
# grow with the frame slots (M + 8 is about twice M's for SAM 2.1).
EXTRA_SLOTS = 8
DEFAULT_OPT_BATCH = 3
PROFILE_KINDS = ("min", "opt", "max")


def slot_limits(geo: ModelGeometry) -> dict[str, int]:
    """The most frame slots (M) and pointer slots (K) the profiles take."""
    return {"M": geo.num_maskmem + EXTRA_SLOTS, "K": geo.max_obj_ptrs + EXTRA_SLOTS}


def stage_profile(stage: str, geo: ModelGeometry, max_batch: int,
                  opt_batch: int = DEFAULT_OPT_BATCH) -> dict[str, tuple[tuple[int, ...], ...]]:
    """input name -> (min, opt, max) shapes for every input of `stage` with a dynamic dim
    in the stage spec (batch B, clicks N, frame and pointer slots M, K); {} when the stage's
    graph is static (the image encoder)."""
    if max_batch < 1:
        raise ValueError(f"max_batch must be >= 1, got {max_batch}")
    batches = {"min": 1, "opt": max(1, min(opt_batch, max_batch)), "max": max_batch}
    clicks = {"min": 1, "opt": 1, "max": MAX_CLICKS}
    slots = {"min": None, "opt": None, "max": slot_limits(geo)}  # None: the model's M and K
    dynamic = [t for t in STAGE_SPECS[stage].inputs if any(d in DYNAMIC_DIMS + SLOT_DIMS for d in t.dims)]
    return {t.name: tuple(resolve_dims(t, geo, batches[k], clicks[k], slots[k]) for k in PROFILE_KINDS)
            for t in dynamic}


def ort_trt_profile_options(stage: str, geo: ModelGeometry, max_batch: int,
                            opt_batch: int = DEFAULT_OPT_BATCH) -> dict[str, str]:
    """The same profile as ONNX Runtime TensorRT EP options (`trt_profile_*_shapes`)."""
    profile = stage_profile(stage, geo, max_batch, opt_batch)
    if not profile:
        return {}
    return {f"trt_profile_{kind}_shapes": ",".join(
        f"{name}:{'x'.join(map(str, shapes[i]))}" for name, shapes in profile.items())
        for i, kind in enumerate(PROFILE_KINDS)}
