"""Dispatch-mode checkers for what a CUDA graph may capture, usable on the CPU.

`HostWaitChecker` fails on every op that makes the host wait for the device (reading a
value back, or producing a shape that depends on values): on the CPU nothing waits, so the
ops are recognised by name. `DeviceChecker` fails on any tensor off the expected device
(with `meta` standing in for CUDA: a host tensor mixed into device work is a host-to-device
copy, a wait, and a value frozen into a captured graph).
"""

from __future__ import annotations

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

aten = torch.ops.aten

# Ops whose result the host must wait for: a value read back (.item(), int(), bool()), or
# an output whose shape depends on the values (nonzero, unique, masked_select, ...).
HOST_WAITS = {
    aten._local_scalar_dense: ".item() / int() / float() / bool() reads a value back",
    aten.is_nonzero: "bool(tensor) reads a value back",
    aten.equal: "torch.equal reads a value back",
    aten.nonzero: "nonzero has a data-dependent shape",
    aten.nonzero_numpy: "nonzero has a data-dependent shape",
    aten.argwhere: "argwhere has a data-dependent shape",
    aten.masked_select: "masked_select has a data-dependent shape",
    aten._unique: "unique has a data-dependent shape",
    aten._unique2: "unique has a data-dependent shape",
    aten.unique_dim: "unique has a data-dependent shape",
    aten.unique_consecutive: "unique_consecutive has a data-dependent shape",
    aten.unique_dim_consecutive: "unique_consecutive has a data-dependent shape",
    aten._assert_async: "an async assert",
}
INDEXING = {aten.index, aten.index_put, aten.index_put_, aten._index_put_impl_, aten._unsafe_index,
            aten._unsafe_index_put}


class HostWait(AssertionError):
    """An op inside captured work that makes the host wait for the device."""


class HostWaitChecker(TorchDispatchMode):
    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        packet = func.overloadpacket
        if packet in HOST_WAITS:
            raise HostWait(f"{func}: {HOST_WAITS[packet]}")
        if packet in INDEXING:
            indices = args[1] if len(args) > 1 else kwargs.get("indices", ())
            if any(torch.is_tensor(i) and i.dtype == torch.bool for i in indices or ()):
                raise HostWait(f"{func} with a boolean mask: data-dependent shape (nonzero)")
        # Kernels that read a value back themselves: masked_fill with a tensor value
        # (value.item() on the device), index_put with accumulate=True (sorts the indices
        # and sizes its launch on the host).
        if packet in (aten.masked_fill, aten.masked_fill_) and len(args) > 2 and torch.is_tensor(args[2]):
            raise HostWait(f"{func} with a tensor value: the kernel reads it back (.item()); "
                           "pass a Python number or use torch.where")
        if packet in INDEXING and packet not in (aten.index, aten._unsafe_index):
            accumulate = args[3] if len(args) > 3 else kwargs.get("accumulate", False)
            if accumulate:
                raise HostWait(f"{func} with accumulate=True: the kernel waits for the device "
                               "(sorts the indices); use scatter_add_")
        if packet is aten.repeat_interleave:
            repeats = args[0] if func is aten.repeat_interleave.Tensor else (args[1] if len(args) > 1 else None)
            if torch.is_tensor(repeats) and kwargs.get("output_size") is None:
                raise HostWait(f"{func} with tensor repeats and no output_size: data-dependent shape")
        return func(*args, **kwargs)


class WrongDevice(AssertionError):
    """A tensor off the device the work is meant to run on."""


class DeviceChecker(TorchDispatchMode):
    """Every tensor an op takes or makes is on `device`. Ops that only create a tensor from
    Python values (`scalar_tensor`, `lift_fresh`) are let through: what matters is a host
    tensor reaching device work, which the next op then shows."""

    def __init__(self, device: torch.device):
        super().__init__()
        self.device = torch.device(device)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        created = func.overloadpacket in (aten.lift_fresh, aten.scalar_tensor, aten.lift_fresh_copy)
        target = kwargs.get("device")
        if not created and target is not None and torch.device(target) != self.device:
            raise WrongDevice(f"{func}: makes a tensor on {target} in work on {self.device}")
        if not created:
            self._check(func, (args, kwargs))
        out = func(*args, **kwargs)
        if not created:
            self._check(func, out)
        return out

    def _check(self, func, tree):
        off = [t for t in tree_flatten(tree)[0] if torch.is_tensor(t) and t.device != self.device]
        if off:
            shapes = ", ".join(f"{tuple(t.shape)} on {t.device}" for t in off)
            raise WrongDevice(f"{func}: tensor(s) {shapes} in work on {self.device}")
