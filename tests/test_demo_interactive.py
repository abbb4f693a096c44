"""The demo on the predictor API (issue 23, item 4), driven through its event functions as
gradio calls them: prompts on any frame (clicks, a box), Track forward and backward from the
shown frame, a correction on a later frame re-tracked from there (mode "SAM 2"), mode
"SAM2Long"'s refusals shown as messages with the session unchanged, a mode change starting
over, and masks kept compressed."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from tests.conftest import write_frames

NUM_FRAMES = 8
SCALE = 4.5  # 160x120 frames are shown at 720x540: clicks arrive in the shown pixels


def _click(demo, session, x, y, label="positive"):
    """A click at video pixel (x, y), as the page sends it."""
    return demo.click(session, label, SimpleNamespace(index=(x * SCALE, y * SCALE)))


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return str(write_frames(tmp_path_factory.mktemp("clip") / "clip", NUM_FRAMES, quality=95))


@pytest.fixture
def demo(lively_backend):
    from sam2long.tools.gradio_app import Demo

    demo = Demo(lively_backend, None)
    yield demo
    demo.close()


def _load(demo, video, mode):
    session, image, message, _, slider = demo.load_video(video, None, None, mode)
    assert session is not None, message
    assert image.shape == (540, 720, 3) and slider["maximum"] == NUM_FRAMES - 1
    return session


def _snapshot(session):
    return {t: dict(masks) for t, masks in session.results.items()}


def test_correction_on_a_later_frame_retracks_from_there(demo, video):
    """SAM 2 mode: click frame 0, track forward, correct frame 4 with a negative click,
    track forward from 4: frames 0..3 keep their masks, frame 4 keeps the correction, and
    every frame after it changes."""
    from sam2long.tools.gradio_app import unpack_mask

    session = _load(demo, video, "SAM 2")
    assert _click(demo, session, 40, 60)[2].startswith("Object 1: 1 click(s) on frame 0")
    shown, video_out, archive, status = demo.track_forward(session, 3, 0.1, 2.0)
    assert "Tracked 8 frames forward (frames 0..7), 1 object(s)" in status, status
    assert video_out.endswith("tracked.mp4") and archive.endswith("masks.zip")
    tracked = _snapshot(session)
    assert sorted(tracked) == list(range(NUM_FRAMES))

    session, _, status = demo.show_frame(session, 4)
    assert status.startswith("Object 1: 0 click(s) on frame 4") and session.frame == 4
    assert _click(demo, session, 49, 66, "negative")[2].startswith("Object 1: 1 click(s) on frame 4")
    corrected = session.results[4][1]
    assert corrected != tracked[4][1]  # the preview shows the correction at once
    status = demo.track_forward(session, 3, 0.1, 2.0)[3]
    assert "Tracked 4 frames forward (frames 4..7)" in status, status
    for t in range(4):
        assert session.results[t] == tracked[t], f"frame {t} before the correction changed"
    assert session.results[4][1] == corrected  # a correction is a conditioning frame: it stays
    for t in range(5, NUM_FRAMES):
        assert session.results[t][1] != tracked[t][1], f"frame {t} after the correction is unchanged"

    # Masks are kept bit-packed and deflated: bytes, far below a bool mask's size.
    hw = (session.height, session.width)
    for masks in session.results.values():
        for packed in masks.values():
            assert isinstance(packed, bytes) and len(packed) < hw[0] * hw[1] // 8
    assert unpack_mask(session.results[0][1], hw).shape == hw


def test_prompt_on_a_later_frame_tracks_backward_and_a_box_prompts(demo, video):
    session = _load(demo, video, "SAM 2")
    demo.show_frame(session, 6)
    assert _click(demo, session, 49, 66)[2].startswith("Object 1: 1 click(s) on frame 6")
    status = demo.track_backward(session, 3, 0.1, 2.0)[3]
    assert "Tracked 7 frames backward (frames 0..6)" in status, status
    assert sorted(session.results) == list(range(7))

    # Object 2 by a box on frame 3: the first corner is only shown, the second prompts.
    demo.add_object(session)
    demo.show_frame(session, 3)
    message = _click(demo, session, 100, 70, "box")[2]
    assert message.startswith("Box corner at (100, 70)") and 2 not in session.inference.objects
    assert _click(demo, session, 140, 110, "box")[2].startswith("Object 2: 0 click(s) and a box on frame 3")
    coords, labels = session.inference.objects[2].points[3]
    assert labels.tolist() == [2, 3]  # the predictor got the box's corners
    assert session.objects[2][3].box == pytest.approx((100, 70, 140, 110), abs=0.5)
    # A click adds to the box on the same frame (the box goes first).
    _click(demo, session, 120, 90)
    assert session.inference.objects[2].points[3][1].tolist() == [2, 3, 1]
    status = demo.track_forward(session, 3, 0.1, 2.0)[3]
    assert "frames 3..7), 2 object(s)" in status, status

    # Clearing object 2's prompts on frame 3 leaves it with none: Track says so.
    message = demo.clear(session)[2]
    assert 3 not in session.objects[2] and "Object 2: 0 click(s) on frame 3" in message
    status = demo.track_forward(session, 3, 0.1, 2.0)[3]
    assert status.startswith("Error: object(s) 2 have no prompts"), status
    # Removing it drops its masks everywhere.
    demo.remove_object(session)
    assert session.current == 1 and 2 not in session.inference.objects
    assert all(2 not in masks for masks in session.results.values())


class _Refusing:
    """A SAM2Long-mode predictor that refuses, in the predictor's words (a SessionError
    before any change), a click and tracking backward: what the mode refused when the demo
    was written. The real predictor takes more as the tree's extension lands (branch
    tree), so the demo's handling of a refusal is tested with this stand-in."""

    def __init__(self, predictor):
        self._predictor = predictor

    def __getattr__(self, name):
        return getattr(self._predictor, name)

    def add_new_points_or_box(self, inference_state, frame_idx, obj_id, **kwargs):
        from sam2long.predictor import SessionError

        raise SessionError(f"mode 'sam2long' takes one prompt frame per object and no corrections on "
                           f"tracked frames yet (object {obj_id}, frame {frame_idx}); use mode='sam2' "
                           "for corrections")

    def propagate_in_video(self, inference_state, start_frame_idx=None, max_frame_num_to_track=None,
                           reverse=False):
        from sam2long.predictor import SessionError

        if reverse:
            raise SessionError("mode 'sam2long' propagates forward only for now: use mode='sam2' "
                               "for reverse propagation")
        yield from self._predictor.propagate_in_video(inference_state, start_frame_idx,
                                                      max_frame_num_to_track, reverse)


def test_sam2long_refusals_are_messages_and_change_nothing(demo, video, monkeypatch):
    """Mode SAM2Long through the real predictor: a click on frame 0, Track forward. What
    the mode does not take is refused by the predictor; the page shows its message in the
    demo's words (the page's mode names, not the API's), and the session is as it was."""
    session = _load(demo, video, "SAM2Long")
    _click(demo, session, 40, 60)
    assert "Tracked 8 frames forward" in demo.track_forward(session, 3, 0.1, 2.0)[3]
    results, prompts = _snapshot(session), {o: dict(f) for o, f in session.objects.items()}
    points = {t: (c.clone(), lab.clone()) for t, (c, lab) in session.inference.objects[1].points.items()}

    real = demo.predictor
    monkeypatch.setattr(demo, "predictor", lambda mode, config=None: _Refusing(real(mode, config)))
    demo.show_frame(session, 4)
    shown, status = _click(demo, session, 46, 66, "negative")[1:]
    assert status.startswith("Error: mode SAM2Long takes one prompt frame per object"), status
    assert "use mode SAM 2 for corrections" in status and "mode=" not in status, status
    assert shown == {"__type__": "update"}  # the picture on screen stays as it is
    status = demo.track_backward(session, 3, 0.1, 2.0)[3]
    assert status.startswith("Error: mode SAM2Long propagates forward only"), status
    assert "use mode SAM 2 for reverse" in status, status

    demo.add_object(session)
    demo.remove_object(session)
    assert session.objects == prompts and _snapshot(session) == results
    assert list(session.inference.objects[1].points) == list(points)
    for t, (coords, labels) in session.inference.objects[1].points.items():
        assert coords.equal(points[t][0]) and labels.equal(points[t][1])
    monkeypatch.setattr(demo, "predictor", real)

    # Another mode starts the session over (its prompts were made for this one).
    message = demo.set_mode(session, "SAM 2")[2]
    assert "cleared" in message and session.mode == "sam2"
    assert not session.results and session.objects == {1: {}} and not session.inference.objects


class _TwoClickEngines:
    """The torch backend, saying what exported engines built for 2 clicks say."""

    max_clicks = 2

    def __init__(self, backend):
        self._backend = backend

    def __getattr__(self, name):
        return getattr(self._backend, name)


def test_more_clicks_than_the_engines_take_are_refused_before_the_model(lively_backend, video):
    from sam2long.tools.gradio_app import Demo

    demo = Demo(_TwoClickEngines(lively_backend), None)
    try:
        session = _load(demo, video, "SAM 2")
        _click(demo, session, 40, 60)
        _click(demo, session, 50, 60)
        masks = _snapshot(session)
        message = _click(demo, session, 60, 60)[2]
        assert message.startswith("Error: object 1: the engines take at most 2 clicks"), message
        _click(demo, session, 10, 10, "box")
        assert "at most 2 clicks" in _click(demo, session, 90, 90, "box")[2]
        assert len(session.objects[1][0].points) == 2 and session.objects[1][0].box is None
        assert len(session.inference.objects[1].points[0][1]) == 2 and _snapshot(session) == masks
    finally:
        demo.close()


def test_sam2_mode_binarises_clicked_masks_only_while_it_runs(lively_backend, video):
    """Mode SAM 2 has sam2's post-processing (its builder's default): clicked masks enter
    memory binarised, set on the shared backend only for that mode's calls."""
    from sam2long.tools.gradio_app import Demo

    encoder = lively_backend.memory_encoder
    loaded = encoder.binarize_prompt_masks
    seen = []
    encode = encoder.forward

    def spy(*args, **kwargs):
        seen.append(encoder.binarize_prompt_masks)
        return encode(*args, **kwargs)

    demo = Demo(lively_backend, None)
    try:
        encoder.forward = spy
        for mode, want in (("SAM 2", True), ("SAM2Long", loaded)):
            session = _load(demo, video, mode)
            _click(demo, session, 40, 60)
            seen.clear()
            demo.track_forward(session, 2, 0.1, 2.0)
            assert seen and set(seen) == {want}, (mode, seen)
            assert encoder.binarize_prompt_masks == loaded  # the backend as it was loaded
        assert demo.predictor("sam2").post.fill_hole_area == 8
        assert demo.predictor("sam2long").post.fill_hole_area == 0
    finally:
        del encoder.forward
        demo.close()
