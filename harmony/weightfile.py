"""One reader of safetensors weight files that never maps them, and one error for a bad one.

A safetensors file is an 8-byte little-endian header length ``n``, ``n`` bytes of JSON
(``{name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {...}}``),
then the tensor bytes. :func:`read_header` reads only the length and the JSON (at most
:data:`MAX_HEADER_BYTES`) and checks every entry before any tensor is touched: the dtype
is one it knows, the shape is whole numbers, the offsets span exactly ``numel x itemsize``
bytes, no two tensors overlap, and (``check_size``) the last byte lies inside the file.
So a file larger than RAM is identified without mapping it, and a truncated, damaged or
lying file is refused with one :class:`WeightFileError` naming the flag (or node input)
and the file and saying what to do. :class:`TensorReader` then reads one tensor at a
time with plain file reads (no ``mmap``), so a file larger than RAM can be loaded tensor
by tensor onto a device with room.

It is the one reader of weight files in the package: :func:`read_state_dict` also reads an
upstream ``.pth`` / ``.pt`` (Wan2.2_VAE.pth, MMAudio's v1-16.pth and best_netG.pt, a umT5
``.pth``) through ``torch.load(weights_only=True)`` only, which refuses anything but tensors and
plain containers, and unwraps the ``state_dict`` / ``model`` / ``generator`` / ``module``
nesting those files use; :func:`peek` gives any weight file's tensors as meta tensors;
:func:`save_safetensors` writes one atomically. Every refusal is a :class:`WeightFileError`.
"""
from __future__ import annotations

import json
import os
import struct
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass

import torch

MAX_HEADER_BYTES = 100 * 1000 * 1000
"""A header longer than this (100 MB) is refused: real headers are at most a few MB."""


class CheckpointError(ValueError):
    """A checkpoint file that cannot be loaded into the model, with the reason."""


class WeightFileError(CheckpointError):
    """A weight file that cannot be read (missing, a folder, truncated, damaged, a lying header,
    an unknown dtype, a pickle that is more than plain tensors, no tensors at all, ...): the
    message names the input (flag or node input) and the file, what is wrong, and what to do.
    ``what`` / ``path``: the input and the file."""

    def __init__(self, message: str, what: str = "", path: str = ""):
        super().__init__(message)
        self.what, self.path = what, path


class WeightFileNotFound(WeightFileError, FileNotFoundError):
    """A weight file that does not exist (also a ``FileNotFoundError``, as callers expect)."""


PICKLE_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin", ".pkl", ".pickle")
"""Suffixes of torch.save / pickle files: read only by :func:`read_state_dict` (``weights_only``)."""

WRAPPER_KEYS = ("state_dict", "model", "generator", "module")
"""The keys upstream ``.pth`` files nest their state dict under (BigVGAN's ``best_netG.pt``:
``generator``; Lightning-style files: ``state_dict``); unwrapped until the tensors show."""


def _torch_dtypes() -> dict:
    names = {"BOOL": "bool", "U8": "uint8", "I8": "int8", "I16": "int16", "U16": "uint16", "I32": "int32",
             "U32": "uint32", "I64": "int64", "U64": "uint64", "F16": "float16", "BF16": "bfloat16",
             "F32": "float32", "F64": "float64", "F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2",
             "F8_E8M0": "float8_e8m0fnu"}
    return {k: getattr(torch, v) for k, v in names.items() if isinstance(getattr(torch, v, None), torch.dtype)}


DTYPES = _torch_dtypes()
"""safetensors dtype name -> torch dtype, for every dtype this reader reads."""


def human_bytes(n: int) -> str:
    """``23.0 GB`` / ``1.5 MB`` / ``12 KB`` / ``7 bytes`` (powers of 1000, as file sizes are shown)."""
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} bytes"


@dataclass(frozen=True)
class Entry:
    """One tensor of the header: dtype name, shape, byte offsets relative to the data start."""

    dtype: str
    shape: tuple
    begin: int
    end: int

    @property
    def nbytes(self) -> int:
        return self.end - self.begin

    @property
    def numel(self) -> int:
        n = 1
        for s in self.shape:
            n *= s
        return n


@dataclass
class Header:
    """A checked safetensors header: ``tensors`` (name -> :class:`Entry`, in file order),
    ``metadata`` (str -> str), ``data_start`` (bytes before the first tensor byte),
    ``file_size`` and ``needed_size`` (what the header says the file holds)."""

    path: str
    what: str
    tensors: dict
    metadata: dict
    data_start: int
    file_size: int
    needed_size: int

    def keys(self) -> list:
        return list(self.tensors)

    def shape(self, name: str) -> tuple:
        return self.tensors[name].shape

    def torch_dtype(self, name: str) -> torch.dtype:
        return DTYPES[self.tensors[name].dtype]

    @property
    def truncated(self) -> bool:
        return self.file_size < self.needed_size

    def truncation(self) -> str:
        """``"truncated: 11.2 of 23.0 GB"`` (empty when the file is whole)."""
        if not self.truncated:
            return ""
        return f"truncated: {human_bytes(self.file_size)} of {human_bytes(self.needed_size)}"

    def meta_tensors(self) -> dict:
        """name -> an empty tensor on the meta device with the entry's shape and dtype."""
        return {k: torch.empty(e.shape, dtype=DTYPES[e.dtype], device="meta") for k, e in self.tensors.items()}


def _fail(what: str, path: str, problem: str, todo: str = "download or convert it again") -> WeightFileError:
    return WeightFileError(f"{what} {path}: {problem}; {todo}", what, path)


def _not_safetensors(what: str, path: str, head: bytes, size: int, why: str = "") -> WeightFileError:
    """The refusal for a file that is not safetensors at all (its bytes are only looked at, never unpickled)."""
    if not why:
        if head[:4] == b"PK\x03\x04":
            why = "it is a zip archive, the torch.save format"
        elif head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
            why = "it is a Python pickle"
        elif len(head) < 8:
            why = f"only {size} bytes long"
        else:
            why = "no valid safetensors header; the file may be truncated or damaged"
    return WeightFileError(
        f"{what} {path} is not a safetensors file ({why}). Harmony loads weights from safetensors only and "
        "never unpickles checkpoints (.pt/.pth/.ckpt/.bin can run code when loaded). Convert it to safetensors "
        "in an environment you trust (torch.load, then safetensors.torch.save_file) and load that file, or "
        "download the .safetensors file again.", what, path)


def is_pickle(path) -> bool:
    """True for a file named as a torch.save / pickle file (:data:`PICKLE_SUFFIXES`)."""
    return os.fspath(path).lower().endswith(PICKLE_SUFFIXES)


def _check_path(path, what: str, safetensors_only: bool = False, hint: str = "") -> str:
    """``path`` as a string once it names an existing file (and, ``safetensors_only``, not a
    pickle); else a :class:`WeightFileError` saying what to give (``hint``: the file people have)."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{what}: expected a file path, got {type(path).__name__}")
    path = os.fspath(path)
    if not path:
        raise WeightFileError(f"{what}: the path is empty; give {hint or 'a weight file'}", what, path)
    if not os.path.exists(path):
        raise WeightFileNotFound(f"{what} not found: {path}" + (f"; {hint}" if hint else ""), what, path)
    if os.path.isdir(path):
        raise WeightFileError(f"{what} path {path} is a folder; pass the weight file inside it", what, path)
    if safetensors_only and is_pickle(path):
        raise WeightFileError(
            f"{what} {path} is not a safetensors file (suffix {os.path.splitext(path)[1]!r}). Harmony loads these "
            "weights from safetensors only and never unpickles checkpoints (.pt/.pth/.ckpt/.bin can run code when "
            "loaded). Convert it to safetensors in an environment you trust (torch.load, then "
            "safetensors.torch.save_file) and load that file.", what, path)
    return path


def read_header(path, what: str = "checkpoint", check_size: bool = True) -> Header:
    """The checked header of the safetensors file ``path`` (see the module docstring); given a
    :class:`Header`, that header (nothing is read again).

    ``what`` names the input in messages (``"--model"``, ``"--text-encoder"``, ``"input 'model_name'"``).
    ``check_size=False`` accepts a file shorter than its header says (``Header.truncated`` tells),
    for identifying a partial download; every other check still applies."""
    if isinstance(path, Header):  # already read and checked: the header is parsed once
        if check_size and path.truncated:
            raise _fail(what, path.path, f"{path.truncation()}: the file is truncated or damaged", "download it again")
        return path
    path = _check_path(path, what, safetensors_only=True)
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise _not_safetensors(what, path, head, size)
        n = struct.unpack("<Q", head)[0]
        if n == 0 or n > MAX_HEADER_BYTES:
            if n > MAX_HEADER_BYTES and n <= size - 8:
                raise _fail(what, path, f"its header claims {human_bytes(n)}, over the {human_bytes(MAX_HEADER_BYTES)} "
                                        "limit (real headers are a few MB): the file is damaged or not safetensors")
            raise _not_safetensors(what, path, head, size)
        first = f.read(1)
        if first != b"{":
            raise _not_safetensors(what, path, head, size)
        if n > size - 8:
            raise _fail(what, path, f"truncated or damaged: its header alone is {human_bytes(n)} but the file holds "
                                    f"{human_bytes(size)}")
        raw = first + f.read(n - 1)
    try:
        parsed = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise _not_safetensors(what, path, head, size, "its header is not safetensors JSON; the file may be "
                                                       "damaged") from None
    if not isinstance(parsed, dict):
        raise _not_safetensors(what, path, head, size, "its header is not a JSON object; the file may be damaged")
    metadata = parsed.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
        raise _fail(what, path, "its __metadata__ is not a map of strings: the header is damaged")
    tensors = {}
    for name, entry in parsed.items():
        tensors[name] = _entry(name, entry, what, path)
    spans = sorted((e.begin, e.end, k) for k, e in tensors.items() if e.nbytes)
    for (b0, e0, k0), (b1, e1, k1) in zip(spans, spans[1:]):
        if b1 < e0:
            raise _fail(what, path, f"tensors {k0!r} and {k1!r} overlap (bytes {b0}-{e0} and {b1}-{e1}): the header "
                                    "is damaged")
    data_start = 8 + n
    needed = data_start + max((e.end for e in tensors.values()), default=0)
    header = Header(path, what, tensors, metadata, data_start, size, needed)
    if check_size and header.truncated:
        last = max(tensors, key=lambda k: tensors[k].end)
        e = tensors[last]
        raise _fail(what, path, f"{header.truncation()}: the file is truncated or damaged (tensor {last!r}, "
                                f"{e.dtype} {list(e.shape)}, ends at byte {data_start + e.end:,}, past the end of "
                                "the file)", "download it again")
    return header


def _entry(name: str, entry, what: str, path: str) -> Entry:
    if not isinstance(entry, dict):
        raise _fail(what, path, f"tensor {name!r}: its header entry is not an object: the header is damaged")
    dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
    if dtype not in DTYPES:
        known = ", ".join(DTYPES)
        raise _fail(what, path, f"tensor {name!r} has dtype {dtype!r}, which is not one this reader knows ({known}): "
                                "the header is damaged or the file was written by another tool",
                    "download it again, or convert it to a safetensors file with one of these dtypes")
    if (not isinstance(shape, list) or len(shape) > 16
            or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape)):
        raise _fail(what, path, f"tensor {name!r} has shape {str(shape)[:60]}, not a list of whole numbers >= 0: "
                                "the header is damaged")
    if (not isinstance(offsets, list) or len(offsets) != 2
            or not all(isinstance(o, int) and not isinstance(o, bool) and o >= 0 for o in offsets)
            or offsets[1] < offsets[0]):
        raise _fail(what, path, f"tensor {name!r} has data_offsets {str(offsets)[:60]}, not [begin, end] with "
                                "0 <= begin <= end: the header is damaged")
    e = Entry(dtype, tuple(shape), offsets[0], offsets[1])
    want = e.numel * DTYPES[dtype].itemsize
    if want != e.nbytes:
        raise _fail(what, path, f"tensor {name!r} is {dtype} {list(shape)} ({e.numel:,} values, {human_bytes(want)}) "
                                f"but its data_offsets span {human_bytes(e.nbytes)}: the header is damaged",
                    "download it again")
    return e


class TensorReader:
    """Reads the tensors of a checked safetensors file one at a time with plain reads (no mmap):
    ``with TensorReader(header) as r: t = r.get(name)``. Each tensor is a fresh CPU tensor."""

    def __init__(self, header: Header):
        self.header = header
        self._fh = None

    def __enter__(self):
        self._fh = open(self.header.path, "rb")
        return self

    def __exit__(self, *exc):
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def get(self, name: str) -> torch.Tensor:
        h = self.header
        if name not in h.tensors:
            raise KeyError(f"{h.what} {h.path}: no tensor named {name!r}")
        e = h.tensors[name]
        buf = torch.empty(e.nbytes, dtype=torch.uint8)
        if e.nbytes:
            self._fh.seek(h.data_start + e.begin)
            got = self._fh.readinto(memoryview(buf.numpy()))
            if got != e.nbytes:
                raise _fail(h.what, h.path, f"truncated while reading tensor {name!r} ({got} of {e.nbytes} bytes): "
                                            "the file changed or is damaged", "download it again")
        return buf.view(DTYPES[e.dtype]).reshape(e.shape)


def read_safetensors(path, what: str = "checkpoint") -> tuple:
    """``(tensors, metadata)`` of a safetensors file: the header checked once, then every tensor
    read on its own (never mapped)."""
    header = read_header(path, what)
    with TensorReader(header) as r:
        return {k: r.get(k) for k in header.keys()}, dict(header.metadata)


# --------------------------------------------------------------------------- upstream .pth files


def _load_pickle(path: str, what: str):
    """``torch.load(weights_only=True)`` of ``path`` (memory-mapped when it is a zip archive, so a
    tensor is read only when used); any failure is a refusal: a crafted or damaged pickle never runs."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except Exception as e:  # noqa: BLE001 - a damaged pickle raises anything (KeyError, EOFError, ...)
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
        why = next((ln for ln in lines if "Unsupported global" in ln or "GLOBAL" in ln), lines[0] if lines else "")
        raise WeightFileError(
            f"{what} {path} was refused: torch.load(weights_only=True) could not read it as plain tensors "
            f"({type(e).__name__}: {why[:200]}). Harmony never unpickles code (a .pth/.pt can run code when "
            "loaded): use the original file, or convert it to safetensors in an environment you trust.",
            what, path) from None


def unwrap(obj, what: str = "weights", source: str = "") -> dict:
    """The tensors of a loaded checkpoint: descends through :data:`WRAPPER_KEYS` while no tensor
    shows at the top, then keeps the string-keyed tensors (other entries, e.g. an epoch count, are
    dropped). ``source`` names the file in the error for a checkpoint without tensors."""
    source = source or f"{what} state dict"
    while isinstance(obj, Mapping) and obj and not any(torch.is_tensor(v) for v in obj.values()):
        inner = [k for k in WRAPPER_KEYS if isinstance(obj.get(k), Mapping)]
        if not inner:
            break
        obj = obj[inner[0]]
    if not isinstance(obj, Mapping):
        raise WeightFileError(f"{what} {source} holds a {type(obj).__name__}, not a state dict of tensors; give the "
                              "weight file itself", what, source)
    tensors = {k: v for k, v in obj.items() if isinstance(k, str) and torch.is_tensor(v)}
    if not tensors:
        raise WeightFileError(f"{what} {source} contains no tensors (top-level keys: {list(obj)[:5]}); give the "
                              "weight file itself", what, source)
    return tensors


def read_state_dict(source, what: str = "weights", names=None, hint: str = "") -> dict:
    """``{name: tensor}`` of a weight file (a path, or a safetensors :class:`Header` already read),
    or of a state dict already in memory.

    A safetensors file: the header checked, then tensor by tensor, never mapped. An upstream
    ``.pth`` / ``.pt`` / ``.ckpt`` / ``.bin``: ``torch.load(weights_only=True)`` only (memory-mapped
    when a zip archive), unwrapped (:func:`unwrap`). ``names``: only those tensors. ``what`` names
    the input in messages (``"--video-vae"``, ``"MMAudio VAE"``); ``hint`` says which file people
    have, in the error for a missing one. Every refusal is a :class:`WeightFileError`."""
    if isinstance(source, Mapping):
        sd = unwrap(source, what)
    else:
        path = source if isinstance(source, Header) else _check_path(source, what, hint=hint)
        if isinstance(path, Header) or not is_pickle(path):
            header = read_header(path, what)
            with TensorReader(header) as r:
                return {k: r.get(k) for k in (header.keys() if names is None else names)}
        sd = unwrap(_load_pickle(path, what), what, path)
    if names is None:
        return sd
    missing = [k for k in names if k not in sd]
    if missing:
        raise WeightFileError(f"{what}: no tensors named {missing[:5]}", what, "")
    return {k: sd[k] for k in names}


def peek(path, what: str = "weights", hint: str = "") -> dict:
    """A weight file's tensors as meta tensors (names, shapes, dtypes) without reading weights:
    the safetensors header, or a zip ``.pth`` memory-mapped. Lets a file be checked (pairing,
    layout) before anything loads."""
    path = _check_path(path, what, hint=hint)
    if is_pickle(path):
        return {k: torch.empty(v.shape, dtype=v.dtype, device="meta")
                for k, v in unwrap(_load_pickle(path, what), what, path).items()}
    return read_header(path, what).meta_tensors()


def state_dict_mismatch(sd, expected) -> str | None:
    """What keeps the tensors ``sd`` from loading into a module whose state dict is ``expected``:
    ``"N missing (e.g. ...), N unexpected (e.g. ...), N wrong shapes (e.g. ...)"``, or None."""
    missing = [k for k in expected if k not in sd]
    unexpected = [k for k in sd if k not in expected]
    wrong = [f"{k}: file {tuple(sd[k].shape)} vs model {tuple(expected[k].shape)}"
             for k in expected if k in sd and tuple(sd[k].shape) != tuple(expected[k].shape)]
    if not (missing or unexpected or wrong):
        return None
    return (f"{len(missing)} missing (e.g. {missing[:3]}), {len(unexpected)} unexpected "
            f"(e.g. {unexpected[:3]}), {len(wrong)} wrong shapes (e.g. {wrong[:2]})")


# --------------------------------------------------------------------------- writing


def save_safetensors(tensors: dict, path, metadata: dict | None = None) -> str:
    """Write ``tensors`` to ``path`` atomically (a temporary file, then a rename):
    an interrupted or failed write leaves no half-written file behind."""
    from safetensors.torch import save_file

    from .files import atomic_path
    from .validate import InputError, is_system_path

    path = os.fspath(path)
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent) and not is_system_path(parent):
        os.makedirs(parent, exist_ok=True)
    try:  # only an absent target or a regular file is ever replaced (a symlink: its target)
        with atomic_path(path) as tmp:
            save_file(tensors, tmp, metadata=metadata)
    except InputError as e:
        raise WeightFileError(str(e), "output", path) from None
    return path
