"""Upload validation over the dialects users upload, and the precise errors for bad files."""

from __future__ import annotations

import pandas as pd
import pytest

from shared.domain import schema
from shared.domain.validation import canonical_csv, content_hash, validate_csv


@pytest.fixture(scope="module")
def frame(small_bank_csv) -> pd.DataFrame:
    return pd.read_csv(small_bank_csv)


@pytest.fixture(scope="module")
def comma_bytes(frame) -> bytes:
    return frame.to_csv(index=False).encode()


def check(data: bytes, min_rows: int = 10, max_bytes: int = 10**9):
    return validate_csv(data, min_rows=min_rows, max_bytes=max_bytes)


def test_azure_sample_dialect_is_valid(comma_bytes, frame):
    result = check(comma_bytes)
    assert result.ok, result.errors
    assert result.rows == len(frame)
    assert list(result.frame.columns) == list(schema.COLUMNS)
    assert result.dialect.name == "comma"


def test_uci_and_spreadsheet_dialects_canonicalize_to_the_same_bytes(frame, comma_bytes):
    uci = frame.to_csv(index=False, sep=";", quoting=1).encode()
    spreadsheet = frame.to_csv(index=False, sep=";", decimal=",").encode()
    results = [check(comma_bytes), check(uci), check(spreadsheet)]
    assert [r.dialect.name for r in results] == ["comma", "semicolon", "semicolon-decimal-comma"]
    hashes = {content_hash(canonical_csv(r.frame)) for r in results}
    assert len(hashes) == 1
    assert results[2].frame["euribor3m"].dtype == "float64"


def test_bom_and_crlf_are_accepted(frame):
    data = b"\xef\xbb\xbf" + frame.to_csv(index=False, lineterminator="\r\n").encode()
    assert check(data).ok


def test_ragged_row_names_the_line(comma_bytes):
    lines = comma_bytes.split(b"\n")
    lines[4] = lines[4] + b",extra"
    result = check(b"\n".join(lines))
    assert result.errors == ["malformed CSV at line 5: expected 21 fields (comma dialect), found 22"]


def test_missing_target_is_named(frame):
    result = check(frame.drop(columns=["y"]).to_csv(index=False).encode())
    assert result.errors == ["target column 'y' is missing; a training file needs labels"]


def test_missing_feature_columns_are_listed(frame):
    result = check(frame.drop(columns=["age", "euribor3m"]).to_csv(index=False).encode())
    assert result.errors == ["missing columns: age, euribor3m"]


def test_non_numeric_value_names_column_row_and_value(frame):
    bad = frame.copy()
    bad["campaign"] = bad["campaign"].astype(str)
    bad.loc[bad.index[6], "campaign"] = "three"
    result = check(bad.to_csv(index=False).encode())
    assert result.errors == ["line 8, column 'campaign': expected integer >= 0, found 'three'"]
    assert result.details() == [{"code": "wrong_type", "line": 8, "column": "campaign", "expected": "integer >= 0",
                                 "found": "three", "message": result.errors[0]}]


def test_bad_label_and_single_class(frame):
    bad = frame.copy()
    bad.loc[bad.index[0], "y"] = "maybe"
    errors = check(bad.to_csv(index=False).encode()).errors
    assert errors == ["line 2, column 'y': expected 'yes' or 'no', found 'maybe'"]
    one = frame[frame["y"] == "no"]
    assert "only the class 'no'" in check(one.to_csv(index=False).encode()).reason()


def test_too_few_rows_and_too_big(comma_bytes):
    assert "at least 100000 are needed" in check(comma_bytes, min_rows=100_000).reason()
    assert "over the 100-byte limit" in check(comma_bytes, max_bytes=100).reason()


def test_not_utf8_empty_and_wrong_delimiter():
    assert check(b"\xff\xfe\x00a").errors[0].startswith("file is not UTF-8 text")
    assert check(b"  \n").errors == ["file is empty"]
    tabbed = "\t".join(schema.COLUMNS).encode() + b"\n"
    assert "read as one column" in check(tabbed).reason()


def test_unknown_columns_are_ignored_with_a_warning(frame):
    extra = frame.assign(customer_id=range(len(frame)))
    result = check(extra.to_csv(index=False).encode())
    assert result.ok
    assert result.warnings == ["ignored 1 unknown column(s): customer_id"]
    assert "customer_id" not in result.frame.columns


def test_a_header_name_with_a_quoted_line_break_is_explained_not_crashed(comma_bytes):
    header, rest = comma_bytes.split(b"\n", 1)
    result = check(header.replace(b"job", b'"jo\nb"', 1) + b"\n" + rest)
    assert not result.ok and "missing columns: job" in result.reason()
    assert all(e.code != "internal" for e in result.errors)


def test_blank_lines_crlf_and_case_do_not_change_the_dataset(frame, comma_bytes):
    lines = comma_bytes.split(b"\n")
    messy = b"\r\n".join([b"", *lines[:3], b"   ", *lines[3:]]).replace(b",may,", b",May,").replace(b",no\r", b",No\r")
    result, clean = check(messy), check(comma_bytes)
    assert result.ok, result.reason()
    assert result.dialect.name == "comma+crlf"
    assert canonical_csv(result.frame) == canonical_csv(clean.frame)


def test_line_numbers_count_blank_lines_and_quoted_line_breaks(frame):
    data = frame.head(40).astype({"job": object, "age": object})
    data.loc[2, "job"] = "admin.\nsecond line"
    data.loc[5, "age"] = -1
    raw = data.to_csv(index=False).encode().replace(b"\n", b"\n\n", 1)  # a blank line after the header
    result = check(raw)
    # header 1, blank 2, rows 0-1 on 3-4, row 2 on 5-6, rows 3-4 on 7-8, row 5 on 9
    assert result.errors == ["line 9, column 'age': expected integer between 0 and 120, found '-1'"]
    assert result.warnings == ["column 'job' has unseen values: admin. second line"]
