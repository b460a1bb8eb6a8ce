"""The whole check of an upload, cheapest first: size, compression, bytes, structure, header, values, rows."""

from __future__ import annotations

import csv
import dataclasses
import io
import logging
import re
from pathlib import Path

import numpy as np
import pandas as pd

from shared.domain import schema
from shared.domain.validation.dialect import sniff_dialect
from shared.domain.validation.header import check_header
from shared.domain.validation.issues import Stop, ValidationIssue, ValidationResult, clip, stop, too_large
from shared.domain.validation.raw_bytes import (
    GZIP_MAGIC,
    MAX_LINE_BYTES,
    UTF8_BOM,
    check_bytes,
    gunzip,
    normalize_line_ends,
)
from shared.domain.validation.records import csv_walk, scan
from shared.domain.validation.values import check_values, padded

log = logging.getLogger("shared.domain.validation")

_NON_SPACE = re.compile(rb"\S")


def validate_csv(data: bytes, *, min_rows: int, max_bytes: int, target: str = schema.TARGET,
                 require_both_classes: bool = True) -> ValidationResult:
    """Check size, encoding, structure, schema, types, ranges, target and row count of an upload in any accepted
    dialect. Never raises for bad input: the result holds every problem found (`errors`, `reason()`)."""
    result = ValidationResult(size=len(data))
    try:
        _validate(bytes(data), result, min_rows=min_rows, max_bytes=max_bytes, target=target,
                  require_both_classes=require_both_classes)
    except Stop as stopped:
        result.errors.append(stopped.issue)
    except Exception as exc:  # a bug must not crash the trigger or lose the file: reject it, explained, and log
        log.exception("validation failed unexpectedly")
        result.errors.append(ValidationIssue(
            f"the file could not be validated ({type(exc).__name__}: {clip(exc, 120)}); it is kept for inspection",
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
        return ValidationResult(errors=[too_large(size, max_bytes)], size=size)
    return validate_csv(path.read_bytes(), min_rows=min_rows, max_bytes=max_bytes, target=target,
                        require_both_classes=require_both_classes)


def _validate(data: bytes, result: ValidationResult, *, min_rows: int, max_bytes: int, target: str,
              require_both_classes: bool) -> None:
    if len(data) > max_bytes:
        raise Stop(too_large(len(data), max_bytes))
    compression = None
    if data[:2] == GZIP_MAGIC:
        data = gunzip(data, max_bytes)
        compression = "gzip"
        if data[:2] == GZIP_MAGIC:
            stop("file is gzip-compressed twice; compress the CSV once (or not at all)", "binary",
                 expected="CSV text inside the gzip", found="another gzip stream")
    check_bytes(data)
    bom = data.startswith(UTF8_BOM)
    if bom:
        data = data[len(UTF8_BOM):]
    if not _NON_SPACE.search(data):
        stop("file is empty" + (" (the gzip holds no data)" if compression else ""), "empty",
             expected="a header row and data rows", found="no text")
    data, line_ending = normalize_line_ends(data)
    dialect = dataclasses.replace(sniff_dialect(data[:MAX_LINE_BYTES].decode("utf-8", errors="ignore")), bom=bom,
                                  line_ending=line_ending, compression=compression)
    result.dialect = dialect

    records = scan(data, dialect.delimiter)
    if records.long_line:
        line, length = records.long_line
        stop(f"line {line} is {length:,} bytes long, over the {MAX_LINE_BYTES:,}-byte limit per line; "
             "is this a CSV file with one record per line?", "line_too_long", line=line,
              expected=f"at most {MAX_LINE_BYTES:,} bytes per line", found=f"{length:,} bytes")
    present = np.flatnonzero(records.ends > records.starts)
    first = int(present[0])
    body = present[1:]
    width = int(records.fields[first])
    if records.odd_quotes or (records.fields[body] != width).any():
        names, line_list = csv_walk(data.decode("utf-8"), dialect)  # raises Stop at the first bad record
        header_line, lines = line_list[0], np.asarray(line_list[1:], dtype=np.int64)
    else:
        header_line, lines = int(records.lines[first]), records.lines[body]
        header = data[records.starts[first]:records.ends[first]].decode("utf-8")
        try:
            names = next(csv.reader(io.StringIO(header), delimiter=dialect.delimiter, quotechar='"'))
        except (csv.Error, StopIteration) as exc:
            stop(f"malformed CSV at line {header_line}: the header row cannot be read ({clip(exc, 80)})",
                 "malformed", line=header_line, found=clip(header, 80))

    names = [n.strip() or f"(unnamed column {i + 1})" for i, n in enumerate(names)]
    result.data_columns = len(names)
    check_header(names, header_line, target, result)
    if not len(lines):
        stop("file has a header row but no data rows", "no_rows", line=header_line, expected="data rows",
             found="only the header")

    expected = list(schema.COLUMNS)
    text_columns = [*schema.CATEGORICAL, target]
    try:
        frame = pd.read_csv(io.BytesIO(data), sep=dialect.delimiter, decimal=dialect.decimal, quotechar='"',
                            header=0, names=names, usecols=expected, dtype=dict.fromkeys(text_columns, str),
                            na_filter=False, index_col=False, skip_blank_lines=True, encoding="utf-8")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError, csv.Error) as exc:
        stop(f"malformed CSV: {clip(str(exc).strip().splitlines()[0] if str(exc).strip() else exc, 160)}",
             "malformed", found=clip(exc))
    result.data_rows = len(frame)
    if len(lines) != len(frame):  # the fast scan and pandas disagree on records: count lines the slow way
        _, line_list = csv_walk(data.decode("utf-8"), dialect)
        lines = np.asarray(line_list[1:], dtype=np.int64)
        if len(lines) != len(frame):
            lines = np.arange(len(frame), dtype=np.int64) + header_line + 1

    columns, dialect = check_values(frame, lines, dialect, target, require_both_classes, result,
                                    strip=padded(data, dialect.delimiter))
    result.dialect = dialect
    if len(frame) < min_rows:
        result.errors.append(ValidationIssue(
            f"only {len(frame)} data rows; at least {min_rows} are needed (MIN_ROWS)", code="too_few_rows",
            expected=f"at least {min_rows:,} data rows", found=f"{len(frame):,} rows"))
    if not result.errors:
        result.frame = pd.DataFrame({column: columns[column] for column in expected})
