"""Validate an uploaded bank-marketing file in any of the dialects users upload, and canonicalize it.

Dialects seen in the wild: Azure's sample (comma, no quoting), the UCI original (semicolon, every text field
double-quoted) and spreadsheet exports (semicolon with a decimal comma). Whatever arrives, a registered
dataset version is stored in one canonical form (comma, '.' decimal, file column order) so its content hash
identifies the data, not the dialect.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
from dataclasses import dataclass, field

import pandas as pd

from shared.domain import schema


@dataclass(frozen=True)
class Dialect:
    delimiter: str
    decimal: str
    quoted: bool

    @property
    def name(self) -> str:
        if self.delimiter == ",":
            return "comma"
        return "semicolon-decimal-comma" if self.decimal == "," else "semicolon"


@dataclass
class ValidationResult:
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    frame: pd.DataFrame | None = None
    dialect: Dialect | None = None

    @property
    def ok(self) -> bool:
        return not self.errors and self.frame is not None

    @property
    def rows(self) -> int:
        return 0 if self.frame is None else len(self.frame)

    def reason(self) -> str:
        return "; ".join(self.errors)


def sniff_dialect(head: str) -> Dialect:
    first = head.splitlines()[0] if head else ""
    delimiter = ";" if first.count(";") > first.count(",") else ","
    quoted = first.startswith('"')
    decimal = "."
    if delimiter == ";":
        # A decimal comma shows as digits,digits inside a field, e.g. ;1,1; or ;-46,2;
        body = "\n".join(head.splitlines()[1:50])
        if re.search(r'(^|;)"?-?\d+,\d+"?(;|$)', body, flags=re.MULTILINE):
            decimal = ","
    return Dialect(delimiter=delimiter, decimal=decimal, quoted=quoted)


def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValueError(
            f"file is not UTF-8 text (bad byte at offset {exc.start}); export it as UTF-8 CSV"
        ) from None


def _first_ragged_line(text: str, dialect: Dialect) -> str | None:
    """pandas pads short rows and shifts long ones into an index; find the first bad line ourselves."""
    reader = csv.reader(io.StringIO(text), delimiter=dialect.delimiter, quotechar='"')
    try:
        header = next(reader)
        for row in reader:
            if row and len(row) != len(header):
                return (f"malformed CSV at line {reader.line_num}: expected {len(header)} fields "
                        f"({dialect.name} dialect), found {len(row)}")
    except csv.Error as exc:
        return f"malformed CSV at line {reader.line_num}: {exc}"
    return None


def validate_csv(data: bytes, *, min_rows: int, max_bytes: int, target: str = schema.TARGET,
                 require_both_classes: bool = True) -> ValidationResult:
    """Check schema, types, target and row count; never raises for bad input, returns the errors."""
    result = ValidationResult()
    if len(data) > max_bytes:
        result.errors.append(f"file is {len(data):,} bytes, over the {max_bytes:,}-byte limit (MAX_UPLOAD_BYTES)")
        return result
    if not data.strip():
        result.errors.append("file is empty")
        return result
    try:
        text = _decode(data)
    except ValueError as exc:
        result.errors.append(str(exc))
        return result
    dialect = sniff_dialect(text[:20000])
    result.dialect = dialect
    ragged = _first_ragged_line(text, dialect)
    if ragged:
        result.errors.append(ragged)
        return result
    try:
        frame = pd.read_csv(io.StringIO(text), sep=dialect.delimiter, decimal=dialect.decimal, quotechar='"',
                            dtype=str, keep_default_na=False, index_col=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, csv.Error) as exc:
        result.errors.append(f"malformed CSV: {str(exc).strip().splitlines()[0]}")
        return result

    frame.columns = [str(c).strip() for c in frame.columns]
    dupes = sorted({c for c in frame.columns if list(frame.columns).count(c) > 1})
    if dupes:
        result.errors.append(f"duplicate column names: {', '.join(dupes)}")
        return result
    expected = list(schema.COLUMNS)
    missing = [c for c in expected if c not in frame.columns]
    if missing:
        hint = ""
        if len(frame.columns) == 1:
            hint = " (the whole header was read as one column: is the delimiter ',' or ';'?)"
        if missing == [target]:
            result.errors.append(f"target column '{target}' is missing; a training file needs labels")
        else:
            result.errors.append(f"missing columns: {', '.join(missing)}{hint}")
        return result
    extra = [c for c in frame.columns if c not in schema.COLUMNS]
    if extra:
        result.warnings.append(f"ignored {len(extra)} unknown column(s): {', '.join(extra[:10])}")
    frame = frame[expected].copy()

    for column in expected:
        frame[column] = frame[column].str.strip()

    for column in schema.NUMERIC:
        raw = frame[column]
        as_num = pd.to_numeric(raw.str.replace(",", ".", regex=False) if dialect.decimal == "," else raw,
                               errors="coerce")
        bad = as_num.isna()
        if bad.any():
            i = int(bad.to_numpy().nonzero()[0][0])
            shown = raw.iloc[i] if raw.iloc[i] != "" else "(empty)"
            result.errors.append(f"column '{column}' must be numeric: row {i + 2} has {shown!r}"
                                 f" ({int(bad.sum())} bad value(s) in all)")
            continue
        if schema.COLUMNS[column] == "int":
            if not (as_num == as_num.round()).all():
                i = int((as_num != as_num.round()).to_numpy().nonzero()[0][0])
                result.errors.append(f"column '{column}' must be a whole number: row {i + 2} has {raw.iloc[i]!r}")
                continue
            frame[column] = as_num.astype("int64")
        else:
            frame[column] = as_num.astype("float64")

    for column in schema.CATEGORICAL:
        empty = frame[column] == ""
        if empty.any():
            i = int(empty.to_numpy().nonzero()[0][0])
            result.errors.append(f"column '{column}' has an empty value at row {i + 2}; "
                                 "use 'unknown' for missing categories")
        known = set(schema.LEVELS.get(column, ()))
        if known:
            novel = sorted(set(frame[column].unique()) - known - {""})
            if novel:
                result.warnings.append(f"column '{column}' has unseen values: {', '.join(novel[:5])}")

    labels = frame[target].str.lower()
    bad_labels = ~labels.isin(schema.TARGET_VALUES)
    if bad_labels.any():
        i = int(bad_labels.to_numpy().nonzero()[0][0])
        result.errors.append(f"target '{target}' must be 'yes' or 'no': row {i + 2} has {frame[target].iloc[i]!r}")
    else:
        frame[target] = labels
        if require_both_classes and labels.nunique() < 2:
            result.errors.append(f"target '{target}' has only the class {labels.iloc[0]!r}; "
                                 "training needs both 'yes' and 'no'")

    if len(frame) < min_rows:
        result.errors.append(f"only {len(frame)} data rows; at least {min_rows} are needed (MIN_ROWS)")

    if not result.errors:
        result.frame = frame
    return result


def canonical_csv(frame: pd.DataFrame) -> bytes:
    """The one stored form of a dataset version: comma, '.' decimal, file column order, LF endings."""
    return frame.to_csv(index=False, lineterminator="\n").encode("utf-8")


def content_hash(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()
