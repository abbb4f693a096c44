#!/usr/bin/env python
"""Track objects through a video with SAM2Long and write the video with their masks drawn on.

Prompt each object on its start frame with clicks (--points, positive or negative via
--labels) and/or a box (--box). One object needs no --object; for several, start each
object's prompt group with --object ID (its --points/--labels/--box/--frame follow it), or
give them all in a --prompts file. An object may have prompts on several frames (one
group per frame, the same ID); it starts on its first prompt frame. All objects are
tracked together in one pass, with SAM2Long's memory tree or (--mode sam2) plain SAM 2.

The input is any video FFmpeg opens (mp4, mov, avi, webm, ...) or a folder of frames,
decoded as a stream. The output is an H.264 MP4 of the same size and frame rate with each
object's mask in its own colour, outlined and tagged with its id (audio is dropped), plus
optional PNG masks in the dataset tool's layouts.
"""

from __future__ import annotations

if __name__ == "__main__":  # Ctrl-C or SIGTERM while importing: one line, not a traceback
    from sam2long.tools.startup import quiet_interrupts

    quiet_interrupts()

import argparse
import sys
from pathlib import Path


from sam2long.engine.errors import ConfigError
from sam2long.resources import add_version, sample_file
from sam2long.runtime.progress import progress
from sam2long.runtime.prompts import (PROMPT_FILE_HELP, click_prompt, first_prompt_frames, load_prompt_file,
                                      one_frame_per_object)
from sam2long.runtime.video_io import VideoSource
from sam2long.runtime.video_job import VideoOutputs, run_predictor_job, run_video_job
from sam2long.tools.cli import (HelpFormatter, add_backend_args, add_model_args, add_tracker_args,
                                build_chosen_backend, finite_float, load_backend, make_tracker, model_files,
                                model_inputs, positive_float, run_main, tracker_config)

MODES = ("sam2long", "sam2")
FIRST_OBJECT_ID = 1
SAMPLE_CLICK = (70, 120)
_GROUP_FIELDS = ("points", "labels", "box", "frame")

EPILOG = f"""\
examples:
  one object:      --points 420 300 600 100 --labels 1 0
  three objects:   --object 1 --points 420 300 --object 2 --box 10 20 200 180 \\
                   --object 3 --points 50 60 --frame 40
  a second frame:  --object 1 --points 420 300 --object 1 --points 400 310 --frame 30
  from a file:     --prompts prompts.json

{PROMPT_FILE_HELP}
"""


class _StartObject(argparse.Action):
    """--object ID: the prompt flags after it belong to object ID."""

    def __call__(self, parser, namespace, value, option_string=None):
        namespace.objects.append({"id": value, "flag": f"--object {value}"})


class _GroupField(argparse.Action):
    """--points/--labels/--box/--frame: a field of the current object (the first object
    when no --object came before)."""

    def __call__(self, parser, namespace, values, option_string=None):
        if not namespace.objects:
            namespace.objects.append({"id": None, "flag": "the first object"})
        group = namespace.objects[-1]
        if self.dest in group:
            parser.error(f"{option_string} given twice for {group['flag']}: start the next object "
                         "with --object ID (the same ID again for a prompt on another frame)")
        group[self.dest] = values


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, epilog=EPILOG,
                                formatter_class=HelpFormatter)
    p.set_defaults(objects=[])
    add_version(p)
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--video_path", help="video file or folder of frames")
    source.add_argument("--sample", action="store_true",
                        help="the shipped sample clip (shapes.mp4, 24 frames) as --video_path, with a "
                             f"click on its object at {' '.join(map(str, SAMPLE_CLICK))} on frame 0 "
                             "unless prompts are given: the README's main job from any folder")
    prompts = p.add_argument_group("prompts (per object)")
    prompts.add_argument("--object", type=int, action=_StartObject, metavar="ID",
                         help="start the prompt group of object ID (1..255 for palette PNGs); the "
                              "--points/--labels/--box/--frame after it are that object's")
    prompts.add_argument("--points", type=finite_float, nargs="+", metavar="X Y", action=_GroupField,
                         help="click coordinates in video pixels: x1 y1 x2 y2 ...")
    prompts.add_argument("--labels", type=int, nargs="+", action=_GroupField,
                         help="one per point: 1 positive, 0 negative (default: all positive)")
    prompts.add_argument("--box", type=finite_float, nargs=4, metavar=("X0", "Y0", "X1", "Y1"),
                         action=_GroupField, help="box around the object in video pixels")
    prompts.add_argument("--frame", type=int, action=_GroupField,
                         help="frame the prompt is on (default 0); an object starts on its first "
                              "prompt frame")
    prompts.add_argument("--prompts", default=None, metavar="FILE",
                         help="JSON file with every object's prompts (instead of the flags above)")
    out = p.add_argument_group("outputs")
    out.add_argument("--output_video", default=None,
                     help="output MP4 (default: outputs/<video name>_sam2long.mp4); a rerun replaces what "
                          "this tool wrote there, anything else needs --overwrite")
    out.add_argument("--output_mask_dir", default=None,
                     help="also write PNG masks here: one palette PNG per frame with object ids as "
                          "values (the dataset tool's DAVIS layout), or see --per_obj_png_file")
    out.add_argument("--per_obj_png_file", action="store_true",
                     help="masks in the SA-V layout: <object:03d>/<frame>.png, one binary PNG per "
                          "object (no non-overlap rule)")
    out.add_argument("--overwrite", action="store_true",
                     help="replace outputs this tool did not write (or that changed since): an existing "
                          "--output_video, and masks in --output_mask_dir (never mixed with new ones)")
    out.add_argument("--fps", type=positive_float, default=24.0,
                     help="frame rate of the output for a folder of frames (a video keeps its own)")
    model = p.add_argument_group("model and backend")
    add_model_args(model)
    add_backend_args(model)
    tree = p.add_argument_group("tracking")
    tree.add_argument("--mode", default="sam2long", choices=MODES,
                      help="sam2long: SAM2Long's memory tree (the flags below); sam2: plain SAM 2, the "
                           "masks of sam2's SAM2VideoPredictor for the same prompts (without its "
                           "post-processing, as sam2's vos_inference)")
    add_tracker_args(tree)
    return p


def object_prompts(args) -> list:
    """The prompts the flags (or the prompts file) give: one per object and prompt frame."""
    if args.prompts:
        if args.objects:
            raise ConfigError("give the objects either with --prompts or with --points/--box/--object, not both")
        return load_prompt_file(args.prompts)
    if not args.objects:
        raise ConfigError("give the object with --points and/or --box (several objects: --object ID "
                          "before each group, or --prompts FILE)")
    implicit = args.objects[0]["id"] is None
    if implicit and len(args.objects) > 1:
        raise ConfigError("with several objects, start every object's prompt flags with --object ID "
                          "(some --points/--labels/--box/--frame come before the first --object)")
    return [click_prompt(FIRST_OBJECT_ID if group["id"] is None else group["id"], group.get("frame", 0),
                         group.get("points"), group.get("labels"), group.get("box"))
            for group in args.objects]


def default_output(video_path: str) -> str:
    return str(Path("outputs") / f"{Path(video_path.rstrip('/')).stem}_sam2long.mp4")


def use_sample(args) -> None:
    """--sample: the shipped clip, clicked where its object is unless prompts are given."""
    args.video_path = str(sample_file())
    if not args.objects and not args.prompts:
        args.objects.append({"id": None, "flag": "the sample's object", "points": list(SAMPLE_CLICK)})


def make_predictor(args):
    """The interactive predictor (sam2long.predictor) over the backend the flags ask for,
    without sam2's post-processing, so its masks are the batch tools' kind."""
    from sam2long.predictor import SAM2LongVideoPredictor
    from sam2long.runtime.memory_bank import Sam2Rules

    if args.cuda_graphs:
        raise ConfigError("--cuda_graphs is for the batch tracker: --mode sam2long with one prompt frame "
                          "per object")
    cfg, checkpoint = model_files(args)
    backend = build_chosen_backend(args.backend, cfg, checkpoint, args.device, args.engine_dir, args.precision,
                                   build_graphs=not args.no_build_graphs)
    rules = Sam2Rules.from_config_file(cfg)
    return SAM2LongVideoPredictor(backend, rules, args.mode, tracker_config(args))


def run(args) -> int:
    if args.sample:
        use_sample(args)
    source = VideoSource(args.video_path, folder_fps=args.fps)
    info = source.info
    prompts = object_prompts(args)
    from sam2long.runtime.prompts import prompt_file_inputs, validate_prompts
    from sam2long.runtime.video_job import claim_outputs

    inputs = [*(prompt_file_inputs(args.prompts) if args.prompts else []), *model_inputs(args)]
    outputs = VideoOutputs(args.output_video or default_output(args.video_path), args.output_mask_dir,
                           args.per_obj_png_file, args.overwrite, tuple(inputs))
    validate_prompts(prompts, (info.height, info.width), info.num_frames, several_frames=True)
    obj_ids = list(first_prompt_frames(prompts))
    # The batch tracker is the fast path (streamed, flat memory); the predictor takes plain
    # SAM 2 and prompts on several frames of one object.
    batch = args.mode == "sam2long" and one_frame_per_object(prompts)
    # Checked and locked before the model loads: a bad path or a second writer costs nothing.
    with claim_outputs(outputs, source, obj_ids):
        if batch:
            backend = load_backend(args)
            tracker = make_tracker(args, backend)
        else:
            predictor = make_predictor(args)
            backend = predictor.backend
        several = "" if one_frame_per_object(prompts) else f", {len(prompts)} prompt frames"
        print(f"{args.video_path}: {info.num_frames} frames, {info.width}x{info.height} at "
              f"{float(info.fps):.2f} fps; {len(obj_ids)} object(s){several}; mode {args.mode}; backend "
              f"{backend.describe()} ({args.precision}) on {backend.device}")
        if batch:
            fps = run_video_job(tracker, source, prompts, outputs, progress=progress)
        else:
            fps = run_predictor_job(predictor, source, prompts, outputs, progress=progress)
    masks = f" and masks in {outputs.mask_dir}" if outputs.mask_dir else ""
    print(f"wrote {outputs.video}{masks} ({info.num_frames} frames, {fps:.2f} frames/s)")
    return 0


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return run_main(lambda: run(args))


if __name__ == "__main__":
    from sam2long.tools.startup import restore_interrupts

    restore_interrupts()
    sys.exit(main())
