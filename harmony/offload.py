"""Low-memory execution: block swap with prefetch, and full CPU offload.

Both keep a *master copy* of the offloaded weights in CPU memory (pinned when
the compute device is CUDA, so copies can run asynchronously) and give the
layers a device copy only while they are used; afterwards the layers point at
the CPU master again and the device copy is freed. Weights are read-only
while offloaded (inference): changes made to a device copy are not written
back.

- ``BlockSwap(model, resident_blocks=N, device)``: layers ``0..N-1`` (video
  block i and audio block i together) and all non-block weights stay on the
  device; later layers are copied in by ``model.layer_hook(i)`` right before
  layer i runs, with layer i+1 prefetched on a side CUDA stream.
- ``cpu_offload(model, device)``: the whole model lives on the CPU between
  calls and is copied to the device for each call (or once for a
  ``with offload.loaded():`` block).

fp8-stored weights are copied as fp8; ``harmony.ops`` casts them on use.

Every load is a real copy (``Tensor.to(device, copy=True)``), also when the
device is the CPU, so the streaming path can be watched without a GPU:
``BlockSwap.where(i)`` says whether layer i's weights are resident, on the
device (a copy) or at home (the CPU master), and ``copies`` / ``bytes_copied``
count the tensor copies. A ``transfer`` function may be injected to record or
replace each copy.
"""
from __future__ import annotations

from contextlib import contextmanager, nullcontext
from typing import Callable, Optional

import torch
import torch.nn as nn


def layer_modules(model: nn.Module, i: int) -> list[nn.Module]:
    """The modules that make up layer ``i``: video block i and audio block i."""
    towers = [getattr(model, name, None) for name in ("video_model", "audio_model")]
    return [t.blocks[i] for t in towers if t is not None and i < len(t.blocks)]


class _TensorSlot:
    """One parameter or buffer of a module, with its CPU master copy."""

    __slots__ = ("module", "name", "is_param", "master", "home")

    def __init__(self, module: nn.Module, name: str, is_param: bool):
        self.module, self.name, self.is_param = module, name, is_param
        self.home = self.get().device  # where it was before offloading, for remove()
        self.master = None

    def get(self) -> torch.Tensor:
        table = self.module._parameters if self.is_param else self.module._buffers
        return table[self.name]

    def set(self, t: torch.Tensor):
        if self.is_param:
            self.module._parameters[self.name].data = t
        else:
            self.module._buffers[self.name] = t


def _slots(modules) -> list[_TensorSlot]:
    """Every parameter and buffer of ``modules`` (and their children), once."""
    slots, seen = [], set()
    for root in modules:
        for sub in root.modules():
            if id(sub) in seen:
                continue
            seen.add(id(sub))
            slots += [_TensorSlot(sub, n, True) for n, p in sub._parameters.items() if p is not None]
            slots += [_TensorSlot(sub, n, False) for n, b in sub._buffers.items() if b is not None]
    return slots


def copy_to(t: torch.Tensor, device: torch.device, non_blocking: bool = False) -> torch.Tensor:
    """The default transfer: a fresh copy of `t` on `device` (a copy even when `t` is already there)."""
    return t.to(device, non_blocking=non_blocking, copy=True)


class _Offloaded:
    """Weights of some modules kept on the CPU and copied to a device on demand."""

    def __init__(self, modules, pin: bool, transfer: Callable = copy_to, stats: Optional[dict] = None):
        self.transfer = transfer
        self.stats = stats if stats is not None else {"copies": 0, "bytes": 0}
        self.slots = _slots(modules)
        for s in self.slots:
            master = s.get().detach().to("cpu")
            if pin and not master.is_pinned():
                master = master.pin_memory()
            s.master = master
            s.set(master)
        self.on_device = False
        self.ready: torch.cuda.Event | None = None

    def load(self, device: torch.device, stream: torch.cuda.Stream | None = None):
        """Copy the weights to ``device`` (asynchronously on ``stream`` if given)."""
        if self.on_device:
            return
        with torch.cuda.stream(stream) if stream is not None else nullcontext():
            for s in self.slots:
                s.set(self.transfer(s.master, device, non_blocking=True))
                self.stats["copies"] += 1
                self.stats["bytes"] += s.master.numel() * s.master.element_size()
            if stream is not None:
                self.ready = torch.cuda.Event()
                self.ready.record(stream)
        self.on_device = True

    def wait(self):
        """Make the compute stream wait for an asynchronous ``load``."""
        if self.ready is None:
            return
        current = torch.cuda.current_stream()
        current.wait_event(self.ready)
        for s in self.slots:  # the copies were allocated on the side stream
            s.get().record_stream(current)
        self.ready = None

    def at_home(self) -> bool:
        """Every tensor is its CPU master (no device copy in place)."""
        return all(s.get().data_ptr() == s.master.data_ptr() for s in self.slots)

    def unload(self):
        """Point the modules at the CPU masters again (the device copies are freed)."""
        if not self.on_device:
            return
        self.wait()
        for s in self.slots:
            s.set(s.master)
        self.on_device = False

    def restore(self):
        """Put every tensor back on the device it had before offloading."""
        self.unload()
        for s in self.slots:
            s.set(s.master.to(s.home))


def _move(slots, device):
    for s in slots:
        s.set(s.get().to(device))


class BlockSwap:
    """Keep the first ``resident_blocks`` layers on ``device``; stream the rest in.

    Installs ``model.layer_hook`` (chaining any hook already there) and forward
    hooks on the model. ``remove()`` uninstalls and puts every weight back on
    the device it had before. `transfer(tensor, device, non_blocking)` makes
    each device copy (default `copy_to`). ``copies`` / ``bytes_copied`` count the
    tensor copies, ``loads`` the layer loads, ``where(i)`` tells where layer i is.
    """

    def __init__(self, model: nn.Module, resident_blocks: int, device, prefetch: bool = True,
                 transfer: Callable = copy_to):
        if not hasattr(model, "layer_hook") or not hasattr(model, "num_layers"):
            raise TypeError(
                f"BlockSwap needs a model with .num_layers and a .layer_hook its forward calls; "
                f"got {type(model).__name__}"
            )
        n = model.num_layers
        if not isinstance(resident_blocks, int) or not 0 <= resident_blocks <= n:
            raise ValueError(f"resident_blocks must be an integer in 0..{n} (the model has {n} layers); "
                             f"got {resident_blocks!r}")
        self.model, self.device = model, torch.device(device)
        self.resident_blocks, self.prefetch = resident_blocks, prefetch
        cuda = self.device.type == "cuda"
        self.stream = torch.cuda.Stream(self.device) if cuda and prefetch else None

        self._stats = {"copies": 0, "bytes": 0}
        self.layers = {i: _Offloaded(layer_modules(model, i), pin=cuda, transfer=transfer, stats=self._stats)
                       for i in range(resident_blocks, n)}
        swapped = {id(m) for layer in self.layers.values() for s in layer.slots for m in [s.module]}
        self._resident = [s for s in _slots([model]) if id(s.module) not in swapped]
        _move(self._resident, self.device)
        self.loads = 0  # how many times a layer was copied in (for tests and logs)

        self._previous_hook = model.layer_hook
        model.layer_hook = self._before_layer
        self._handles = [
            model.register_forward_pre_hook(lambda *_: self._start()),
            model.register_forward_hook(lambda *_: self._finish(), always_call=True),
        ]

    def _start(self):
        self._finish()
        first = self.layers.get(0)
        if first is not None and self.prefetch:
            first.load(self.device, self.stream)
            self.loads += 1

    def _before_layer(self, i: int):
        if self._previous_hook is not None:
            self._previous_hook(i)
        keep = (i, i + 1) if self.prefetch else (i,)
        for j, layer in self.layers.items():
            if j not in keep:
                layer.unload()
        layer = self.layers.get(i)
        if layer is not None:
            if not layer.on_device:
                layer.load(self.device)
                self.loads += 1
            layer.wait()
        following = self.layers.get(i + 1)
        if self.prefetch and following is not None and not following.on_device:
            following.load(self.device, self.stream)
            self.loads += 1

    def _finish(self):
        for layer in self.layers.values():
            layer.unload()

    def on_device_layers(self) -> list[int]:
        """Indices of the swapped layers whose weights are on the device now."""
        return [i for i, layer in self.layers.items() if layer.on_device]

    def where(self, i: int) -> str:
        """Where layer i's weights are: "resident" (never moved), "device" (a copy) or "host" (the CPU master)."""
        if not 0 <= i < self.model.num_layers:
            raise IndexError(f"layer {i} out of range 0..{self.model.num_layers - 1}")
        layer = self.layers.get(i)
        if layer is None:
            return "resident"
        home = layer.at_home()
        if home == layer.on_device:
            raise RuntimeError(f"layer {i}: bookkeeping says on_device={layer.on_device} but at_home={home}")
        return "host" if home else "device"

    @property
    def copies(self) -> int:
        """Tensor copies made so far (each parameter or buffer of a loaded layer counts once per load)."""
        return self._stats["copies"]

    @property
    def bytes_copied(self) -> int:
        return self._stats["bytes"]

    def remove(self):
        """Uninstall the hooks and put every weight back where it was."""
        for h in self._handles:
            h.remove()
        self._handles = []
        self.model.layer_hook = self._previous_hook
        for layer in self.layers.values():
            layer.restore()
        for s in self._resident:
            s.set(s.get().to(s.home))
        self.layers = {}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.remove()


class CPUOffload:
    """The whole model on the CPU between calls, on ``device`` during a call.

    Every forward call copies the weights in and drops them afterwards; inside
    ``with offload.loaded():`` they stay on the device for all calls of the
    block (one copy per sampling run instead of one per step).
    ``remove()`` (or leaving ``with cpu_offload(...)``) restores the model.
    """

    def __init__(self, model: nn.Module, device, transfer: Callable = copy_to):
        self.model, self.device = model, torch.device(device)
        self.weights = _Offloaded([model], pin=self.device.type == "cuda", transfer=transfer)
        self._held = 0
        self.loads = 0
        self._handles = [
            model.register_forward_pre_hook(lambda *_: self._load()),
            model.register_forward_hook(lambda *_: self._unload(), always_call=True),
        ]

    def _load(self):
        if not self.weights.on_device:
            self.weights.load(self.device)
            self.loads += 1

    def _unload(self):
        if self._held == 0:
            self.weights.unload()

    @contextmanager
    def loaded(self):
        """Keep the weights on the device for the whole block."""
        self._held += 1
        try:
            self._load()
            yield self.model
        finally:
            self._held -= 1
            self._unload()

    @property
    def on_device(self) -> bool:
        return self.weights.on_device

    @property
    def copies(self) -> int:
        return self.weights.stats["copies"]

    def remove(self):
        for h in self._handles:
            h.remove()
        self._handles = []
        self.weights.restore()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.remove()


def cpu_offload(model: nn.Module, device) -> CPUOffload:
    """Full CPU offload of ``model`` for calls on ``device``; see ``CPUOffload``."""
    return CPUOffload(model, device)
