"""A corpus of upload files built from any labelled bank-marketing frame: the dialects users really have (all
accepted, all the same dataset) and malformed files, each with the phrase its rejection reason must contain.

Print the outcome table (Markdown, for the README):

    .venv/bin/python -m tests.corpus              # rows from shared.domain.sample_data (reproducible anywhere)
    .venv/bin/python -m tests.corpus --data FILE  # rows from a real file
"""

from __future__ import annotations

import argparse
import csv
import gzip
import io
import zipfile
from typing import NamedTuple

import numpy as np
import pandas as pd

from shared.domain.validation import MAX_LINE_BYTES, validate_csv

BASE_ROWS = 600  # above the service's MIN_ROWS (500)
# The service's MIN_ROWS; a small MAX_UPLOAD_BYTES so the over-size and gzip-bomb cases stay cheap.
LIMITS = {"min_rows": 500, "max_bytes": 1024 * 1024}


class Case(NamedTuple):
    name: str
    data: bytes
    expect: str  # the dialect name of a valid file, or a phrase of the rejection reason


def base_frame(frame: pd.DataFrame, rows: int = BASE_ROWS) -> pd.DataFrame:
    """The first `rows` rows, as written to a file (index reset)."""
    return frame.head(rows).reset_index(drop=True)


def _csv(frame: pd.DataFrame, **options) -> bytes:
    return frame.to_csv(index=False, **options).encode("utf-8")


def dialects(frame: pd.DataFrame) -> list[Case]:
    """The same rows in every dialect the upload accepts; `expect` is the dialect name validation reports."""
    comma = _csv(frame)
    uci = _csv(frame, sep=";", quoting=csv.QUOTE_NONNUMERIC)  # the UCI original: text fields quoted
    uci_all = _csv(frame, sep=";", quoting=csv.QUOTE_ALL)
    spreadsheet = _csv(frame, sep=";", decimal=",")
    bom, crlf = b"\xef\xbb\xbf", frame.to_csv(index=False, lineterminator="\r\n").encode()
    excel = bom + frame.to_csv(index=False, sep=";", decimal=",", lineterminator="\r\n").encode()
    return [
        Case("azure-sample.csv", comma, "comma"),
        Case("uci-original.csv", uci, "semicolon"),
        Case("uci-all-quoted.csv", uci_all, "semicolon"),
        Case("spreadsheet-decimal-comma.csv", spreadsheet, "semicolon-decimal-comma"),
        Case("utf8-bom.csv", bom + comma, "comma+bom"),
        Case("crlf.csv", crlf, "comma+crlf"),
        Case("excel-export.csv", excel, "semicolon-decimal-comma+bom+crlf"),
        Case("sample.csv.gz", gzip.compress(comma, mtime=0), "comma+gzip"),
        Case("uci-bom-crlf.gz", gzip.compress(bom + uci.replace(b"\n", b"\r\n"), mtime=0),
             "semicolon+bom+crlf+gzip"),
        Case("upload.bin", gzip.compress(spreadsheet, mtime=0), "semicolon-decimal-comma+gzip"),  # named anyhow
    ]


def _with(frame: pd.DataFrame, row: int, column: str, value: object) -> bytes:
    changed = frame.astype({column: object})
    changed.loc[row, column] = value
    return _csv(changed)


def _replace_line(data: bytes, line: int, text: bytes) -> bytes:
    lines = data.split(b"\n")
    lines[line - 1] = text
    return b"\n".join(lines)


def gzip_bomb(unpacked: int, *, member: int = 8 << 20) -> bytes:
    """A small multi-member gzip (about 1/1000 of `unpacked`) that unpacks to a CSV header and `unpacked` zeros."""
    one = gzip.compress(bytes(member), compresslevel=9, mtime=0)
    return gzip.compress(b"age,job\n", mtime=0) + one * max(1, unpacked // member)


def malformed(frame: pd.DataFrame) -> list[Case]:
    """Files the upload must refuse; `expect` is a phrase of the reason. Row r of `frame` is on line r + 2."""
    comma = _csv(frame)
    header = comma.split(b"\n", 1)[0]
    packed = gzip.compress(comma, mtime=0)
    corrupt = bytearray(packed)
    corrupt[len(corrupt) // 2:len(corrupt) // 2 + 16] = b"\xa5" * 16
    workbook = io.BytesIO()
    with zipfile.ZipFile(workbook, "w") as archive:
        archive.writestr("xl/worksheets/sheet1.xml", "<worksheet/>")
    rows_line = comma.split(b"\n")[3]
    cases = [
        Case("empty.csv", b"", "file is empty"),
        Case("blank-lines.csv", b"\n \n\t\n", "file is empty"),
        Case("header-only.csv", header + b"\n", "header row but no data rows"),
        Case("missing-column.csv", _csv(frame.drop(columns=["duration"])), "missing columns: duration"),
        Case("renamed-column.csv", _csv(frame.rename(columns={"emp.var.rate": "emp_var_rate"})),
             "missing columns: emp.var.rate (did you mean 'emp_var_rate'?"),
        Case("missing-target.csv", _csv(frame.drop(columns=["y"])), "target column 'y' is missing"),
        Case("unknown-label.csv", _with(frame, 3, "y", "maybe"),
             "line 5, column 'y': expected 'yes' or 'no', found 'maybe'"),
        Case("wrong-type.csv", _with(frame, 8, "age", "forty"),
             "line 10, column 'age': expected integer between 0 and 120, found 'forty'"),
        Case("negative-age.csv", _with(frame, 3, "age", -3), "line 5, column 'age': expected integer between 0 and "
                                                             "120, found '-3'"),
        Case("negative-duration.csv", _with(frame, 4, "duration", -12),
             "line 6, column 'duration': expected integer >= 0, found '-12'"),
        Case("negative-campaign.csv", _with(frame, 5, "campaign", -1),
             "line 7, column 'campaign': expected integer >= 0, found '-1'"),
        Case("negative-pdays.csv", _with(frame, 6, "pdays", -1),
             "line 8, column 'pdays': expected integer >= 0, found '-1'"),
        Case("fractional-campaign.csv", _with(frame, 2, "campaign", 2.5),
             "line 4, column 'campaign': expected integer >= 0, found '2.5'"),
        Case("infinite-value.csv", _with(frame, 2, "euribor3m", "inf"),
             "line 4, column 'euribor3m': expected number, found 'inf'"),
        Case("bad-month.csv", _with(frame, 7, "month", "mai"), "line 9, column 'month': expected one of jan"),
        Case("bad-day.csv", _with(frame, 7, "day_of_week", "sat"),
             "line 9, column 'day_of_week': expected one of mon, tue, wed, thu, fri, found 'sat'"),
        Case("empty-category.csv", _with(frame, 9, "job", ""), "line 11, column 'job': expected a value"),
        Case("too-few-rows.csv", _csv(frame.head(100)), "only 100 data rows; at least 500 are needed"),
        Case("single-class.csv", _csv(frame.assign(y="no")), "only the class 'no'"),
        Case("latin1.csv", _with(frame, 2, "job", "técnico").decode().encode("latin-1"),
             "not UTF-8 text: line 4, column 'job' has the byte 0xe9"),
        Case("utf16.csv", comma.decode().encode("utf-16"), "not UTF-8 text: it is UTF-16"),
        Case("random.bin", np.random.default_rng(7).bytes(4096), "binary data"),
        Case("workbook.xlsx", workbook.getvalue(), "ZIP archive"),
        Case("truncated.csv.gz", packed[:len(packed) // 2], "gzip file is truncated"),
        Case("corrupt.csv.gz", bytes(corrupt), "gzip file is corrupt"),
        Case("bomb.csv.gz", gzip_bomb(512 << 20), "gzip file unpacks to more than the 1,048,576-byte limit"),
        Case("long-line.csv", _replace_line(comma, 3, rows_line + b"x" * (MAX_LINE_BYTES + 100)),
             "line 3 is"),
        Case("too-big.csv", comma + b"\n".join(comma.split(b"\n")[1:]) * 20, "over the 1,048,576-byte limit"),
        Case("ragged-row.csv", _replace_line(comma, 6, comma.split(b"\n")[5] + b",extra"),
             "malformed CSV at line 6: expected 21 fields (comma dialect), found 22"),
        Case("unclosed-quote.csv", _replace_line(comma, 4, b'"' + comma.split(b"\n")[3]),
             "malformed CSV at line 4: a quoted field that starts on this line is never closed"),
        Case("tab-separated.tsv", _csv(frame, sep="\t"), "the file looks tab-separated"),
        Case("no-header.csv", comma.split(b"\n", 1)[1], "the header row is missing"),
        Case("duplicate-column.csv", _csv(frame.rename(columns={"job": "age"})), "duplicate column names: age"),
    ]
    return cases


def corpus(frame: pd.DataFrame) -> list[Case]:
    base = base_frame(frame)
    return dialects(base) + malformed(base)


def _size(n: int) -> str:
    if n >= 1024 * 1024:
        return f"{n / 1024 / 1024:.1f} MiB"
    if n >= 10 * 1024:
        return f"{n / 1024:.0f} KiB"
    return f"{n:,} B"


def markdown_table(cases: list[Case], limits: dict = LIMITS) -> str:
    """One row per file: file, size, verdict, reason (for a valid file: its dialect and rows)."""
    out = ["| file | size | verdict | reason |", "|---|---:|---|---|"]
    for case in cases:
        result = validate_csv(case.data, **limits)
        if result.ok:
            verdict, reason = "accepted", f"dialect `{result.dialect.name}`, {result.rows:,} rows"
        else:
            verdict, reason = "rejected", result.reason()
        reason = reason.replace("|", "\\|").replace("\n", " ")
        out.append(f"| `{case.name}` | {_size(len(case.data))} | {verdict} | {reason} |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.corpus", description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="a labelled CSV to take rows from (default: generated sample rows)")
    args = parser.parse_args(argv)
    if args.data:
        frame = pd.read_csv(args.data)
    else:
        from shared.domain.sample_data import generate_sample

        frame = generate_sample(BASE_ROWS, seed=11)
    print(f"Limits: MIN_ROWS={LIMITS['min_rows']}, MAX_UPLOAD_BYTES={LIMITS['max_bytes']:,} "
          f"(the corpus uses a 1 MiB size limit; the service default is 200 MiB).\n")
    print(markdown_table(corpus(frame)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
