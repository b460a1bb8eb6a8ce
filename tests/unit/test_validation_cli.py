"""`retrain validate FILE [--json]`: the upload's verdict offline, with the service's limits."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys

import pandas as pd
import pytest

from tools.cli import main

KEYS = {"accepted", "dialect", "rows", "columns", "reason"}


@pytest.fixture(scope="module")
def frame(small_bank_csv) -> pd.DataFrame:
    return pd.read_csv(small_bank_csv)


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main(["validate", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def test_accepted_file_exits_0_with_the_five_keys(tmp_path, frame, capsys):
    path = tmp_path / "upload.csv.gz"
    path.write_bytes(gzip.compress(frame.to_csv(index=False, sep=";", decimal=",").encode()))
    code, out, _ = run(capsys, path, "--json")
    verdict = json.loads(out)
    assert code == 0 and set(verdict) >= KEYS
    assert {k: verdict[k] for k in KEYS} == {"accepted": True, "dialect": "semicolon-decimal-comma+gzip",
                                             "rows": len(frame), "columns": 21, "reason": None}
    assert verdict["errors"] == [] and verdict["warnings"] == []


def test_rejected_file_exits_1_with_reason_and_structured_errors(tmp_path, frame, capsys):
    bad = frame.astype({"age": object})
    bad.loc[3, "age"] = -3
    path = tmp_path / "bad.csv"
    bad.to_csv(path, index=False)
    code, out, _ = run(capsys, path, "--json")
    verdict = json.loads(out)
    assert code == 1 and verdict["accepted"] is False and verdict["dialect"] == "comma"
    assert verdict["rows"] == len(frame) and verdict["columns"] == 21
    assert verdict["reason"] == "line 5, column 'age': expected integer between 0 and 120, found '-3'"
    assert verdict["errors"] == [{"code": "out_of_range", "line": 5, "column": "age",
                                  "expected": "integer between 0 and 120", "found": "-3",
                                  "message": verdict["reason"]}]
    code, out, _ = run(capsys, path)
    assert code == 1 and out.startswith(f"REJECTED {path} (")
    assert "  error: line 5, column 'age'" in out


def test_service_limits_are_the_defaults_and_flags_override_them(tmp_path, frame, capsys, monkeypatch):
    monkeypatch.delenv("MIN_ROWS", raising=False)
    monkeypatch.delenv("MAX_UPLOAD_BYTES", raising=False)
    path = tmp_path / "few.csv"
    frame.head(499).to_csv(path, index=False)
    code, out, _ = run(capsys, path, "--json")
    assert code == 1 and "at least 500 are needed (MIN_ROWS)" in json.loads(out)["reason"]
    assert run(capsys, path, "--min-rows", "100")[0] == 0
    monkeypatch.setenv("MIN_ROWS", "100")
    assert run(capsys, path)[0] == 0
    code, out, _ = run(capsys, path, "--json", "--max-bytes", "1000")
    verdict = json.loads(out)
    assert code == 1 and verdict["dialect"] is None and verdict["rows"] is None and verdict["columns"] is None
    assert "over the 1,000-byte limit (MAX_UPLOAD_BYTES)" in verdict["reason"]


def test_missing_file_is_a_usage_error(tmp_path, capsys):
    code, out, err = run(capsys, tmp_path / "nope.csv", "--json")
    assert code == 2 and out == "" and "is not a file" in err


def test_the_installed_command(tmp_path, frame):
    path = tmp_path / "ok.csv"
    frame.to_csv(path, index=False, lineterminator="\r\n")
    answer = subprocess.run([sys.executable, "-m", "tools.cli", "validate", str(path), "--json"],
                            capture_output=True, text=True, timeout=120)
    assert answer.returncode == 0, answer.stderr
    assert json.loads(answer.stdout)["dialect"] == "comma+crlf"
