"""Where attachment bytes live, content-addressed by sha256 and stored once each:

- up to INLINE_MAX_BYTES, in the database (table attachment_blobs), written in the same
  transaction as the ticket: atomic with it, and no file to create per attachment;
- larger ones on disk, ATTACHMENT_DIR/ab/<sha256>, written to a temporary name and renamed
  (so a crash never leaves a truncated file under a valid name) before the ticket commits.
"""
import hashlib
import os
import tempfile
from dataclasses import dataclass

INLINE_MAX_BYTES = 1024 * 1024


@dataclass(frozen=True)
class Kept:
    sha256: str
    blob: bytes | None  # the bytes to keep in the database; None when they are on disk


def keep(root: str, content: bytes) -> Kept:
    if len(content) <= INLINE_MAX_BYTES:
        return Kept(hashlib.sha256(content).hexdigest(), content)
    return Kept(store(root, content), None)


def path_for(root: str, sha256: str) -> str:
    # One level of 256 directories: creating directories costs more than writing small files.
    return os.path.join(root, sha256[:2], sha256)


_known_dirs: set[str] = set()


def store(root: str, content: bytes) -> str:
    digest = hashlib.sha256(content).hexdigest()
    target = path_for(root, digest)
    if os.path.exists(target):
        return digest
    directory = os.path.dirname(target)
    if directory not in _known_dirs:
        os.makedirs(directory, exist_ok=True)
        _known_dirs.add(directory)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return digest

