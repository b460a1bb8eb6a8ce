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

One job per module, in the order the checks run: `raw_bytes` (size, gzip, binary, encoding, line ends),
`dialect` (delimiter, decimal mark, quoting), `records` (CSV structure and line numbers), `header`, `values`
(the rows), `check` (the whole check, cheapest first); `issues` holds what they report and `canonical` the
stored form and its hash.
"""

from shared.domain.validation.canonical import canonical_csv, content_hash
from shared.domain.validation.check import validate_csv, validate_file
from shared.domain.validation.dialect import Dialect, sniff_dialect
from shared.domain.validation.issues import ValidationIssue, ValidationResult
from shared.domain.validation.raw_bytes import GZIP_MAGIC, MAX_LINE_BYTES, UTF8_BOM

__all__ = ["GZIP_MAGIC", "MAX_LINE_BYTES", "UTF8_BOM", "Dialect", "ValidationIssue", "ValidationResult",
           "canonical_csv", "content_hash", "sniff_dialect", "validate_csv", "validate_file"]
