"""The blob-name rules: which names a storage call may use, and how a refused one is shown and hashed."""

from __future__ import annotations

import hashlib

import pytest

from shared.domain.blob_names import (
    MAX_BLOB_NAME,
    BlobNameProblem,
    explain,
    name_digest,
    name_problem,
    shown,
)


@pytest.mark.parametrize("name", ["data.csv", "2026/01/bank.csv", "a.b/c..d/e.csv", ".hidden.csv", "dir/.x.csv",
                                  "a//b.csv", "émoji-😀.csv", "x" * MAX_BLOB_NAME, "...csv", "a/..b/c.csv"])
def test_ordinary_names_pass(name):
    assert name_problem(name) is None


@pytest.mark.parametrize("name, problem", [
    ("", BlobNameProblem.EMPTY),
    ("x" * (MAX_BLOB_NAME + 1), BlobNameProblem.TOO_LONG),
    ("/lead.csv", BlobNameProblem.LEADING_SLASH),
    ("a/../b.csv", BlobNameProblem.DOT_SEGMENT),
    ("../b.csv", BlobNameProblem.DOT_SEGMENT),
    ("./x.csv", BlobNameProblem.DOT_SEGMENT),
    ("a/./c.csv", BlobNameProblem.DOT_SEGMENT),
    ("a/..", BlobNameProblem.DOT_SEGMENT),
    ("x\\y.csv", BlobNameProblem.BACKSLASH),
    ("..\\x.csv", BlobNameProblem.BACKSLASH),
    ("c\x00.csv", BlobNameProblem.CONTROL_CHARACTER),
    ("c\x01.csv", BlobNameProblem.CONTROL_CHARACTER),
    ("c\x1f.csv", BlobNameProblem.CONTROL_CHARACTER),
    ("line\nbreak.csv", BlobNameProblem.CONTROL_CHARACTER),
    ("del\x7f.csv", BlobNameProblem.CONTROL_CHARACTER),
    ("c1\x81.csv", BlobNameProblem.CONTROL_CHARACTER),
    ("tail.", BlobNameProblem.TRAILING_DOT_OR_SLASH),
    ("dir/", BlobNameProblem.TRAILING_DOT_OR_SLASH),
])
def test_refused_names_say_why(name, problem):
    assert name_problem(name) == problem
    assert explain(problem).startswith("the blob name")


def test_the_digest_is_the_sha256_of_the_utf8_name_and_fits_a_path():
    assert name_digest("a/../b.csv") == hashlib.sha256(b"a/../b.csv").hexdigest()
    assert name_digest("a/../b.csv") != name_digest("a/./b.csv")
    assert len(name_digest("\ud800 lone surrogate")) == 64  # any str the trigger hands over can be hashed


def test_a_shown_name_is_printable_ascii_and_truncated():
    for name in ("c\x01.csv", "x\\y.csv", "line\nbreak\r\x1b[31m", "é😀\x7f\x81", "\ud800"):
        text = shown(name)
        assert text.isascii() and text.isprintable(), text
    assert shown("a/../b.csv") == "a/../b.csv"
    long = shown("e" * 1025)
    assert long.startswith("e" * 200) and long.endswith("... (1025 characters)") and len(long) < 230
    assert shown("x\\y") == "x\\\\y"  # a backslash cannot be confused with an escape
