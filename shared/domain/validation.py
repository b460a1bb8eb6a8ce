"""Validate an uploaded bank-marketing file in any of the dialects users upload, and canonicalize it.

Dialects seen in the wild: Azure's sample (comma, no quoting), the UCI original (semicolon, every text field
double-quoted) and spreadsheet exports (semicolon with a decimal comma), any of them with a UTF-8 byte-order mark,
CRLF line ends or gzip-compressed (recognized by its magic bytes, whatever the name). Whatever arrives, a
registered dataset version is stored in one canonical form (comma, '.' decimal, schema column order, LF) so its
content hash identifies the data, not the dialect.

Bad input never raises: `validate_csv` returns every problem it found as a `ValidationIssue`, a string (the
one-line message that goes into the quarantine record and the audit) that also carries where it is (line,
column) and what was expected and found. Checks run cheapest first: size, compression, binary content,
encoding, line length and CSV structure on the raw bytes (vectorized), then the header, then the values.
"""

from __future__ import annotations

import csv
import dataclasses
import difflib
import hashlib
import io
import logging
import re
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import numpy as np
import pandas as pd

from shared.domain import schema

log = logging.getLogger(__name__)

MAX_LINE_BYTES: Final = 64 * 1024  # a longer physical line is refused (no real record comes near it)
GZIP_MAGIC: Final = b"\x1f\x8b"
UTF8_BOM: Final = b"\xef\xbb\xbf"

_GUNZIP_STEP: Final = 1 << 20  # bytes of output per decompression step: a gzip bomb stops at the limit
_SCAN_BLOCK: Final = 8 << 20  # the structure scan works on blocks of this many bytes (bounded temporaries)
_REASON_ERRORS: Final = 5  # reason() lists this many errors, then "and N more"
_SHOW_CHARS: Final = 40  # a bad value is quoted up to this many characters

# Files that are clearly not CSV text, by their first bytes.
_SIGNATURES: Final = (
    (b"PK\x03\x04", "a ZIP archive (an .xlsx/.ods workbook or a zipped file)",
     "export the sheet as CSV (UTF-8) or upload the CSV itself; gzip is accepted"),
    (b"PK\x05\x06", "an empty ZIP archive", "upload the CSV itself"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "a legacy Office document (.xls)", "export the sheet as CSV (UTF-8)"),
    (b"\xfd7zXZ\x00", "xz-compressed", "upload it uncompressed or gzip-compressed"),
    (b"\x28\xb5\x2f\xfd", "zstd-compressed", "upload it uncompressed or gzip-compressed"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive", "upload the CSV uncompressed or gzip-compressed"),
    (b"PAR1", "a Parquet file", "export it as CSV"),
    (b"%PDF-", "a PDF document", "export the data as CSV"),
    (b"\x89PNG\r\n\x1a\n", "a PNG image", "upload the CSV file"),
    (b"\xff\xd8\xff", "a JPEG image", "upload the CSV file"),
    (b"\x7fELF", "an executable", "upload the CSV file"),
    (b"SQLite format 3\x00", "an SQLite database", "export the table as CSV"),
)
_BZIP2 = re.compile(rb"BZh[1-9]1AY&SY")
_UTF_BOMS: Final = ((b"\xff\xfe\x00\x00", "UTF-32"), (b"\x00\x00\xfe\xff", "UTF-32"),
                    (b"\xff\xfe", "UTF-16"), (b"\xfe\xff", "UTF-16"))
# How messages name the target's labels (shared.domain.schema): 'yes'/'no', 'yes' or 'no', both 'yes' and 'no'.
_LABELS_SLASH: Final = f"'{schema.POSITIVE}'/'{schema.NEGATIVE}'"
_LABELS_OR: Final = f"'{schema.POSITIVE}' or '{schema.NEGATIVE}'"
_LABELS_AND: Final = f"'{schema.POSITIVE}' and '{schema.NEGATIVE}'"
_NON_SPACE = re.compile(rb"\S")
_CONTROL = re.compile(rb"[\x01-\x08\x0e-\x1f\x7f]")
_DECIMAL_COMMA = re.compile(r'(^|;)[ "]*-?\d+,\d+[ "]*(;|$)', flags=re.MULTILINE)


class ValidationIssue(str):
    """One problem (or warning) with an upload.

    It *is* its one-line message, so lists of issues compare, join, log and serialize to JSON as strings; the
    attributes and `to_dict()` say where it is and what was expected: `code` (e.g. "out_of_range"), `line` (1 is
    the first line of the file, as an editor counts), `column`, `expected`, `found`.
    """

    code: str
    line: int | None
    column: str | None
    expected: str | None
    found: str | None

    def __new__(cls, message: str, *, code: str = "invalid", line: int | None = None, column: str | None = None,
                expected: str | None = None, found: str | None = None) -> ValidationIssue:
        self = super().__new__(cls, message)
        self.code, self.line, self.column, self.expected, self.found = code, line, column, expected, found
        return self

    @property
    def message(self) -> str:
        return str.__str__(self)

    def to_dict(self) -> dict:
        return {"code": self.code, "line": self.line, "column": self.column, "expected": self.expected,
                "found": self.found, "message": self.message}


@dataclass(frozen=True)
class Dialect:
    delimiter: str
    decimal: str
    quoted: bool
    bom: bool = False  # a UTF-8 byte-order mark was removed
    line_ending: str = "lf"  # "lf", "crlf" or "cr" (normalized to LF)
    compression: str | None = None  # "gzip" when the upload was compressed

    @property
    def base(self) -> str:
        """How fields and numbers are written: comma, semicolon or semicolon-decimal-comma."""
        if self.delimiter == ",":
            return "comma"
        return "semicolon-decimal-comma" if self.decimal == "," else "semicolon"

    @property
    def name(self) -> str:
        """`base` plus what had to be unwrapped to read it, in a fixed order: e.g. "comma", "semicolon+bom+crlf",
        "semicolon-decimal-comma+gzip"."""
        extras = (["bom"] if self.bom else []) + ([self.line_ending] if self.line_ending != "lf" else []) \
            + ([self.compression] if self.compression else [])
        return "+".join([self.base, *extras])


@dataclass
class ValidationResult:
    errors: list[ValidationIssue] = field(default_factory=list)
    warnings: list[ValidationIssue] = field(default_factory=list)
    frame: pd.DataFrame | None = None
    dialect: Dialect | None = None
    size: int | None = None  # bytes uploaded (compressed size for a gzip)
    data_rows: int | None = None  # data rows found, also when rejected; None: the file was not read that far
    data_columns: int | None = None  # columns in the file's header; None: not read that far

    @property
    def ok(self) -> bool:
        return not self.errors and self.frame is not None

    @property
    def rows(self) -> int:
        return 0 if self.frame is None else len(self.frame)

    @property
    def columns(self) -> int | None:
        return self.data_columns

    def reason(self) -> str:
        """The verdict as one readable line: the first errors joined with '; '."""
        shown = [str(e).replace("\n", " ") for e in self.errors[:_REASON_ERRORS]]
        more = len(self.errors) - len(shown)
        return "; ".join(shown) + (f"; and {more} more problem{'s' if more > 1 else ''}" if more > 0 else "")

    def details(self) -> list[dict]:
        """The errors as structured entries: code, line, column, expected, found, message."""
        return [e.to_dict() if isinstance(e, ValidationIssue) else {"message": str(e)} for e in self.errors]

    def to_dict(self) -> dict:
        """The verdict as `retrain validate --json` prints it."""
        return {"accepted": self.ok, "dialect": self.dialect.name if self.dialect else None, "rows": self.data_rows,
                "columns": self.data_columns, "reason": self.reason() or None, "errors": self.details(),
                "warnings": [str(w) for w in self.warnings]}


class _Stop(Exception):
    """A problem after which nothing further can be checked."""

    def __init__(self, issue: ValidationIssue):
        super().__init__(issue)
        self.issue = issue


def _stop(message: str, code: str, **where) -> None:
    raise _Stop(ValidationIssue(message, code=code, **where))


def _show(value: object) -> str:
    """A found value as a message quotes it: repr, shortened; an empty field says so."""
    text = str(value)
    if text == "":
        return "an empty value"
    if len(text) > _SHOW_CHARS:
        text = text[:_SHOW_CHARS] + "…"
    return repr(text)


def _clip(value: object, limit: int = 200) -> str:
    text = str(value)
    return text if len(text) <= limit else text[:limit] + "…"


# ---- dialect ----------------------------------------------------------------------------------------------------

def sniff_dialect(head: str) -> Dialect:
    """Delimiter, decimal mark and quoting from the first lines of a file (its header and some rows)."""
    lines = head.lstrip("\ufeff").splitlines()
    first = next((line for line in lines if line.strip()), "")
    delimiter = ";" if first.count(";") > first.count(",") else ","
    quoted = first.lstrip().startswith('"')
    decimal = "."
    # A decimal comma shows as digits,digits alone in a field, e.g. ;1,1; or ;"-46,2";
    if delimiter == ";" and _DECIMAL_COMMA.search("\n".join(lines[1:])):
        decimal = ","
    return Dialect(delimiter=delimiter, decimal=decimal, quoted=quoted)


# ---- bytes: size, gzip, binary, encoding --------------------------------------------------------------------------

def _gunzip(data: bytes, limit: int) -> bytes:
    """Decompress every gzip member, refusing as soon as the output passes `limit` (a gzip bomb is never
    unpacked beyond it) and naming a truncated or corrupt stream."""
    parts: list[bytes] = []
    total = 0
    source = data
    while True:
        inflater = zlib.decompressobj(wbits=31)
        try:
            while not inflater.eof:
                chunk = inflater.decompress(source, _GUNZIP_STEP)
                source = inflater.unconsumed_tail
                if chunk:
                    total += len(chunk)
                    if total > limit:
                        _stop(f"gzip file unpacks to more than the {limit:,}-byte limit (MAX_UPLOAD_BYTES); "
                              f"refused after unpacking {total:,} bytes", "too_large",
                              expected=f"at most {limit:,} bytes unpacked", found=f"more than {limit:,} bytes")
                    parts.append(chunk)
                elif not source and not inflater.eof:
                    _stop(f"gzip file is truncated: the compressed data ends before the end of the stream "
                          f"(after {total:,} bytes unpacked); upload the complete file", "gzip_truncated",
                          expected="a complete gzip stream", found=f"{len(data):,} bytes ending early")
        except zlib.error as exc:
            detail = str(exc).split(": ", 1)[-1]
            _stop(f"gzip file is corrupt ({detail}); upload it again, or uncompressed", "gzip_corrupt",
                  expected="a valid gzip stream", found=detail)
        rest = inflater.unused_data
        if rest[:2] == GZIP_MAGIC:  # another member (`cat a.gz b.gz` is a valid gzip file)
            source = rest
            continue
        if rest.strip(b"\x00"):
            _stop(f"gzip file is corrupt: {len(rest):,} bytes of non-gzip data follow the compressed stream",
                  "gzip_corrupt", expected="nothing after the gzip stream", found=f"{len(rest):,} extra bytes")
        return b"".join(parts)


def _line_at(data: bytes, offset: int) -> int:
    return data.count(b"\n", 0, offset) + 1


def _column_at(data: bytes, offset: int) -> str | None:
    """The header name of the field holding byte `offset` (unquoted files; a hint only)."""
    first = data[:min(len(data), MAX_LINE_BYTES)].split(b"\n", 1)[0].decode("utf-8", errors="replace")
    delimiter = sniff_dialect(first).delimiter
    names = [n.strip().strip('"') for n in first.split(delimiter)]
    start = data.rfind(b"\n", 0, offset) + 1
    index = data[start:offset].count(delimiter.encode())
    return names[index] if start > 0 and index < len(names) else None


def _check_bytes(data: bytes) -> None:
    """Refuse what is not text: known binary formats, UTF-16/32, NUL or control bytes, invalid UTF-8."""
    for magic, what, advice in _SIGNATURES:
        if data.startswith(magic):
            _stop(f"file is {what}, not CSV text; {advice}", "binary", expected="CSV text", found=what)
    if _BZIP2.match(data[:10]):
        _stop("file is bzip2-compressed, not CSV text; upload it uncompressed or gzip-compressed", "binary",
              expected="CSV text", found="bzip2-compressed data")
    for bom, encoding in _UTF_BOMS:
        if data.startswith(bom):
            _stop(f"file is not UTF-8 text: it is {encoding} (byte-order mark {bom.hex(' ').upper()}); "
                  "export it as UTF-8 CSV", "encoding", line=1, expected="UTF-8 text", found=encoding)
    nul = data.find(b"\x00")
    if nul >= 0:
        sample = data[:4096]
        if len(sample) >= 8 and sample[1::2].count(0) >= 0.9 * (len(sample) // 2):
            _stop("file is not UTF-8 text: it looks like UTF-16 without a byte-order mark; export it as UTF-8 CSV",
                  "encoding", line=1, expected="UTF-8 text", found="UTF-16")
        line = _line_at(data, nul)
        _stop(f"file holds binary data, not CSV text (a NUL byte on line {line}, offset {nul:,})", "binary",
              line=line, expected="CSV text", found="NUL byte")
    head = data[:MAX_LINE_BYTES]
    controls = len(_CONTROL.findall(head))
    if controls > max(8, len(head) // 100):
        _stop(f"file holds binary data, not CSV text ({controls:,} control bytes in its first {len(head):,} bytes)",
              "binary", expected="CSV text", found=f"{controls:,} control bytes")
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = _line_at(data, exc.start)
        column = _column_at(data, exc.start)
        byte = data[exc.start]
        guess = bytes([byte]).decode("cp1252", errors="replace")
        hint = f" ('{guess}' in Windows-1252/Latin-1)" if guess.isprintable() and guess != "\ufffd" else ""
        where = f"line {line}" + (f", column '{column}'" if column else "")
        _stop(f"file is not UTF-8 text: {where} has the byte 0x{byte:02x}{hint} at offset {exc.start:,}; "
              "export it as UTF-8 CSV", "encoding", line=line, column=column, expected="UTF-8 text",
              found=f"byte 0x{byte:02x}")


def _normalize_line_ends(data: bytes) -> tuple[bytes, str]:
    if b"\r" not in data:
        return data, "lf"
    first_nl, first_cr = data.find(b"\n"), data.find(b"\r")
    ending = "crlf" if first_nl == first_cr + 1 else ("cr" if first_nl < 0 or first_cr < first_nl else "lf")
    data = data.replace(b"\r\n", b"\n")
    if b"\r" in data:
        data = data.replace(b"\r", b"\n")
    return data, ending


# ---- structure: records, fields, line numbers ---------------------------------------------------------------------

@dataclass
class _Records:
    starts: np.ndarray  # byte offset of each record (records end at an unquoted newline)
    ends: np.ndarray
    fields: np.ndarray  # fields per record
    lines: np.ndarray  # the line each record starts on
    odd_quotes: bool  # a quote is left open at the end of the file
    long_line: tuple[int, int] | None  # (line, bytes) of the first line over MAX_LINE_BYTES


def _scan(buf: bytes, delimiter: str) -> _Records:
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
    return _Records(starts=starts, ends=ends, fields=fields, lines=lines, odd_quotes=bool(parity),
                    long_line=long_line)


def _csv_walk(text: str, dialect: Dialect) -> tuple[list[str], list[int]]:
    """The authoritative (slow) record walk: the header and the first line of every data record; raises _Stop
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
                _stop(f"malformed CSV at line {start}: a quoted field that starts on this line is never closed",
                      "malformed", line=start, expected='a closing \'"\'', found="end of file")
            _stop(f"malformed CSV at line {reader.line_num}: {exc}", "malformed", line=reader.line_num,
                  found=_clip(exc))
        if not row or (len(row) == 1 and not row[0].strip()):
            continue
        if header is None:
            header = row
            lines.append(start)
        elif len(row) != len(header):
            _stop(f"malformed CSV at line {start}: expected {len(header)} fields ({dialect.base} dialect), "
                  f"found {len(row)}", "ragged", line=start, expected=f"{len(header)} fields",
                  found=f"{len(row)} fields")
        else:
            lines.append(start)
    return header or [], lines


# ---- header -------------------------------------------------------------------------------------------------------

def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def _renamed(missing: list[str], unknown: list[str]) -> dict[str, str]:
    """For each missing column, the unknown header name that most likely is it, renamed (case or punctuation
    first, then difflib)."""
    pool = list(unknown)
    found: dict[str, str] = {}
    for column in missing:
        match = next((u for u in pool if _norm(u) == _norm(column)), None)
        if match is None:
            lowered = {u.lower(): u for u in pool}
            close = difflib.get_close_matches(column.lower(), list(lowered), n=1, cutoff=0.75)
            match = lowered[close[0]] if close else None
        if match is not None:
            found[column] = match
            pool.remove(match)
    return found


def _looks_like_data(names: list[str]) -> bool:
    known = {v for levels in schema.LEVELS.values() for v in levels} | set(schema.TARGET_VALUES)
    hits = sum(1 for n in names if n in known or re.fullmatch(r"-?\d+([.,]\d+)?", n))
    return hits >= max(2, len(names) // 2)


def _check_header(names: list[str], line: int, target: str, result: ValidationResult) -> None:
    expected = list(schema.COLUMNS)
    missing = [c for c in expected if c not in names]
    if len(missing) == len(expected) and _looks_like_data(names):
        shown = ", ".join(repr(n) for n in names[:3])
        _stop(f"the header row is missing: line {line} looks like data ({shown}, …); the file must start with "
              f"the column names {','.join(expected[:3])},…,{expected[-1]}", "no_header", line=line,
              expected="a header row of column names", found=_clip(",".join(names)))
    dupes = sorted({c for c in names if names.count(c) > 1})
    if dupes:
        _stop(f"duplicate column names: {', '.join(dupes)}", "duplicate_columns", line=line, column=", ".join(dupes),
              expected="each column once", found=f"{', '.join(dupes)} more than once")
    if missing:
        unknown = [n for n in names if n not in schema.COLUMNS]
        renamed = _renamed(missing, unknown)

        def one(column: str) -> str:
            if column in renamed:
                return f"{column} (did you mean '{renamed[column]}'? rename it to '{column}')"
            return column

        hint = ""
        if len(names) == 1:
            hint = " (the whole header was read as one column: is the delimiter ',' or ';'?)"
            for char, kind in (("\t", "tab"), ("|", "pipe")):
                if char in names[0]:
                    hint = (" (the whole header was read as one column: the file looks "
                            f"{kind}-separated; use ',' or ';')")
        found = ", ".join(f"'{renamed[c]}'" for c in missing if c in renamed) or "not in the header"
        if missing == [target]:
            suggestion = f" ({one(target).split(' (', 1)[1]}" if target in renamed else ""
            _stop(f"target column '{target}' is missing{suggestion}; a training file needs labels", "missing_target",
                  line=line, column=target, expected=f"a column '{target}' with {_LABELS_SLASH} labels", found=found)
        if len(missing) == len(expected):
            listed = f"all {len(expected)} of {', '.join(expected[:3])}, …, {expected[-1]}"
        elif len(missing) > 8:
            listed = f"{', '.join(one(c) for c in missing[:8])} and {len(missing) - 8} more"
        else:
            listed = ", ".join(one(c) for c in missing)
        _stop(f"missing columns: {listed}{hint}", "missing_columns", line=line,
              column=", ".join(missing), expected=f"column{'s' if len(missing) > 1 else ''} {', '.join(missing)}",
              found=found)
    extra = [c for c in names if c not in schema.COLUMNS]
    if extra:
        result.warnings.append(ValidationIssue(f"ignored {len(extra)} unknown column(s): {', '.join(extra[:10])}",
                                               code="unknown_columns", line=line, column=", ".join(extra[:10])))


# ---- values -------------------------------------------------------------------------------------------------------

def _spec(column: str) -> str:
    kind = "integer" if schema.COLUMNS[column] == "int" else "number"
    low, high = schema.RANGES.get(column, (None, None))
    if low is not None and high is not None:
        return f"{kind} between {low:g} and {high:g}"
    if low is not None:
        return f"{kind} >= {low:g}"
    if high is not None:
        return f"{kind} <= {high:g}"
    return kind


class _Values:
    """Reports bad values of one kind in one column: the first one's line and value, and how many in all."""

    def __init__(self, result: ValidationResult, lines: np.ndarray):
        self.result, self.lines = result, lines

    def bad(self, column: str, mask: np.ndarray, shown: pd.Series | np.ndarray, expected: str, code: str) -> bool:
        where = np.flatnonzero(mask)
        if not len(where):
            return False
        i = int(where[0])
        value = shown.iloc[i] if isinstance(shown, pd.Series) else shown[i]
        value = _fmt(value)
        line = int(self.lines[i])
        more = f" ({len(where):,} rows in all)" if len(where) > 1 else ""
        self.result.errors.append(ValidationIssue(
            f"line {line}, column '{column}': expected {expected}, found {_show(value)}{more}", code=code, line=line,
            column=column, expected=expected, found=_clip(value)))
        return True


def _fmt(value: object) -> str:
    if isinstance(value, float | np.floating):
        number = float(value)
        return f"{number:.0f}" if number.is_integer() and abs(number) < 1e16 else repr(number)
    return str(value)


def _numeric(frame: pd.DataFrame, column: str, dialect: Dialect, report: _Values) -> tuple[np.ndarray | None, bool]:
    """The column as int64/float64, or None when it has bad values (reported). Also says whether a decimal comma
    was read (a semicolon file the sniffer took for '.' decimals)."""
    series = frame[column]
    kind = schema.COLUMNS[column]
    spec = _spec(column)
    comma = False
    if pd.api.types.is_bool_dtype(series.dtype) or not (pd.api.types.is_integer_dtype(series.dtype)
                                                        or pd.api.types.is_float_dtype(series.dtype)) \
            or series.dtype == np.uint64:
        raw = series.astype(str).str.strip()
        text = raw
        if dialect.delimiter == ";":
            has_comma = raw.str.contains(",", regex=False)
            comma = bool(has_comma.any())
            if comma:
                text = raw.str.replace(",", ".", regex=False)
        parsed = pd.to_numeric(text, errors="coerce")
        if report.bad(column, parsed.isna().to_numpy(), raw, spec, "wrong_type"):
            return None, comma
        values = parsed.to_numpy(dtype=np.float64)
        shown: pd.Series | np.ndarray = raw
    else:
        values = series.to_numpy()
        shown = values
    if values.dtype.kind == "f":
        if report.bad(column, ~np.isfinite(values), shown, spec, "wrong_type"):
            return None, comma
        if kind == "int":
            not_int = (values != np.round(values)) | (np.abs(values) >= 2.0**63)
            if report.bad(column, not_int, shown, spec, "wrong_type"):
                return None, comma
            values = values.astype(np.int64)
    if kind == "float":
        values = values.astype(np.float64)
    low, high = schema.RANGES.get(column, (None, None))
    outside = np.zeros(len(values), dtype=bool)
    if low is not None:
        outside |= values < low
    if high is not None:
        outside |= values > high
    if report.bad(column, outside, shown, spec, "out_of_range"):
        return None, comma
    return values, comma


def _padded(data: bytes, delimiter: str) -> bool:
    """Whether any field may carry surrounding whitespace: a space or tab next to a delimiter, a line end, a
    quote or an end of the file (vectorized over the few spaces; most files have none)."""
    if b" " not in data and b"\t" not in data:
        return False
    a = np.frombuffer(data, dtype=np.uint8)
    spaces = np.flatnonzero((a == 32) | (a == 9))
    if not len(spaces):
        return False
    if spaces[0] == 0 or spaces[-1] == len(a) - 1:
        return True
    edges = np.array([ord(delimiter), 10, 34], dtype=np.uint8)
    return bool(np.isin(a[spaces - 1], edges).any() or np.isin(a[spaces + 1], edges).any())


def _text(frame: pd.DataFrame, column: str, strip: bool) -> pd.Series:
    series = frame[column]
    if not pd.api.types.is_string_dtype(series.dtype):
        series = series.astype(str)
    return series.str.strip() if strip else series


def _check_values(frame: pd.DataFrame, lines: np.ndarray, dialect: Dialect, target: str,
                  require_both_classes: bool, result: ValidationResult, strip: bool) -> tuple[dict, Dialect]:
    report = _Values(result, lines)
    columns: dict[str, object] = {}
    for column in schema.NUMERIC:
        values, comma = _numeric(frame, column, dialect, report)
        if comma and dialect.decimal != ",":
            dialect = dataclasses.replace(dialect, decimal=",")
        columns[column] = values

    for column in schema.CATEGORICAL:
        values = _text(frame, column, strip)
        empty = (values == "").to_numpy()
        report.bad(column, empty, values, "a value (use 'unknown' for a missing category)", "empty_value")
        levels = schema.LEVELS.get(column, ())
        if column in schema.CLOSED_LEVELS:
            known = values.isin(levels).to_numpy() | empty
            if not known.all():
                values = values.str.lower()  # 'May' is may; stored lower-case
                known = values.isin(levels).to_numpy() | empty
            shown = ", ".join(levels) if len(levels) <= 7 else f"{', '.join(levels[:3])}, …, {levels[-1]}"
            report.bad(column, ~known, values, f"one of {shown}", "unknown_category")
        elif levels:
            novel = sorted(set(values.unique()) - set(levels) - {""})
            if novel:
                shown = ", ".join(" ".join(_clip(v, _SHOW_CHARS).splitlines()) for v in novel[:5])
                result.warnings.append(ValidationIssue(f"column '{column}' has unseen values: {shown}",
                                                       code="unseen_values", column=column))
        columns[column] = values

    labels = _text(frame, target, strip)
    known = labels.isin(schema.TARGET_VALUES).to_numpy()
    if not known.all():
        labels = labels.str.lower()
        known = labels.isin(schema.TARGET_VALUES).to_numpy()
    if not report.bad(target, ~known, labels, _LABELS_OR, "unknown_label"):
        classes = labels.unique()
        if require_both_classes and len(classes) == 1:
            result.errors.append(ValidationIssue(
                f"target '{target}' has only the class '{classes[0]}'; training needs both {_LABELS_AND}",
                code="single_class", column=target, expected=f"both {_LABELS_AND}", found=f"only '{classes[0]}'"))
    columns[target] = labels
    return columns, dialect


# ---- the whole check ----------------------------------------------------------------------------------------------

def validate_csv(data: bytes, *, min_rows: int, max_bytes: int, target: str = schema.TARGET,
                 require_both_classes: bool = True) -> ValidationResult:
    """Check size, encoding, structure, schema, types, ranges, target and row count of an upload in any accepted
    dialect. Never raises for bad input: the result holds every problem found (`errors`, `reason()`)."""
    result = ValidationResult(size=len(data))
    try:
        _validate(bytes(data), result, min_rows=min_rows, max_bytes=max_bytes, target=target,
                  require_both_classes=require_both_classes)
    except _Stop as stop:
        result.errors.append(stop.issue)
    except Exception as exc:  # a bug must not crash the trigger or lose the file: reject it, explained, and log
        log.exception("validation failed unexpectedly")
        result.errors.append(ValidationIssue(
            f"the file could not be validated ({type(exc).__name__}: {_clip(exc, 120)}); it is kept for inspection",
            code="internal"))
    if result.errors:
        result.frame = None
    return result


def validate_file(path: str | Path, *, min_rows: int, max_bytes: int, target: str = schema.TARGET,
                  require_both_classes: bool = True) -> ValidationResult:
    """`validate_csv` on a file; one over `max_bytes` is refused from its size, without reading it."""
    path = Path(path)
    size = path.stat().st_size
    if size > max_bytes:
        result = ValidationResult(size=size)
        result.errors.append(ValidationIssue(
            f"file is {size:,} bytes, over the {max_bytes:,}-byte limit (MAX_UPLOAD_BYTES)", code="too_large",
            expected=f"at most {max_bytes:,} bytes", found=f"{size:,} bytes"))
        return result
    return validate_csv(path.read_bytes(), min_rows=min_rows, max_bytes=max_bytes, target=target,
                        require_both_classes=require_both_classes)


def _validate(data: bytes, result: ValidationResult, *, min_rows: int, max_bytes: int, target: str,
              require_both_classes: bool) -> None:
    if len(data) > max_bytes:
        _stop(f"file is {len(data):,} bytes, over the {max_bytes:,}-byte limit (MAX_UPLOAD_BYTES)", "too_large",
              expected=f"at most {max_bytes:,} bytes", found=f"{len(data):,} bytes")
    compression = None
    if data[:2] == GZIP_MAGIC:
        data = _gunzip(data, max_bytes)
        compression = "gzip"
        if data[:2] == GZIP_MAGIC:
            _stop("file is gzip-compressed twice; compress the CSV once (or not at all)", "binary",
                  expected="CSV text inside the gzip", found="another gzip stream")
    _check_bytes(data)
    bom = data.startswith(UTF8_BOM)
    if bom:
        data = data[len(UTF8_BOM):]
    if not _NON_SPACE.search(data):
        _stop("file is empty" + (" (the gzip holds no data)" if compression else ""), "empty",
              expected="a header row and data rows", found="no text")
    data, line_ending = _normalize_line_ends(data)
    dialect = dataclasses.replace(sniff_dialect(data[:MAX_LINE_BYTES].decode("utf-8", errors="ignore")), bom=bom,
                                  line_ending=line_ending, compression=compression)
    result.dialect = dialect

    records = _scan(data, dialect.delimiter)
    if records.long_line:
        line, length = records.long_line
        _stop(f"line {line} is {length:,} bytes long, over the {MAX_LINE_BYTES:,}-byte limit per line; "
              "is this a CSV file with one record per line?", "line_too_long", line=line,
              expected=f"at most {MAX_LINE_BYTES:,} bytes per line", found=f"{length:,} bytes")
    present = np.flatnonzero(records.ends > records.starts)
    first = int(present[0])
    body = present[1:]
    width = int(records.fields[first])
    if records.odd_quotes or (records.fields[body] != width).any():
        names, line_list = _csv_walk(data.decode("utf-8"), dialect)  # raises _Stop at the first bad record
        header_line, lines = line_list[0], np.asarray(line_list[1:], dtype=np.int64)
    else:
        header_line, lines = int(records.lines[first]), records.lines[body]
        header = data[records.starts[first]:records.ends[first]].decode("utf-8")
        try:
            names = next(csv.reader(io.StringIO(header), delimiter=dialect.delimiter, quotechar='"'))
        except (csv.Error, StopIteration) as exc:
            _stop(f"malformed CSV at line {header_line}: the header row cannot be read ({_clip(exc, 80)})",
                  "malformed", line=header_line, found=_clip(header, 80))

    names = [n.strip() or f"(unnamed column {i + 1})" for i, n in enumerate(names)]
    result.data_columns = len(names)
    _check_header(names, header_line, target, result)
    if not len(lines):
        _stop("file has a header row but no data rows", "no_rows", line=header_line, expected="data rows",
              found="only the header")

    expected = list(schema.COLUMNS)
    text_columns = [*schema.CATEGORICAL, target]
    try:
        frame = pd.read_csv(io.BytesIO(data), sep=dialect.delimiter, decimal=dialect.decimal, quotechar='"',
                            header=0, names=names, usecols=expected, dtype=dict.fromkeys(text_columns, str),
                            na_filter=False, index_col=False, skip_blank_lines=True, encoding="utf-8")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError, csv.Error) as exc:
        _stop(f"malformed CSV: {_clip(str(exc).strip().splitlines()[0] if str(exc).strip() else exc, 160)}",
              "malformed", found=_clip(exc))
    result.data_rows = len(frame)
    if len(lines) != len(frame):  # the fast scan and pandas disagree on records: count lines the slow way
        _, line_list = _csv_walk(data.decode("utf-8"), dialect)
        lines = np.asarray(line_list[1:], dtype=np.int64)
        if len(lines) != len(frame):
            lines = np.arange(len(frame), dtype=np.int64) + header_line + 1

    columns, dialect = _check_values(frame, lines, dialect, target, require_both_classes, result,
                                     strip=_padded(data, dialect.delimiter))
    result.dialect = dialect
    if len(frame) < min_rows:
        result.errors.append(ValidationIssue(
            f"only {len(frame)} data rows; at least {min_rows} are needed (MIN_ROWS)", code="too_few_rows",
            expected=f"at least {min_rows:,} data rows", found=f"{len(frame):,} rows"))
    if not result.errors:
        result.frame = pd.DataFrame({column: columns[column] for column in expected})


def canonical_csv(frame: pd.DataFrame) -> bytes:
    """The one stored form of a dataset version: comma, '.' decimal, schema column order, LF endings."""
    return frame.to_csv(index=False, lineterminator="\n").encode("utf-8")


def content_hash(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()
