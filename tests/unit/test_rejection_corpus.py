"""Bad input never crashes, is never lost, is always explained: the malformed corpus, the accepted dialects, a
gzip bomb, and random damage to a valid file."""

from __future__ import annotations

import gzip
import json
import tracemalloc

import numpy as np
import pandas as pd
import pytest

from shared.domain import schema
from shared.domain.validation import ValidationIssue, canonical_csv, content_hash, validate_csv
from tests.corpus import LIMITS, base_frame, dialects, gzip_bomb, malformed, markdown_table


@pytest.fixture(scope="module")
def base(small_bank_csv) -> pd.DataFrame:
    return base_frame(pd.read_csv(small_bank_csv))


@pytest.fixture(scope="module")
def bad_cases(base):
    return malformed(base)


def test_the_corpus_has_at_least_twenty_malformed_files_with_distinct_names(bad_cases):
    names = [case.name for case in bad_cases]
    assert len(names) >= 20 and len(set(names)) == len(names)


def test_each_malformed_file_is_rejected_with_its_precise_reason(bad_cases):
    wrong = []
    for case in bad_cases:
        result = validate_csv(case.data, **LIMITS)
        reason = result.reason()
        if result.ok or result.frame is not None or case.expect not in reason:
            wrong.append(f"{case.name}: expected {case.expect!r}, got {'accepted' if result.ok else reason!r}")
            continue
        assert "\n" not in reason and len(reason) < 400, case.name
        assert all(isinstance(e, ValidationIssue) and e.code not in ("internal", "invalid") for e in result.errors)
        verdict = json.loads(json.dumps(result.to_dict()))
        assert verdict["accepted"] is False and verdict["reason"] == reason, case.name
        assert verdict["errors"][0]["message"] == result.errors[0], case.name
    assert wrong == []


def test_corpus_covers_every_rejection_kind(bad_cases):
    codes = {validate_csv(case.data, **LIMITS).errors[0].code for case in bad_cases}
    assert codes >= {"empty", "no_rows", "missing_columns", "missing_target", "unknown_label", "wrong_type",
                     "out_of_range", "unknown_category", "empty_value", "too_few_rows", "single_class", "encoding",
                     "binary", "gzip_truncated", "gzip_corrupt", "too_large", "line_too_long", "ragged", "malformed",
                     "no_header", "duplicate_columns"}


def test_value_errors_carry_line_column_expected_and_found(bad_cases):
    case = next(c for c in bad_cases if c.name == "negative-age.csv")
    (error,) = validate_csv(case.data, **LIMITS).errors
    assert error.to_dict() == {"code": "out_of_range", "line": 5, "column": "age",
                               "expected": "integer between 0 and 120", "found": "-3",
                               "message": "line 5, column 'age': expected integer between 0 and 120, found '-3'"}


def test_every_dialect_is_accepted_with_its_name_and_gives_the_same_dataset(base):
    cases = dialects(base)
    results = {case.name: validate_csv(case.data, **LIMITS) for case in cases}
    for case in cases:
        result = results[case.name]
        assert result.ok, (case.name, result.reason())
        assert result.dialect.name == case.expect, case.name
        assert result.rows == len(base) and list(result.frame.columns) == list(schema.COLUMNS)
    canon = {canonical_csv(r.frame) for r in results.values()}
    assert len(canon) == 1
    hashes = {content_hash(c) for c in canon}
    assert hashes == {content_hash(canonical_csv(results["azure-sample.csv"].frame))}
    assert next(iter(canon)).startswith(b"age,job,marital,") and b"\r" not in next(iter(canon))


def test_the_real_file_is_accepted_in_every_dialect_with_one_content_hash(bank_csv):
    frame = pd.read_csv(bank_csv)
    hashes = set()
    for case in dialects(frame):
        result = validate_csv(case.data, min_rows=500, max_bytes=200 * 1024 * 1024)
        assert result.ok and result.dialect.name == case.expect, (case.name, result.reason())
        assert result.rows == len(frame)
        hashes.add(content_hash(canonical_csv(result.frame)))
    assert len(hashes) == 1


def test_a_gzip_bomb_is_refused_without_unpacking_it_into_memory():
    bomb = gzip_bomb(2 << 30)  # 2 GiB of zeros in about 2 MiB
    assert len(bomb) < 4 << 20
    tracemalloc.start()  # how long the refusal takes is measured by bench/timings.py
    try:
        result = validate_csv(bomb, min_rows=500, max_bytes=16 << 20)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.errors[0].code == "too_large"
    assert "gzip file unpacks to more than the 16,777,216-byte limit" in result.reason()
    assert peak < 64 << 20, f"peak {peak:,} bytes"


def test_gzip_members_and_padding_are_read_like_gunzip(base):
    data = base.to_csv(index=False).encode()
    cut = len(data) // 3
    members = gzip.compress(data[:cut]) + gzip.compress(data[cut:]) + b"\x00" * 16
    result = validate_csv(members, **LIMITS)
    assert result.ok and result.dialect.name == "comma+gzip"
    assert canonical_csv(result.frame) == canonical_csv(validate_csv(data, **LIMITS).frame)


def test_random_damage_never_crashes_the_validation(base):
    """Bytes flipped, cut, duplicated or inserted anywhere, in three dialects, sometimes gzipped: every outcome
    is a verdict, never an exception or an unexplained 'internal' rejection."""
    rows = base.head(520)
    variants = [rows.to_csv(index=False).encode(), rows.to_csv(index=False, sep=";", quoting=2).encode(),
                rows.to_csv(index=False, sep=";", decimal=",", lineterminator="\r\n").encode()]
    rng = np.random.default_rng(2024)
    alphabet = np.frombuffer(b',;"\n\r\t -.0123456789eE\x00\xff\xc3\x1f\x8b', dtype=np.uint8)
    for trial in range(600):
        data = bytearray(variants[trial % 3])
        for _ in range(int(rng.integers(1, 8))):
            if not data:
                break
            at = int(rng.integers(0, len(data)))
            kind = int(rng.integers(0, 5))
            if kind == 0:
                data[at] = int(rng.choice(alphabet))
            elif kind == 1:
                del data[at:at + int(rng.integers(1, 400))]
            elif kind == 2:
                data[at:at] = bytes(rng.choice(alphabet, size=int(rng.integers(1, 20))))
            elif kind == 3:
                data = data[:at]
            else:
                data[at:at] = data[at:at + int(rng.integers(1, 300))]
        blob = bytes(data)
        if trial % 7 == 0:
            blob = gzip.compress(blob)[: None if trial % 2 else -int(rng.integers(1, 30))]
        result = validate_csv(blob, min_rows=500, max_bytes=10**8)
        assert result.ok or result.errors, trial
        assert all(e.code != "internal" for e in result.errors), (trial, result.reason())
        assert "\n" not in result.reason()


def test_markdown_table_lists_every_file(base):
    cases = dialects(base) + malformed(base)
    table = markdown_table(cases).splitlines()
    assert table[0] == "| file | size | verdict | reason |" and len(table) == len(cases) + 2
    assert sum("| accepted |" in row for row in table) == len(dialects(base))
