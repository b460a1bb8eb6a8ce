"""A content hash of an MLflow model folder: what the registry records at registration, what the training step
records of the champion it scored, and what every load path checks before it unpickles anything.

A pickle is code, so "which folder" is not enough: a folder is trusted only when its bytes are the ones that were
registered. Symbolic links are refused (they could point anywhere on the machine), and so is an empty folder.
"""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

PREFIX = "sha256:"
_CHUNK = 1 << 20


class ModelDigestError(ValueError):
    """The folder cannot be hashed (missing, empty, or holding a symbolic link); the message says which."""


def folder_digest(folder: str | Path) -> str:
    """`sha256:<hex>` over every regular file's relative POSIX path and bytes, in sorted path order."""
    root = Path(folder)
    if root.is_symlink() or not root.is_dir():
        raise ModelDigestError(f"model folder {root.name!r} does not exist or is not a plain folder")
    digest = hashlib.sha256()
    files = 0
    for path in sorted(root.rglob("*"), key=lambda p: p.relative_to(root).as_posix()):
        if path.is_symlink():
            raise ModelDigestError(f"model folder holds a symbolic link ({path.relative_to(root).as_posix()})")
        if not path.is_file():
            continue
        name = path.relative_to(root).as_posix().encode()
        digest.update(len(name).to_bytes(4, "big") + name)
        digest.update(path.stat().st_size.to_bytes(8, "big"))
        with open(path, "rb") as fh:
            while chunk := fh.read(_CHUNK):
                digest.update(chunk)
        files += 1
    if files == 0:
        raise ModelDigestError(f"model folder {root.name!r} holds no files")
    return PREFIX + digest.hexdigest()


def same_digest(a: str | None, b: str | None) -> bool:
    """Both present and equal (compared in constant time)."""
    return bool(a) and bool(b) and hmac.compare_digest(str(a), str(b))
