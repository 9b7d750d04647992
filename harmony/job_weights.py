"""Job weights: a job's own copy of the few tensors it retrained, used only while that job samples.

Why: on the 2-core CPU budget one set of tiny-model weights could not serve all four
jobs. Training the audio tower on V2A rows taught a still video to stay quiet, but the
same weights are what A2V's video tower reads, and A2V on speech fell from 0.76 to 0.56
(docs/training/experiments.md, S7-S10). A job's own tensors remove the trade: V2A samples
with its retrained audio blocks, every other job keeps the shared weights bit for bit.

File layout (any Harmony safetensors file; other tools ignore the extra names):

    video_model.blocks.0.self_attn.q.weight          the shared tensor
    jobs.V2A.audio_model.blocks.0.self_attn.q.weight  V2A's own copy of a shared tensor

A job entry has the shared tensor's name and shape; only tensors that differ are stored.
``load_model`` converts each job tensor exactly as it converts the shared one (storage
dtype, fp8 and its scale) and keeps them in ``model.job_tensors``; ``job_weights(model,
job)`` swaps them in for one sampling run and puts the shared ones back, also on error.
The swap points each parameter at another tensor (no copy, no arithmetic), so it needs the
weights where the sampler reads them: under block swap (``model.layer_hook`` set) the layers
are re-pointed at their CPU masters at every step and the job weights are not used (logged).
"""
from __future__ import annotations

import re
from contextlib import contextmanager
from typing import Callable, Optional

import torch

from .jobs import JOBS

PREFIX = "jobs."
"""File-name prefix of the job tensors: ``jobs.<JOB>.<shared tensor name>``."""


def job_key(job: str, name: str) -> str:
    """The file name of ``job``'s copy of the shared tensor ``name``."""
    if job not in JOBS:
        raise ValueError(f"job {job!r} is unknown; use one of {JOBS}")
    return f"{PREFIX}{job}.{name}"


def split_keys(file_keys) -> tuple[list, dict]:
    """``(shared names, {job: {shared name: file name}})`` of a file's tensor names."""
    shared, jobs = [], {}
    for k in file_keys:
        if not k.startswith(PREFIX):
            shared.append(k)
            continue
        job, _, name = k[len(PREFIX):].partition(".")
        if job not in JOBS or not name:
            raise ValueError(f"tensor {k!r}: job tensors are named jobs.<JOB>.<tensor> with JOB one of {JOBS}")
        jobs.setdefault(job, {})[name] = k
    return shared, jobs


def job_tensors(model, job: str) -> dict:
    """``{parameter or buffer name: tensor}`` that ``job`` swaps in (empty: the shared weights)."""
    return (getattr(model, "job_tensors", None) or {}).get(job, {})


@contextmanager
def job_weights(model, job: str, log: Optional[Callable[[str], None]] = None):
    """Within the block, ``model`` computes with ``job``'s own tensors (a no-op for a model
    without any for that job); the shared tensors are back when it ends, also on error."""
    tensors = job_tensors(model, job)
    if not tensors:
        yield
        return
    if getattr(model, "layer_hook", None) is not None:
        if log is not None:
            log(f"{job}: this model's own {job} weights are not used under block swap (a model this "
                "small needs no offload: set offload to none)")
        yield
        return
    saved = {}
    try:
        for name, t in tensors.items():
            module_name, _, leaf = name.rpartition(".")
            module = model.get_submodule(module_name)
            is_param = leaf in module._parameters
            old = module._parameters[leaf].data if is_param else module._buffers[leaf]
            if t.device != old.device or t.dtype != old.dtype:  # the model was moved or cast after loading
                t = t.to(device=old.device, dtype=old.dtype)
            saved[name] = ("p" if is_param else "b", module, leaf, old)
            if is_param:
                module._parameters[leaf].data = t
            else:
                module._buffers[leaf] = t
        if log is not None:
            log(f"{job}: with this model's own {job} weights ({len(tensors)} tensors, harmony.job_weights)")
        yield
    finally:
        for kind, module, leaf, old in saved.values():
            if kind == "p":
                module._parameters[leaf].data = old
            else:
                module._buffers[leaf] = old


def tuned_tensors(shared: dict, tuned: dict, pattern=None) -> dict:
    """``{name: tensor}`` of ``tuned`` that differ from ``shared`` (names matching the regular
    expression ``pattern`` when given): what a job file entry stores."""
    rx = re.compile(pattern) if pattern else None
    if set(shared) != set(tuned):
        extra = sorted(set(shared) ^ set(tuned))[:4]
        raise ValueError(f"the tuned file's tensors are not the shared file's (e.g. {extra}); "
                         "a job must be fine-tuned from the shared weights' architecture")
    out = {}
    for name, t in tuned.items():
        if name.startswith(PREFIX) or (rx is not None and not rx.search(name)):
            continue
        s = shared[name]
        if s.shape != t.shape:
            raise ValueError(f"{name}: shape {tuple(t.shape)} in the tuned file, {tuple(s.shape)} shared")
        if not torch.equal(s, t.to(s.dtype)):
            out[name] = t.to(s.dtype)
    return out

