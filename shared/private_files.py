"""Files that may hold secrets or operational detail (logs, spans, metrics, local secrets): 0600 in 0700 folders.

Modes are enforced on every open, not only on creation: a file or folder that already exists with a wider
mode (an older version created it 0644/0755, or the umask was loose) is narrowed, so another local user never
reads a key that reached a log before it was redacted, nor the secrets file.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

FILE_MODE = 0o600
DIR_MODE = 0o700


def private_dir(path: Path | str) -> Path:
    """Create `path` (and missing parents) and make `path` itself 0700, also when it exists already."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
    with contextlib.suppress(PermissionError):  # a folder we do not own (e.g. /tmp): leave it alone
        if path.stat().st_mode & 0o777 != DIR_MODE:
            path.chmod(DIR_MODE)
    return path


def open_private(path: Path | str, flags: int = os.O_WRONLY | os.O_APPEND | os.O_CREAT) -> int:
    """An OS file descriptor on `path`, created 0600 in a 0700 folder; an existing file is narrowed to 0600."""
    path = Path(path)
    private_dir(path.parent)
    fd = os.open(path, flags, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_private_binary(path: Path | str, *, append: bool = True):  # noqa: ANN201 - a BufferedWriter
    """A binary file object (append or truncate) opened through `open_private`."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else os.O_TRUNC)
    return os.fdopen(open_private(path, flags), "ab" if append else "wb")


def write_private_text(path: Path | str, text: str) -> None:
    """Replace the content of `path` with `text`, the file 0600 in a 0700 folder."""
    with os.fdopen(open_private(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), "w") as fh:
        fh.write(text)
