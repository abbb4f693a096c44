"""The Gradio demo driven in a real headless Chromium (Playwright) against the launched app:
upload, click, first-frame mask, track, output video; two sessions keep their own clicks.
Screenshots go to test-artifacts/gradio/."""

import os
import shutil
import socket

import pytest

from tests.conftest import ROOT

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
ARTIFACTS = ROOT / "test-artifacts" / "gradio"
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
def app_url(tmp_path_factory):
    pytest.importorskip("playwright.sync_api", reason="playwright is installed by tools/setup_env.sh")
    from tools.gradio_app import SAMPLE_VIDEO, build_parser, create_demo

    os.chdir(tmp_path_factory.mktemp("app"))  # random weights are written under ./outputs
    demo = create_demo(build_parser().parse_args(["--random_weights", "--device", "cpu"]))
    port = _free_port()
    demo.queue().launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True,
                        quiet=True, allowed_paths=[str(SAMPLE_VIDEO.parent)])
    yield f"http://127.0.0.1:{port}"
    demo.close()
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
    image = page.locator("#first_frame img")
    image.wait_for(timeout=60_000)
    _wait_status(page, "Click the object")
    return page, image


def _click(page, image, x, y, clicks_after):
    box = image.bounding_box()
    image.click(position={"x": box["width"] * x / 320, "y": box["height"] * y / 240})
    _wait_status(page, f"{clicks_after} click(s)")


def test_upload_click_track_and_sessions(app_url):
    from playwright.sync_api import sync_playwright

    from tools.gradio_app import SAMPLE_VIDEO

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=_chromium(), args=CHROMIUM_ARGS)
        try:
            # Session A uploads the video through the file input and clicks twice.
            a = browser.new_page(viewport={"width": 1280, "height": 1000})
            a.goto(app_url, wait_until="load")
            a.locator("#video_in").wait_for(timeout=60_000)
            a.locator("#video_in input[type=file]").set_input_files(str(SAMPLE_VIDEO))
            image_a = a.locator("#first_frame img")
            image_a.wait_for(timeout=60_000)
            a.screenshot(path=str(ARTIFACTS / "1_uploaded.png"))
            _click(a, image_a, 70, 120, 1)
            a.locator("#click_label").get_by_text("negative").click()
            _click(a, image_a, 250, 190, 2)
            a.screenshot(path=str(ARTIFACTS / "2_clicked.png"))

            # Session B (another browser context) sees none of A's clicks.
            context_b = browser.new_context(viewport={"width": 1280, "height": 1000})
            b, image_b = _open_with_sample(context_b, app_url)
            assert "click(s)" not in _status(b)
            _click(b, image_b, 200, 60, 1)
            assert "2 click(s)" in _status(a)

            a.locator("#track").click()
            _wait_status(a, "Tracked 24 frames")
            video = a.locator("#video_out video")
            video.wait_for(timeout=30_000)
            assert video.get_attribute("src").endswith(".mp4")
            assert a.locator("#masks_out a").first.get_attribute("href").endswith("masks.zip")
            a.screenshot(path=str(ARTIFACTS / "3_tracked.png"), full_page=True)
        finally:
            browser.close()


def test_demo_limits_and_errors_without_a_browser(lively_backend):
    import gradio as gr

    from tools.gradio_app import SAMPLE_VIDEO, Demo, build_parser

    demo = Demo(lively_backend, max_frames=10)
    state, image, message = demo.load_video(str(SAMPLE_VIDEO))
    assert state is None and image is None and "limited to 10" in message
    state, image, message = Demo(lively_backend, None).load_video(str(SAMPLE_VIDEO))
    assert image.shape == (240, 320, 3) and "Click the object" in message
    with pytest.raises(gr.Error, match="click the object first"):
        demo.track(state, 3, 0.1, 2.0)
    assert "Cannot read" in demo.load_video(str(ROOT / "README.md"))[2]
    help_text = build_parser().format_help()
    for flag in ("--host", "--port", "--share", "--sam2_cfg", "--sam2_checkpoint",
                 "--random_weights", "--device", "--max_frames"):
        assert flag in help_text
