"""`retrain upload --wait` and `retrain score` as a user runs them: the CLI as a subprocess against a running local
stack (Azurite, the Functions host, the pipeline endpoint with real training, the scoring endpoint), found the way
another terminal finds it (RETRAIN_LOCAL_DIR's stack.json).

One stack for the module. Its first model comes from the module fixture `first_model` (the first upload, waited
for), which every test that needs a model or the registered rows asks for, so each test passes alone and in any
order; the other uploads here never start a run (a duplicate, rejected files), so the live model stays the first.
"""

from __future__ import annotations

import gzip
import json
import subprocess
import uuid

import pandas as pd
import pytest

from shared.bootstrap import build_stores
from shared.domain.outcomes import Outcome
from shared.settings import Settings
from tests.corpus import dialects
from tests.e2e.api_stack import run_cli, start_api_stack

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    # no coalescing window: an upload's run is submitted at once
    s = start_api_stack(tmp_path_factory.mktemp("cli-upload-score"), COALESCE_S="0")
    yield s
    s.stop()


def json_line(proc: subprocess.CompletedProcess) -> dict:
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1, proc.stdout + proc.stderr
    return json.loads(lines[0])


def write(tmp_path, name: str, data: bytes):
    path = tmp_path / name
    path.write_bytes(data)
    return path


@pytest.fixture(scope="module")
def first_model(stack, small_bank_csv):
    """The stack's first upload, waited for with `retrain upload --wait --json`: the first model."""
    proc = run_cli(stack, "upload", str(small_bank_csv), "--name", f"first-{uuid.uuid4().hex[:6]}.csv", "--wait",
                   "--json", "--timeout-s", "240")
    return proc, json_line(proc) if proc.stdout.strip() else None


def test_upload_wait_json_ends_deployed_for_the_first_model(stack, first_model):
    proc, final = first_model
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert final["final_outcome"] == final["outcome"] == Outcome.DEPLOYED
    assert final["function"] in ("run_completed", "reconcile_timer") and final["run_id"]
    assert final["model_version"] == 1 and final["dataset_version"] == 1
    upload = stack.audit.get(final["upload_id"])
    assert upload.trigger == "blob" and upload.source.startswith("incoming/first-")
    assert upload.outcome == Outcome.SUBMITTED and upload.run_id == final["run_id"]
    assert stack.runs.get(final["run_id"]).trigger_id == upload.id
    assert final["superseded_by"] == []


def test_the_same_rows_uploaded_again_end_duplicate_with_exit_0(stack, first_model, small_bank_csv):
    proc = run_cli(stack, "upload", str(small_bank_csv), "--name", f"again-{uuid.uuid4().hex[:6]}.csv", "--wait",
                   "--json", "--timeout-s", "120")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    final = json_line(proc)
    assert final["final_outcome"] == Outcome.DUPLICATE and final["id"] == final["upload_id"]
    assert final["trigger"] == "blob" and final["run_id"] is None
    assert "duplicate of v1" in final["detail"]


def test_a_rejected_upload_exits_1_with_the_rejected_record(stack, small_bank_csv, tmp_path):
    rows = pd.read_csv(small_bank_csv).head(600).drop(columns=["duration"])
    path = write(tmp_path, "no-duration.csv", rows.to_csv(index=False).encode())
    proc = run_cli(stack, "upload", str(path), "--wait", "--json", "--timeout-s", "120")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    final = json_line(proc)
    assert final["final_outcome"] == final["outcome"] == Outcome.REJECTED
    assert final["id"] == final["upload_id"] and final["trigger"] == "blob"
    assert "missing columns: duration" in final["detail"] and final["data"]["quarantined_to"]

    human = run_cli(stack, "upload", str(path), "--wait", "--timeout-s", "120")  # the same file, no --json
    assert human.returncode == 1
    assert human.stderr.startswith("rejected: ") and "missing columns: duration" in human.stderr


def test_upload_wait_gives_up_after_its_timeout_with_exit_1(stack, small_bank_csv, tmp_path):
    # a file the stack rejects (no run starts), waited for far less time than its trigger takes to see it
    rows = pd.read_csv(small_bank_csv).head(600).drop(columns=["y"])
    path = write(tmp_path, "unlabelled.csv", rows.to_csv(index=False).encode())
    proc = run_cli(stack, "upload", str(path), "--wait", "--json", "--timeout-s", "0.01")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert proc.stdout == ""
    assert "no final outcome within 0.01 s" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_score_json_reports_rows_auc_accuracy_and_the_live_model(stack, first_model, small_bank_csv):
    proc = run_cli(stack, "score", "--data", str(small_bank_csv), "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    figures = json_line(proc)
    assert list(figures) == ["rows", "auc", "accuracy", "model_version"]
    assert figures["rows"] == len(pd.read_csv(small_bank_csv))
    assert 0.5 < figures["auc"] <= 1 and 0.5 < figures["accuracy"] <= 1
    live = build_stores(Settings(storage_connection=stack.config.connection_string)).models.live()
    assert figures["model_version"] == live.version == first_model[1]["model_version"]


@pytest.mark.parametrize("dialect", ["uci-original.csv", "upload.bin"])  # semicolon + quotes; decimal comma, gzip
def test_score_reads_every_upload_dialect_alike(stack, first_model, small_bank_csv, tmp_path, dialect):
    rows = pd.read_csv(small_bank_csv).head(800)
    case = next(c for c in dialects(rows) if c.name == dialect)
    comma = run_cli(stack, "score", "--data", str(write(tmp_path, "comma.csv", rows.to_csv(index=False).encode())),
                    "--json")
    other = run_cli(stack, "score", "--data", str(write(tmp_path, case.name, case.data)), "--json")
    assert comma.returncode == other.returncode == 0, comma.stderr + other.stderr
    assert json_line(other) == json_line(comma) and json_line(other)["rows"] == 800


@pytest.mark.parametrize("name, make", [
    ("unlabelled.csv", lambda rows: rows.drop(columns=["y"]).to_csv(index=False).encode()),
    ("labels-0-1.csv", lambda rows: rows.assign(y=(rows["y"] == "yes").astype(int)).to_csv(index=False).encode()),
    ("malformed.csv", lambda rows: b"age;job\n42;admin.;extra\n"),
    ("corrupt.csv.gz", lambda rows: gzip.compress(rows.to_csv(index=False).encode(), mtime=0)[:300]),
])
def test_score_refuses_an_unlabelled_or_malformed_file_with_exit_2_and_one_line(stack, small_bank_csv, tmp_path,
                                                                                name, make):
    path = write(tmp_path, name, make(pd.read_csv(small_bank_csv).head(50)))
    proc = run_cli(stack, "score", "--data", str(path), "--json")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"retrain score: {path} cannot be scored: "), proc.stderr
