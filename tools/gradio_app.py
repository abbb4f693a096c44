#!/usr/bin/env python
"""SAM2Long web demo: upload a video (or take the sample), click objects on the first frame
(positive / negative clicks; "Add object" starts the next one), see every object's mask at
once, then track them all through the video in one pass and get the overlaid video and the
masks.

The model is loaded once, on the fastest backend this machine has. Each browser session
keeps its own video, objects and clicks, as files in its own folder, removed when the session
ends. Click previews and tracking share the one model: they take turns (a click waits while
another session's Track runs).
"""

from __future__ import annotations

import argparse
import atexit
import os
import re
import secrets
import shutil
import sys
import tempfile
import threading
import time
from collections import OrderedDict
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
    """A click on the shown frame (its pixel) -> the video frame's pixel coordinates. A click
    on the shown image stays on the frame; one from beyond it (sent through the API) is
    mapped as it is, for the prompt check to refuse."""
    scale = display_scale(hw)
    shown = (hw[1] * scale, hw[0] * scale)
    vx, vy = (float(v) for v in index)  # anything but two numbers is a ValueError/TypeError
    mapped = []
    for v, side, limit in zip((vx, vy), shown, (hw[1] - 1.0, hw[0] - 1.0)):
        p = (v + 0.5) / scale - 0.5
        mapped.append(min(max(p, 0.0), limit) if 0 <= v < side else p)
    return mapped[0], mapped[1]
MB = 1 << 20


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
    # The preview mask for these clicks at the model's low resolution (a few hundred KiB at
    # most): it is brought to the video's size only to draw it.
    low_res: np.ndarray | None = None


@dataclass
class DemoSession:
    """One browser session. In memory only its clicks and low-resolution previews; its first
    frame and its last Track's outputs are files in its own folder, which goes when the
    session ends (see Demo.end_session)."""

    key: str
    folder: Path
    video: str  # the file decoded
    name: str  # the user's name for it: the only one messages show
    height: int
    width: int
    num_frames: int
    objects: dict[int, ObjectClicks] = field(default_factory=lambda: {1: ObjectClicks()})
    current: int = 1
    work_dir: Path | None = None
    last_used: float = field(default_factory=time.monotonic)
    busy: int = 0  # events running on it: the idle timeout leaves it alone meanwhile
    ended: bool = False

    @property
    def first_frame(self) -> Path:
        return self.folder / "first.png"

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
    """Remove the outputs of the session's last Track."""
    if session is not None and session.work_dir is not None:
        shutil.rmtree(session.work_dir, ignore_errors=True)
        session.work_dir = None


def _public(text: str, paths: dict[str, str]) -> str:
    """`text` with each server path in `paths` (longest first) shown as the user's name for
    it, and any other path in the server's temporary folders cut to its file name."""
    for path, name in sorted(paths.items(), key=lambda item: -len(item[0])):
        text = text.replace(path, name)
    roots = {tempfile.gettempdir(), os.environ.get("GRADIO_TEMP_DIR", "")} - {""}
    for root in sorted(roots, key=len, reverse=True):
        text = re.sub(re.escape(root.rstrip(os.sep)) + r"(?:/[^/\s'\"\]]+)+",
                      lambda m: os.path.basename(m.group(0)), text)
    return text


class Demo:
    """The model and what every event does with one session (a DemoSession).

    What the demo holds is bounded: at most `max_sessions` sessions at once (a new one beyond
    that is refused with a message), each holding clicks and small previews in memory and its
    files on disk, and the first-frame features of the `feature_cache` most recently clicked
    sessions (the others recompute theirs on their next click). A session ends, and its
    folder is removed, when its browser tab closes (gradio's unload), when its state is
    dropped by gradio, when it has been idle `session_timeout` seconds (API clients never
    close a tab), when the same tab loads another video, and at shutdown (close())."""

    def __init__(self, backend, max_frames: int | None, note: str = "", cuda_graphs: bool = False,
                 *, max_sessions: int = 8, session_timeout: float = 1800.0, max_side: int | None = None,
                 max_upload_mb: float | None = None, feature_cache: int = 2):
        self.backend = backend
        self.cuda_graphs = cuda_graphs
        self.max_frames = max_frames
        self.note = note
        self.max_sessions = max_sessions
        self.session_timeout = session_timeout
        self.max_side = max_side
        self.max_upload_mb = max_upload_mb
        self.feature_cache = max(1, feature_cache)
        # Previews and Track share the backend (its contexts, scratch and streams): one at a time.
        self._model_lock = threading.Lock()
        # The session table and the feature cache: held briefly, never across model work.
        self._lock = threading.Lock()
        self._sessions: dict[str, DemoSession] = {}
        self._features: OrderedDict[str, object] = OrderedDict()
        self._root = Path(tempfile.mkdtemp(prefix="sam2long_demo_"))
        self._stop = threading.Event()
        self._sweeper = threading.Thread(target=self._sweep_loop, name="demo-session-timeout",
                                         daemon=True)
        self._sweeper.start()
        atexit.register(self.close)

    # -- sessions ----------------------------------------------------------------------------
    @property
    def sessions(self) -> int:
        return len(self._sessions)

    def _open_session(self, key: str, previous: DemoSession | None):
        """A fresh session for `key` (ending the one this tab had), or a refusal message."""
        self.sweep()
        for old in (previous, self._sessions.get(key)):
            if old is not None:
                self.end_session(old)
        with self._lock:
            displaced = self._sessions.pop(key, None)  # a load of this tab's that ran alongside
            if len(self._sessions) >= self.max_sessions:
                minutes = self.session_timeout / 60
                if displaced is not None:
                    self._sessions[key] = displaced
                return None, (f"The demo is serving {len(self._sessions)} sessions, its limit "
                              f"(--max_sessions {self.max_sessions}). Try again when one ends: a "
                              f"session ends when its tab closes or after {minutes:g} min idle.")
            folder = Path(tempfile.mkdtemp(prefix="session_", dir=self._root))
            session = DemoSession(key, folder, "", "", 0, 0, 0)
            self._sessions[key] = session
        self.end_session(displaced)
        return session, None

    def end_session(self, session: DemoSession | None):
        """Drop a session and remove its files (after its running event, if one runs)."""
        if session is None:
            return
        with self._lock:
            if self._sessions.get(session.key) is session:
                del self._sessions[session.key]
            self._features.pop(session.key, None)
            session.ended = True
            if session.busy:
                return  # the event that runs on it removes the folder when it finishes
        self._release(session)

    @staticmethod
    def _release(session: DemoSession):
        """An ended session's files, and its previews: gradio may keep the (now small) state
        object of a client that never closes its tab."""
        shutil.rmtree(session.folder, ignore_errors=True)
        session.work_dir = None
        for clicks in session.objects.values():
            clicks.low_res = None

    def end_request(self, request: gr.Request):
        """gradio's unload: the tab closed (or reloaded)."""
        key = getattr(request, "session_hash", None)
        if key is not None:
            self.end_session(self._sessions.get(key))

    def sweep(self, now: float | None = None):
        """End the sessions idle for longer than the timeout."""
        now = time.monotonic() if now is None else now
        with self._lock:
            idle = [s for s in self._sessions.values()
                    if not s.busy and now - s.last_used > self.session_timeout]
        for session in idle:
            self.end_session(session)

    def _sweep_loop(self):
        while not self._stop.wait(min(60.0, max(0.05, self.session_timeout / 4))):
            self.sweep()

    def close(self):
        """Shutdown: every session ends and the demo's folder goes."""
        self._stop.set()
        for session in list(self._sessions.values()):
            self.end_session(session)
        shutil.rmtree(self._root, ignore_errors=True)

    def _enter(self, session) -> str | None:
        """Why an event cannot run on `session`, or None after marking it in use."""
        if not session:
            return "Upload a video first."
        with self._lock:
            if session.ended:
                return ("This session has ended (its tab closed, or it was idle for more than "
                        f"{self.session_timeout / 60:g} min): load the video again.")
            session.busy += 1
            session.last_used = time.monotonic()
        return None

    def _leave(self, session):
        with self._lock:
            session.busy -= 1
            session.last_used = time.monotonic()
            orphaned = session.ended and not session.busy
        if orphaned:
            self._release(session)

    def _message(self, e: BaseException, session: DemoSession | None = None, path: str = "",
                 name: str = "") -> str:
        paths = {path: name} if path else {}
        if session is not None:
            paths[session.video] = session.name  # the session's own folder: cut to file names
        return _public(report_error(e), paths)

    def _cannot_read(self, e: BaseException, path: str, name: str) -> str:
        text = self._message(e, path=path, name=name)
        if text.lower().startswith("cannot read"):  # the video's own error says it, once
            return text[0].upper() + text[1:]
        return f"Cannot read this video: {text}"

    # -- events --------------------------------------------------------------------------
    def load_video(self, path, session=None, request: gr.Request = None):
        if not path:
            return session, None, "Upload a video or use the sample.", self._selector(session)
        path = str(path)
        name = os.path.basename(os.path.normpath(path))  # gradio keeps the upload's own name
        refused = None
        try:
            if self.max_upload_mb and os.path.isfile(path) and os.path.getsize(path) > self.max_upload_mb * MB:
                refused = (f"{name} is {os.path.getsize(path) / MB:.3g} MB; this demo takes videos up "
                           f"to {self.max_upload_mb:g} MB (start it with a larger --max_upload_mb).")
            else:
                source = VideoSource(path)
                info = source.info
                if self.max_frames and info.num_frames > self.max_frames:
                    refused = (f"{name} has {info.num_frames} frames; this demo is limited to "
                               f"{self.max_frames} (start it with a larger --max_frames).")
                elif self.max_side and max(info.height, info.width) > self.max_side:
                    refused = (f"{name} is {info.width}x{info.height}; this demo takes videos up "
                               f"to {self.max_side} pixels on their longer side (start it with a "
                               "larger --max_side).")
        except (SAM2LongError, OSError) as e:
            refused = self._cannot_read(e, path, name)
        if refused:  # the page no longer shows the session's video: it ends
            self.end_session(session)
            return None, None, refused, self._selector(None)
        key = getattr(request, "session_hash", None) or secrets.token_hex(8)
        new, refused = self._open_session(key, session)
        if new is None:
            return None, None, refused, self._selector(None)
        new.video, new.name, new.num_frames = path, name, info.num_frames
        new.height, new.width = info.height, info.width
        try:
            frames = source.frames()
            try:
                first = next(frames)
            finally:
                frames.close()
            Image.fromarray(first).save(new.first_frame, compress_level=1)
        except (SAM2LongError, OSError, StopIteration) as e:
            self.end_session(new)
            return None, None, self._cannot_read(e, path, name), self._selector(None)
        return new, for_display(first), (
            f"{info.num_frames} frames, {info.width}x{info.height}. Click the object "
            "(\"Add object\" for another)."), self._selector(new)

    def click(self, session, label, evt: gr.SelectData):
        """A click on the frame. A refused one (outside the frame, not a point) leaves the
        session as it was."""
        busy = self._enter(session)
        if busy:
            return session, gr.update(), busy
        try:
            try:
                x, y = click_to_frame(evt.index, (session.height, session.width))
            except (TypeError, ValueError):
                return session, gr.update(), f"Error: a click needs an x and a y, got {evt.index!r}"
            clicks = session.objects[session.current]
            before = (list(clicks.points), list(clicks.labels), clicks.low_res)
            clicks.points.append((x, y))
            clicks.labels.append(1 if label == "positive" else 0)
            clicks.low_res = None
            try:
                self._update_previews(session)
            except SAM2LongError as e:
                clicks.points, clicks.labels, clicks.low_res = before
                return session, gr.update(), f"Error: {self._message(e, session)}"
            return self._render(session)
        finally:
            self._leave(session)

    def _edit(self, session, change, *extra):
        """Run `change(session)`, then show the previews; `extra` outputs follow."""
        busy = self._enter(session)
        if busy:
            return (session, gr.update(), busy, *(self._selector(None) for _ in extra))
        try:
            change(session)
            try:
                self._update_previews(session)
                shown = self._render(session)
            except SAM2LongError as e:
                shown = session, gr.update(), f"Error: {self._message(e, session)}"
            return (*shown, *(self._selector(session) for _ in extra))
        finally:
            self._leave(session)

    def clear(self, session):
        def change(s):
            s.objects[s.current] = ObjectClicks()
        return self._edit(session, change)

    def add_object(self, session):
        def change(s):
            s.current = max(s.objects) + 1
            s.objects[s.current] = ObjectClicks()
        return self._edit(session, change, "selector")

    def remove_object(self, session):
        def change(s):
            del s.objects[s.current]
            if not s.objects:
                s.objects[1] = ObjectClicks()
            s.current = list(s.objects)[-1]
        return self._edit(session, change, "selector")

    def select_object(self, session, choice):
        def change(s):
            if choice is not None and str(choice).isdigit() and int(choice) in s.objects:
                s.current = int(choice)
        return self._edit(session, change)

    def track(self, session, num_pathway, iou_thre, uncertainty, progress=gr.Progress(track_tqdm=True)):
        """-> (video, masks zip, status). Every failure ends up in the status line."""
        if not session:
            return None, None, "Upload a video and click the object first."
        busy = self._enter(session)
        if busy:
            return None, None, busy
        try:
            config = TrackerConfig(int(num_pathway), float(iou_thre), float(uncertainty))
            prompts = session.prompts()
            source = VideoSource(session.video)
            _remove_work_dir(session)
            session.work_dir = Path(tempfile.mkdtemp(prefix="track_", dir=session.folder))
            outputs = VideoOutputs(str(session.work_dir / "tracked.mp4"), str(session.work_dir / "masks"),
                                   per_obj_png_file=True)
            from tqdm import tqdm

            with self._model_lock:
                tracker = SAM2LongTracker(self.backend, config, cuda_graphs=self.cuda_graphs)
                fps = run_video_job(tracker, source, prompts, outputs, progress=tqdm)
            archive = shutil.make_archive(str(session.work_dir / "masks"), "zip", outputs.mask_dir)
        except (SAM2LongError, OSError, ValueError) as e:
            _remove_work_dir(session)
            return None, None, f"Error: {self._message(e, session)}"
        finally:
            self._leave(session)
        return outputs.video, archive, (
            f"Tracked {source.info.num_frames} frames, {len(prompts)} object(s) ({fps:.1f} frames/s). "
            "Masks: one folder per object in the zip.")

    # -- helpers ---------------------------------------------------------------------------
    @staticmethod
    def _selector(session):
        if session is None or session.ended:
            return gr.update(choices=["1"], value="1")
        return gr.update(choices=session.choices(), value=str(session.current))

    def _features_of(self, session):
        """The first frame's features: cached for the most recently clicked sessions only."""
        with self._lock:
            feats = self._features.get(session.key)
            if feats is not None:
                self._features.move_to_end(session.key)
                return feats
        image = preprocess_frame(Image.open(session.first_frame), self.backend.geometry.image_size)
        feats = self.backend.encode_image(image)
        with self._lock:
            if not session.ended:
                self._features[session.key] = feats
                while len(self._features) > self.feature_cache:
                    self._features.popitem(last=False)
        return feats

    def _update_previews(self, session):
        """Each object's preview mask for its clicks, where it is not known yet."""
        hw = (session.height, session.width)
        todo = [(obj, c) for obj, c in session.objects.items() if c.points and c.low_res is None]
        for obj, clicks in todo:  # refused before any model work
            click_prompt(obj, 0, np.array(clicks.points), np.array(clicks.labels)).validate(
                hw, session.num_frames)
        if not todo:
            return
        with self._model_lock:
            feats = self._features_of(session)
            for obj, clicks in todo:
                prompt = click_prompt(obj, 0, np.array(clicks.points), np.array(clicks.labels))
                low, _, _ = decode_prompt(self.backend, feats, prompt, hw)
                clicks.low_res = low[:, 0].float().cpu().numpy()

    def _preview(self, session):
        self._update_previews(session)
        return self._render(session)

    def _render(self, session):
        """Every object's mask and clicks drawn on the first frame (read from the session's
        folder), and the status line."""
        hw = (session.height, session.width)
        with Image.open(session.first_frame) as image:
            first = np.asarray(image.convert("RGB"))
        logits = {obj: to_video_resolution(c.low_res, hw)[0]
                  for obj, c in session.objects.items() if c.low_res is not None}
        shown = overlay_frame(first, list(logits), np.stack(list(logits.values()))) if logits else first
        for obj, clicks in session.objects.items():
            shown = _draw_clicks(shown, clicks.points, clicks.labels, radius=7 if obj == session.current else 4)
        current = session.objects[session.current]
        summary = ", ".join(f"{obj}: {int((logits[obj] > 0).sum()) if obj in logits else 0} px"
                            for obj in session.objects)
        return session, for_display(shown), (f"Object {session.current}: {len(current.points)} click(s). "
                                f"Mask pixels per object: {summary}.")

    def build(self) -> gr.Blocks:
        # Gradio's own cache (uploads, and the previews and results sent to the browser) is
        # swept every 15 min of files older than 30 min, and removed at shutdown.
        with gr.Blocks(title="SAM2Long", delete_cache=(900, 1800)) as demo:
            gr.Markdown("# SAM2Long\nUpload a video, click each object on its first frame "
                        "(**Add object** for the next one), then **Track** them all. Backend: "
                        f"`{self.backend.name}` on `{self.backend.device}`. " + self.note)
            # No time_to_live: gradio would count it from the last event that returned the
            # state (a Track does not), so the demo's own idle timeout ends sessions.
            state = gr.State(None, delete_callback=self.end_session)
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
            video_in.change(self.load_video, [video_in, state], [state, frame, status, selector])
            sample.click(lambda: str(SAMPLE_VIDEO), None, video_in)
            frame.select(self.click, [state, label], [state, frame, status])
            clear.click(self.clear, [state], [state, frame, status])
            add.click(self.add_object, [state], [state, frame, status, selector])
            remove.click(self.remove_object, [state], [state, frame, status, selector])
            selector.input(self.select_object, [state, selector], [state, frame, status])
            track.click(self.track, [state, pathways, iou_thre, uncertainty],
                        [video_out, masks_out, status], concurrency_limit=1)
            demo.unload(self.end_request)
        demo.sam2long_demo = self  # so that shutdown can end the sessions
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
    p.add_argument("--max_side", type=int, default=4096,
                   help="refuse videos whose longer side has more pixels, with a message (0: no limit)")
    p.add_argument("--max_upload_mb", type=float, default=200,
                   help="largest upload accepted, in MB (gradio refuses larger files with this "
                        "limit in its message; 0: no limit)")
    p.add_argument("--max_sessions", type=int, default=8,
                   help="sessions served at once; one more is refused with a message")
    p.add_argument("--session_timeout", type=float, default=30,
                   help="minutes a session may stay idle before it ends and its files are removed")
    return p


def create_demo(args) -> gr.Blocks:
    from sam2long.engine.errors import ConfigError
    from sam2long.tools.cli import load_backend

    for flag in ("max_sessions", "session_timeout"):
        if getattr(args, flag) <= 0:
            raise ConfigError(f"--{flag} must be positive, got {getattr(args, flag):g}")
    backend = load_backend(args)
    if args.cuda_graphs and backend.device.type != "cuda":
        raise ConfigError(f"--cuda_graphs needs a CUDA device; the backend runs on {backend.device}")
    note = "**Random weights: the masks are meaningless.**" if args.random_weights else ""
    return Demo(backend, args.max_frames or None, note, bool(args.cuda_graphs),
                max_sessions=args.max_sessions, session_timeout=args.session_timeout * 60,
                max_side=args.max_side or None, max_upload_mb=args.max_upload_mb or None).build()


def launch(blocks: gr.Blocks, args, block: bool = True) -> gr.Blocks:
    """Serve the demo. Gradio's own start-up lines are replaced by ours: its hint names its
    `share=True` argument, which a user of this tool sets with --share."""
    blocks.queue().launch(server_name=args.host, server_port=args.port, share=args.share,
                          allowed_paths=[str(SAMPLE_VIDEO.parent)], quiet=True,
                          prevent_thread_lock=True,
                          max_file_size=int(args.max_upload_mb * MB) if args.max_upload_mb else None)
    print(f"* Running on local URL:  {blocks.local_url}", flush=True)
    if blocks.share_url:
        print(f"* Running on public URL: {blocks.share_url} (anyone with the link can use the demo)",
              flush=True)
    elif args.share:
        print("* No public link could be opened (see above): the demo is served locally only.",
              flush=True)
    else:
        print("* For a public link, start the demo with --share.", flush=True)
    if block:
        try:
            while blocks.is_running:
                time.sleep(0.2)
        finally:
            blocks.close()
            demo = getattr(blocks, "sam2long_demo", None)
            if demo is not None:
                demo.close()
    return blocks


def main(argv=None) -> int:
    from sam2long.tools.cli import run_main

    args = build_parser().parse_args(argv)

    def serve() -> int:
        launch(create_demo(args), args)
        return 0

    return run_main(serve)


if __name__ == "__main__":
    sys.exit(main())
