"""How a CSV upload is written: delimiter, decimal mark, quoting, and what was unwrapped to read it."""

from __future__ import annotations

import re
from dataclasses import dataclass

_DECIMAL_COMMA = re.compile(r'(^|;)[ "]*-?\d+,\d+[ "]*(;|$)', flags=re.MULTILINE)


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
