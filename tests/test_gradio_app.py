"""The Gradio demo driven in a real headless Chromium (Playwright) against the launched app:
upload, clicks on two objects (plus one added and removed), every mask on the frame, one
Track for both, the output video and the per-object masks zip; two sessions keep their own
objects. Then a correction on a later frame (mode "SAM 2"): track forward, move the slider,
a negative click, track again from there; the masks after that frame change and those
before it do not.
Screenshots go to test-artifacts/gradio/ and test-artifacts/demo_correction/."""

import os
import shutil
import socket
from types import SimpleNamespace

import pytest

from tests.conftest import ROOT

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
ARTIFACTS = ROOT / "test-artifacts" / "gradio"
CORRECTION_ARTIFACTS = ROOT / "test-artifacts" / "demo_correction"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.skip("Debian's chromium is not installed (tools/run_tests.sh installs it with "
                    "apt-get when it runs as root; install the 'chromium' package to run this test)")
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    pytest.importorskip("playwright.sync_api", reason="playwright is installed by tools/setup_env.sh")
    from sam2long.tools.gradio_app import SAMPLE_VIDEO, build_parser, create_demo

    os.chdir(tmp_path_factory.mktemp("app"))  # random weights are written under ./outputs
    blocks = create_demo(build_parser().parse_args(["--random_weights", "--device", "cpu"]))
    port = _free_port()
    blocks.queue().launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True,
                          quiet=True, allowed_paths=[str(SAMPLE_VIDEO.parent)])
    yield SimpleNamespace(url=f"http://127.0.0.1:{port}", demo=blocks.sam2long_demo)
    blocks.close()
    blocks.sam2long_demo.close()
    os.chdir(ROOT)


def _status(page) -> str:
    return page.locator("#status").inner_text()


def _wait_status(page, text, timeout=120_000):
    page.wait_for_function(
        "t => document.querySelector('#status').innerText.includes(t)", arg=text, timeout=timeout)


def _open_with_sample(context, url):
    page = context.new_page()
    page.goto(url, wait_until="load")
    page.locator("#use_sample").click()
    image = page.locator("#frame img")
    image.wait_for(timeout=60_000)
    _wait_status(page, "click the object")
    return page, image


def _click(page, image, x, y, clicks_after, size=(320, 240)):
    box = image.bounding_box()
    image.click(position={"x": box["width"] * x / size[0], "y": box["height"] * y / size[1]})
    _wait_status(page, f"{clicks_after} click(s)")


def _zip_members(page, href) -> list[str]:
    import io
    import zipfile

    body = page.request.get(href).body()
    return zipfile.ZipFile(io.BytesIO(body)).namelist()


def test_two_objects_click_track_and_sessions(app):
    from playwright.sync_api import sync_playwright

    from sam2long.tools.gradio_app import SAMPLE_VIDEO

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=_chromium(), args=CHROMIUM_ARGS)
        try:
            # Session A uploads the video through the file input.
            a = browser.new_page(viewport={"width": 1280, "height": 1100})
            a.goto(app.url, wait_until="load")
            a.locator("#video_in").wait_for(timeout=60_000)
            a.locator("#video_in input[type=file]").set_input_files(str(SAMPLE_VIDEO))
            image_a = a.locator("#frame img")
            image_a.wait_for(timeout=60_000)
            a.screenshot(path=str(ARTIFACTS / "1_uploaded.png"))
            # Object 1 (the ellipse): a positive click and a negative one.
            _click(a, image_a, 70, 120, 1)
            a.locator("#click_label").get_by_text("negative").click()
            _click(a, image_a, 250, 60, 2)
            a.locator("#click_label").get_by_text("positive").click()
            # Object 2 (the square), then an object 3 that is removed again.
            a.locator("#add_object").click()
            _wait_status(a, "Object 2: 0 click(s)")
            _click(a, image_a, 250, 190, 1)
            _wait_status(a, "2:")
            a.locator("#add_object").click()
            _wait_status(a, "Object 3: 0 click(s)")
            _click(a, image_a, 160, 40, 1)
            a.locator("#remove_object").click()
            _wait_status(a, "Object 2: 1 click(s)")
            assert "3:" not in _status(a)
            a.screenshot(path=str(ARTIFACTS / "2_two_objects.png"))
            # The frame is shown well above the video's 320x240, with no label over its corner.
            assert image_a.bounding_box()["width"] >= 480
            assert not any(label.is_visible() for label in a.locator("#frame [data-testid=block-label]").all())
            image_a.screenshot(path=str(ARTIFACTS / "frame.png"))
            # Back to object 1: its clicks are still there.
            a.locator("#object_select").get_by_text("1", exact=True).click()
            _wait_status(a, "Object 1: 2 click(s)")

            # Session B (another browser context) sees none of A's objects.
            context_b = browser.new_context(viewport={"width": 1280, "height": 1000})
            b, image_b = _open_with_sample(context_b, app.url)
            assert "click(s)" not in _status(b)
            _click(b, image_b, 200, 60, 1)
            assert "Object 1: 2 click(s)" in _status(a)

            a.locator("#track_forward").click()
            _wait_status(a, "Tracked 24 frames forward (frames 0..23), 2 object(s)")
            video = a.locator("#video_out video")
            video.wait_for(timeout=30_000)
            assert video.get_attribute("src").endswith(".mp4")
            href = a.locator("#masks_out a").first.get_attribute("href")
            assert href.endswith("masks.zip")
            members = _zip_members(a, href)
            for obj in ("001", "002"):
                assert f"{obj}/00000.png" in members and f"{obj}/00023.png" in members, members[:5]
            a.screenshot(path=str(ARTIFACTS / "3_tracked.png"), full_page=True)
        finally:
            browser.close()


def _set_frame(page, t):
    """Move the frame slider (its number box, as a user typing the frame) and wait for it."""
    box = page.locator("#frame_slider input[type=number]")
    box.fill(str(t))
    box.press("Enter")
    _wait_status(page, f"on frame {t}.")


def _shot(page, target, name):
    """A screenshot for test-artifacts/demo_correction/, the same pixels on every run (the
    pointer off the frame, whose hover shows buttons; no transitions), so that rerunning the
    test leaves the committed files unchanged."""
    page.mouse.move(0, 0)
    page.wait_for_function("() => [...document.querySelectorAll('#frame img')].every(i => i.complete)")
    page.wait_for_timeout(300)  # gradio's pending-state fade on the frame ends
    if target is page:
        page.screenshot(path=str(CORRECTION_ARTIFACTS / name), animations="disabled")
        return
    # The frame without its rounded corners' edge pixels (their antialiasing follows the
    # layout's sub-pixel offsets, which vary from run to run).
    box = target.bounding_box()
    x, y = int(box["x"]) + 2, int(box["y"]) + 2
    clip = {"x": x, "y": y, "width": int(box["x"] + box["width"]) - 2 - x,
            "height": int(box["y"] + box["height"]) - 2 - y}
    page.screenshot(path=str(CORRECTION_ARTIFACTS / name), clip=clip, animations="disabled")


def test_correction_on_a_later_frame_in_the_browser(app, tmp_path):
    """Mode SAM 2 on an 8-frame 160x120 clip: upload, click the object on frame 0, track
    forward, move the slider to frame 4, a negative click there, track forward again from
    it. The masks of frames 0..3 stay as they were, frame 4 keeps the correction, and every
    later frame changes (read from the server's session)."""
    from playwright.sync_api import sync_playwright

    from tests.test_demo_sessions import _video

    clip = _video(tmp_path / "clip.mp4", height=120, width=160, frames=8)
    CORRECTION_ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=_chromium(), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1100})
            page.goto(app.url, wait_until="load")
            page.locator("#mode").get_by_text("SAM 2", exact=True).click()
            _wait_status(page, "it applies to the next video")
            page.locator("#video_in input[type=file]").set_input_files(clip)
            _wait_status(page, "8 frames, 160x120, mode SAM 2")
            image = page.locator("#frame img")
            (session,) = [s for s in app.demo._sessions.values() if s.name == "clip.mp4"]
            _click(page, image, 40, 60, 1, size=(160, 120))
            page.locator("#track_forward").click()
            _wait_status(page, "Tracked 8 frames forward (frames 0..7), 1 object(s)")
            tracked = {t: dict(masks) for t, masks in session.results.items()}
            assert sorted(tracked) == list(range(8))

            _set_frame(page, 4)
            _shot(page, image, "1_tracked_frame4.png")
            page.locator("#click_label").get_by_text("negative").click()
            _click(page, image, 49, 66, 1, size=(160, 120))
            corrected = session.results[4][1]
            assert corrected != tracked[4][1]
            _shot(page, image, "2_corrected_frame4.png")
            page.locator("#track_forward").click()
            _wait_status(page, "Tracked 4 frames forward (frames 4..7)")
            for t in range(4):
                assert session.results[t] == tracked[t], f"frame {t}, before the correction, changed"
            assert session.results[4][1] == corrected
            for t in range(5, 8):
                assert session.results[t][1] != tracked[t][1], f"frame {t}, after the correction, is unchanged"
            _shot(page, image, "3_retracked_frame4.png")
            _set_frame(page, 6)  # scrubbing shows the new masks
            _shot(page, image, "4_retracked_frame6.png")
            video = page.locator("#video_out video")
            assert video.get_attribute("src").endswith(".mp4")
            page.wait_for_function("() => document.querySelector('#video_out video').readyState >= 2")
            _shot(page, page, "5_page_after_the_correction.png")
        finally:
            browser.close()


def test_demo_limits_errors_and_cleanup_without_a_browser(lively_backend, tmp_path):
    from sam2long.tools.gradio_app import SAMPLE_VIDEO, Demo, _remove_work_dir, build_parser

    demo = Demo(lively_backend, max_frames=10)
    state, image, message, *_ = demo.load_video(str(SAMPLE_VIDEO))
    assert state is None and image is None and "limited to 10" in message
    demo = Demo(lively_backend, None)
    state, image, message, _, slider = demo.load_video(str(SAMPLE_VIDEO))
    assert image.shape == (540, 720, 3) and "click the object" in message  # 320x240, shown enlarged
    assert slider["maximum"] == 23 and slider["value"] == 0
    # A refused load resets the slider; that change shows nothing over the refusal's message.
    assert demo.show_frame(None, 0) == (None, {"__type__": "update"}, {"__type__": "update"})
    shown, video, masks, status = demo.track_forward(state, 3, 0.1, 2.0)
    assert video is None and "object(s) 1 have no prompts" in status
    assert "Cannot read" in demo.load_video(str(ROOT / "README.md"))[2]

    # The real cause of a failure reaches the status line (here a frame of the session's
    # that cannot be read when the overlaid video is written), without a server path.
    from tests.conftest import write_frames

    state, *_ = demo.load_video(str(write_frames(tmp_path / "frames", 4)))
    demo.click(state, "positive", SimpleNamespace(index=(40 * 4.5, 60 * 4.5)))
    good = state.frame_path(2).read_bytes()
    state.frame_path(2).write_bytes(b"not a jpeg")
    shown, video, masks, status = demo.track_forward(state, 2, 0.1, 2.0)
    assert video is None and status.startswith("Error:") and "00002.jpg" in status, status
    assert str(state.folder) not in status, status
    assert state.work_dir is None  # nothing of the failed Track is kept

    # Each Track replaces the session's previous outputs; the session's end removes them.
    state.frame_path(2).write_bytes(good)
    shown, video, masks, status = demo.track_forward(state, 2, 0.1, 2.0)
    first_dir = state.work_dir
    assert video and first_dir.is_dir() and "Tracked 4 frames forward" in status, status
    demo.track_forward(state, 2, 0.1, 2.0)
    assert not first_dir.exists() and state.work_dir.is_dir()
    last = state.work_dir
    _remove_work_dir(state)  # what gradio calls when the session's state is deleted
    assert not last.exists()
    demo.close()

    help_text = build_parser().format_help()
    for flag in ("--host", "--port", "--share", "--sam2_cfg", "--sam2_checkpoint",
                 "--random_weights", "--device", "--max_frames"):
        assert flag in help_text


class _OverlapProbe:
    """Stands in for a backend: forwards everything, and records how many of its calls run at
    once (each call is slowed so that two unserialised event handlers would overlap)."""

    def __init__(self, backend):
        import threading

        self._backend, self._lock, self.active, self.most = backend, threading.Lock(), 0, 0

    def __getattr__(self, name):
        import time

        attr = getattr(self._backend, name)
        if not callable(attr):
            return attr

        def call(*args, **kwargs):
            with self._lock:
                self.active += 1
                self.most = max(self.most, self.active)
            try:
                time.sleep(0.02)
                return attr(*args, **kwargs)
            finally:
                with self._lock:
                    self.active -= 1
        return call


def test_click_previews_and_track_take_turns_on_the_backend(lively_backend, tmp_path):
    """Gradio runs the clicks and Track in separate queues; on one backend (shared
    contexts, scratch and streams on a GPU) their calls must never interleave."""
    import threading

    from PIL import Image

    from tests.conftest import synthetic_frame
    from sam2long.tools.gradio_app import Demo

    frames = tmp_path / "frames"
    frames.mkdir()
    for t in range(6):
        Image.fromarray(synthetic_frame(t)).save(frames / f"{t:05d}.jpg")
    probe = _OverlapProbe(lively_backend)
    demo = Demo(probe, None)
    tracked = demo.load_video(str(frames))[0]
    demo.click(tracked, "positive", SimpleNamespace(index=(40 * 4.5, 60 * 4.5)))
    clicked = demo.load_video(str(frames))[0]  # another session clicking meanwhile
    statuses = []
    worker = threading.Thread(target=lambda: statuses.append(demo.track_forward(tracked, 3, 0.1, 2.0)[3]))
    worker.start()
    previews = 0
    while worker.is_alive() or previews < 3:
        clicked.inference.features.clear()  # the frame is encoded again too
        demo.click(clicked, "positive", SimpleNamespace(index=((30 + previews % 50) * 4.5, 50 * 4.5)))
        previews += 1
    worker.join()
    demo.close()
    assert "Tracked 6 frames" in statuses[0], statuses
    assert previews >= 3 and probe.most == 1, f"{probe.most} backend calls ran at once"
