"""The header row: every schema column present once, with a likely rename named when one is missing."""

from __future__ import annotations

import difflib
import re
from typing import Final

from shared.domain import schema
from shared.domain.validation.issues import ValidationIssue, ValidationResult, clip, stop

# How messages name the target's labels (shared.domain.schema): 'yes'/'no'.
_LABELS_SLASH: Final = f"'{schema.POSITIVE}'/'{schema.NEGATIVE}'"


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


def check_header(names: list[str], line: int, target: str, result: ValidationResult) -> None:
    expected = list(schema.COLUMNS)
    missing = [c for c in expected if c not in names]
    if len(missing) == len(expected) and _looks_like_data(names):
        shown = ", ".join(repr(n) for n in names[:3])
        stop(f"the header row is missing: line {line} looks like data ({shown}, …); the file must start with "
             f"the column names {','.join(expected[:3])},…,{expected[-1]}", "no_header", line=line,
             expected="a header row of column names", found=clip(",".join(names)))
    dupes = sorted({c for c in names if names.count(c) > 1})
    if dupes:
        stop(f"duplicate column names: {', '.join(dupes)}", "duplicate_columns", line=line, column=", ".join(dupes),
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
            stop(f"target column '{target}' is missing{suggestion}; a training file needs labels", "missing_target",
                 line=line, column=target, expected=f"a column '{target}' with {_LABELS_SLASH} labels", found=found)
        if len(missing) == len(expected):
            listed = f"all {len(expected)} of {', '.join(expected[:3])}, …, {expected[-1]}"
        elif len(missing) > 8:
            listed = f"{', '.join(one(c) for c in missing[:8])} and {len(missing) - 8} more"
        else:
            listed = ", ".join(one(c) for c in missing)
        stop(f"missing columns: {listed}{hint}", "missing_columns", line=line,
             column=", ".join(missing), expected=f"column{'s' if len(missing) > 1 else ''} {', '.join(missing)}",
             found=found)
    extra = [c for c in names if c not in schema.COLUMNS]
    if extra:
        result.warnings.append(ValidationIssue(f"ignored {len(extra)} unknown column(s): {', '.join(extra[:10])}",
                                               code="unknown_columns", line=line, column=", ".join(extra[:10])))
