"""Seeded synthetic ground truth and predictions for checking tools/evaluate.py against the
official evaluation tools, written in each benchmark's layout.

Every case is generated in memory from a seed (numpy's PCG64), so the tests rebuild the same
PNGs that the official tools scored when tests/data/evaluation/*.json were made; `fingerprint`
lets a test notice if the generator's output ever changes. The sequences cover what makes
scoring subtle: objects that vanish and come back, thin and one-pixel structures, void pixels,
objects that appear late (with ids below and above the first frame's largest), objects on the
image border, 3- and 4-frame sequences, empty predictions, sequences of 256+ scored frames
(DAVIS's decay bins), a full 480x854 frame (DAVIS's 8-pixel tolerance, MOSEv2's non-integer
disk) and a tiny frame (MOSEv2's empty disk).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from sam2long.runtime.image_io import save_palette_png

VOID = 255


@dataclass
class Sequence:
    name: str
    gt: np.ndarray  # [T, H, W] uint8 object ids, 255 = void
    pred: np.ndarray  # [T, H, W] uint8 object ids


@dataclass
class Case:
    name: str
    sequences: list[Sequence] = field(default_factory=list)

    def fingerprint(self) -> str:
        h = hashlib.sha256()
        for s in self.sequences:
            h.update(s.name.encode())
            h.update(s.gt.tobytes())
            h.update(s.pred.tobytes())
        return h.hexdigest()[:16]


# ----------------------------------------------------------------------------- shapes

def _grid(h: int, w: int):
    return np.ogrid[0:h, 0:w]


def ellipse(h, w, cy, cx, ry, rx):
    yy, xx = _grid(h, w)
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0


def rect(h, w, y0, x0, y1, x1):
    m = np.zeros((h, w), bool)
    m[max(int(y0), 0):max(int(y1), 0), max(int(x0), 0):max(int(x1), 0)] = True
    return m


def ring(h, w, cy, cx, r_out, r_in):
    return ellipse(h, w, cy, cx, r_out, r_out) & ~ellipse(h, w, cy, cx, r_in, r_in)


def line(h, w, y0, x0, y1, x1, width=1):
    """A straight line of about `width` pixels."""
    m = np.zeros((h, w), bool)
    n = int(max(abs(y1 - y0), abs(x1 - x0))) + 1
    ys = np.round(np.linspace(y0, y1, n)).astype(int)
    xs = np.round(np.linspace(x0, x1, n)).astype(int)
    for d in range(width):
        ok = (ys + d >= 0) & (ys + d < h) & (xs >= 0) & (xs < w)
        m[ys[ok] + d, xs[ok]] = True
    return m


def _paint(shape, layers):
    """Labels from (id, mask) layers, later layers on top."""
    out = np.zeros(shape, np.uint8)
    for obj_id, mask in layers:
        out[mask] = obj_id
    return out


def _shift(mask, dy, dx):
    out = np.zeros_like(mask)
    h, w = mask.shape
    ys, xs = slice(max(dy, 0), h + min(dy, 0)), slice(max(dx, 0), w + min(dx, 0))
    yd, xd = slice(max(-dy, 0), h + min(-dy, 0)), slice(max(-dx, 0), w + min(-dx, 0))
    out[ys, xs] = mask[yd, xd]
    return out


def _noisy(mask, rng, flip=0.02):
    """Flip a few pixels near the mask's edge."""
    edge = mask ^ _shift(mask, 1, 0) | mask ^ _shift(mask, 0, 1)
    return mask ^ (edge & (rng.random(mask.shape) < flip * 10))


def _predict(gt, rng, ids, shift=2, keep=1.0, noise=True):
    """A prediction that follows the ground truth with small errors: each object shifted by up
    to `shift` pixels, noisy edges, dropped on a fraction (1 - keep) of frames."""
    t_len = gt.shape[0]
    pred = np.zeros_like(gt)
    for t in range(t_len):
        layers = []
        for k in ids:
            m = gt[t] == k
            if rng.random() > keep:
                continue
            m = _shift(m, int(rng.integers(-shift, shift + 1)), int(rng.integers(-shift, shift + 1)))
            if noise:
                m = _noisy(m, rng)
            layers.append((k, m))
        pred[t] = _paint(gt.shape[1:], layers)
    return pred


# ----------------------------------------------------------------------------- sequences

def seq_blobs(rng, name="blobs", t_len=12, h=120, w=160):
    gt = np.stack([_paint((h, w), [
        (1, ellipse(h, w, 60 + 10 * np.sin(t / 3), 40 + 3 * t, 22, 30)),
        (2, rect(h, w, 10 + t, 100, 50 + t, 140 - t)),
        (3, ring(h, w, 85, 110 - 2 * t, 18, 9)),
    ]) for t in range(t_len)])
    return Sequence(name, gt, _predict(gt, rng, (1, 2, 3)))


def seq_vanish(rng, name="vanish", t_len=14, h=96, w=128):
    frames = []
    for t in range(t_len):
        layers = [(2, ellipse(h, w, 50, 90, 20, 15))]
        if t < 5 or t >= 9:
            layers.append((1, rect(h, w, 20 + t, 10 + 2 * t, 50 + t, 45 + 2 * t)))
        frames.append(_paint((h, w), layers))
    gt = np.stack(frames)
    pred = _predict(gt, rng, (1, 2), keep=0.9)
    pred[6][rect(h, w, 30, 20, 45, 40)] = 1  # a false positive while the object is gone
    pred[9][pred[9] == 1] = 0  # missed on its return
    return Sequence(name, gt, pred)


def seq_thin(rng, name="thin", t_len=10, h=101, w=173):
    frames, preds = [], []
    for t in range(t_len):
        lay = [(1, line(h, w, 10 + t, 5, 10 + t, 160)),  # 1-px horizontal
               (2, line(h, w, 20, 20 + t, 90, 90 + t)),  # 1-px diagonal
               (3, line(h, w, 5, 120 + t, 95, 120 + t, width=1) | line(h, w, 5, 121 + t, 95, 121 + t)),
               (4, rect(h, w, 60 + t, 30, 61 + t, 31))]  # a single pixel
        frames.append(_paint((h, w), lay))
        pl = [(1, line(h, w, 11 + t, 5 + t, 11 + t, 150)),
              (2, line(h, w, 20, 21 + t, 90, 91 + t)),
              (3, line(h, w, 5, 120 + t, 60, 120 + t, width=1)),
              (4, rect(h, w, 60 + t + (t % 2), 30, 61 + t + (t % 2), 31))]
        preds.append(_paint((h, w), pl))
    return Sequence(name, np.stack(frames), np.stack(preds))


def seq_void(rng, name="void", t_len=10, h=80, w=120):
    frames = []
    for t in range(t_len):
        obj = ellipse(h, w, 40, 30 + 4 * t, 20, 16)
        band = ellipse(h, w, 40, 30 + 4 * t, 23, 19) & ~obj  # void around object 1, as in DAVIS
        lab = _paint((h, w), [(2, rect(h, w, 5, 80, 30, 115)), (1, obj)])
        lab[band] = VOID
        lab[70:78, 5:40] = VOID
        frames.append(lab)
    gt = np.stack(frames)
    pred = _predict(np.where(gt == VOID, 0, gt), rng, (1, 2), shift=3)
    pred[:, 71:76, 10:30] = 2  # predicted inside a void region
    return Sequence(name, gt, pred)


def seq_late(rng, name="late", t_len=12, h=90, w=140):
    """Frame 0 has ids 1 and 3 (so DAVIS's objects are 1..3); 2 appears at frame 4, 4 at frame 6
    (above the first frame's largest id: not a DAVIS object)."""
    frames = []
    for t in range(t_len):
        lay = [(1, ellipse(h, w, 30, 30, 15, 20)), (3, rect(h, w, 50, 90, 80, 130))]
        if t >= 4:
            lay.append((2, ellipse(h, w, 65, 40 + t, 12, 12)))
        if t >= 6:
            lay.append((4, rect(h, w, 5, 60, 20, 80)))
        frames.append(_paint((h, w), lay))
    gt = np.stack(frames)
    pred = _predict(gt, rng, (1, 2, 3))
    pred[2][ellipse(h, w, 65, 42, 10, 10)] = 2  # predicted before it shows up
    return Sequence(name, gt, pred)


def seq_border(rng, name="border", t_len=8, h=64, w=96):
    frames = []
    for t in range(t_len):
        lay = [(1, rect(h, w, 0, 0, 12 + t, 20)),  # top-left corner
               (2, rect(h, w, h - 10, 30, h, 60 + t)),  # bottom edge
               (3, rect(h, w, 20, w - 8 - t, 45, w)),  # right edge
               (4, rect(h, w, h - 6, w - 6, h, w))]  # bottom-right corner
        frames.append(_paint((h, w), lay))
    gt = np.stack(frames)
    return Sequence(name, gt, _predict(gt, rng, (1, 2, 3, 4), shift=2, noise=False))


def seq_short(rng, name, t_len, h=40, w=60):
    gt = np.stack([_paint((h, w), [(1, ellipse(h, w, 20, 20 + 3 * t, 10, 12)),
                                   (2, rect(h, w, 5, 40, 20, 55))]) for t in range(t_len)])
    return Sequence(name, gt, _predict(gt, rng, (1, 2)))


def seq_empty_pred(rng, name="emptypred", t_len=8, h=70, w=90):
    gt = np.stack([_paint((h, w), [(1, ellipse(h, w, 35, 20 + 5 * t, 14, 14)),
                                   (2, rect(h, w, 40, 50, 60, 80))]) for t in range(t_len)])
    pred = np.zeros_like(gt)
    pred[2:5][gt[2:5] == 2] = 2  # object 1 never predicted, object 2 only briefly
    return Sequence(name, gt, pred)


def seq_long(rng, name, t_len, h=20, w=28):
    gt = np.stack([_paint((h, w), [(1, ellipse(h, w, 10, 6 + (t % 16), 5, 5))]) for t in range(t_len)])
    pred = gt.copy()
    late = np.arange(t_len) > t_len // 2  # better early than late: a decay to measure
    pred[late] = np.stack([_shift(p, 1, 2) for p in pred[late]])
    return Sequence(name, gt, pred)


def seq_big(rng, name="big", t_len=5, h=480, w=854):
    """A DAVIS-size frame: a large object (MOSEv2 caps its radius), a medium and a tiny one."""
    frames = []
    for t in range(t_len):
        lay = [(1, ellipse(h, w, 240, 300 + 8 * t, 120, 160)),
               (2, rect(h, w, 50, 600, 80, 630 + 2 * t)),
               (3, rect(h, w, 400, 700 + t, 404, 705 + t)),
               (4, line(h, w, 440, 50, 300, 400 + 5 * t))]
        frames.append(_paint((h, w), lay))
    gt = np.stack(frames)
    return Sequence(name, gt, _predict(gt, rng, (1, 2, 3, 4), shift=6))


def seq_tiny(rng, name="tiny", t_len=6, h=30, w=40):
    gt = np.stack([_paint((h, w), [(1, rect(h, w, 5, 5 + t, 15, 15 + t)), (2, line(h, w, 25, 2, 25, 30))])
                   for t in range(t_len)])
    return Sequence(name, gt, _predict(gt, rng, (1, 2), shift=1))


def seq_proposals(rng, name, t_len=8, h=72, w=100, proposals=5):
    """For DAVIS's unsupervised task: ground truth with void, and more proposals than objects with
    ids in another order (some duplicates of an object, some empty)."""
    frames = []
    for t in range(t_len):
        lab = _paint((h, w), [(1, ellipse(h, w, 30, 25 + 2 * t, 14, 16)), (2, rect(h, w, 40, 60, 65, 90))])
        lab[0:4, :] = VOID
        frames.append(lab)
    gt = np.stack(frames)
    base = np.where(gt == VOID, 0, gt)
    pred = np.zeros_like(gt)
    order = rng.permutation(np.arange(1, proposals + 1))
    for t in range(t_len):
        lay = [(int(order[0]), _shift(base[t] == 2, 1, 0)),
               (int(order[1]), _shift(base[t] == 1, 0, 2)),
               (int(order[2]), _shift(base[t] == 1, 5, 5)),
               (int(order[3]), rect(h, w, 60, 5, 70, 20))]
        pred[t] = _paint((h, w), lay)
    return Sequence(name, gt, pred)


# ----------------------------------------------------------------------------- cases

def make_case(name: str, seed: int = 0) -> Case:
    """The named case: "main" (every kind above), "unsupervised" (DAVIS proposals) or
    "davislike" (SA-V in the DAVIS-like layout)."""
    rng = np.random.default_rng(seed)
    if name == "main":
        return Case(name, [seq_blobs(rng), seq_vanish(rng), seq_thin(rng), seq_void(rng), seq_late(rng),
                           seq_border(rng), seq_short(rng, "short3", 3), seq_short(rng, "short4", 4), seq_short(rng, "short5", 5),
                           seq_empty_pred(rng), seq_long(rng, "long256", 258), seq_long(rng, "long260", 262),
                           seq_big(rng), seq_tiny(rng)])
    if name == "unsupervised":
        return Case(name, [seq_proposals(rng, "props1"), seq_proposals(rng, "props2", proposals=6),
                           seq_void(rng, "voidu")])
    if name == "davislike":
        return Case(name, [seq_blobs(rng, "dl_blobs"), seq_vanish(rng, "dl_vanish"), seq_void(rng, "dl_void"),
                           seq_late(rng, "dl_late"), seq_empty_pred(rng, "dl_empty"),
                           seq_border(rng, "dl_border")])
    raise ValueError(f"unknown case {name!r}")


def bench_sequences(seed: int = 0, sequences: int = 30, frames: int = 80, h: int = 480, w: int = 854):
    """DAVIS-sized: `sequences` x `frames` at h x w, 2-3 moving objects each. A generator: one
    sequence in memory at a time."""
    rng = np.random.default_rng(seed)
    for s in range(sequences):
        n_obj = 2 + s % 2
        params = rng.random((n_obj, 6))
        gt = np.zeros((frames, h, w), np.uint8)
        for t in range(frames):
            layers = []
            for k in range(n_obj):
                cy, cx, ry, rx, vy, vx = params[k]
                layers.append((k + 1, ellipse(h, w, h * (0.2 + 0.6 * cy) + 20 * np.sin(t / 10 + vy * 6),
                                              w * (0.2 + 0.6 * cx) + (vx - 0.5) * 2 * t,
                                              20 + 60 * ry, 20 + 80 * rx)))
            gt[t] = _paint((h, w), layers)
        yield Sequence(f"seq{s:02d}", gt, _predict(gt, rng, range(1, n_obj + 1), shift=4))


# ----------------------------------------------------------------------------- layouts

def _save(path: str, labels: np.ndarray, mode: str = "P") -> None:
    """A palette PNG as tools/vos_inference.py writes it, or a grey-level ("L") PNG."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if mode == "P":
        save_palette_png(path, labels.astype(np.uint8), None)
    else:
        Image.fromarray(labels.astype(np.uint8)).save(path)


def write_davis(case: Case, root: str, pred_root: str, subset: str = "val",
                unsupervised: bool = False) -> None:
    """DAVIS layout: JPEGImages/480p (empty placeholder .jpg files: only counted),
    Annotations(_unsupervised)/480p, ImageSets/2017/<subset>.txt; predictions <seq>/%05d.png.
    `case.sequences` is read once, so it may be a generator."""
    annotations = "Annotations_unsupervised" if unsupervised else "Annotations"
    names = []
    for s in case.sequences:
        names.append(s.name)
        for t in range(s.gt.shape[0]):
            jpg = os.path.join(root, "JPEGImages", "480p", s.name, f"{t:05d}.jpg")
            os.makedirs(os.path.dirname(jpg), exist_ok=True)
            open(jpg, "wb").close()
            _save(os.path.join(root, annotations, "480p", s.name, f"{t:05d}.png"), s.gt[t])
            _save(os.path.join(pred_root, s.name, f"{t:05d}.png"), s.pred[t])
    os.makedirs(os.path.join(root, "ImageSets", "2017"), exist_ok=True)
    with open(os.path.join(root, "ImageSets", "2017", f"{subset}.txt"), "w") as f:
        f.write("\n".join(names) + "\n")


SAV_STRIDE = 2  # annotated frames: every 2nd (SA-V annotates 6 of 24 fps)


def sav_objects(seq: Sequence) -> list[int]:
    """Ids with a mask on a scored annotated frame (the official evaluator stops on others)."""
    frames = list(range(0, seq.gt.shape[0], SAV_STRIDE))[1:-1]
    ids = sorted(set(np.unique(seq.gt[frames]).tolist()) - {0, VOID}) if frames else []
    return ids


def write_sav(case: Case, gt_root: str, pred_root: str, per_object: bool = True,
              skip_pred: tuple[str, ...] = ()) -> None:
    """SA-V layout. Per object: <vid>/<obj:03d>/%05d.png, ground truth 0/255 on every
    SAV_STRIDE-th frame, predictions 0/1 palette PNGs on every frame (what vos_inference
    writes). DAVIS-like: <vid>/%05d.png labels (255 included, which SA-V scores as an object).
    Videos in `skip_pred` get no prediction folder."""
    for s in case.sequences:
        annotated = range(0, s.gt.shape[0], SAV_STRIDE)
        if per_object:
            for k in sav_objects(s):
                for t in annotated:
                    _save(os.path.join(gt_root, s.name, f"{k:03d}", f"{t:05d}.png"),
                          (s.gt[t] == k).astype(np.uint8) * 255, mode="L")
                if s.name not in skip_pred:
                    for t in range(s.gt.shape[0]):
                        _save(os.path.join(pred_root, s.name, f"{k:03d}", f"{t:05d}.png"),
                              (s.pred[t] == k).astype(np.uint8))
        else:
            for t in annotated:
                _save(os.path.join(gt_root, s.name, f"{t:05d}.png"), s.gt[t])
            if s.name not in skip_pred:
                for t in range(s.gt.shape[0]):
                    _save(os.path.join(pred_root, s.name, f"{t:05d}.png"), s.pred[t])


def write_lvos(case: Case, root: str, pred_root: str, subset: str = "valid") -> str:
    """LVOS layout: Annotations/<seq>/%08d.png on frames 0, 5, 10, ...; <subset>_meta.json with
    each object's range from its first appearance (a few with frame_nums one less or two more
    than the range, as the official code then skips or leaves zeros); an unseen list (every
    other sequence). Returns the unseen list's path."""
    videos = {}
    for i, s in enumerate(case.sequences):
        t_len = s.gt.shape[0]
        objects = {}
        ids = sorted(set(np.unique(s.gt).tolist()) - {0, VOID})
        if i % 3 == 1:
            ids = ids[::-1]  # meta order is not id order
        for n, k in enumerate(ids):
            first = int(np.flatnonzero((s.gt == k).any(axis=(1, 2)))[0])
            count = t_len - first  # annotated frames from the first appearance to the end
            frame_nums = count + (2 if (i + n) % 5 == 3 else -1 if (i + n) % 5 == 4 else 0)
            objects[str(k)] = {"frame_range": {"start": f"{5 * first:08d}", "end": f"{5 * (t_len - 1):08d}",
                                               "frame_nums": frame_nums}}
        videos[s.name] = {"objects": objects}
        for t in range(t_len):
            _save(os.path.join(root, "Annotations", s.name, f"{5 * t:08d}.png"), s.gt[t])
            _save(os.path.join(pred_root, s.name, f"{5 * t:08d}.png"), s.pred[t])
    os.makedirs(root, exist_ok=True)
    with open(os.path.join(root, f"{subset}_meta.json"), "w") as f:
        json.dump({"videos": videos}, f, indent=1)
    unseen = os.path.join(root, "unseen_videos.txt")
    with open(unseen, "w") as f:
        f.write("\n".join(s.name for s in case.sequences[1::2]) + "\n")
    return unseen


def write_mose(case: Case, ann_root: str, meta_path: str, pred_root: str,
               skip_pred: tuple[str, ...] = ()) -> None:
    """MOSEv2 layout: <vid>/%05d.png ground truth and predictions, meta.json with length, size
    and the ids that appear (void is not a MOSE label: it is written as background). Videos in
    `skip_pred` get no prediction folder."""
    videos = {}
    for s in case.sequences:
        t_len, h, w = s.gt.shape
        gt = np.where(s.gt == VOID, 0, s.gt)
        ids = sorted(set(np.unique(gt).tolist()) - {0})
        videos[s.name] = {"length": t_len, "height": h, "width": w, "objects": [str(k) for k in ids]}
        for t in range(t_len):
            _save(os.path.join(ann_root, s.name, f"{t:05d}.png"), gt[t])
            if s.name not in skip_pred:
                _save(os.path.join(pred_root, s.name, f"{t:05d}.png"), s.pred[t])
    os.makedirs(os.path.dirname(os.path.abspath(meta_path)), exist_ok=True)
    with open(meta_path, "w") as f:
        json.dump({"videos": videos}, f, indent=1)
