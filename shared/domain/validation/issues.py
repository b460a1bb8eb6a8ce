"""What validation reports: each problem as a `ValidationIssue` (its message, and where it is), the verdict as a
`ValidationResult`, and `Stop` for a problem after which nothing further can be checked."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

import pandas as pd

from shared.domain.validation.dialect import Dialect

REASON_ERRORS: Final = 5  # reason() lists this many errors, then "and N more"
SHOW_CHARS: Final = 40  # a bad value is quoted up to this many characters


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
        shown = [str(e).replace("\n", " ") for e in self.errors[:REASON_ERRORS]]
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


class Stop(Exception):
    """A problem after which nothing further can be checked."""

    def __init__(self, issue: ValidationIssue):
        super().__init__(issue)
        self.issue = issue


def stop(message: str, code: str, **where) -> None:
    raise Stop(ValidationIssue(message, code=code, **where))


def show(value: object) -> str:
    """A found value as a message quotes it: repr, shortened; an empty field says so."""
    text = str(value)
    if text == "":
        return "an empty value"
    if len(text) > SHOW_CHARS:
        text = text[:SHOW_CHARS] + "…"
    return repr(text)


def clip(value: object, limit: int = 200) -> str:
    text = str(value)
    return text if len(text) <= limit else text[:limit] + "…"



def too_large(size: int, max_bytes: int) -> ValidationIssue:
    """The refusal of a file over MAX_UPLOAD_BYTES, whether known from its size on disk or from its bytes."""
    return ValidationIssue(f"file is {size:,} bytes, over the {max_bytes:,}-byte limit (MAX_UPLOAD_BYTES)",
                           code="too_large", expected=f"at most {max_bytes:,} bytes", found=f"{size:,} bytes")
