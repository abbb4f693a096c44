#!/usr/bin/env python
"""SAM2Long web demo: upload a video (or take the sample), click the object on the first
frame (positive / negative clicks), see its mask at once, then track it through the video
and get the overlaid video and the masks.

The model is loaded once, on the fastest backend this machine has. Each browser session
keeps its own video and clicks.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import gradio as gr
import numpy as np
from PIL import Image

from runtime.config import TrackerConfig
from runtime.frames import preprocess_frame
from runtime.overlay import overlay_masks
from runtime.postprocess import to_video_resolution
from runtime.prompts import ObjectPrompt, PromptError
from runtime.tracker import decode_prompt
from runtime.video_io import VideoError, VideoSource
from runtime.video_job import track_video
from tools.backend_options import add_backend_args

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_VIDEO = ROOT / "samples" / "shapes.mp4"
CLICK_COLOURS = {1: (40, 220, 60), 0: (230, 40, 40)}


def _draw_clicks(rgb: np.ndarray, points, labels, radius: int = 5) -> np.ndarray:
    out = rgb.copy()
    yy, xx = np.ogrid[: rgb.shape[0], : rgb.shape[1]]
    for (x, y), label in zip(points, labels):
        ring = np.abs(np.hypot(xx - x, yy - y) - radius) <= 1.5
        dot = np.hypot(xx - x, yy - y) <= radius - 1.5
        out[dot] = CLICK_COLOURS[label]
        out[ring] = (255, 255, 255)
    return out


class Demo:
    """The model and what every event does with one session's state (a dict)."""

    def __init__(self, backend, max_frames: int | None, note: str = "", cuda_graphs: bool = False):
        self.backend = backend
        self.cuda_graphs = cuda_graphs
        self.max_frames = max_frames
        self.note = note

    def load_video(self, path):
        if not path:
            return None, None, "Upload a video or use the sample."
        try:
            source = VideoSource(path)
            info = source.info
            if self.max_frames and info.num_frames > self.max_frames:
                return None, None, (
                    f"This video has {info.num_frames} frames; this demo is limited to "
                    f"{self.max_frames} (start it with a larger --max_frames).")
            first = next(iter(source.frames()))
        except (VideoError, StopIteration) as e:
            return None, None, f"Cannot read this video: {e}"
        state = {"video": path, "first": first, "points": [], "labels": [], "feats": None}
        return state, first, (
            f"{info.num_frames} frames, {info.width}x{info.height}. Click the object.")

    def click(self, state, label, evt: gr.SelectData):
        if not state:
            return state, None, "Upload a video first."
        x, y = evt.index
        state["points"].append((float(x), float(y)))
        state["labels"].append(1 if label == "positive" else 0)
        return self._preview(state)

    def clear(self, state):
        if not state:
            return state, None, "Upload a video first."
        state["points"], state["labels"] = [], []
        return state, state["first"], "Clicks cleared. Click the object."

    def _preview(self, state):
        first = state["first"]
        hw = first.shape[:2]
        if state["feats"] is None:  # the first frame's features, once per video
            image = preprocess_frame(Image.fromarray(first), self.backend.geometry.image_size)
            state["feats"] = self.backend.encode_image(image)
        prompt = self._prompt(state)
        low, _, _ = decode_prompt(self.backend, state["feats"], prompt, hw)
        mask = to_video_resolution(low[:, 0].float().cpu().numpy(), hw)[0] > 0
        shown = overlay_masks(first, {1: mask})
        shown = _draw_clicks(shown, state["points"], state["labels"])
        return state, shown, f"{len(state['points'])} click(s); mask: {int(mask.sum())} pixels."

    @staticmethod
    def _prompt(state) -> ObjectPrompt:
        return ObjectPrompt(1, 0, points=np.array(state["points"]), labels=np.array(state["labels"]))

    def track(self, state, num_pathway, iou_thre, uncertainty, progress=gr.Progress(track_tqdm=True)):
        if not state or not state["points"]:
            raise gr.Error("Upload a video and click the object first.")
        try:
            config = TrackerConfig(int(num_pathway), float(iou_thre), float(uncertainty))
            source = VideoSource(state["video"])
            prompt = self._prompt(state)
            prompt.validate(state["first"].shape[:2], source.info.num_frames)
        except (ValueError, VideoError, PromptError) as e:
            raise gr.Error(str(e)) from e
        from tqdm import tqdm

        work = Path(tempfile.mkdtemp(prefix="sam2long_"))
        video = work / "tracked.mp4"
        fps = track_video(self.backend, source, [prompt], config, str(video),
                          str(work / "masks"), progress=tqdm, cuda_graphs=self.cuda_graphs)
        archive = shutil.make_archive(str(work / "masks"), "zip", work / "masks")
        return str(video), archive, f"Tracked {source.info.num_frames} frames ({fps:.1f} frames/s)."

    def build(self) -> gr.Blocks:
        with gr.Blocks(title="SAM2Long") as demo:
            gr.Markdown("# SAM2Long\nUpload a video, click the object on its first frame, then "
                        f"**Track**. Backend: `{self.backend.name}` on `{self.backend.device}`. "
                        + self.note)
            state = gr.State(None)
            with gr.Row():
                with gr.Column():
                    video_in = gr.Video(label="Input video", sources=["upload"], elem_id="video_in")
                    sample = gr.Button("Use the sample video", elem_id="use_sample")
                    label = gr.Radio(["positive", "negative"], value="positive",
                                     label="A click adds a", elem_id="click_label")
                    clear = gr.Button("Clear clicks", elem_id="clear")
                    with gr.Accordion("SAM2Long settings", open=False):
                        pathways = gr.Slider(1, 8, value=3, step=1, label="Pathways")
                        iou_thre = gr.Slider(0.0, 0.95, value=0.1, step=0.05,
                                             label="IoU threshold for memory")
                        uncertainty = gr.Slider(0.0, 10.0, value=2.0, step=0.5,
                                                label="Uncertainty threshold")
                    track = gr.Button("Track", variant="primary", elem_id="track")
                with gr.Column():
                    frame = gr.Image(label="First frame: click the object", type="numpy",
                                     interactive=False, elem_id="first_frame")
                    status = gr.Markdown("Upload a video or use the sample.", elem_id="status")
                    video_out = gr.Video(label="Tracked video", interactive=False, elem_id="video_out")
                    masks_out = gr.File(label="Masks (PNG per frame, zip)", elem_id="masks_out")
            video_in.change(self.load_video, [video_in], [state, frame, status])
            sample.click(lambda: str(SAMPLE_VIDEO), None, video_in)
            frame.select(self.click, [state, label], [state, frame, status])
            clear.click(self.clear, [state], [state, frame, status])
            track.click(self.track, [state, pathways, iou_thre, uncertainty],
                        [video_out, masks_out, status], concurrency_limit=1)
        return demo


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--host", default="127.0.0.1", help="address to serve on (0.0.0.0 for all)")
    p.add_argument("--port", type=int, default=7860, help="port to serve on")
    p.add_argument("--share", action="store_true", help="also open a public Gradio share link")
    p.add_argument("--sam2_cfg", default="configs/sam2.1/sam2.1_hiera_b+.yaml",
                   help="SAM 2 config: a name inside the sam2 package or a path to a YAML file")
    p.add_argument("--sam2_checkpoint", default="./checkpoints/sam2.1_hiera_base_plus.pt",
                   help="checkpoint; an official one that is missing is downloaded first")
    p.add_argument("--random_weights", action="store_true",
                   help="a seeded random micro model (offline; the masks are meaningless)")
    add_backend_args(p)
    p.add_argument("--max_frames", type=int, default=3000,
                   help="refuse longer videos with a message (0: no limit)")
    return p


def create_demo(args) -> gr.Blocks:
    from tools.backend_options import check_cuda_graphs
    from tools.video_inference import load_backend

    backend = load_backend(args.sam2_cfg, args.sam2_checkpoint, args.random_weights, args.device,
                           args.backend, args.engine_dir, args.precision)
    note = "**Random weights: the masks are meaningless.**" if args.random_weights else ""
    return Demo(backend, args.max_frames or None, note, check_cuda_graphs(args, backend)).build()


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from engine.manifest import EngineMismatchError
    from engine.model_loading import ModelLoadError
    from engine.trt_backend import TensorRTUnavailable
    from tools.download_checkpoints import DownloadError

    try:
        demo = create_demo(args)
    except (ModelLoadError, EngineMismatchError, TensorRTUnavailable, DownloadError, FileNotFoundError,
            ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    demo.queue().launch(server_name=args.host, server_port=args.port, share=args.share,
                        allowed_paths=[str(SAMPLE_VIDEO.parent)])
    return 0


if __name__ == "__main__":
    sys.exit(main())
