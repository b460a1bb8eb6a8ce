"""Which blob names the service may use in a storage call, and how a refused name is kept without being used.

A blob name reaches storage as a URL path. HTTP stacks remove `.` and `..` segments before sending (RFC 3986
5.2.4; urllib3 does it for every http(s) URL the Azure SDK sends), so `a/../b.csv` would read, overwrite or delete
`b.csv` (and `x/../../other/y` another container's blob). The Blob service itself warns against names ending in a dot
or slash, against backslashes, and does not allow control characters (0x00-0x1F, 0x7F and C1 such as \\u0081);
a name may be at most 1,024 characters
(https://learn.microsoft.com/rest/api/storageservices/naming-and-referencing-containers--blobs--and-metadata).
Anything outside these rules is refused before any read, write or delete, and kept only as its SHA-256 and an
escaped, truncated form for people to read.
"""

from __future__ import annotations

import hashlib
import unicodedata
from enum import StrEnum

MAX_BLOB_NAME = 1024  # characters, Azure's limit (see the module docstring)
SHOWN_CHARS = 200  # how much of a refused name an audit record or metadata value shows (escaped)


class BlobNameProblem(StrEnum):
    """Why a blob name is refused (the reason recorded with the quarantined upload)."""

    EMPTY = "empty"
    TOO_LONG = "too_long"
    LEADING_SLASH = "leading_slash"
    DOT_SEGMENT = "dot_segment"
    BACKSLASH = "backslash"
    CONTROL_CHARACTER = "control_character"
    TRAILING_DOT_OR_SLASH = "trailing_dot_or_slash"


_EXPLAINED = {
    BlobNameProblem.EMPTY: "the blob name is empty",
    BlobNameProblem.TOO_LONG: f"the blob name is longer than Azure's {MAX_BLOB_NAME} characters",
    BlobNameProblem.LEADING_SLASH: "the blob name starts with '/'",
    BlobNameProblem.DOT_SEGMENT: "the blob name has a '.' or '..' path segment (a URL would address another blob)",
    BlobNameProblem.BACKSLASH: "the blob name contains a backslash",
    BlobNameProblem.CONTROL_CHARACTER: "the blob name contains a control character",
    BlobNameProblem.TRAILING_DOT_OR_SLASH: "the blob name ends with '.' or '/'",
}


def name_problem(name: str) -> BlobNameProblem | None:
    """The first rule a blob name (inside its container, without the container) breaks, or None when it may be
    used in a storage call."""
    if not name:
        return BlobNameProblem.EMPTY
    if len(name) > MAX_BLOB_NAME:
        return BlobNameProblem.TOO_LONG
    if any(unicodedata.category(ch) == "Cc" for ch in name):  # C0, DEL and C1 controls
        return BlobNameProblem.CONTROL_CHARACTER
    if "\\" in name:
        return BlobNameProblem.BACKSLASH
    if name.startswith("/"):
        return BlobNameProblem.LEADING_SLASH
    if any(segment in (".", "..") for segment in name.split("/")):
        return BlobNameProblem.DOT_SEGMENT
    if name.endswith((".", "/")):
        return BlobNameProblem.TRAILING_DOT_OR_SLASH
    return None


def explain(problem: BlobNameProblem) -> str:
    return _EXPLAINED[problem]


def name_digest(name: str) -> str:
    """SHA-256 (hex) of the name's UTF-8 bytes (lone surrogates kept as they came): the only form of a refused name
    that goes into a storage path."""
    return hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()


def shown(name: str, limit: int = SHOWN_CHARS) -> str:
    """The name for people: printable ASCII only (everything else as a Python escape), at most `limit` characters of
    the original, with how much was cut. Safe in logs, JSON, audit rows and blob metadata (ASCII header values)."""
    head = name[:limit].encode("unicode_escape", "backslashreplace").decode("ascii")
    return head if len(name) <= limit else f"{head}... ({len(name)} characters)"
