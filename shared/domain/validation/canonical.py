"""The one stored form of a dataset version and its content hash: the hash identifies data, not dialect."""

from __future__ import annotations

import hashlib

import pandas as pd


def canonical_csv(frame: pd.DataFrame) -> bytes:
    """The one stored form of a dataset version: comma, '.' decimal, schema column order, LF endings."""
    return frame.to_csv(index=False, lineterminator="\n").encode("utf-8")


def content_hash(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()
