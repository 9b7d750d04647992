"""Turn low-level failures into messages a ComfyUI user can act on.

ComfyUI shows a node's exception type and message in its error dialog, so the
message names the node, what went wrong and which setting to change. Only
out-of-memory and checkpoint errors are rewritten; every other exception,
ComfyUI's interrupt above all, passes through unchanged.
"""
from __future__ import annotations

import contextlib

import torch

from .harmony_lib import checkpoint


class HarmonyOutOfMemory(RuntimeError):
    """Out of memory, with the setting that lowers memory use."""


class HarmonyModelError(ValueError):
    """A model file that does not fit the chosen settings (format, dtype, device)."""


def _is_oom(e: BaseException) -> bool:
    if isinstance(e, torch.OutOfMemoryError):
        return True
    text = str(e).lower()
    return isinstance(e, (RuntimeError, MemoryError)) and (
        "out of memory" in text or "can't allocate memory" in text or isinstance(e, MemoryError))


@contextlib.contextmanager
def actionable_errors(node: str, memory_hint: str):
    """Re-raise OOM and checkpoint errors of the wrapped call with advice.

    memory_hint: what to change on this node or the loader to use less memory.
    """
    try:
        yield
    except Exception as e:  # noqa: BLE001 - filtered below, everything else re-raised as is
        if _is_oom(e):
            raise HarmonyOutOfMemory(
                f"{node}: out of memory ({str(e).splitlines()[0][:200]}). {memory_hint}") from e
        checkpoint_error = checkpoint.CheckpointError
        if checkpoint_error is not None and isinstance(e, checkpoint_error):
            raise HarmonyModelError(
                f"{node}: {e} In ComfyUI: pick a Harmony model file (with its .text.safetensors "
                f"beside it) or '(bundled tiny model)', and dtype=auto if a dtype was forced.") from e
        raise
