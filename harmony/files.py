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
def atomic_path(path, suffix: str = "", name: str = "output"):
    """Yield a temporary file name beside ``path`` (``<name>.tmp-XXXX<suffix>``, mode
    0666 minus umask); it becomes ``path`` when the block succeeds and is deleted on
    any error, so no half-written file is ever left behind. Only an absent target or a
    regular file is ever replaced (a symlink: its target), checked before and again just
    before the rename (:func:`harmony.validate.output_path`, raising its ``InputError``)."""
    from .validate import output_path

    from .validate import InputError

    target = output_path(path, name)
    folder = os.path.dirname(target)
    try:
        fd, tmp = tempfile.mkstemp(suffix=suffix, prefix=os.path.basename(target) + ".tmp-", dir=folder)
    except OSError as e:
        raise InputError(f"{name} {os.fspath(path)!r}: cannot create a file in {folder!r} ({e.strerror}); "
                         "give a path in a folder you can write to") from None
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    try:
        yield tmp
        output_path(target, name)  # still absent or a regular file?
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
