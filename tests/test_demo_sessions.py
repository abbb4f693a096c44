"""The demo's sessions and uploads (issue 21, items 14-16; issue 22, item 7): what a session
holds is bounded and goes when it ends (tab closed, state dropped, idle timeout, shutdown), a
session beyond --max_sessions is refused, uploads have limits named in their messages, a
refused click changes nothing, and messages name the user's file, never a server path.

The sessions are driven through the demo's event functions, as gradio calls them (a request
object carries the browser session's id); the upload limit and the start-up lines through the
launched app's HTTP API."""

import ctypes
import gc
import os
import socket
import time
from types import SimpleNamespace

import av
import numpy as np
import pytest

from tests.conftest import ROOT, synthetic_frame

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
SAMPLE = str(ROOT / "samples" / "shapes.mp4")


def _video(path, height=720, width=1280, frames=2):
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=12)
        stream.height, stream.width, stream.pix_fmt = height, width, "yuv420p"
        for t in range(frames):
            rgb = np.kron(synthetic_frame(t), np.ones((height // 120, width // 160, 1), np.uint8))
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return str(path)


def _files(root):
    count = size = 0
    for folder, _, names in os.walk(root):
        for name in names:
            count += 1
            size += os.path.getsize(os.path.join(folder, name))
    return count, size


def _live_rss_mb() -> float:
    """The process's resident memory once freed memory is given back: glibc keeps freed
    blocks in its arenas (malloc_trim returns them), which would otherwise read as held."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: the reading is only less exact
        pass
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS in /proc/self/status")


def _click(demo, session, x, y, label="positive"):
    return demo.click(session, label, SimpleNamespace(index=(x, y)))


def test_twenty_sessions_hold_little_and_release_everything(lively_backend, tmp_path):
    """20 sessions each load a 1280x720 video of 2 frames and click two objects. Held
    meanwhile: under 1 MiB of memory per session (its frames at the model's input size,
    384 KiB here, as the predictor holds them; its masks bit-packed and deflated, where a
    full-resolution float mask per object would take 3.5 MiB a frame) and the image features
    of at most 2 sessions; on disk its frames. After the sessions end (7 by closing their
    tab, 7 by gradio dropping their state, 6 by the idle timeout) the process's memory is
    back to its starting level within 8 MiB and the demo's folder holds no file; at shutdown
    the folder itself goes. (Measured here: +11 MiB with 20 sessions, +0.5 MiB after.)"""
    from sam2long.tools.gradio_app import Demo

    video = _video(tmp_path / "hd.mp4")
    demo = Demo(lively_backend, None, max_sessions=20, session_timeout=3600, feature_cache=2)
    # A few sessions first, so that what is built once (torch kernels, caches, thread
    # arenas) exists before the baseline is taken.
    for i in range(3):
        warm = demo.load_video(video, None, SimpleNamespace(session_hash=f"warm{i}"))[0]
        _click(demo, warm, 300, 200)
        demo.end_session(warm)
    del warm
    base_rss, base_files = _live_rss_mb(), _files(demo._root)
    assert base_files == (0, 0)
    requests = [SimpleNamespace(session_hash=f"tab{i}") for i in range(20)]
    sessions = []
    for request in requests:
        session, image, message, *_ = demo.load_video(video, None, request)
        assert session is not None, message
        assert _click(demo, session, 300, 200)[2].startswith("Object 1: 1 click(s)")
        demo.add_object(session)
        assert _click(demo, session, 900, 500)[2].startswith("Object 2: 1 click(s)")
        sessions.append(session)
        del session, image
    held = _live_rss_mb() - base_rss
    files_held = _files(demo._root)
    assert demo.sessions == 20 and len(demo._features) <= 2
    assert sum(bool(s.inference.features) for s in sessions) <= 2  # image features: 2 sessions
    assert held < 20, f"20 sessions hold {held:.1f} MiB"
    assert files_held[0] == 40  # its 2 frames per session

    # One more is refused with a message; a tab that loads again does not count twice.
    refused = demo.load_video(video, None, SimpleNamespace(session_hash="one-more"))
    assert refused[0] is None and "--max_sessions 20" in refused[2]
    again = demo.load_video(video, sessions[0], requests[0])[0]
    assert demo.sessions == 20 and sessions[0].ended and not sessions[0].folder.exists()
    sessions[0] = again
    del again, refused

    for request in requests[:7]:  # the tab closes: gradio's unload event
        demo.end_request(request)
    for session in sessions[7:14]:  # gradio drops the state: its delete_callback
        demo.end_session(session)
    assert demo.sessions == 6
    demo.sweep(now=time.monotonic() + 3600 + 1)  # the rest were idle past the timeout
    assert demo.sessions == 0 and not demo._features
    assert all(s.ended and not s.folder.exists() for s in sessions)
    # Gradio may keep a closed tab's state object a while: it holds nothing big.
    after = _live_rss_mb() - base_rss
    print(f"20 sessions: {held:+.1f} MiB, {files_held[1] / (1 << 20):.1f} MiB in "
          f"{files_held[0]} files; after they ended: {after:+.1f} MiB, {_files(demo._root)} files")
    assert after < 8, f"{after:.1f} MiB still held after the sessions ended"
    assert _files(demo._root) == (0, 0)
    demo.close()
    assert not demo._root.exists()


def test_idle_session_ends_on_its_own(lively_backend):
    """API clients never close a tab: the timeout thread ends their sessions."""
    from sam2long.tools.gradio_app import Demo

    demo = Demo(lively_backend, None, session_timeout=0.3)
    session = demo.load_video(SAMPLE, None, SimpleNamespace(session_hash="api"))[0]
    assert session.folder.is_dir()
    deadline = time.monotonic() + 10
    while (demo.sessions or session.folder.exists()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert demo.sessions == 0 and not session.folder.exists()
    state, frame, message = _click(demo, session, 70, 120)
    assert "session has ended" in message and "load the video again" in message
    demo.close()


def test_refused_click_leaves_the_session_unchanged(lively_backend):
    from sam2long.tools.gradio_app import Demo

    demo = Demo(lively_backend, None)
    session = demo.load_video(SAMPLE)[0]
    assert _click(demo, session, 70, 120)[2].startswith("Object 1: 1 click(s)")
    before = session.objects[1][0]
    points, labels, masks = list(before.points), list(before.labels), dict(session.results)
    held = session.inference.objects[1].points[0][0].clone()
    for bad in ((9999, 5), (70, -3), (float("nan"), 4)):
        state, frame, message = _click(demo, session, *bad)
        assert message.startswith("Error: object 1:"), message
        assert frame == {"__type__": "update"}  # the picture on screen stays as it is
    for index in (None, ("x", 3), (1,)):
        message = demo.click(session, "positive", SimpleNamespace(index=index))[2]
        assert message.startswith("Error: a click needs an x and a y"), message
    assert session.objects[1][0] is before
    assert before.points == points and before.labels == labels and session.results == masks
    assert session.inference.objects[1].points[0][0].equal(held)  # the predictor's too
    # The next good click builds on the one click that was accepted.
    assert _click(demo, session, 80, 125)[2].startswith("Object 1: 2 click(s)")
    demo.close()


def test_messages_name_the_users_file_never_a_server_path(lively_backend, tmp_path):
    from PIL import Image

    from sam2long.tools.gradio_app import Demo

    demo = Demo(lively_backend, None)
    # Gradio stores an upload as <its cache>/<hash>/<the user's file name>.
    upload = tmp_path / "gradio" / "3f2a9c" / "holiday clip.mp4"
    upload.parent.mkdir(parents=True)
    upload.write_bytes(b"\x00\x01 not a video at all" * 50)
    session, image, message, *_ = demo.load_video(str(upload))
    assert session is None and image is None
    assert message.count("holiday clip.mp4") == 1, message
    assert str(tmp_path) not in message and "/tmp" not in message, message
    assert "Errno" not in message and "1094995529" not in message, message
    assert "Invalid data" in message

    frames = tmp_path / "gradio" / "81bd" / "frames"
    frames.mkdir(parents=True)
    for t in range(3):
        Image.fromarray(synthetic_frame(t)).save(frames / f"{t:05d}.jpg")
    (frames / "00001.jpg").write_bytes(b"broken")
    # The frames are decoded when the video loads: a broken one refuses it, named by the
    # user's folder, and nothing of the session stays.
    session, image, status, *_ = demo.load_video(str(frames))
    assert session is None and image is None and demo.sessions == 0
    assert status.startswith("Cannot read") and "frames/00001.jpg" in status, status
    assert str(tmp_path) not in status and str(demo._root) not in status, status
    assert not any(demo._root.iterdir())
    demo.close()


def test_resolution_and_size_caps_name_their_limit(lively_backend, tmp_path):
    from sam2long.tools.gradio_app import Demo

    message = Demo(lively_backend, None, max_side=200).load_video(SAMPLE)[2]
    assert "shapes.mp4 is 320x240" in message and "200 pixels" in message and "--max_side" in message
    message = Demo(lively_backend, None, max_upload_mb=0.01).load_video(SAMPLE)[2]
    assert "shapes.mp4 is" in message and "0.01 MB" in message and "--max_upload_mb" in message
    message = Demo(lively_backend, 10).load_video(SAMPLE)[2]
    assert "24 frames" in message and "limited to 10" in message

    from sam2long.engine.errors import ConfigError
    from sam2long.tools.gradio_app import build_parser, create_demo

    help_text = build_parser().format_help()
    for flag in ("--max_side", "--max_upload_mb", "--max_sessions", "--session_timeout"):
        assert flag in help_text
    for argv in (["--max_sessions", "0"], ["--session_timeout", "-1"]):
        with pytest.raises(ConfigError, match=argv[0]):  # before any model loads
            create_demo(build_parser().parse_args(argv))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_served_app_limits_uploads_and_names_our_share_flag(lively_backend, tmp_path, capsys):
    """Over HTTP: an upload over --max_upload_mb is refused with the limit in the message,
    and the start-up lines point at --share, not at gradio's launch() argument."""
    import httpx

    from sam2long.tools.gradio_app import Demo, build_parser, launch

    args = build_parser().parse_args(["--port", str(_free_port()), "--max_upload_mb", "1"])
    blocks = Demo(lively_backend, None).build()
    launch(blocks, args, block=False)
    try:
        out = capsys.readouterr().out
        assert "share=True" not in out and "launch()" not in out, out
        assert "--share" in out and blocks.local_url in out
        big = tmp_path / "big.mp4"
        big.write_bytes(os.urandom(2 << 20))
        with open(big, "rb") as f:
            reply = httpx.post(f"{blocks.local_url}gradio_api/upload",
                               files={"files": ("big.mp4", f, "video/mp4")}, timeout=60)
        assert reply.status_code == 413, reply.text
        assert str(1 << 20) in reply.text, reply.text
        small = tmp_path / "small.mp4"
        small.write_bytes(b"\x00" * 1000)
        with open(small, "rb") as f:
            reply = httpx.post(f"{blocks.local_url}gradio_api/upload",
                               files={"files": ("small.mp4", f, "video/mp4")}, timeout=60)
        assert reply.status_code == 200, reply.text
    finally:
        blocks.close()
        blocks.sam2long_demo.close()


def test_closed_tab_ends_its_session_at_once(lively_backend):
    """In a real browser: closing the tab runs gradio's unload, which ends the session and
    removes its folder (not after gradio's hour of grace for closed tabs)."""
    pytest.importorskip("playwright.sync_api", reason="playwright is installed by tools/setup_env.sh")
    from playwright.sync_api import sync_playwright

    from sam2long.tools.gradio_app import Demo, build_parser, launch
    from tests.test_gradio_app import CHROMIUM_ARGS, _chromium

    args = build_parser().parse_args(["--port", str(_free_port())])
    blocks = Demo(lively_backend, None).build()
    demo = blocks.sam2long_demo
    launch(blocks, args, block=False)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=_chromium(), args=CHROMIUM_ARGS)
            try:
                page = browser.new_page()
                page.goto(blocks.local_url, wait_until="load")
                page.locator("#use_sample").click()
                page.wait_for_function(
                    "() => document.querySelector('#status').innerText.includes('click the object')",
                    timeout=60_000)
                assert demo.sessions == 1
                (session,) = demo._sessions.values()
                assert session.frame_path(0).is_file()
                page.close()
                deadline = time.monotonic() + 30
                # The session leaves the table first, then its folder goes (its frames take
                # a moment to remove).
                while (demo.sessions or session.folder.exists()) and time.monotonic() < deadline:
                    time.sleep(0.1)
                assert demo.sessions == 0 and not session.folder.exists()
            finally:
                browser.close()
    finally:
        blocks.close()
        demo.close()
