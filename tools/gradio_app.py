#!/usr/bin/env python
"""SAM2Long web demo: upload a video (or take the sample), pick any frame with the slider and
prompt objects on it (positive / negative clicks and a box per object; "Add object" starts
the next one), see every object's mask at once, track forward or backward from the selected
frame, scrub the result, correct a frame where a mask drifts and track again from there. Get
the overlaid video and the masks.

Built on the Python API (`sam2long.predictor`): mode "sam2" is plain SAM 2, mode "sam2long"
SAM2Long's memory tree (what it does not take yet is refused with a message).

The model is loaded once, on the fastest backend this machine has. Each browser session
keeps its own video, objects, prompts and results; its frames and outputs are files in its
own folder, removed when the session ends. Clicks and tracking share the one model: they
take turns (a click waits while another session's Track runs).
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import os
import re
import secrets
import shutil
import sys
import tempfile
import threading
import time
import zlib
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from pathlib import Path

import gradio as gr
import numpy as np
from PIL import Image

from sam2long.engine.errors import SAM2LongError
from sam2long.runtime.config import TrackerConfig
from sam2long.runtime.mask_writer import MaskWriter, apply_non_overlap
from sam2long.runtime.memory_bank import Sam2Rules
from sam2long.runtime.video_io import H264Writer, VideoSource
from sam2long.runtime.video_job import overlay_frame
from sam2long.resources import add_version, sample_file
from sam2long.tools.cli import HelpFormatter, add_backend_args, add_model_args, report_error

SAMPLE_VIDEO = sample_file()
CLICK_COLOURS = {1: (40, 220, 60), 0: (230, 40, 40)}
BOX_COLOUR = (60, 140, 255)
MODES = {"SAM2Long": "sam2long", "SAM 2": "sam2"}  # shown name -> the predictor's mode
CLICK_KINDS = ["positive", "negative", "box"]
# The clickable frame is shown with its longer side at least this many pixels (a 320x240
# video would be tiny at its own size). Gradio never scales an image up, and maps a click to
# the shown image's pixels, so the frame is enlarged here and clicks are mapped back.
DISPLAY_SIDE = 720
FRAME_QUALITY = 92  # the session's frames on disk (shown, and the overlaid video's source)
MB = 1 << 20


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


def pack_mask(mask: np.ndarray) -> bytes:
    """A bool mask as the session keeps it: bit-packed and deflated (a few KiB a frame at
    1080p, where the predictor's float logits take 8 MiB)."""
    return zlib.compress(np.packbits(mask, axis=None).tobytes(), 1)


def unpack_mask(packed: bytes, hw) -> np.ndarray:
    bits = np.frombuffer(zlib.decompress(packed), np.uint8)
    return np.unpackbits(bits, count=hw[0] * hw[1]).reshape(hw).astype(bool)


def _draw_clicks(rgb: np.ndarray, points, labels, radius: int = 5) -> np.ndarray:
    out = rgb.copy()
    yy, xx = np.ogrid[: rgb.shape[0], : rgb.shape[1]]
    for (x, y), label in zip(points, labels):
        ring = np.abs(np.hypot(xx - x, yy - y) - radius) <= 1.5
        dot = np.hypot(xx - x, yy - y) <= radius - 1.5
        out[dot] = CLICK_COLOURS[label]
        out[ring] = (255, 255, 255)
    return out


def _draw_box(rgb: np.ndarray, box, width: int = 2) -> np.ndarray:
    out = rgb.copy()
    h, w = rgb.shape[:2]
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    x0, x1 = max(0, min(x0, w - 1)), max(0, min(x1, w - 1))
    y0, y1 = max(0, min(y0, h - 1)), max(0, min(y1, h - 1))
    for y in (y0, y1):
        out[max(0, y - width // 2): y + width - width // 2, x0:x1 + 1] = BOX_COLOUR
    for x in (x0, x1):
        out[y0:y1 + 1, max(0, x - width // 2): x + width - width // 2] = BOX_COLOUR
    return out


@dataclass
class FramePrompts:
    """One object's prompts on one frame, in video pixels, as the user gave them."""

    points: list[tuple[float, float]] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    box: tuple[float, float, float, float] | None = None

    def copy(self) -> "FramePrompts":
        return FramePrompts(list(self.points), list(self.labels), self.box)

    def describe(self) -> str:
        return f"{len(self.points)} click(s)" + (" and a box" if self.box is not None else "")


@dataclass
class DemoSession:
    """One browser session: its video (frames on disk in its folder, resized in the
    predictor's state), every object's prompts per frame, and the masks shown per frame
    (bit-packed and compressed). Everything goes when the session ends (Demo.end_session)."""

    key: str
    folder: Path
    video: str  # the file decoded
    name: str  # the user's name for it: the only one messages show
    height: int
    width: int
    num_frames: int
    mode: str = "sam2long"
    fps: object = None
    timestamps: object = None
    frame_names: list[str] = field(default_factory=list)
    inference: object = None  # the predictor's InferenceSession
    objects: dict[int, dict[int, FramePrompts]] = field(default_factory=lambda: {1: {}})
    current: int = 1
    frame: int = 0  # the frame shown and clicked
    corner: tuple[int, int, float, float] | None = None  # a box's first corner: (frame, obj, x, y)
    results: dict[int, dict[int, bytes]] = field(default_factory=dict)  # frame -> obj -> packed mask
    work_dir: Path | None = None
    last_used: float = field(default_factory=time.monotonic)
    busy: int = 0  # events running on it: the idle timeout leaves it alone meanwhile
    ended: bool = False
    # One event at a time changes the session (a slider move waits for its Track).
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def frame_path(self, t: int) -> Path:
        return self.folder / "frames" / f"{t:05d}.jpg"

    def choices(self) -> list[str]:
        return [str(obj) for obj in self.objects]

    def masks(self, t: int) -> dict[int, np.ndarray]:
        hw = (self.height, self.width)
        return {obj: unpack_mask(packed, hw) for obj, packed in self.results.get(t, {}).items()}

    def store(self, t: int, obj_ids, video_res_masks) -> None:
        """The predictor's masks on frame `t` (logits [objects, 1, H, W]), as the outputs
        show them: objects do not overlap."""
        logits = video_res_masks[:, 0].float().cpu().numpy()
        kept = apply_non_overlap(logits) > 0
        self.results[t] = {int(obj): pack_mask(kept[i]) for i, obj in enumerate(obj_ids)}


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
    that is refused with a message), each holding its frames resized to the model's input
    (the predictor's state), the memory of the frames it tracked, and its masks bit-packed;
    on disk its frames and its last Track's outputs. Image features are kept for the
    `feature_cache` most recently used sessions only (the others compute theirs again). A
    session ends, and its folder is removed, when its browser tab closes (gradio's unload),
    when its state is dropped by gradio, when it has been idle `session_timeout` seconds
    (API clients never close a tab), when the same tab loads another video, and at shutdown
    (close())."""

    def __init__(self, backend, max_frames: int | None, note: str = "", cuda_graphs: bool = False,
                 *, max_sessions: int = 8, session_timeout: float = 1800.0, max_side: int | None = None,
                 max_upload_mb: float | None = None, feature_cache: int = 2, rules: Sam2Rules | None = None):
        self.backend = backend
        self.cuda_graphs = cuda_graphs  # the batch tools' option: the predictor runs without graphs
        self.max_frames = max_frames
        self.note = note
        self.max_sessions = max_sessions
        self.session_timeout = session_timeout
        self.max_side = max_side
        self.max_upload_mb = max_upload_mb
        self.feature_cache = max(1, feature_cache)
        # A click on a tracked frame becomes a conditioning frame, so that tracking again
        # through it keeps the correction (sam2's default would recompute it).
        self.rules = replace(rules or Sam2Rules(), add_all_frames_to_correct_as_cond=True)
        # sam2's post-processing binarises clicked masks in the memory encoder: only the
        # torch stages can (the exported graphs take the sigmoid); the flag is set per call.
        encoder = getattr(backend, "memory_encoder", None)
        self._binarize_default = getattr(encoder, "binarize_prompt_masks", None)
        # Clicks and Track share the backend (its contexts, scratch and streams): one at a time.
        self._model_lock = threading.Lock()
        # The session table and the feature cache's order: held briefly, never across model work.
        self._lock = threading.Lock()
        self._sessions: dict[str, DemoSession] = {}
        self._features: OrderedDict[str, DemoSession] = OrderedDict()  # sessions holding features
        self._root = Path(tempfile.mkdtemp(prefix="sam2long_demo_"))
        self._stop = threading.Event()
        self._sweeper = threading.Thread(target=self._sweep_loop, name="demo-session-timeout",
                                         daemon=True)
        self._sweeper.start()
        atexit.register(self.close)

    # -- the model ---------------------------------------------------------------------------
    def predictor(self, mode: str, config: TrackerConfig | None = None):
        """A predictor in `mode` over the demo's one backend (cheap: it holds no state of
        its own; the session's state is its InferenceSession)."""
        from sam2long.predictor import SAM2LongVideoPredictor
        from sam2long.runtime.interactive import PostProcessing

        post = PostProcessing()
        if mode == "sam2" and self._binarize_default is not None:
            post = PostProcessing(dynamic_multimask=True, fill_hole_area=8)  # sam2's builder's default
        return SAM2LongVideoPredictor(self.backend, self.rules, mode, config, post)

    @contextlib.contextmanager
    def _model(self, session: DemoSession):
        """The model lock, with the memory encoder set for the session's mode while it is
        held (the backend may be shared: it is left as it was loaded)."""
        with self._model_lock:
            if self._binarize_default is not None:
                self.backend.memory_encoder.binarize_prompt_masks = session.mode == "sam2" or self._binarize_default
            try:
                yield
            finally:
                if self._binarize_default is not None:
                    self.backend.memory_encoder.binarize_prompt_masks = self._binarize_default
                self._keep_features(session)

    def _keep_features(self, session: DemoSession):
        """Only the most recently used sessions keep image features (on the GPU they take
        tens of MiB a frame at 1024 px). Runs under the model lock: no other session is in
        model work meanwhile."""
        with self._lock:
            self._features.pop(session.key, None)
            if not session.ended:
                self._features[session.key] = session
            dropped = []
            while len(self._features) > self.feature_cache:
                dropped.append(self._features.popitem(last=False)[1])
        for old in dropped + ([session] if session.ended else []):
            inference = old.inference  # None once the session is released
            if inference is not None:
                inference.features.clear()

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
            session.busy = 1  # loading: the idle timeout leaves it alone
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
            if self._features.get(session.key) is session:
                del self._features[session.key]
            session.ended = True
            if session.busy:
                return  # the event that runs on it removes the folder when it finishes
        self._release(session)

    @staticmethod
    def _release(session: DemoSession):
        """An ended session's files, frames, model state and masks: gradio may keep the
        state object of a client that never closes its tab."""
        shutil.rmtree(session.folder, ignore_errors=True)
        session.work_dir = None
        session.inference = None
        session.results = {}

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
                return self._ended()
            session.busy += 1
            session.last_used = time.monotonic()
        return None

    def _ended(self) -> str:
        return ("This session has ended (its tab closed, or it was idle for more than "
                f"{self.session_timeout / 60:g} min): load the video again.")

    def _leave(self, session):
        with self._lock:
            session.busy -= 1
            session.last_used = time.monotonic()
            orphaned = session.ended and not session.busy
        if orphaned:
            self._release(session)

    def _run(self, session, body, refused):
        """Run `body()` on the session (marked in use, its lock held), or return
        `refused(message)` when the session cannot take events."""
        busy = self._enter(session)
        if busy:
            return refused(busy)
        try:
            with session.lock:
                if session.ended:  # ended while this event waited for the lock
                    return refused(self._ended())
                return body()
        finally:
            self._leave(session)

    def _message(self, e: BaseException, session: DemoSession | None = None, path: str = "",
                 name: str = "") -> str:
        paths = {path: name} if path else {}
        if session is not None:
            paths[session.video] = session.name  # the session's own folder: cut to file names
        text = _public(report_error(e), paths)
        # The predictor names its modes as the API spells them; the page shows their names.
        for shown, mode in MODES.items():
            text = text.replace(f"mode={mode!r}", f"mode {shown}").replace(f"mode {mode!r}", f"mode {shown}")
        return text

    def _cannot_read(self, e: BaseException, path: str, name: str) -> str:
        text = self._message(e, path=path, name=name)
        if text.lower().startswith("cannot read"):  # the video's own error says it, once
            return text[0].upper() + text[1:]
        return f"Cannot read this video: {text}"

    # -- events --------------------------------------------------------------------------
    def load_video(self, path, session=None, request: gr.Request = None, mode: str = "SAM2Long"):
        """-> (state, frame, status, object selector, frame slider)."""
        if not path:
            return session, None, "Upload a video or use the sample.", self._selector(session), self._slider(session)
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
            return None, None, refused, self._selector(None), self._slider(None)
        key = getattr(request, "session_hash", None) or secrets.token_hex(8)
        new, refused = self._open_session(key, session)
        if new is None:
            return None, None, refused, self._selector(None), self._slider(None)
        try:
            new.video, new.name, new.num_frames = path, name, info.num_frames
            new.height, new.width, new.fps = info.height, info.width, info.fps
            new.mode = MODES.get(mode, "sam2long")
            try:
                # The frames once, as files: what the page shows and the overlaid video is made
                # of. The predictor reads the video itself, resized to the model's input.
                (new.folder / "frames").mkdir()
                for t, rgb in enumerate(source.frames()):
                    Image.fromarray(rgb).save(new.frame_path(t), quality=FRAME_QUALITY)
                new.frame_names, new.timestamps = source.frame_names, source.timestamps()
                with self._model(new):
                    new.inference = self.predictor(new.mode).init_state(path)
            except (SAM2LongError, OSError, ValueError) as e:
                self.end_session(new)
                return None, None, self._cannot_read(e, path, name), self._selector(None), self._slider(None)
            shown, status = self._render(new)
        finally:
            self._leave(new)
        return new, shown, (
            f"{info.num_frames} frames, {info.width}x{info.height}, mode {self._mode_name(new)}. "
            "Pick a frame with the slider and click the object (\"Add object\" for another)."
        ), self._selector(new), self._slider(new)

    def show_frame(self, session, t):
        """The slider moved: show frame `t` with its masks and prompts."""
        if not session:  # a refused load resets the slider: its message stays
            return session, gr.update(), gr.update()

        def body():
            session.frame = self._frame_index(session, t)
            return self._render(session)
        return self._run(session, lambda: (session, *body()), lambda m: (session, gr.update(), m))

    def click(self, session, label, evt: gr.SelectData):
        """A click on the shown frame: a positive or negative click for the selected object,
        or a box corner (two make the box). A refused one (outside the frame, not a point,
        not what the mode takes) leaves the session as it was."""
        def body():
            try:
                x, y = click_to_frame(evt.index, (session.height, session.width))
            except (TypeError, ValueError):
                return session, gr.update(), f"Error: a click needs an x and a y, got {evt.index!r}"
            obj, t = session.current, session.frame
            bad = self._check_point(session, obj, x, y)
            if bad:
                return session, gr.update(), f"Error: {bad}"
            prompts = session.objects[obj].get(t, FramePrompts()).copy()
            if label == "box":
                corner = session.corner
                if corner is None or corner[:2] != (t, obj):
                    session.corner = (t, obj, x, y)
                    shown, status = self._render(session)
                    return session, shown, f"Box corner at ({x:.0f}, {y:.0f}): click the opposite corner. {status}"
                (x0, x1), (y0, y1) = sorted((corner[2], x)), sorted((corner[3], y))
                if x1 - x0 < 1 or y1 - y0 < 1:
                    return session, gr.update(), "Error: a box needs two corners apart: click the opposite corner"
                prompts.box = (x0, y0, x1, y1)
            else:
                prompts.points.append((x, y))
                prompts.labels.append(1 if label == "positive" else 0)
            too_many = self._too_many(obj, prompts)
            if too_many:
                return session, gr.update(), f"Error: {too_many}"
            try:
                self._prompt(session, obj, t, prompts)
            except (SAM2LongError, ValueError) as e:
                return session, gr.update(), f"Error: {self._message(e, session)}"
            session.corner = None
            return (session, *self._render(session))
        return self._run(session, body, lambda m: (session, gr.update(), m))

    def _edit(self, session, change, *extra):
        """Run `change(session)` (it may refuse with a message), then show the frame;
        `extra` outputs (the object selector) follow."""
        def body():
            try:
                refused = change(session)
            except (SAM2LongError, ValueError) as e:
                refused = f"Error: {self._message(e, session)}"
            shown, status = self._render(session)
            return (session, shown, refused or status, *(self._selector(session) for _ in extra))
        return self._run(session, body, lambda m: (session, gr.update(), m, *(self._selector(None) for _ in extra)))

    def clear(self, session):
        """Take back the selected object's prompts on the shown frame."""
        def change(s):
            s.corner = None
            if s.frame not in s.objects[s.current]:
                return f"Object {s.current} has no prompts on frame {s.frame}."
            if s.current in s.inference.obj_ids:
                with self._model(s):
                    out = self.predictor(s.mode).clear_all_prompts_in_frame(s.inference, s.frame, s.current)
                s.store(*out)
            del s.objects[s.current][s.frame]
            return None
        return self._edit(session, change)

    def add_object(self, session):
        def change(s):
            s.current, s.corner = max(s.objects) + 1, None
            s.objects[s.current] = {}
        return self._edit(session, change, "selector")

    def remove_object(self, session):
        def change(s):
            obj = s.current
            if obj in s.inference.obj_ids:
                with self._model(s):
                    self.predictor(s.mode).remove_object(s.inference, obj, need_output=False)
            del s.objects[obj]
            for masks in s.results.values():
                masks.pop(obj, None)
            if not s.objects:
                s.objects[1] = {}
            s.current, s.corner = list(s.objects)[-1], None
        return self._edit(session, change, "selector")

    def select_object(self, session, choice):
        def change(s):
            if choice is not None and str(choice).isdigit() and int(choice) in s.objects:
                s.current, s.corner = int(choice), None
        return self._edit(session, change)

    def set_mode(self, session, mode):
        """A session tracks in one mode: another mode starts its objects over."""
        if not session:
            return session, gr.update(), f"Mode {mode}: it applies to the next video."

        def change(s):
            new = MODES.get(mode)
            if new is None or new == s.mode:
                return None
            with self._model(s):
                self.predictor(s.mode).reset_state(s.inference)
            s.mode, s.objects, s.current, s.corner, s.results = new, {1: {}}, 1, None, {}
            _remove_work_dir(s)
            return f"Mode {mode}: the objects, prompts and masks were cleared (a session tracks in one mode)."
        return self._edit(session, change)

    def track(self, session, num_pathway, iou_thre, uncertainty, reverse: bool = False,
              progress=gr.Progress(track_tqdm=True)):
        """Track every object forward (or backward) from the shown frame, keep the masks,
        and write the overlaid video and the masks of every frame -> (frame, video, masks
        zip, status). Every failure ends up in the status line."""
        if not session:
            return gr.update(), None, None, "Upload a video and click the object first."

        def body():
            from tqdm import tqdm

            direction = "backward" if reverse else "forward"
            try:
                empty = [obj for obj, frames in session.objects.items() if not frames]
                if empty:
                    raise SAM2LongError(f"object(s) {', '.join(map(str, empty))} have no prompts: click "
                                        "them on a frame, or remove them")
                config = TrackerConfig(int(num_pathway), float(iou_thre), float(uncertainty))
                start, tracked = time.perf_counter(), []
                predictor = self.predictor(session.mode, config)
                with self._model(session):
                    frames = predictor.propagate_in_video(session.inference, start_frame_idx=session.frame,
                                                          reverse=reverse)
                    total = session.frame + 1 if reverse else session.num_frames - session.frame
                    for t, obj_ids, masks in tqdm(frames, total=total, unit="frame", desc=f"tracking {direction}"):
                        session.store(t, obj_ids, masks)
                        tracked.append(t)
                fps = len(tracked) / max(time.perf_counter() - start, 1e-9)
                video, archive = self._write_outputs(session)
            except (SAM2LongError, OSError, ValueError) as e:
                shown, _ = self._render(session)
                return shown, None, None, f"Error: {self._message(e, session)}"
            shown, _ = self._render(session)
            span = f"{min(tracked)}..{max(tracked)}" if tracked else "none"
            return shown, video, archive, (
                f"Tracked {len(tracked)} frames {direction} (frames {span}), {len(session.objects)} object(s) "
                f"({fps:.1f} frames/s). Scrub with the slider; click a frame to correct it, then track "
                "again from there. Masks: one folder per object in the zip.")
        return self._run(session, body, lambda m: (gr.update(), None, None, m))

    def track_forward(self, session, num_pathway, iou_thre, uncertainty, progress=gr.Progress(track_tqdm=True)):
        return self.track(session, num_pathway, iou_thre, uncertainty, reverse=False)

    def track_backward(self, session, num_pathway, iou_thre, uncertainty, progress=gr.Progress(track_tqdm=True)):
        return self.track(session, num_pathway, iou_thre, uncertainty, reverse=True)

    # -- helpers ---------------------------------------------------------------------------
    def _prompt(self, session: DemoSession, obj: int, t: int, prompts: FramePrompts):
        """Give the predictor the object's prompts on frame t (all of them: the box must come
        first) and keep them and the masks it returns; a refusal changes nothing."""
        box = prompts.box
        points = np.array(prompts.points, np.float32).reshape(-1, 2) if prompts.points else None
        labels = np.array(prompts.labels, np.int32) if prompts.points else None
        with self._model(session):
            out = self.predictor(session.mode).add_new_points_or_box(
                session.inference, frame_idx=t, obj_id=obj, points=points, labels=labels,
                clear_old_points=True, box=None if box is None else list(box))
        session.objects[obj][t] = prompts
        session.store(*out)

    def _check_point(self, session: DemoSession, obj: int, x: float, y: float) -> str | None:
        """Why a click cannot be taken (before the model sees it), or None."""
        w, h = session.width, session.height
        if not (np.isfinite(x) and np.isfinite(y)):
            return f"object {obj}: click coordinates must be finite numbers, got ({x}, {y})"
        if not (0 <= x < w and 0 <= y < h):
            return f"object {obj}: point [{x:g}, {y:g}] is outside the {w}x{h} frame"
        return None

    def _too_many(self, obj: int, prompts: FramePrompts) -> str | None:
        """Why the exported engines cannot take these prompts (too many clicks), or None."""
        limit = getattr(self.backend, "max_clicks", None)
        if limit is not None and len(prompts.points) + 2 * (prompts.box is not None) > limit:
            return (f"object {obj}: the engines take at most {limit} clicks per object on a frame "
                    "(a box counts as two); clear its prompts on this frame and give fewer")
        return None

    def _write_outputs(self, session: DemoSession):
        """The overlaid video and a zip of every object's masks over every frame (a frame
        never tracked has empty masks), replacing the last Track's."""
        _remove_work_dir(session)
        session.work_dir = Path(tempfile.mkdtemp(prefix="track_", dir=session.folder))
        video = str(session.work_dir / "tracked.mp4")
        hw = (session.height, session.width)
        writer = H264Writer(video, session.height, session.width, session.fps, timestamps=session.timestamps)
        masks = MaskWriter(str(session.work_dir / "masks"), True, None, *hw, list(session.objects))
        try:
            for t in range(session.num_frames):
                with Image.open(session.frame_path(t)) as image:
                    rgb = np.asarray(image.convert("RGB"))
                shown = session.masks(t)
                logits = {obj: np.where(m, 1.0, -1.0).astype(np.float32) for obj, m in shown.items()}
                writer.write(overlay_frame(rgb, list(logits), np.stack(list(logits.values()))) if logits else rgb)
                masks.write(session.frame_names[t], logits)
            masks.close()
            writer.close()
        except BaseException:
            masks.abandon()
            writer.close(keep=False)
            _remove_work_dir(session)
            raise
        return video, shutil.make_archive(str(session.work_dir / "masks"), "zip", session.work_dir / "masks")

    @staticmethod
    def _frame_index(session: DemoSession, t) -> int:
        try:
            t = int(round(float(t)))
        except (TypeError, ValueError):
            return session.frame
        return min(max(t, 0), session.num_frames - 1)

    @staticmethod
    def _mode_name(session: DemoSession) -> str:
        return next(name for name, mode in MODES.items() if mode == session.mode)

    @staticmethod
    def _selector(session):
        if session is None or session.ended:
            return gr.update(choices=["1"], value="1")
        return gr.update(choices=session.choices(), value=str(session.current))

    @staticmethod
    def _slider(session):
        if session is None or session.ended or not session.num_frames:
            return gr.update(minimum=0, maximum=1, value=0, interactive=False)
        return gr.update(minimum=0, maximum=max(1, session.num_frames - 1), value=session.frame,
                         interactive=session.num_frames > 1)

    def _render(self, session):
        """The shown frame with every object's mask, prompts and any box corner -> (the
        picture, the status line)."""
        t = session.frame
        with Image.open(session.frame_path(t)) as image:
            shown = np.asarray(image.convert("RGB"))
        masks = session.masks(t)
        if masks:
            logits = np.stack([np.where(m, 1.0, -1.0) for m in masks.values()])
            shown = overlay_frame(shown, list(masks), logits)
        for obj, frames in session.objects.items():
            prompts = frames.get(t)
            if prompts is None:
                continue
            if prompts.box is not None:
                shown = _draw_box(shown, prompts.box)
            shown = _draw_clicks(shown, prompts.points, prompts.labels, radius=7 if obj == session.current else 4)
        if session.corner is not None and session.corner[0] == t:
            shown = _draw_clicks(shown, [session.corner[2:]], [1], radius=3)
        here = session.objects[session.current].get(t, FramePrompts())
        summary = ", ".join(f"{obj}: {int(masks[obj].sum()) if obj in masks else 0} px" for obj in session.objects)
        return for_display(shown), (f"Object {session.current}: {here.describe()} on frame {t}. "
                                    f"Mask pixels per object: {summary}.")

    def build(self) -> gr.Blocks:
        # Gradio's own cache (uploads, and the previews and results sent to the browser) is
        # swept every 15 min of files older than 30 min, and removed at shutdown.
        with gr.Blocks(title="SAM2Long", delete_cache=(900, 1800)) as demo:
            gr.Markdown("# SAM2Long\nUpload a video, pick a frame with the slider and click each object "
                        "(**Add object** for the next one), then **Track forward** or **backward** from "
                        "that frame. Scrub the result; where a mask drifts, click that frame to correct "
                        "it and track again from there. Backend: "
                        f"`{self.backend.describe()}` on `{self.backend.device}`. " + self.note)
            # No time_to_live: gradio would count it from the last event that returned the
            # state (a Track does not), so the demo's own idle timeout ends sessions.
            state = gr.State(None, delete_callback=self.end_session)
            with gr.Row():
                with gr.Column():
                    video_in = gr.Video(label="Input video", sources=["upload"], elem_id="video_in")
                    sample = gr.Button("Use the sample video", elem_id="use_sample")
                    mode = gr.Radio(list(MODES), value="SAM2Long", label="Mode (another mode starts over)",
                                    elem_id="mode")
                    with gr.Row():
                        selector = gr.Radio(["1"], value="1", label="Object (clicks go to it)",
                                            elem_id="object_select")
                        add = gr.Button("Add object", elem_id="add_object")
                        remove = gr.Button("Remove object", elem_id="remove_object")
                    label = gr.Radio(CLICK_KINDS, value="positive",
                                     label="A click adds a (box: click two corners)", elem_id="click_label")
                    clear = gr.Button("Clear this object's prompts on this frame", elem_id="clear")
                    with gr.Accordion("SAM2Long settings", open=False):
                        pathways = gr.Slider(1, 8, value=3, step=1, label="Pathways")
                        iou_thre = gr.Slider(0.0, 0.95, value=0.1, step=0.05,
                                             label="IoU threshold for memory")
                        uncertainty = gr.Slider(0.0, 10.0, value=2.0, step=0.5,
                                                label="Uncertainty threshold")
                    with gr.Row():
                        back = gr.Button("Track backward", elem_id="track_backward")
                        forward = gr.Button("Track forward", variant="primary", elem_id="track_forward")
                with gr.Column():
                    # The title above the frame, not Gradio's label on it (it covered the
                    # frame's top-left corner, where objects may need clicks).
                    gr.Markdown("**The selected frame: click the objects**")
                    frame = gr.Image(label="The selected frame", show_label=False,
                                     type="numpy", interactive=False, elem_id="frame")
                    slider = gr.Slider(0, 1, value=0, step=1, label="Frame", interactive=False,
                                       elem_id="frame_slider")
                    status = gr.Markdown("Upload a video or use the sample.", elem_id="status")
                    video_out = gr.Video(label="Tracked video", interactive=False, elem_id="video_out")
                    masks_out = gr.File(label="Masks (zip: a folder of PNGs per object)", elem_id="masks_out")

            def load(path, session, chosen, request: gr.Request):
                return self.load_video(path, session, request, chosen)

            video_in.change(load, [video_in, state, mode], [state, frame, status, selector, slider])
            sample.click(lambda: str(SAMPLE_VIDEO), None, video_in)
            slider.change(self.show_frame, [state, slider], [state, frame, status], trigger_mode="always_last")
            frame.select(self.click, [state, label], [state, frame, status])
            clear.click(self.clear, [state], [state, frame, status])
            add.click(self.add_object, [state], [state, frame, status, selector])
            remove.click(self.remove_object, [state], [state, frame, status, selector])
            selector.input(self.select_object, [state, selector], [state, frame, status])
            mode.input(self.set_mode, [state, mode], [state, frame, status])
            inputs = [state, pathways, iou_thre, uncertainty]
            outputs = [frame, video_out, masks_out, status]
            forward.click(self.track_forward, inputs, outputs, concurrency_limit=1)
            back.click(self.track_backward, inputs, outputs, concurrency_limit=1)
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
    from sam2long.tools.cli import RANDOM_CFG, load_backend

    for flag in ("max_sessions", "session_timeout"):
        if getattr(args, flag) <= 0:
            raise ConfigError(f"--{flag} must be positive, got {getattr(args, flag):g}")
    # Mode SAM 2 applies sam2's post-processing, which binarises clicked masks in torch's
    # memory encoder: under --backend auto that stage stays in torch (2-4% of a frame).
    backend = load_backend(args, torch_stages=("memory",))
    rules = Sam2Rules.from_config_file(RANDOM_CFG if args.random_weights else args.sam2_cfg)
    if args.cuda_graphs and backend.device.type != "cuda":
        raise ConfigError(f"--cuda_graphs needs a CUDA device; the backend runs on {backend.device}")
    note = "**Random weights: the masks are meaningless.**" if args.random_weights else ""
    return Demo(backend, args.max_frames or None, note, bool(args.cuda_graphs),
                max_sessions=args.max_sessions, session_timeout=args.session_timeout * 60,
                max_side=args.max_side or None, max_upload_mb=args.max_upload_mb or None, rules=rules).build()


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
