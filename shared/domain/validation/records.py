"""The CSV structure of an upload: where each record starts and ends, its field count and its first line."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from typing import Final

import numpy as np

from shared.domain.validation.dialect import Dialect
from shared.domain.validation.issues import clip, stop
from shared.domain.validation.raw_bytes import MAX_LINE_BYTES

_SCAN_BLOCK: Final = 8 << 20  # the structure scan works on blocks of this many bytes (bounded temporaries)


@dataclass
class Records:
    starts: np.ndarray  # byte offset of each record (records end at an unquoted newline)
    ends: np.ndarray
    fields: np.ndarray  # fields per record
    lines: np.ndarray  # the line each record starts on
    odd_quotes: bool  # a quote is left open at the end of the file
    long_line: tuple[int, int] | None  # (line, bytes) of the first line over MAX_LINE_BYTES


def scan(buf: bytes, delimiter: str) -> Records:
    """Records, their field counts and first lines, vectorized over the raw bytes in blocks. A double quote
    toggles "inside a quoted field" (RFC 4180; "" inside a quoted field toggles twice); newlines and delimiters
    inside quotes do not count. Stray quotes can fool this, so any anomaly is re-checked by csv.reader."""
    a = np.frombuffer(buf, dtype=np.uint8)
    n = len(a)
    delim = ord(delimiter)
    has_quotes = buf.find(b'"') >= 0
    ends_parts, through_parts, before_parts = [], [], []
    parity = 0  # inside a quoted field at the start of the block
    nl_total = delim_total = 0
    prev_nl = -1
    long_line = None
    for lo in range(0, n, _SCAN_BLOCK):
        block = a[lo:lo + _SCAN_BLOCK]
        nl_local = np.flatnonzero(block == 10)
        nl = nl_local + lo
        if long_line is None and len(nl):
            lengths = np.diff(nl, prepend=prev_nl) - 1
            over = np.flatnonzero(lengths > MAX_LINE_BYTES)
            if len(over):
                long_line = (nl_total + int(over[0]) + 1, int(lengths[over[0]]))
        delims_local = np.flatnonzero(block == delim)
        if has_quotes:
            inside = np.bitwise_xor.accumulate((block == 34).view(np.uint8))
            if parity:
                inside ^= 1
            record_nl = nl[inside[nl_local] == 0]
            delims = delims_local[inside[delims_local] == 0] + lo
            parity = int(inside[-1])
        else:
            record_nl, delims = nl, delims_local + lo
        ends_parts.append(record_nl)
        through_parts.append(np.searchsorted(nl, record_nl, side="right") + nl_total)
        before_parts.append(np.searchsorted(delims, record_nl) + delim_total)
        nl_total += len(nl)
        delim_total += len(delims)
        if len(nl):
            prev_nl = int(nl[-1])
    if long_line is None and n - prev_nl - 1 > MAX_LINE_BYTES:
        long_line = (nl_total + 1, n - prev_nl - 1)
    ends = np.concatenate(ends_parts) if ends_parts else np.zeros(0, dtype=np.int64)
    through = np.concatenate(through_parts) if through_parts else np.zeros(0, dtype=np.int64)
    before = np.concatenate(before_parts) if before_parts else np.zeros(0, dtype=np.int64)
    if n and (len(ends) == 0 or ends[-1] != n - 1):  # the last record has no newline
        ends = np.append(ends, n)
        through = np.append(through, nl_total)
        before = np.append(before, delim_total)
    starts = np.concatenate([[0], ends[:-1] + 1]).astype(np.int64)
    fields = np.diff(before, prepend=0) + 1
    lines = np.concatenate([[1], through[:-1] + 1]).astype(np.int64)
    return Records(starts=starts, ends=ends, fields=fields, lines=lines, odd_quotes=bool(parity),
                   long_line=long_line)


def csv_walk(text: str, dialect: Dialect) -> tuple[list[str], list[int]]:
    """The authoritative (slow) record walk: the header and the first line of every data record; raises Stop
    at the first malformed record. Blank and whitespace-only lines are skipped, as pandas skips them."""
    reader = csv.reader(io.StringIO(text), delimiter=dialect.delimiter, quotechar='"', strict=True)
    header: list[str] | None = None
    lines: list[int] = []
    while True:
        start = reader.line_num + 1
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            if "unexpected end of data" in str(exc):
                stop(f"malformed CSV at line {start}: a quoted field that starts on this line is never closed",
                     "malformed", line=start, expected='a closing \'"\'', found="end of file")
            stop(f"malformed CSV at line {reader.line_num}: {exc}", "malformed", line=reader.line_num,
                 found=clip(exc))
        if not row or (len(row) == 1 and not row[0].strip()):
            continue
        if header is None:
            header = row
            lines.append(start)
        elif len(row) != len(header):
            stop(f"malformed CSV at line {start}: expected {len(header)} fields ({dialect.base} dialect), "
                 f"found {len(row)}", "ragged", line=start, expected=f"{len(header)} fields",
                 found=f"{len(row)} fields")
        else:
            lines.append(start)
    return header or [], lines
