"""File helpers shared by checkpoints, codecs, media and the trainer: sha256 and atomic writes."""
from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile


def sha256_file(path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes (read in chunks)."""
    h = hashlib.sha256()
    with open(os.fspath(path), "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


@contextlib.contextmanager
def atomic_path(path, suffix: str = ""):
    """Yield a temporary file name beside ``path`` (``<name>.tmp-XXXX<suffix>``, mode
    0666 minus umask); it becomes ``path`` when the block succeeds and is deleted on
    any error, so no half-written file is ever left behind."""
    path = os.path.abspath(os.fspath(path))
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=suffix, prefix=os.path.basename(path) + ".tmp-", dir=folder)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
