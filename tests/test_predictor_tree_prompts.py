"""Mode "sam2long" with prompts on several frames, corrections and reverse propagation
(README "Python API", runtime/sam2long_session.py): one prompt frame per object is the batch
tracker's tree exactly; a later prompt frame decides the waiting frames by slot 0 before it,
shows the prompt, joins every pathway's conditioning memory and restarts the scores; a
correction re-tracks only the frames after it; reverse is the tree on the mirrored video."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from sam2long.runtime.config import TrackerConfig
from sam2long.runtime.frames import preprocess_frame
from sam2long.runtime.postprocess import to_video_resolution
from sam2long.runtime.prompts import ObjectPrompt
from sam2long.runtime.tracker import SAM2LongTracker
from tests.conftest import MICRO_CFG, synthetic_mask, write_frames

N = 8
HW = (120, 160)
LATER = 4  # the later prompt frame
CONFIG = TrackerConfig(3, 0.1, 2.0)


@pytest.fixture(scope="module")
def video_dir(tmp_path_factory):
    return str(write_frames(tmp_path_factory.mktemp("video"), N, quality=95))


@pytest.fixture(scope="module")
def frames(video_dir):
    out = []
    for t in range(N):
        with Image.open(f"{video_dir}/{t:05d}.jpg") as img:
            out.append(preprocess_frame(img, 256))
    return out


@pytest.fixture(scope="module", params=["plain", "lively"])
def predictor(request, micro_checkpoints):
    from sam2long import build_sam2long_video_predictor

    return build_sam2long_video_predictor(MICRO_CFG, str(micro_checkpoints[request.param]), mode="sam2long")


def later_mask() -> np.ndarray:
    """A prompt on frame LATER unlike what tracking gives there (shifted, smaller)."""
    mask = np.zeros(HW, bool)
    mask[50:80, 70:110] = True
    return mask


def batch(backend, frames, prompts, trace=None, fixed_shapes=None):
    """The batch tracker's masks at video resolution, several prompt frames per object
    allowed (the tracker groups them; the prompts file's checks are not this test's)."""
    tracker = SAM2LongTracker(backend, CONFIG, fixed_shapes=fixed_shapes)
    session = tracker._new_session(prompts, len(frames), trace)
    results = list(tracker._run(session, enumerate(frames), len(frames), HW))
    assert [r.frame_idx for r in results] == list(range(len(frames)))
    return [(r.obj_ids, to_video_resolution(r.low_res_logits, HW)) for r in results]


def assert_same(got, want, obj_ids):
    assert len(got) == len(want)
    for (frame, ids, masks), (want_ids, expected) in zip(got, want):
        assert ids == obj_ids
        for k, obj_id in enumerate(obj_ids):
            if obj_id in want_ids:
                np.testing.assert_array_equal(masks[k, 0].numpy(), expected[want_ids.index(obj_id)],
                                              err_msg=f"frame {frame}, object {obj_id}")
            else:
                assert (masks[k] == -1024).all()


def two_objects(p, state, later: bool):
    p.add_new_mask(state, frame_idx=0, obj_id=1, mask=synthetic_mask(0))
    p.add_new_points_or_box(state, frame_idx=2, obj_id=2, points=[[60.0, 62.0]], labels=[1])
    prompts = [ObjectPrompt(1, 0, mask=synthetic_mask(0)),
               ObjectPrompt(2, 2, points=np.array([[60.0, 62.0]]), labels=np.array([1]))]
    if later:
        p.add_new_mask(state, frame_idx=LATER, obj_id=1, mask=later_mask())
        prompts.append(ObjectPrompt(1, LATER, mask=later_mask()))
    return prompts


@pytest.mark.parametrize("later", [False, True], ids=["one_prompt_frame", "two_prompt_frames"])
def test_the_predictor_is_the_batch_tracker(predictor, video_dir, frames, later):
    state = predictor.init_state(video_path=video_dir)
    prompts = two_objects(predictor, state, later)
    got = list(predictor.propagate_in_video(state))
    assert [f for f, _, _ in got] == list(range(N))
    assert_same(got, batch(predictor.backend, frames, prompts), [1, 2])
    assert state.frames_computed == (N - 1) + (N - 3) - (1 if later else 0)


class MemorySpy:
    """Records every memory-attention call's inputs (one call per tracked frame here)."""

    def __init__(self, backend, monkeypatch):
        self.calls = []
        attend = backend.attend_memory

        def spy(feat, memory, mem_ids=None):
            self.calls.append((memory, mem_ids))
            return attend(feat, memory, mem_ids)

        monkeypatch.setattr(backend, "attend_memory", spy)


def test_a_later_prompt_frame_follows_the_definition(predictor, frames, monkeypatch):
    backend = predictor.backend
    prompts = [ObjectPrompt(1, 0, mask=synthetic_mask(0)), ObjectPrompt(1, LATER, mask=later_mask())]
    spy = MemorySpy(backend, monkeypatch)
    trace = {}
    got = batch(backend, frames, prompts, trace)
    monkeypatch.undo()

    # Frames before the later prompt: the one-prompt tree stopped after LATER - 1, its waiting
    # frames following slot 0 there.
    tracker = SAM2LongTracker(backend, CONFIG)
    session = tracker._new_session(prompts[:1], N, None)
    results = []
    with pytest.raises(ValueError, match="ended after"):
        results.extend(tracker._run(session, enumerate(frames[:LATER]), N, HW))
    tracker._decide(session, 0, session.lineages[0].finish())
    results.extend(tracker._emit(session))
    assert [r.frame_idx for r in results] == list(range(LATER))
    for t in range(LATER):
        np.testing.assert_array_equal(got[t][1], to_video_resolution(results[t].low_res_logits, HW),
                                      err_msg=f"frame {t}")
    # The prompt frame shows the prompt (mask prompts: logits +-10 downsampled).
    alone = batch(backend, frames[LATER:LATER + 1], [ObjectPrompt(1, 0, mask=later_mask())])
    np.testing.assert_array_equal(got[LATER][1], alone[0][1])

    # Memory: the later prompt's entry is conditioning memory of every pathway from LATER + 1
    # on (t_pos 0, pointer at its distance); before LATER it is nowhere.
    tracked = [t for t in range(1, N) if t != LATER]
    assert len(spy.calls) == len(tracked)
    geo = backend.geometry
    G = min(N, geo.max_obj_ptrs) - 1
    cond_ids = set()
    for t, (memory, mem_ids) in zip(tracked, spy.calls):
        rows = memory.mem_valid.shape[0]
        expect_valid = torch.tensor([True, t > LATER]).expand(rows, 2)
        assert torch.equal(memory.mem_valid[:, :2], expect_valid), f"frame {t}"
        assert torch.equal(memory.ptr_valid[:, :2], expect_valid), f"frame {t}"
        assert (memory.mem_tpos[:, :2] == geo.num_maskmem - 1).all()
        if t > LATER:
            cond_ids.add(tuple(mem_ids[:, :2].unique(dim=0).flatten().tolist()))
            want_pos = torch.tensor([t / G, (t - LATER) / G]).expand(rows, 2)
            torch.testing.assert_close(memory.ptr_pos[:, :2], want_pos, rtol=0, atol=0)
    assert len(cond_ids) == 1 and len(set(next(iter(cond_ids)))) == 2  # the same two entries in every row

    # Scores restart: at LATER + 1 each kept slot's score is its own log IoU alone.
    rows = {row.frame_idx: row for row in trace[1]}
    assert LATER not in rows  # a prompt frame is not a tracked one
    after = rows[LATER + 1]
    np.testing.assert_array_equal(after.acc, np.log(after.ious + 1e-5))
    assert (rows[LATER - 1].acc < np.log(rows[LATER - 1].ious + 1e-5) - 1e-9).all() or CONFIG.num_pathway == 1


def test_several_prompt_frames_in_the_gpu_layout(predictor, frames):
    """Every pathway as its own row (fixed shapes, the CUDA path) reads the same memory."""
    prompts = [ObjectPrompt(1, 0, mask=synthetic_mask(0)), ObjectPrompt(1, LATER, mask=later_mask()),
               ObjectPrompt(2, 2, mask=synthetic_mask(2))]
    for (ids_a, a), (ids_b, b) in zip(batch(predictor.backend, frames, prompts),
                                      batch(predictor.backend, frames, prompts, fixed_shapes=True)):
        assert ids_a == ids_b
        np.testing.assert_allclose(a, b, atol=1e-3)


def test_a_correction_retracks_only_the_frames_after_it(predictor, video_dir):
    p = predictor
    state = p.init_state(video_path=video_dir)
    p.add_new_mask(state, frame_idx=0, obj_id=1, mask=synthetic_mask(0))
    first = list(p.propagate_in_video(state))
    assert state.frames_computed == N - 1
    again = list(p.propagate_in_video(state))  # nothing changed: nothing computed
    assert state.frames_computed == N - 1
    for (_, _, a), (_, _, b) in zip(first, again):
        assert torch.equal(a, b)

    _, ids, shown = p.add_new_mask(state, frame_idx=LATER, obj_id=1, mask=later_mask())  # a tracked frame
    corrected = list(p.propagate_in_video(state))
    assert state.frames_computed == (N - 1) + (N - 1 - LATER)  # frames LATER+1 .. N-1 only
    torch.testing.assert_close(corrected[LATER][2], shown, rtol=0, atol=0)
    assert not torch.equal(corrected[-1][2], first[-1][2])
    assert torch.equal(corrected[0][2], first[0][2])  # the prompt frame keeps its mask

    # The same masks as a session that had both prompts from the start.
    fresh = p.init_state(video_path=video_dir)
    p.add_new_mask(fresh, frame_idx=0, obj_id=1, mask=synthetic_mask(0))
    p.add_new_mask(fresh, frame_idx=LATER, obj_id=1, mask=later_mask())
    for (fa, _, a), (fb, _, b) in zip(corrected, p.propagate_in_video(fresh)):
        assert fa == fb and torch.equal(a, b), f"frame {fa}"

    # A click on a tracked frame refines what it shows; clearing it re-tracks from there.
    _, _, clicked = p.add_new_points_or_box(state, frame_idx=6, obj_id=1, points=[[90, 60]], labels=[0],
                                            clear_old_points=False)
    assert clicked.shape == (1, 1, *HW)
    list(p.propagate_in_video(state, start_frame_idx=6))
    assert state.frames_computed == (N - 1) + (N - 1 - LATER) + (N - 1 - 6)
    p.clear_all_prompts_in_frame(state, 6, 1)
    cleared = list(p.propagate_in_video(state))
    for (fa, _, a), (_, _, b) in zip(cleared, corrected):
        assert torch.equal(a, b), f"frame {fa}"


def test_a_run_stopped_early_goes_on_where_it_stopped(predictor, video_dir):
    p = predictor
    whole = p.init_state(video_path=video_dir)
    p.add_new_mask(whole, frame_idx=0, obj_id=1, mask=synthetic_mask(0))
    want = list(p.propagate_in_video(whole))
    state = p.init_state(video_path=video_dir)
    p.add_new_mask(state, frame_idx=0, obj_id=1, mask=synthetic_mask(0))
    head = list(p.propagate_in_video(state, max_frame_num_to_track=2))
    assert [f for f, _, _ in head] == [0, 1, 2] and state.frames_computed < N - 1
    for _ in zip(range(2), p.propagate_in_video(state)):  # a caller that stops reading
        pass
    got = list(p.propagate_in_video(state))
    assert state.frames_computed == N - 1  # every frame tracked once
    for (fa, _, a), (fb, _, b) in zip(got, want):
        assert fa == fb and torch.equal(a, b), f"frame {fa}"


def test_reverse_is_the_tree_on_the_mirrored_video(predictor, video_dir, frames):
    p = predictor
    state = p.init_state(video_path=video_dir)
    p.add_new_mask(state, frame_idx=6, obj_id=1, mask=synthetic_mask(6))
    got = list(p.propagate_in_video(state, start_frame_idx=N - 1, reverse=True))
    assert [f for f, _, _ in got] == list(range(N - 1, -1, -1))
    assert (got[0][2] == -1024).all()  # after the last prompt frame: the tree never got there
    mirrored = frames[::-1]
    want = batch(p.backend, mirrored, [ObjectPrompt(1, N - 1 - 6, mask=synthetic_mask(6))])
    assert_same(got, want, [1])

    # A second, earlier prompt frame is a later one for the mirrored tree.
    p.add_new_mask(state, frame_idx=2, obj_id=1, mask=later_mask())
    before = state.frames_computed
    got = list(p.propagate_in_video(state, start_frame_idx=6, reverse=True))
    assert state.frames_computed - before == 2  # frames 1 and 0
    want = batch(p.backend, mirrored, [ObjectPrompt(1, N - 1 - 6, mask=synthetic_mask(6)),
                                       ObjectPrompt(1, N - 1 - 2, mask=later_mask())])
    assert_same(got, want[N - 1 - 6:], [1])
    forward = list(p.propagate_in_video(state, start_frame_idx=2))  # its own run: from frame 2 on
    assert [f for f, _, _ in forward] == list(range(2, N))


def test_onnx_runtime_takes_several_prompt_frames(micro_checkpoints, video_dir, frames, tmp_path_factory):
    """The graphs take any number of memory frames (graph format 2): a later prompt frame in
    mode sam2long gives torch's masks on ONNX Runtime (the batch tracker and the predictor)."""
    pytest.importorskip("onnxruntime", reason="onnxruntime is installed by tools/setup_env.sh")
    from sam2long import build_sam2long_video_predictor
    from sam2long.engine.factory import build_backend
    from sam2long.export.build_engines import build
    from sam2long.runtime.metrics import mask_iou

    checkpoint = str(micro_checkpoints["lively"])
    engines = str(build(MICRO_CFG, checkpoint, str(tmp_path_factory.mktemp("engines"))))
    prompts = [ObjectPrompt(1, 0, mask=synthetic_mask(0)), ObjectPrompt(1, LATER, mask=later_mask())]
    want = batch(build_backend("torch", MICRO_CFG, checkpoint, "cpu"), frames, prompts)
    onnx = build_sam2long_video_predictor(MICRO_CFG, checkpoint, backend="onnx", engine_dir=engines,
                                          mode="sam2long")
    got_batch = batch(onnx.backend, frames, prompts)
    state = onnx.init_state(video_path=video_dir)
    onnx.add_new_mask(state, frame_idx=0, obj_id=1, mask=synthetic_mask(0))
    onnx.add_new_mask(state, frame_idx=LATER, obj_id=1, mask=later_mask())
    got = [(ids, masks[:, 0].numpy()) for _, ids, masks in onnx.propagate_in_video(state)]
    assert len(got) == len(got_batch) == len(want) == N
    for t, ((_, expected), (_, from_batch), (_, interactive)) in enumerate(zip(want, got_batch, got)):
        assert mask_iou(from_batch[0] > 0, expected[0] > 0) >= 0.999, t
        assert mask_iou(interactive[0] > 0, expected[0] > 0) >= 0.999, t


def test_the_newest_conditioning_frames_under_max_cond_frames_in_attn(predictor):
    from sam2long.runtime.memory_bank import PathwayBank

    geo = predictor.backend.geometry
    bank = PathwayBank(geo, 1, 2, 20, 0.1, torch.device("cpu"), max_conds=3, max_cond_in_attn=2)
    feat = torch.zeros(geo.mem_tokens, geo.mem_dim)
    bank.set_condition(0, feat, torch.zeros(geo.hidden_dim), 0)
    for t in (5, 9):
        bank.add_condition(0, feat, torch.zeros(geo.hidden_dim), t)
    memory, _ = bank.memory_inputs(torch.tensor([0, 0]), torch.tensor([0, 1]), 12)
    assert memory.mem_valid[:, :3].tolist() == [[False, True, True]] * 2
    assert memory.ptr_valid[:, :3].tolist() == [[False, True, True]] * 2


def test_after_a_later_prompt_frame_the_previous_frame_is_the_prompt(predictor):
    """The frame before a later prompt frame is no longer "the previous frame" that joins
    memory even when bad; the pathway's good frames stay."""
    from sam2long.runtime.memory_bank import NewEntries, PathwayBank

    geo = predictor.backend.geometry
    hw, cm, c = geo.mem_tokens, geo.mem_dim, geo.hidden_dim
    bank = PathwayBank(geo, 1, 1, 20, 0.5, torch.device("cpu"), max_conds=2)
    bank.set_condition(0, torch.zeros(hw, cm), torch.zeros(c), 0)
    objs, parent = torch.tensor([0]), torch.zeros(1, 1, dtype=torch.long)
    for iou in (0.9, 0.1):  # frame 1 good, frame 2 bad
        bank.advance(objs, parent, NewEntries(torch.zeros(1, 1, hw, cm, dtype=torch.bfloat16),
                                              torch.zeros(1, 1, c), torch.ones(1, 1),
                                              torch.full((1, 1), iou)), torch.zeros(1, 1, dtype=torch.long))

    def own(t):  # own (not conditioning) frames in memory
        return bank.memory_inputs(objs, torch.tensor([0]), t)[0].mem_valid[0, 2:].sum().item()

    assert own(3) == 2  # the good frame and the (bad) previous frame
    bank.add_condition(0, torch.zeros(hw, cm), torch.zeros(c), 3)
    memory, _ = bank.memory_inputs(objs, torch.tensor([0]), 4)
    assert memory.mem_valid[0, :2].tolist() == [True, True] and own(4) == 1


def test_the_readme_notebook_runs_in_mode_sam2long(tmp_path):
    """README's sam2-style session (a second object on a later frame, a correction, forward
    and reverse propagation, a removal) runs unchanged with the tree."""
    import subprocess
    import sys

    from tests.conftest import ROOT
    from tests.test_predictor_readme import readme_example

    code = readme_example()
    assert 'mode="sam2")' in code
    code = code.replace('mode="sam2")', 'mode="sam2long")').replace(
        "outputs/micro_random.pt", str(tmp_path / "micro_random.pt"))
    code += ("\nassert sorted(video_segments) == list(range(24)), sorted(video_segments)\n"
             "assert state.obj_ids == [1] and state.frames_computed > 0\n"
             "print('ok')\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().endswith("ok")
