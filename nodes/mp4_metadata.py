"""Embed a ComfyUI workflow in an mp4, the way core SaveVideo does, and read it back.

SaveVideo stores each metadata entry (``workflow``, ``prompt``) as a JSON
string in the mp4's ``moov/udta/meta`` item list with ``mdta`` keys (ffmpeg's
``-movflags use_metadata_tags``). The ComfyUI frontend reads exactly that when
an mp4 is dropped on the canvas, and restores the graph.
"""
from __future__ import annotations

import json
import os
import struct
import subprocess
import tempfile


def _ffmpeg() -> str:
    import imageio_ffmpeg  # a moviepy dependency

    return imageio_ffmpeg.get_ffmpeg_exe()


def _ffmetadata_escape(text: str) -> str:
    for ch in ("\\", "=", ";", "#", "\n"):
        text = text.replace(ch, "\\" + ch)
    return text


def embed_metadata(path: str, metadata: dict) -> None:
    """Rewrite the mp4 at ``path`` (streams copied) with ``metadata`` as mdta tags.

    Values that are not strings are stored as JSON. The file is replaced only
    when ffmpeg succeeded; moov goes first (faststart) so readers find it early.
    """
    if not metadata:
        return
    folder = os.path.dirname(os.path.abspath(path))
    fd, meta_file = tempfile.mkstemp(suffix=".ffmeta", dir=folder)
    tmp_out = path + ".meta.mp4"
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(";FFMETADATA1\n")
            for key, value in metadata.items():
                text = value if isinstance(value, str) else json.dumps(value)
                f.write(f"{_ffmetadata_escape(key)}={_ffmetadata_escape(text)}\n")
        cmd = [_ffmpeg(), "-y", "-v", "error", "-i", path, "-f", "ffmetadata", "-i", meta_file,
               "-map", "0", "-map_metadata", "1", "-c", "copy",
               "-movflags", "+faststart+use_metadata_tags", tmp_out]
        run = subprocess.run(cmd, capture_output=True, text=True)
        if run.returncode != 0:
            raise RuntimeError(f"could not embed the workflow in {path}: {run.stderr.strip()[-500:]}")
        os.replace(tmp_out, path)
    finally:
        for p in (meta_file, tmp_out):
            if os.path.exists(p):
                os.remove(p)


# ------------------------------------------------------------ reading it back


def _boxes(data: bytes, start: int, end: int):
    """(type, payload start, box end) of the ISO-BMFF boxes in ``data[start:end]``."""
    pos = start
    while pos + 8 <= end:
        size, kind = struct.unpack(">I4s", data[pos:pos + 8])
        header = 8
        if size == 1:
            size = struct.unpack(">Q", data[pos + 8:pos + 16])[0]
            header = 16
        elif size == 0:
            size = end - pos
        if size < header or pos + size > end:
            return
        yield kind.decode("latin-1"), pos + header, pos + size
        pos += size


def _child(data, start, end, kind):
    return next(((s, e) for k, s, e in _boxes(data, start, end) if k == kind), None)


def read_metadata(path: str) -> dict:
    """The mdta tags of an mp4 (``moov/udta/meta``) as ``{key: value}``; JSON values decoded."""
    with open(path, "rb") as f:
        data = f.read()
    out: dict = {}
    moov = _child(data, 0, len(data), "moov")
    udta = moov and _child(data, *moov, "udta")
    meta = udta and _child(data, *udta, "meta")
    if not meta:
        return out
    start = meta[0] + 4  # meta is a full box: version + flags
    keys_box, ilst = _child(data, start, meta[1], "keys"), _child(data, start, meta[1], "ilst")
    if not keys_box or not ilst:
        return out
    keys, pos = {}, keys_box[0] + 8  # version/flags, entry count
    for i in range(1, struct.unpack(">I", data[keys_box[0] + 4:keys_box[0] + 8])[0] + 1):
        size = struct.unpack(">I", data[pos:pos + 4])[0]
        keys[i] = data[pos + 8:pos + size].decode("utf-8")
        pos += size
    for kind, s, e in _boxes(data, *ilst):
        index = struct.unpack(">I", kind.encode("latin-1"))[0]
        value_box = _child(data, s, e, "data")
        if index in keys and value_box:
            text = data[value_box[0] + 8:value_box[1]].decode("utf-8", "replace")
            try:
                out[keys[index]] = json.loads(text)
            except ValueError:
                out[keys[index]] = text
    return out
