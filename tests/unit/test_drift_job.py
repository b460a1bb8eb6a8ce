"""The partitioned drift job: `profile` per partition + `merge` equals profiling and comparing the whole window."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pandas as pd
import pytest

from local.processes import PROJECT_ROOT
from shared.domain import schema
from shared.domain.drift import compare_profiles
from shared.domain.profile import Profile, build_profile
from shared.jobs import drift_job

CRITICAL = ["age", "campaign"]


@pytest.fixture(scope="module")
def data(bank_csv):
    bank = pd.read_csv(bank_csv).sample(frac=1.0, random_state=5).reset_index(drop=True)
    half = len(bank) // 2
    reference, current = bank.iloc[:half].reset_index(drop=True), bank.iloc[half:].reset_index(drop=True)
    current["age"] = current["age"] + 6  # a drift the verdict has to see
    return reference, current


@pytest.fixture(scope="module")
def window(data, tmp_path_factory):
    """The current half as 8 files: labelled CSVs in three dialects and unlabelled collector JSONL blobs
    (nested like the collector's yyyy/MM/dd/HH layout, one with several lines, one empty)."""
    reference, current = data
    root = tmp_path_factory.mktemp("drift-job")
    ref = build_profile(reference)
    ref_path = ref.save(root / "reference_profile.json")
    folder = root / "window"
    pieces = []
    n = len(current)  # 16,475 rows from the sample file, 3,000 from generated data: the same shares either way
    bounds = [0, int(n * 0.06), int(n * 0.18), int(n * 0.18) + 1, int(n * 0.36), int(n * 0.52), int(n * 0.67), n]
    chunks = [current.iloc[a:b].reset_index(drop=True) for a, b in zip(bounds, bounds[1:], strict=False)]
    (folder / "uploads").mkdir(parents=True)
    chunks[0].to_csv(folder / "uploads" / "a.csv", index=False)
    chunks[1].to_csv(folder / "uploads" / "b.csv", index=False, sep=";", quoting=1)  # UCI: ; and quoted text
    chunks[2].to_csv(folder / "uploads" / "c.csv", index=False, sep=";", decimal=",")  # spreadsheet export
    pieces += chunks[:3]
    for k, chunk in enumerate(chunks[3:]):
        features = chunk[list(schema.FEATURES)]
        hour = folder / "model_inputs" / "2025" / "01" / f"0{k % 2 + 1}" / f"{k:02d}"
        hour.mkdir(parents=True, exist_ok=True)
        records = features.to_dict(orient="records")
        lines = [json.dumps({"time": f"2025-01-01T0{k}:00:00+00:00", "model_version": "3",
                             "data": records[i:i + 700]}) for i in range(0, len(records), 700)]
        (hour / f"blob{k}.jsonl").write_text("\n".join(lines) + "\n")
        pieces.append(features)
    (folder / "model_inputs" / "2025" / "01" / "02" / "empty.jsonl").write_text("")
    (folder / "notes.txt").write_text("not an input")
    whole = pd.concat(pieces, ignore_index=True)  # the y of the collector rows is missing (NaN)
    return {"root": root, "ref": ref, "ref_path": ref_path, "folder": folder, "whole": whole}


def assert_same_profile(merged: Profile, whole: Profile) -> None:
    assert merged.rows == whole.rows
    assert list(merged.columns) == list(whole.columns)
    pairs = [(merged.columns[n], whole.columns[n]) for n in whole.columns]
    assert (merged.target is None) == (whole.target is None)
    if whole.target is not None:
        pairs.append((merged.target, whole.target))
    for got, want in pairs:
        assert (got.name, got.kind, got.declared, got.count, got.missing) == \
               (want.name, want.kind, want.declared, want.count, want.missing), want.name
        if want.kind == "numeric":
            assert got.edges == want.edges and got.bin_counts == want.bin_counts, want.name
            assert (got.min, got.max) == (want.min, want.max), want.name
            for a, b in [(got.total, want.total), (got.total_sq, want.total_sq),
                         *zip(got.bin_sums, want.bin_sums, strict=True)]:
                assert a == pytest.approx(b, rel=1e-9, abs=1e-9), want.name
        else:
            assert got.levels == want.levels, want.name


def assert_same_result(got: dict, want: dict) -> None:
    assert (got["drifted"], got["verdict"], got["rows"], got["not_enough_data"]) == \
           (want["drifted"], want["verdict"], want["rows"], want["not_enough_data"])
    assert got["drift_share"] == want["drift_share"]
    assert list(got["columns"]) == list(want["columns"])
    for name, entry in want["columns"].items():
        mine = got["columns"][name]
        assert (mine["metric"], mine["drifted"], mine["threshold"]) == (entry["metric"], entry["drifted"],
                                                                       entry["threshold"]), name
        for key in ("score", "psi"):
            assert (mine[key] is None) == (entry[key] is None), name
            if entry[key] is not None:
                assert math.isclose(mine[key], entry[key], rel_tol=1e-9, abs_tol=1e-9), (name, key)
    assert got["target"] == want["target"]


def run(argv) -> int:
    return drift_job.main([str(a) for a in argv])


@pytest.mark.parametrize("partitions", [3, 10])  # 10 > 8 files: partitions 8 and 9 have no files
def test_profile_each_partition_then_merge_equals_the_whole(window, partitions, capsys):
    root, ref_path = window["root"], window["ref_path"]
    outs = []
    for i in range(partitions):
        out = root / f"run{partitions}" / f"node{i}"
        assert run(["profile", "--reference", ref_path, "--inputs", window["folder"], "--partitions", partitions,
                    "--partition-index", i, "--out", out]) == 0
        assert (out / f"partial-{i}.json").is_file()
        outs.append(out)
    partial_files = [json.loads((o / f"partial-{i}.json").read_text())["partition"]["files"]
                     for i, o in enumerate(outs)]
    all_files = sorted(f for files in partial_files for f in files)
    assert len(all_files) == 8 and "notes.txt" not in all_files  # every input once, in exactly one partition
    if partitions == 10:
        assert partial_files[8] == [] and json.loads((outs[8] / "partial-8.json").read_text())["rows"] == 0

    result_dir = root / f"run{partitions}" / "result"
    assert run(["merge", "--reference", ref_path, "--partials", *outs, "--out", result_dir,
                "--critical", ",".join(CRITICAL), "--threshold", 0.1, "--share", 0.5, "--min-rows", 100]) == 0
    merged = Profile.load(result_dir / "current_profile.json")
    whole = build_profile(window["whole"], reference=window["ref"])
    assert whole.target is not None and 0 < whole.target.missing < whole.rows  # collector rows are unlabelled
    assert_same_profile(merged, whole)

    # Not every row is labelled, so (as in check_drift) the comparison leaves `y` out.
    unlabelled = build_profile(window["whole"].drop(columns=[schema.TARGET]), reference=window["ref"])
    want = compare_profiles(window["ref"], unlabelled, threshold=0.1, share=0.5, min_rows=100, critical=CRITICAL,
                            target_counts=False).to_dict()
    got = json.loads((result_dir / "drift.json").read_text())
    assert_same_result(got, want)
    assert got["drifted"] is True and got["columns"]["age"]["drifted"] is True
    assert capsys.readouterr().err == ""


def test_profile_in_partitions_is_the_same_in_one_process(window):
    files = drift_job.list_inputs(window["folder"])
    assert len(files) == 8
    whole = build_profile(window["whole"], reference=window["ref"])
    for partitions in (1, 4, 9):
        assert_same_profile(drift_job.profile_in_partitions(files, window["ref"], partitions), whole)
    # the reference may also be given as a path; the file order given does not matter
    assert_same_profile(drift_job.profile_in_partitions(reversed(files), window["ref_path"], 3), whole)


def test_fully_labelled_window_counts_label_drift(data, window, tmp_path):
    reference, current = data
    labelled = current.iloc[:4000].copy()
    labelled[schema.TARGET] = "yes"  # every row labelled, and the label rate jumps
    for i, part in enumerate([labelled.iloc[:1500], labelled.iloc[1500:2200], labelled.iloc[2200:]]):
        part.to_csv(tmp_path / f"part{i}.csv", index=False)
    current_profile = drift_job.profile_in_partitions(sorted(tmp_path.glob("*.csv")), window["ref"], 2)
    whole = build_profile(labelled, reference=window["ref"])
    assert_same_profile(current_profile, whole)
    got = drift_job.compare_window(window["ref"], current_profile).to_dict()
    want = compare_profiles(window["ref"], whole).to_dict()
    assert_same_result(got, want)
    assert got["target"]["drifted"] is True and "label drift" in got["verdict"]


def test_a_window_with_no_input_files_is_not_enough_data(window, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert run(["profile", "--reference", window["ref_path"], "--inputs", empty, "--partitions", 2,
                "--partition-index", 0, "--out", tmp_path / "n0"]) == 0
    assert run(["profile", "--reference", window["ref_path"], "--inputs", empty, "--partitions", 2,
                "--partition-index", 1, "--out", tmp_path / "n1"]) == 0
    assert run(["merge", "--reference", window["ref_path"], "--partials", tmp_path / "n0", tmp_path / "n1",
                "--out", tmp_path / "out"]) == 0
    result = json.loads((tmp_path / "out" / "drift.json").read_text())
    assert result["not_enough_data"] is True and result["drifted"] is None and result["rows"]["current"] == 0


def _bad_cases(window, tmp_path):
    ref, folder = window["ref_path"], window["folder"]
    bad = tmp_path / "bad"
    (bad / "jsonl").mkdir(parents=True)
    (bad / "jsonl" / "x.jsonl").write_text('{"time": "t", "model_version": "1", "data": [{"age": 1}]}\n{oops\n')
    (bad / "cols").mkdir()
    (bad / "cols" / "x.jsonl").write_text('{"time": "t", "model_version": "1", "data": [{"age": 1}]}\n')
    (bad / "shape").mkdir()
    (bad / "shape" / "x.jsonl").write_text('{"age": 1, "job": "admin."}\n')
    (bad / "csv").mkdir()
    (bad / "csv" / "x.csv").write_bytes(b"\xff\xfe\x00garbage")
    (bad / "notjson.json").write_text("{")
    good = tmp_path / "good"
    for i in range(3):
        assert run(["profile", "--reference", ref, "--inputs", folder, "--partitions", 3, "--partition-index", i,
                    "--out", good / f"n{i}"]) == 0
    other_ref = build_profile(pd.read_csv(folder / "uploads" / "a.csv")).save(tmp_path / "other.json")
    profile = ["profile", "--reference", ref, "--partitions", 1, "--partition-index", 0, "--out", tmp_path / "o"]
    return {
        "missing reference": ["profile", "--reference", tmp_path / "nope.json", "--inputs", folder,
                              "--partitions", 2, "--partition-index", 0, "--out", tmp_path / "o"],
        "reference not JSON": ["profile", "--reference", bad / "notjson.json", "--inputs", folder,
                               "--partitions", 2, "--partition-index", 0, "--out", tmp_path / "o"],
        "no inputs folder": [*profile, "--inputs", tmp_path / "nowhere"],
        "index out of range": ["profile", "--reference", ref, "--inputs", folder, "--partitions", 2,
                               "--partition-index", 2, "--out", tmp_path / "o"],
        "zero partitions": ["profile", "--reference", ref, "--inputs", folder, "--partitions", 0,
                            "--partition-index", 0, "--out", tmp_path / "o"],
        "malformed jsonl": [*profile, "--inputs", bad / "jsonl"],
        "jsonl lacks columns": [*profile, "--inputs", bad / "cols"],
        "not collector lines": [*profile, "--inputs", bad / "shape"],
        "csv not utf-8": [*profile, "--inputs", bad / "csv"],
        "missing argument": ["profile", "--reference", ref],
        "unknown command": ["frobnicate"],
        "not an integer": [*profile[:-2], "--inputs", folder, "--out", tmp_path / "o", "--partitions", "x"],
        "no partials": ["merge", "--reference", ref, "--partials", bad, "--out", tmp_path / "m"],
        "a partial missing": ["merge", "--reference", ref, "--partials", good / "n0", good / "n2",
                              "--out", tmp_path / "m"],
        "a partial twice": ["merge", "--reference", ref, "--partials", good / "n0", good / "n1", good / "n2",
                            good / "n1", "--out", tmp_path / "m"],
        "another reference": ["merge", "--reference", other_ref, "--partials", good / "n0", good / "n1",
                              good / "n2", "--out", tmp_path / "m"],
        "unknown critical column": ["merge", "--reference", ref, "--partials", good / "n0", good / "n1",
                                    good / "n2", "--out", tmp_path / "m", "--critical", "age,shoe_size"],
    }


def test_bad_input_exits_2_with_one_line(window, tmp_path, capsys):
    cases = _bad_cases(window, tmp_path)
    capsys.readouterr()
    for name, argv in cases.items():
        assert run(argv) == 2, name
        captured = capsys.readouterr()
        lines = captured.err.splitlines()
        assert len(lines) == 1 and lines[0].startswith("drift_job: error: "), (name, captured.err)
        assert "Traceback" not in captured.err, name
    assert not (tmp_path / "m").exists()  # a refused merge writes nothing


def test_module_entry_point(window, tmp_path):
    done = subprocess.run([sys.executable, "-m", "shared.jobs.drift_job", "profile", "--reference",
                           str(tmp_path / "nope.json"), "--inputs", str(window["folder"]), "--partitions", "1",
                           "--partition-index", "0", "--out", str(tmp_path)], cwd=PROJECT_ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stdout == ""
    assert len(done.stderr.splitlines()) == 1 and "nope.json" in done.stderr
    help_text = subprocess.run([sys.executable, "-m", "shared.jobs.drift_job", "merge", "--help"], cwd=PROJECT_ROOT,
                               capture_output=True, text=True, timeout=120)
    assert help_text.returncode == 0 and "--partials" in help_text.stdout
