"""Attachment bytes, stored content-addressed on disk: ATTACHMENT_DIR/ab/<sha256>.

Identical files are stored once. Files are written to a temporary name and renamed,
so a crash never leaves a truncated file under a valid name.
"""
import hashlib
import os
import tempfile


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

