"""tools/video_inference.py end to end on the shipped sample video with random micro weights."""

import av
import numpy as np
import pytest
from PIL import Image

from sam2long.runtime.config import TrackerConfig
from sam2long.runtime.frames import preprocess_frame
from sam2long.runtime.postprocess import to_video_resolution
from sam2long.runtime.prompts import ObjectPrompt
from sam2long.runtime.tracker import SAM2LongTracker
from sam2long.runtime.video_io import VideoSource
from tests.conftest import MICRO_CFG, ROOT, synthetic_frame
from sam2long.tools import video_inference

SAMPLE = str(ROOT / "samples" / "shapes.mp4")


def _decode(path):
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        rate, codec = stream.average_rate, stream.codec_context.name
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    return frames, rate, codec


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # default outputs go under ./outputs
    return tmp_path


def test_sample_video_end_to_end(in_tmp):
    out, masks = in_tmp / "out.mp4", in_tmp / "masks"
    rc = video_inference.main(["--video_path", SAMPLE, "--points", "70", "120", "200", "40",
                               "--labels", "1", "0", "--frame", "2", "--random_weights",
                               "--num_pathway", "2", "--output_video", str(out),
                               "--output_mask_dir", str(masks), "--device", "cpu"])
    assert rc == 0
    frames, rate, codec = _decode(out)
    source, _, _ = _decode(SAMPLE)
    assert codec == "h264" and rate == 12
    assert len(frames) == len(source) == 24 and frames[0].shape == source[0].shape == (240, 320, 3)
    # Frames before the prompt frame carry no overlay (only re-encoding noise).
    assert np.abs(frames[0].astype(int) - source[0]).mean() < 4
    # The PNG masks are the tracker's masks.
    from sam2long.engine.factory import build_backend

    from sam2long.tools.cli import random_checkpoint

    # --random_weights keeps its checkpoint in the user cache, not in the working folder.
    assert random_checkpoint().is_file() and not (in_tmp / "outputs" / "checkpoints").exists()
    backend = build_backend("torch", MICRO_CFG, str(random_checkpoint()), "cpu")
    tracker = SAM2LongTracker(backend, TrackerConfig(2, 0.1, 2.0))
    prompt = ObjectPrompt(1, 2, points=np.array([[70.0, 120.0], [200.0, 40.0]]), labels=np.array([1, 0]))
    stream = (preprocess_frame(Image.fromarray(f), 256) for f in VideoSource(SAMPLE).frames())
    for result in tracker.track(stream, [prompt], 24, (240, 320)):
        png = np.array(Image.open(masks / f"{result.frame_idx:05d}.png"))
        want = to_video_resolution(result.low_res_logits, (240, 320))
        expected = want[0] > 0 if result.obj_ids else np.zeros((240, 320), bool)
        np.testing.assert_array_equal(png > 0, expected)


@pytest.mark.parametrize("suffix,codec", [(".mov", "libx264"), (".avi", "mpeg4"), (".webm", "libvpx-vp9")])
def test_other_containers(in_tmp, suffix, codec):
    frames, _, _ = _decode(SAMPLE)
    path = in_tmp / f"clip{suffix}"
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=12)
        stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
        for rgb in frames[:6]:
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    out = in_tmp / "out.mp4"
    assert video_inference.main(["--video_path", str(path), "--points", "70", "120",
                                 "--random_weights", "--output_video", str(out)]) == 0
    decoded, rate, codec_out = _decode(out)
    assert len(decoded) == 6 and decoded[0].shape == (240, 320, 3) and rate == 12
    assert codec_out == "h264"


def test_folder_of_frames_and_box(in_tmp):
    folder = in_tmp / "frames"
    folder.mkdir()
    for t in range(5):
        Image.fromarray(synthetic_frame(t, 121, 161)).save(folder / f"{t}.jpg")  # odd sides
    rc = video_inference.main(["--video_path", str(folder), "--box", "15", "42", "65", "78",
                               "--random_weights", "--fps", "10", "--output_video", str(in_tmp / "o.mp4"),
                               "--output_mask_dir", str(in_tmp / "masks")])
    assert rc == 0
    frames, rate, _ = _decode(in_tmp / "o.mp4")
    assert len(frames) == 5 and rate == 10
    assert frames[0].shape == (122, 162, 3)  # yuv420p: odd sides padded by one edge pixel
    # The box's masks are the in-process tracker's on the same box (tests/cli_reference.py).
    from tests.cli_reference import assert_same_labels, davis_labels, read_frames, reference_logits

    rgb = read_frames([folder / f"{t}.jpg" for t in range(5)])
    from sam2long.tools.cli import random_checkpoint

    want = reference_logits(random_checkpoint(), rgb,
                            [ObjectPrompt(1, 0, box=np.array([15.0, 42.0, 65.0, 78.0]))])
    for t, logits in enumerate(want):
        labels = davis_labels(logits, (121, 161))
        assert (labels == 1).sum() > 100, t  # a real mask, not an empty one
        assert_same_labels(in_tmp / "masks" / f"{t}.png", labels)


@pytest.mark.parametrize("argv,message", [
    (["--points", "10"], "x y pairs"),
    (["--points", "10", "10", "--labels", "1", "0"], "2 labels for 1 points"),
    (["--points", "999", "10"], "outside the 320x240 frame"),
    (["--points", "10", "10", "--frame", "99"], "outside the video's frames 0..23"),
    ([], "--points and/or --box"),
])
def test_bad_prompts(in_tmp, capsys, argv, message):
    assert video_inference.main(["--video_path", SAMPLE, "--random_weights", *argv]) == 2
    assert message in capsys.readouterr().err


def test_bad_video_and_checkpoint(in_tmp, capsys, monkeypatch):
    (in_tmp / "broken.mp4").write_bytes(b"\x00" * 100)
    assert video_inference.main(["--video_path", str(in_tmp / "broken.mp4"), "--points", "1", "1",
                                 "--random_weights"]) == 2
    assert "cannot read video" in capsys.readouterr().err
    assert video_inference.main(["--video_path", "nope.mp4", "--points", "1", "1"]) == 2
    assert "video not found: nope.mp4" in capsys.readouterr().err
    assert video_inference.main(["--video_path", SAMPLE, "--points", "1", "1",
                                 "--sam2_checkpoint", "mine.pt"]) == 2
    assert "checkpoint not found: mine.pt" in capsys.readouterr().err
    import sam2long.tools.download_checkpoints as dl

    monkeypatch.setattr(dl, "BASE_URL", "http://127.0.0.1:9/")  # nothing listens there
    assert video_inference.main(["--video_path", SAMPLE, "--points", "1", "1",
                                 "--sam2_checkpoint", "ck/sam2.1_hiera_tiny.pt"]) == 2
    err = capsys.readouterr().err
    assert "could not download" in err and "--random_weights" in err
    assert not list((in_tmp / "ck").glob("*"))  # no partial file left behind
    assert not (in_tmp / "outputs" / "nope_sam2long.mp4").exists()


def test_help_explains_every_flag(capsys):
    with pytest.raises(SystemExit):
        video_inference.main(["--help"])
    out = capsys.readouterr().out
    for flag in ("--video_path", "--points", "--labels", "--box", "--frame", "--output_video",
                 "--output_mask_dir", "--sam2_cfg", "--sam2_checkpoint", "--random_weights",
                 "--num_pathway", "--iou_thre", "--uncertainty", "--backend", "--device", "--fps"):
        assert flag in out, flag
