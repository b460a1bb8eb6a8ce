"""The raw bytes of an upload before any CSV parsing: gzip (bounded), binary formats, encoding, line ends."""

from __future__ import annotations

import re
import zlib
from typing import Final

from shared.domain.validation.dialect import sniff_dialect
from shared.domain.validation.issues import stop

MAX_LINE_BYTES: Final = 64 * 1024  # a longer physical line is refused (no real record comes near it)
GZIP_MAGIC: Final = b"\x1f\x8b"
UTF8_BOM: Final = b"\xef\xbb\xbf"

_GUNZIP_STEP: Final = 1 << 20  # bytes of output per decompression step: a gzip bomb stops at the limit

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
_CONTROL = re.compile(rb"[\x01-\x08\x0e-\x1f\x7f]")


def gunzip(data: bytes, limit: int) -> bytes:
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
                        stop(f"gzip file unpacks to more than the {limit:,}-byte limit (MAX_UPLOAD_BYTES); "
                             f"refused after unpacking {total:,} bytes", "too_large",
                             expected=f"at most {limit:,} bytes unpacked", found=f"more than {limit:,} bytes")
                    parts.append(chunk)
                elif not source and not inflater.eof:
                    stop(f"gzip file is truncated: the compressed data ends before the end of the stream "
                         f"(after {total:,} bytes unpacked); upload the complete file", "gzip_truncated",
                         expected="a complete gzip stream", found=f"{len(data):,} bytes ending early")
        except zlib.error as exc:
            detail = str(exc).split(": ", 1)[-1]
            stop(f"gzip file is corrupt ({detail}); upload it again, or uncompressed", "gzip_corrupt",
                 expected="a valid gzip stream", found=detail)
        rest = inflater.unused_data
        if rest[:2] == GZIP_MAGIC:  # another member (`cat a.gz b.gz` is a valid gzip file)
            source = rest
            continue
        if rest.strip(b"\x00"):
            stop(f"gzip file is corrupt: {len(rest):,} bytes of non-gzip data follow the compressed stream",
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


def check_bytes(data: bytes) -> None:
    """Refuse what is not text: known binary formats, UTF-16/32, NUL or control bytes, invalid UTF-8."""
    for magic, what, advice in _SIGNATURES:
        if data.startswith(magic):
            stop(f"file is {what}, not CSV text; {advice}", "binary", expected="CSV text", found=what)
    if _BZIP2.match(data[:10]):
        stop("file is bzip2-compressed, not CSV text; upload it uncompressed or gzip-compressed", "binary",
             expected="CSV text", found="bzip2-compressed data")
    for bom, encoding in _UTF_BOMS:
        if data.startswith(bom):
            stop(f"file is not UTF-8 text: it is {encoding} (byte-order mark {bom.hex(' ').upper()}); "
                 "export it as UTF-8 CSV", "encoding", line=1, expected="UTF-8 text", found=encoding)
    nul = data.find(b"\x00")
    if nul >= 0:
        sample = data[:4096]
        if len(sample) >= 8 and sample[1::2].count(0) >= 0.9 * (len(sample) // 2):
            stop("file is not UTF-8 text: it looks like UTF-16 without a byte-order mark; export it as UTF-8 CSV",
                 "encoding", line=1, expected="UTF-8 text", found="UTF-16")
        line = _line_at(data, nul)
        stop(f"file holds binary data, not CSV text (a NUL byte on line {line}, offset {nul:,})", "binary",
             line=line, expected="CSV text", found="NUL byte")
    head = data[:MAX_LINE_BYTES]
    controls = len(_CONTROL.findall(head))
    if controls > max(8, len(head) // 100):
        stop(f"file holds binary data, not CSV text ({controls:,} control bytes in its first {len(head):,} bytes)",
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
        stop(f"file is not UTF-8 text: {where} has the byte 0x{byte:02x}{hint} at offset {exc.start:,}; "
             "export it as UTF-8 CSV", "encoding", line=line, column=column, expected="UTF-8 text",
             found=f"byte 0x{byte:02x}")


def normalize_line_ends(data: bytes) -> tuple[bytes, str]:
    if b"\r" not in data:
        return data, "lf"
    first_nl, first_cr = data.find(b"\n"), data.find(b"\r")
    ending = "crlf" if first_nl == first_cr + 1 else ("cr" if first_nl < 0 or first_cr < first_nl else "lf")
    data = data.replace(b"\r\n", b"\n")
    if b"\r" in data:
        data = data.replace(b"\r", b"\n")
    return data, ending
