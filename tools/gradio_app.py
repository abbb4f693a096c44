#!/usr/bin/env python
"""SAM2Long web demo: upload a video (or take the sample), click objects on the first frame
(positive / negative clicks; "Add object" starts the next one), see every object's mask at
once, then track them all through the video in one pass and get the overlaid video and the
masks.

The model is loaded once, on the fastest backend this machine has. Each browser session
keeps its own video, objects and clicks. Click previews and tracking share the one model:
they take turns (a click waits while another session's Track runs).
"""

from __future__ import annotations

import argparse
import atexit
import shutil
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path


import gradio as gr
import numpy as np
from PIL import Image

from sam2long.engine.errors import SAM2LongError
from sam2long.runtime.config import TrackerConfig
from sam2long.runtime.frames import preprocess_frame
from sam2long.runtime.postprocess import to_video_resolution
from sam2long.runtime.prompts import ObjectPrompt, click_prompt
from sam2long.runtime.tracker import SAM2LongTracker, decode_prompt
from sam2long.runtime.video_io import VideoSource
from sam2long.runtime.video_job import VideoOutputs, overlay_frame, run_video_job
from sam2long.resources import add_version, sample_file
from sam2long.tools.cli import HelpFormatter, add_backend_args, add_model_args, report_error

SAMPLE_VIDEO = sample_file()
CLICK_COLOURS = {1: (40, 220, 60), 0: (230, 40, 40)}
# The clickable frame is shown with its longer side at least this many pixels (a 320x240
# video would be tiny at its own size). Gradio never scales an image up, and maps a click to
# the shown image's pixels, so the frame is enlarged here and clicks are mapped back.
DISPLAY_SIDE = 720


def display_scale(hw) -> float:
    return max(1.0, DISPLAY_SIDE / max(hw))


def for_display(rgb: np.ndarray) -> np.ndarray:
    """The frame as the page shows it (enlarged when small)."""
    scale = display_scale(rgb.shape[:2])
    if scale == 1.0:
        return rgb
    h, w = rgb.shape[:2]
    return np.asarray(Image.fromarray(rgb).resize((round(w * scale), round(h * scale)), Image.BILINEAR))


def click_to_frame(index, hw) -> tuple[float, float]:
    """A click on the shown frame (its pixel) -> the video frame's pixel coordinates."""
    scale = display_scale(hw)
    x, y = ((float(v) + 0.5) / scale - 0.5 for v in index)
    return min(max(x, 0.0), hw[1] - 1.0), min(max(y, 0.0), hw[0] - 1.0)


def _draw_clicks(rgb: np.ndarray, points, labels, radius: int = 5) -> np.ndarray:
    out = rgb.copy()
    yy, xx = np.ogrid[: rgb.shape[0], : rgb.shape[1]]
    for (x, y), label in zip(points, labels):
        ring = np.abs(np.hypot(xx - x, yy - y) - radius) <= 1.5
        dot = np.hypot(xx - x, yy - y) <= radius - 1.5
        out[dot] = CLICK_COLOURS[label]
        out[ring] = (255, 255, 255)
    return out


@dataclass
class ObjectClicks:
    points: list[tuple[float, float]] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    logits: np.ndarray | None = None  # the preview mask at video resolution, for these clicks


@dataclass
class DemoSession:
    """One browser session: its video, its objects' clicks, the first frame's features and
    the folder of its last Track (removed by the next Track and when the session ends)."""

    video: str
    first: np.ndarray
    num_frames: int
    objects: dict[int, ObjectClicks] = field(default_factory=lambda: {1: ObjectClicks()})
    current: int = 1
    feats: object | None = None
    work_dir: Path | None = None

    def choices(self) -> list[str]:
        return [str(obj) for obj in self.objects]

    def prompts(self) -> list[ObjectPrompt]:
        empty = [obj for obj, c in self.objects.items() if not c.points]
        if empty:
            raise SAM2LongError(f"object(s) {', '.join(map(str, empty))} have no clicks: click them "
                                "on the frame, or remove them")
        return [click_prompt(obj, 0, np.array(c.points), np.array(c.labels))
                for obj, c in self.objects.items()]


def _remove_work_dir(session: DemoSession | None):
    if session is not None and session.work_dir is not None:
        shutil.rmtree(session.work_dir, ignore_errors=True)
        session.work_dir = None


class Demo:
    """The model and what every event does with one session's state (a DemoSession)."""

    def __init__(self, backend, max_frames: int | None, note: str = "", cuda_graphs: bool = False):
        self.backend = backend
        self.cuda_graphs = cuda_graphs
        self.max_frames = max_frames
        self.note = note
        # Previews and Track share the backend (its contexts, scratch and streams): one at a time.
        self._model_lock = threading.Lock()
        self._root = Path(tempfile.mkdtemp(prefix="sam2long_demo_"))
        atexit.register(shutil.rmtree, self._root, True)

    # -- events --------------------------------------------------------------------------
    def load_video(self, path):
        if not path:
            return None, None, "Upload a video or use the sample.", self._selector(None)
        try:
            source = VideoSource(path)
            info = source.info
            if self.max_frames and info.num_frames > self.max_frames:
                return None, None, (
                    f"This video has {info.num_frames} frames; this demo is limited to "
                    f"{self.max_frames} (start it with a larger --max_frames)."), self._selector(None)
            first = next(iter(source.frames()))
        except (SAM2LongError, OSError, StopIteration) as e:
            return None, None, f"Cannot read this video: {report_error(e)}", self._selector(None)
        session = DemoSession(path, first, info.num_frames)
        return session, for_display(first), (
            f"{info.num_frames} frames, {info.width}x{info.height}. Click the object "
            "(\"Add object\" for another)."), self._selector(session)

    def click(self, session, label, evt: gr.SelectData):
        if not session:
            return session, None, "Upload a video first."
        x, y = click_to_frame(evt.index, session.first.shape[:2])
        clicks = session.objects[session.current]
        clicks.points.append((float(x), float(y)))
        clicks.labels.append(1 if label == "positive" else 0)
        clicks.logits = None
        return self._preview(session)

    def clear(self, session):
        if not session:
            return session, None, "Upload a video first."
        session.objects[session.current] = ObjectClicks()
        return self._preview(session)

    def add_object(self, session):
        if not session:
            return session, None, "Upload a video first.", self._selector(None)
        session.current = max(session.objects) + 1
        session.objects[session.current] = ObjectClicks()
        return (*self._preview(session), self._selector(session))

    def remove_object(self, session):
        if not session:
            return session, None, "Upload a video first.", self._selector(None)
        del session.objects[session.current]
        if not session.objects:
            session.objects[1] = ObjectClicks()
        session.current = list(session.objects)[-1]
        return (*self._preview(session), self._selector(session))

    def select_object(self, session, choice):
        if not session:
            return session, None, "Upload a video first."
        if choice is not None and int(choice) in session.objects:
            session.current = int(choice)
        return self._preview(session)

    def track(self, session, num_pathway, iou_thre, uncertainty, progress=gr.Progress(track_tqdm=True)):
        """-> (video, masks zip, status). Every failure ends up in the status line."""
        if not session:
            return None, None, "Upload a video and click the object first."
        try:
            config = TrackerConfig(int(num_pathway), float(iou_thre), float(uncertainty))
            prompts = session.prompts()
            source = VideoSource(session.video)
            _remove_work_dir(session)
            session.work_dir = Path(tempfile.mkdtemp(prefix="track_", dir=self._root))
            outputs = VideoOutputs(str(session.work_dir / "tracked.mp4"), str(session.work_dir / "masks"),
                                   per_obj_png_file=True)
            from tqdm import tqdm

            with self._model_lock:
                tracker = SAM2LongTracker(self.backend, config, cuda_graphs=self.cuda_graphs)
                fps = run_video_job(tracker, source, prompts, outputs, progress=tqdm)
            archive = shutil.make_archive(str(session.work_dir / "masks"), "zip", outputs.mask_dir)
        except (SAM2LongError, OSError) as e:
            _remove_work_dir(session)
            return None, None, f"Error: {report_error(e)}"
        return outputs.video, archive, (
            f"Tracked {source.info.num_frames} frames, {len(prompts)} object(s) ({fps:.1f} frames/s). "
            "Masks: one folder per object in the zip.")

    # -- helpers ---------------------------------------------------------------------------
    @staticmethod
    def _selector(session):
        if session is None:
            return gr.update(choices=["1"], value="1")
        return gr.update(choices=session.choices(), value=str(session.current))

    def _preview(self, session):
        """Every object's mask for its clicks on the first frame, and the clicks."""
        first = session.first
        hw = first.shape[:2]
        try:
            with self._model_lock:
                if session.feats is None:  # the first frame's features, once per video
                    image = preprocess_frame(Image.fromarray(first), self.backend.geometry.image_size)
                    session.feats = self.backend.encode_image(image)
                for obj, clicks in session.objects.items():
                    if clicks.points and clicks.logits is None:
                        prompt = click_prompt(obj, 0, np.array(clicks.points), np.array(clicks.labels))
                        prompt.validate(hw, session.num_frames)
                        low, _, _ = decode_prompt(self.backend, session.feats, prompt, hw)
                        clicks.logits = to_video_resolution(low[:, 0].float().cpu().numpy(), hw)[0]
        except SAM2LongError as e:
            return session, for_display(first), f"Error: {e}"
        shown_ids = [obj for obj, c in session.objects.items() if c.logits is not None]
        shown = overlay_frame(first, shown_ids, np.stack([session.objects[o].logits for o in shown_ids])) \
            if shown_ids else first
        for obj, clicks in session.objects.items():
            shown = _draw_clicks(shown, clicks.points, clicks.labels, radius=7 if obj == session.current else 4)
        current = session.objects[session.current]
        summary = ", ".join(f"{obj}: {int((c.logits > 0).sum()) if c.logits is not None else 0} px"
                            for obj, c in session.objects.items())
        return session, for_display(shown), (f"Object {session.current}: {len(current.points)} click(s). "
                                f"Mask pixels per object: {summary}.")

    def build(self) -> gr.Blocks:
        with gr.Blocks(title="SAM2Long", delete_cache=(3600, 3600)) as demo:
            gr.Markdown("# SAM2Long\nUpload a video, click each object on its first frame "
                        "(**Add object** for the next one), then **Track** them all. Backend: "
                        f"`{self.backend.name}` on `{self.backend.device}`. " + self.note)
            state = gr.State(None, delete_callback=_remove_work_dir)
            with gr.Row():
                with gr.Column():
                    video_in = gr.Video(label="Input video", sources=["upload"], elem_id="video_in")
                    sample = gr.Button("Use the sample video", elem_id="use_sample")
                    with gr.Row():
                        selector = gr.Radio(["1"], value="1", label="Object (clicks go to it)",
                                            elem_id="object_select")
                        add = gr.Button("Add object", elem_id="add_object")
                        remove = gr.Button("Remove object", elem_id="remove_object")
                    label = gr.Radio(["positive", "negative"], value="positive",
                                     label="A click adds a", elem_id="click_label")
                    clear = gr.Button("Clear this object's clicks", elem_id="clear")
                    with gr.Accordion("SAM2Long settings", open=False):
                        pathways = gr.Slider(1, 8, value=3, step=1, label="Pathways")
                        iou_thre = gr.Slider(0.0, 0.95, value=0.1, step=0.05,
                                             label="IoU threshold for memory")
                        uncertainty = gr.Slider(0.0, 10.0, value=2.0, step=0.5,
                                                label="Uncertainty threshold")
                    track = gr.Button("Track", variant="primary", elem_id="track")
                with gr.Column():
                    # The title above the frame, not Gradio's label on it (it covered the
                    # frame's top-left corner, where objects may need clicks).
                    gr.Markdown("**First frame: click the objects**")
                    frame = gr.Image(label="First frame: click the objects", show_label=False,
                                     type="numpy", interactive=False, elem_id="first_frame")
                    status = gr.Markdown("Upload a video or use the sample.", elem_id="status")
                    video_out = gr.Video(label="Tracked video", interactive=False, elem_id="video_out")
                    masks_out = gr.File(label="Masks (zip: a folder of PNGs per object)", elem_id="masks_out")
            video_in.change(self.load_video, [video_in], [state, frame, status, selector])
            sample.click(lambda: str(SAMPLE_VIDEO), None, video_in)
            frame.select(self.click, [state, label], [state, frame, status])
            clear.click(self.clear, [state], [state, frame, status])
            add.click(self.add_object, [state], [state, frame, status, selector])
            remove.click(self.remove_object, [state], [state, frame, status, selector])
            selector.input(self.select_object, [state, selector], [state, frame, status])
            track.click(self.track, [state, pathways, iou_thre, uncertainty],
                        [video_out, masks_out, status], concurrency_limit=1)
        return demo


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    add_version(p)
    p.add_argument("--host", default="127.0.0.1", help="address to serve on (0.0.0.0 for all)")
    p.add_argument("--port", type=int, default=7860, help="port to serve on")
    p.add_argument("--share", action="store_true", help="also open a public Gradio share link")
    add_model_args(p)
    add_backend_args(p)
    p.add_argument("--max_frames", type=int, default=3000,
                   help="refuse longer videos with a message (0: no limit)")
    return p


def create_demo(args) -> gr.Blocks:
    from sam2long.engine.errors import ConfigError
    from sam2long.tools.cli import load_backend

    backend = load_backend(args)
    if args.cuda_graphs and backend.device.type != "cuda":
        raise ConfigError(f"--cuda_graphs needs a CUDA device; the backend runs on {backend.device}")
    note = "**Random weights: the masks are meaningless.**" if args.random_weights else ""
    return Demo(backend, args.max_frames or None, note, bool(args.cuda_graphs)).build()


def main(argv=None) -> int:
    from sam2long.tools.cli import run_main

    args = build_parser().parse_args(argv)

    def serve() -> int:
        demo = create_demo(args)
        demo.queue().launch(server_name=args.host, server_port=args.port, share=args.share,
                            allowed_paths=[str(SAMPLE_VIDEO.parent)])
        return 0

    return run_main(serve)


if __name__ == "__main__":
    sys.exit(main())
