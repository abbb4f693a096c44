"""The SAM2Long tracker: every object and pathway through the four stages, batched.

Per frame: encode the image once; start objects whose prompt is on this frame; then one
batched memory-attention + decoder call over the rows that differ (pathways that are
exact copies are computed once), selection for all objects with tensor ops, one batched
memory-encoder call for the new entries, and a gather of the pathway banks. Output masks
wait in each object's lineage until they are decided (see runtime/lineage.py), then until
every object has decided the frame; both waits hold them in one SpillStore per video, so
host memory stays flat however long they wait (runtime/spill.py).

Several prompt frames per object (SAM2Long extended; README "Python API"): the first starts
the object; a later one, when the tree reaches it, decides the frames still waiting by slot
0 of the frame before, shows the prompted mask, joins every pathway's conditioning memory
(runtime/memory_bank.py) and restarts the accumulated scores at 0; each pathway keeps its
own memory. With one prompt frame per object this is the original's tree, bit for bit.
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from sam2long.engine.stages import ImageFeatures, StageBackend
from sam2long.runtime import host_memory
from sam2long.runtime.config import TrackerConfig
from sam2long.runtime.cuda_graphs import GraphCache, blocking_event
from sam2long.runtime.lineage import ObjectLineage
from sam2long.runtime.memory_bank import NewEntries, PathwayBank
from sam2long.runtime.prompts import ObjectPrompt, validate_prompts
from sam2long.runtime.selection import NUM_MASKS, select_candidates
from sam2long.runtime.spill import SpillStore

PROMPT_LOGIT = 10.0  # a mask prompt becomes logits +-10, as in SAM 2


@dataclass
class FrameResult:
    frame_idx: int
    obj_ids: list[int]  # objects whose prompt frame is at or before this frame
    low_res_logits: np.ndarray  # [len(obj_ids), S/4, S/4] float32


@dataclass
class TraceRow:
    """Per tracked frame and object: the kept slots' IoU, object score and accumulated score
    (slot order), for parity checks against the reference."""

    frame_idx: int
    ious: np.ndarray
    obj_scores: np.ndarray
    acc: np.ndarray


@dataclass
class _Step:
    """What one tracked frame leaves for the host (device tensors)."""

    masks: torch.Tensor  # [U, h, w] low-res logits; slot k of object a has masks[unique_of_slot[a, k]]
    unique_of_slot: torch.Tensor  # [A, P]
    parent: torch.Tensor  # [A, P]
    new_cls: torch.Tensor  # [A, P]
    first: torch.Tensor  # [A] first tracked frame after the prompt
    kept_iou: torch.Tensor
    kept_score: torch.Tensor
    acc: torch.Tensor


@dataclass
class _Session:
    obj_ids: list[int]
    conds: list[dict]  # per object: prompt frame -> its prompt (what _condition reads)
    bank: PathwayBank
    copy_class: torch.Tensor  # [O, P] slots with equal values are exact copies
    acc: torch.Tensor  # [O, P] float64
    spill: SpillStore  # every mask waiting to be emitted
    lineages: list[ObjectLineage]
    decided: list[deque]  # per object: (frame, Held mask) decided, not yet emitted
    trace: dict[int, list[TraceRow]] | None
    starts: list[int]
    graphs: GraphCache  # tracking steps capture this video's banks: one cache per video
    next_emit: int = 0
    frames_seen: int = 0


def _first_index_of_equal(keys: torch.Tensor) -> torch.Tensor:
    """[A, P] -> [A, P]: for each slot, the first slot holding the same key."""
    return (keys[:, :, None] == keys[:, None, :]).long().argmax(2)


def _slot_table(a_idx, s_idx, shape, device):
    table = torch.full(shape, -1, dtype=torch.int64, device=device)
    table[a_idx, s_idx] = torch.arange(len(a_idx), device=device)
    return table


def _by_object(prompts: list[ObjectPrompt]) -> list[tuple[int, dict[int, ObjectPrompt]]]:
    """Prompts grouped per object id (first-seen order), by frame (validate_prompts has
    refused two on one frame of one object)."""
    objects: dict[int, dict[int, ObjectPrompt]] = {}
    for p in prompts:
        objects.setdefault(p.obj_id, {})[p.frame_idx] = p
    return [(i, dict(sorted(f.items()))) for i, f in objects.items()]


def decode_prompt(backend: StageBackend, feats: ImageFeatures, prompt: ObjectPrompt,
                  video_hw: tuple[int, int]):
    """The prompt frame as SAM 2 handles it -> (low-res logits [1, 1, S/4, S/4], object
    pointer [C], object score [1]). Also what an interactive demo shows after a click."""
    geo, device = backend.geometry, backend.device
    size = geo.image_size
    if prompt.mask is not None:
        mask = torch.from_numpy(np.asarray(prompt.mask, dtype=bool))[None, None].float().to(device)
        if mask.shape[-2:] != (size, size):
            mask = F.interpolate(mask, size=(size, size), mode="bilinear",
                                 align_corners=False, antialias=True)
            mask = (mask >= 0.5).float()
        high = mask * 2 * PROMPT_LOGIT - PROMPT_LOGIT
        low = F.interpolate(high, size=(geo.low_res,) * 2, mode="bilinear",
                            align_corners=False, antialias=True)
        # The pointer comes from the SAM heads on the raw features with the mask prompt.
        dec = backend.decode_masks(feats.feat, feats, mask_input=mask)
        return low, dec.single_ptr[0], torch.full((1,), PROMPT_LOGIT, device=device)
    coords, labels = prompt.click_inputs(video_hw)
    h, w = video_hw
    coords_t = torch.from_numpy(coords) / torch.tensor([w, h]) * size
    pix = feats.feat + backend.no_mem_embed.view(1, -1, 1, 1)
    dec = backend.decode_masks(pix, feats, coords_t[None].to(device),
                               torch.from_numpy(labels)[None].to(device))
    lo, hi = geo.multimask_points
    if lo <= len(labels) <= hi:  # one click: three candidates, the best predicted IoU wins
        best = int(torch.argmax(dec.ious[0]))
        return dec.masks[:, best:best + 1], dec.obj_ptrs[0, best], dec.obj_score[:1]
    return dec.single_mask, dec.single_ptr[0], dec.obj_score[:1]


class SAM2LongTracker:
    """`fixed_shapes` (default: on CUDA) gives every pathway its own row, copies included,
    so each frame is fixed-shape device work with one host wait; `cuda_graphs` then
    captures the image encoder and the tracking step as CUDA graphs. On CUDA all work runs
    on one non-default stream."""

    def __init__(self, backend: StageBackend, config: TrackerConfig, cuda_graphs: bool = False,
                 fixed_shapes: bool | None = None, max_cond_frames_in_attn: int = -1):
        self.backend = backend
        self.config = config
        # SAM 2's rule for objects with several prompt frames: how many of them a frame reads.
        self.max_cond_frames_in_attn = max_cond_frames_in_attn
        self.geo = backend.geometry
        self.device = backend.device
        on_cuda = self.device.type == "cuda"
        if cuda_graphs and not on_cuda:
            raise ValueError(f"CUDA graphs need a CUDA backend, not {self.device}")
        self.fixed_shapes = on_cuda if fixed_shapes is None else fixed_shapes
        if cuda_graphs and not self.fixed_shapes:
            raise ValueError("CUDA graphs need fixed shapes")
        self.cuda_graphs = cuda_graphs
        # One memory pool for every graph of this tracker (runtime/cuda_graphs.py).
        self._graph_pool = torch.cuda.graph_pool_handle() if cuda_graphs else None
        self._image_graphs = GraphCache(cuda_graphs, backend, self._graph_pool)  # stateless: serves every video
        self._video_graphs: GraphCache | None = None
        self._pinned: dict = {}
        self._objs: dict = {}  # active object indices on the device, per set of active objects
        self._stream = torch.cuda.Stream(self.device) if on_cuda else None

    # -- public ----------------------------------------------------------------------
    def track(
        self,
        frames: Iterable[torch.Tensor],
        prompts: list[ObjectPrompt],
        num_frames: int,
        video_hw: tuple[int, int],
        trace: dict | None = None,
    ) -> Iterator[FrameResult]:
        """Track `prompts` through `frames` (preprocessed [1, 3, S, S], read lazily).

        Yields one FrameResult per frame, in order, as soon as every started object's
        mask for it is decided. Pass a dict as `trace` to collect TraceRows per object id.
        """
        validate_prompts(prompts, video_hw, num_frames, getattr(self.backend, "max_clicks", None))
        session = self._new_session(prompts, num_frames, trace)
        yield from self._run(session, enumerate(frames), num_frames, video_hw)

    def _run(self, session: _Session, frames, num_frames: int, video_hw) -> Iterator[FrameResult]:
        """Track (frame_idx, image) pairs from frame session.frames_seen on, to the end."""
        try:
            for frame_idx, image in frames:
                if frame_idx >= num_frames:
                    raise ValueError(f"the video has more frames than num_frames={num_frames}")
                with self._on_stream():
                    self._step(session, frame_idx, image, video_hw)
                session.frames_seen = frame_idx + 1
                self._frame_done(session, frame_idx)
                yield from self._emit(session)
            if session.frames_seen != num_frames:
                raise ValueError(
                    f"the video ended after {session.frames_seen} frames, expected {num_frames}")
            for obj, lineage in enumerate(session.lineages):
                self._decide(session, obj, lineage.finish())
            yield from self._emit(session)
        finally:
            session.spill.close()

    def _frame_done(self, s: _Session, frame_idx: int):
        """After every frame's step, before its masks are emitted (an interactive session
        snapshots the tree here)."""

    # -- per video -------------------------------------------------------------------
    def _new_session(self, prompts: list[ObjectPrompt], num_frames, trace) -> _Session:
        return self._session_for(_by_object(prompts), num_frames, trace)

    def _session_for(self, objects: list[tuple[int, dict]], num_frames, trace) -> _Session:
        """`objects`: (object id, {prompt frame: its prompt}) in output order."""
        num_obj, num_path = len(objects), self.config.num_pathway
        max_conds = max((len(conds) for _, conds in objects), default=1)
        bank = PathwayBank(self.geo, num_obj, num_path, num_frames, self.config.iou_thre, self.device,
                           max_conds=max_conds, max_cond_in_attn=self.max_cond_frames_in_attn)
        if trace is not None:
            trace.clear()
            trace.update({i: [] for i, _ in objects})
        if self._video_graphs is not None:  # the last video's graphs hold its banks: done
            self._video_graphs.close()
        self._video_graphs = GraphCache(self.cuda_graphs and self._image_graphs.enabled, self.backend,
                                        self._graph_pool)
        with self._on_stream():  # working memory on the stream that uses it
            self.backend.reserve_batch(num_obj * num_path)  # the most rows a frame runs
        spill = self._spill_store()
        return _Session(
            obj_ids=[i for i, _ in objects],
            conds=[dict(c) for _, c in objects],
            bank=bank,
            copy_class=torch.zeros(num_obj, num_path, dtype=torch.int64, device=self.device),
            acc=torch.zeros(num_obj, num_path, dtype=torch.float64, device=self.device),
            spill=spill,
            lineages=[ObjectLineage(spill) for _ in objects],
            decided=[deque() for _ in objects],
            trace=trace,
            starts=[min(c) for _, c in objects],
            graphs=self._video_graphs,
        )

    def _spill_store(self) -> SpillStore:
        return SpillStore()

    def _on_stream(self):
        return torch.cuda.stream(self._stream) if self._stream is not None else contextlib.nullcontext()

    def _upload(self, image: torch.Tensor) -> torch.Tensor:
        """The frame on the device; on CUDA through a reused pinned buffer, asynchronously
        (the previous frame's wait guarantees the buffer is free again)."""
        if self.device.type != "cuda":
            return image.to(self.device)
        staging = self._pinned.get("image")
        if staging is None or staging.shape != image.shape:
            staging = self._pinned["image"] = torch.empty(image.shape, dtype=image.dtype, pin_memory=True)
        staging.copy_(image)
        return staging.to(self.device, non_blocking=True)

    def _step(self, s: _Session, t: int, image: torch.Tensor, video_hw):
        if t < min(s.starts):
            return  # no object yet: nothing to compute for this frame
        if self.device.type == "cpu":
            host_memory.return_freed_heap()  # the last frame's temporaries are gone by now
        feats = self._image_graphs.run("image", self.backend.encode_image, {"image": self._upload(image)})
        for obj, start in enumerate(s.starts):
            if start == t:
                self._decide(s, obj, [(t, self._start_object(s, obj, feats, video_hw))])
            elif start < t and t in s.conds[obj]:
                self._condition_again(s, obj, t, feats, video_hw)
        active = [obj for obj, start in enumerate(s.starts) if start < t and t not in s.conds[obj]]
        if active:
            self._track_active(s, t, feats, active)

    # -- prompt frames -----------------------------------------------------------------
    def _condition(self, s: _Session, obj: int, t: int, feats: ImageFeatures, video_hw):
        """A prompt frame -> (low-res logits [h, w] on the host, memory [HW, Cm], pointer [C])."""
        low, ptr, score = decode_prompt(self.backend, feats, s.conds[obj][t], video_hw)
        mem = self.backend.encode_memory(feats.feat, low, score, from_prompt=True)
        return low[0, 0].float().cpu().numpy(), mem[0].flatten(1).transpose(0, 1), ptr

    def _start_object(self, s: _Session, obj: int, feats: ImageFeatures, video_hw) -> np.ndarray:
        t = s.starts[obj]
        mask, feat, ptr = self._condition(s, obj, t, feats, video_hw)
        s.bank.set_condition(obj, feat, ptr, t)
        s.copy_class[obj] = 0
        s.acc[obj] = 0
        return mask

    def _condition_again(self, s: _Session, obj: int, t: int, feats: ImageFeatures, video_hw):
        """A later prompt frame: the frames still waiting take slot 0's lineage at t - 1,
        frame t shows the prompt, every pathway keeps its own memory and gains the prompt's
        as conditioning memory, and the accumulated scores restart at 0."""
        mask, feat, ptr = self._condition(s, obj, t, feats, video_hw)
        self._decide(s, obj, s.lineages[obj].finish())
        self._decide(s, obj, [(t, mask)])
        s.bank.add_condition(obj, feat, ptr, t)
        s.acc[obj] = 0

    # -- frames after the prompt --------------------------------------------------------
    def _track_active(self, s: _Session, t: int, feats: ImageFeatures, active: list[int]):
        dev = self.device
        key = tuple(active)
        objs = self._objs.get(key)
        if objs is None:  # one upload per set of active objects, not per frame
            objs = self._objs[key] = torch.tensor(active, device=dev)
        if self.fixed_shapes:
            # A fill kernel, not a host->device copy: the frame index as a device scalar.
            inputs = dict(objs=objs, t=torch.full((), t, dtype=torch.int64, device=dev),
                          feat=feats.feat, hr0=feats.hr0, hr1=feats.hr1)
            step = s.graphs.run(key, lambda **kw: self._fixed_step(s, **kw), inputs)
        else:
            step = self._dedupe_step(s, t, feats, objs)
        self._push(s, t, active, step)

    def _select(self, s: _Session, objs, first, cls, row_of_slot, dec):
        """Selection for every active object -> (parent, mask_idx, acc, new copy class,
        decoded row of each kept candidate)."""
        P = self.config.num_pathway
        ious = dec.ious[row_of_slot]  # [A, P, 3]
        scores = dec.obj_score[row_of_slot]  # [A, P]
        # Frame start+1 is a plain SAM 2 step (best-IoU mask, every slot a copy of it);
        # later frames are the tree step.
        sel = select_candidates(s.acc[objs], ious, scores, self.config.uncertainty)
        best = torch.argmax(ious[:, 0], dim=1)  # first maximum, as torch.argmax in SAM 2
        parent = torch.where(first[:, None], 0, sel.parent)
        mask_idx = torch.where(first[:, None], best[:, None].expand(-1, P), sel.mask_idx)
        acc = torch.where(first[:, None], 0.0, sel.score)
        new_cls = _first_index_of_equal(cls.gather(1, parent) * NUM_MASKS + mask_idx)
        return parent, mask_idx, acc, new_cls, row_of_slot.gather(1, parent)

    def _commit(self, s: _Session, objs, parent, new_cls, acc, feat_of_slot, dec, src_row, mask_idx):
        kept_iou = dec.ious[src_row, mask_idx]
        kept_score = dec.obj_score[src_row]
        s.bank.advance(objs, parent, NewEntries(
            feat=feat_of_slot, ptr=dec.obj_ptrs[src_row, mask_idx], score=kept_score, iou=kept_iou,
        ), new_cls)
        s.acc[objs] = acc
        s.copy_class[objs] = new_cls
        return kept_iou, kept_score

    def _dedupe_step(self, s: _Session, t: int, feats: ImageFeatures, objs) -> _Step:
        """Rows only for pathways that differ (exact copies computed once): least work,
        but data-dependent shapes and host waits; the CPU path."""
        dev, P = self.device, self.config.num_pathway
        num_act = objs.shape[0]
        first = s.bank.start[objs] == t - 1
        cls = s.copy_class[objs]  # [A, P]
        slot_ids = torch.arange(P, device=dev)
        rep_a, rep_slot = torch.nonzero(cls == slot_ids, as_tuple=True)
        row_table = _slot_table(rep_a, rep_slot, (num_act, P), dev)
        row_of_slot = row_table.gather(1, cls)  # [A, P] decoded row of each slot

        memory, mem_ids = s.bank.memory_inputs(objs[rep_a], rep_slot, t)
        pix = self.backend.attend_memory(feats.feat, memory, mem_ids)
        dec = self.backend.decode_masks(pix, feats)
        parent, mask_idx, acc, new_cls, src_row = self._select(s, objs, first, cls, row_of_slot, dec)

        new_a, new_slot = torch.nonzero(new_cls == slot_ids, as_tuple=True)
        new_rows, new_masks = src_row[new_a, new_slot], mask_idx[new_a, new_slot]
        low_masks = dec.masks[new_rows, new_masks][:, None]  # [U, 1, h, w]
        mem = self.backend.encode_memory(feats.feat, low_masks, dec.obj_score[new_rows])
        mem = mem.flatten(2).transpose(1, 2).to(torch.bfloat16)  # [U, HW, Cm]
        unique_of_slot = _slot_table(new_a, new_slot, (num_act, P), dev).gather(1, new_cls)
        kept_iou, kept_score = self._commit(s, objs, parent, new_cls, acc, mem[unique_of_slot],
                                            dec, src_row, mask_idx)
        return _Step(low_masks[:, 0], unique_of_slot, parent, new_cls, first, kept_iou, kept_score, acc)

    def _fixed_step(self, s: _Session, objs, t, feat, hr0, hr1) -> _Step:
        """Every (object, pathway) slot is a row, copies included: fixed shapes and no host
        waits, so the whole step can be one CUDA graph; the GPU path."""
        dev, P = self.device, self.config.num_pathway
        num_act = objs.shape[0]
        feats = ImageFeatures(feat, hr0, hr1)
        first = s.bank.start[objs] == t - 1
        cls = s.copy_class[objs]
        row_of_slot = torch.arange(num_act * P, device=dev).view(num_act, P)
        row_objs = objs[:, None].expand(-1, P).reshape(-1)  # no repeat_interleave: it can sync
        memory, _ = s.bank.memory_inputs(row_objs, torch.arange(P, device=dev).repeat(num_act), t)
        pix = self.backend.attend_memory(feat, memory)
        dec = self.backend.decode_masks(pix, feats)
        parent, mask_idx, acc, new_cls, src_row = self._select(s, objs, first, cls, row_of_slot, dec)
        low_masks = dec.masks[src_row.flatten(), mask_idx.flatten()][:, None]  # [A*P, 1, h, w]
        mem = self.backend.encode_memory(feat, low_masks, dec.obj_score[src_row.flatten()])
        mem = mem.flatten(2).transpose(1, 2).to(torch.bfloat16)
        mem = mem.reshape(num_act, P, *mem.shape[1:])  # [A, P, HW, Cm]
        kept_iou, kept_score = self._commit(s, objs, parent, new_cls, acc, mem, dec, src_row, mask_idx)
        # Copies share their class representative's mask, as in the dedupe path.
        unique_of_slot = row_of_slot[:, :1] + new_cls
        return _Step(low_masks[:, 0], unique_of_slot, parent, new_cls, first, kept_iou, kept_score, acc)

    def _push(self, s: _Session, t: int, active: list[int], step: _Step):
        """Hand the frame's masks to the lineages: the one host wait of the frame."""
        if self.device.type == "cuda":
            masks, ints = self._to_host(step)
        else:
            masks = step.masks.float().numpy()
            ints = torch.stack((step.unique_of_slot, step.parent, step.new_cls)).numpy()
        unique_of_slot, parent_np, cls_np = ints
        for a, obj in enumerate(active):
            slots_unique = unique_of_slot[a]
            base = slots_unique.min()
            obj_masks = masks[base:slots_unique.max() + 1].copy()  # this object's distinct masks
            s.lineages[obj].push(t, obj_masks, slots_unique - base, parent_np[a], cls_np[a])
            self._decide(s, obj, s.lineages[obj].pop_decided())
        if s.trace is not None:
            self._record_trace(s, t, active, step.first, step.kept_iou, step.kept_score, step.acc)

    def _to_host(self, step: _Step):
        """Device -> pinned host copies queued on the stream, then one wait for all."""
        ints = torch.stack((step.unique_of_slot, step.parent, step.new_cls))
        pinned = self._pinned.get(("masks", step.masks.shape))
        if pinned is None:
            pinned = (torch.empty(step.masks.shape, dtype=torch.float32, pin_memory=True),
                      torch.empty(ints.shape, dtype=torch.int64, pin_memory=True))
            self._pinned[("masks", step.masks.shape)] = pinned
        pinned[0].copy_(step.masks, non_blocking=True)
        pinned[1].copy_(ints, non_blocking=True)
        done = blocking_event()  # sleeps, not spins, until the copies land
        done.record()
        done.synchronize()
        return pinned[0].numpy(), pinned[1].numpy().copy()

    def _record_trace(self, s, t, active, first, kept_iou, kept_score, acc):
        iou_np, score_np, acc_np = (x.double().cpu().numpy() for x in (kept_iou, kept_score, acc))
        first_np = first.cpu().numpy()
        for a, obj in enumerate(active):
            row_iou, row_score = iou_np[a].copy(), score_np[a].copy()
            if first_np[a]:  # the reference has one slot at the first tracked frame
                row_iou[1:], row_score[1:] = np.nan, np.nan
            s.trace[s.obj_ids[obj]].append(TraceRow(t, row_iou, row_score, acc_np[a]))

    # -- output ----------------------------------------------------------------------
    @staticmethod
    def _decide(s: _Session, obj: int, frames: list[tuple[int, np.ndarray]]):
        """An object's decided masks wait for the other objects' answers in the spill store."""
        s.decided[obj].extend((f, s.spill.put(mask)) for f, mask in frames)

    def _emit(self, s: _Session) -> Iterator[FrameResult]:
        """Frames in order, each once every object started by then has decided it."""
        while s.next_emit < s.frames_seen:
            f = s.next_emit
            started = [o for o, start in enumerate(s.starts) if start <= f]
            if any(not s.decided[o] or s.decided[o][0][0] != f for o in started):
                return
            masks = [s.spill.take(s.decided[o].popleft()[1]) for o in started]
            size = self.geo.low_res
            stacked = np.stack(masks) if masks else np.zeros((0, size, size), np.float32)
            yield FrameResult(f, [s.obj_ids[o] for o in started], stacked)
            s.next_emit += 1
