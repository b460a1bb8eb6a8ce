"""The data rows: types, ranges, categories and labels, each bad kind reported once with its first line."""

from __future__ import annotations

import dataclasses
from typing import Final

import numpy as np
import pandas as pd

from shared.domain import schema
from shared.domain.validation.dialect import Dialect
from shared.domain.validation.issues import SHOW_CHARS, ValidationIssue, ValidationResult, clip, show

# How messages name the target's labels (shared.domain.schema): 'yes' or 'no', both 'yes' and 'no'.
_LABELS_OR: Final = f"'{schema.POSITIVE}' or '{schema.NEGATIVE}'"
_LABELS_AND: Final = f"'{schema.POSITIVE}' and '{schema.NEGATIVE}'"


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
            f"line {line}, column '{column}': expected {expected}, found {show(value)}{more}", code=code, line=line,
            column=column, expected=expected, found=clip(value)))
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


def padded(data: bytes, delimiter: str) -> bool:
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


def check_values(frame: pd.DataFrame, lines: np.ndarray, dialect: Dialect, target: str,
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
                shown = ", ".join(" ".join(clip(v, SHOW_CHARS).splitlines()) for v in novel[:5])
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
