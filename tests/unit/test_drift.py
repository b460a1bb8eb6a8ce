"""The drift check: exact distances agree with SciPy; thresholds, critical columns, labels, small windows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.spatial.distance import jensenshannon
from scipy.stats import wasserstein_distance

from shared.domain.drift import (
    compare,
    compare_profiles,
    jensen_shannon,
    js_distance,
    psi,
    wasserstein_atoms,
    wasserstein_normalized,
)
from shared.domain.profile import build_profile


def test_wasserstein_matches_scipy():
    rng = np.random.default_rng(0)
    for _ in range(20):
        a = rng.normal(0, 1, rng.integers(50, 500))
        b = rng.normal(rng.uniform(-1, 1), rng.uniform(0.5, 2), rng.integers(50, 500))
        expected = wasserstein_distance(a, b) / np.std(a)
        assert abs(wasserstein_normalized(a, b) - expected) <= 1e-9 * max(1.0, expected)


def test_jensen_shannon_matches_scipy():
    rng = np.random.default_rng(1)
    levels = list("abcdef")
    for _ in range(20):
        a = pd.Series(rng.choice(levels, 300, p=rng.dirichlet(np.ones(6))))
        b = pd.Series(rng.choice(levels[:4], 200))
        allv = sorted(set(a) | set(b))
        p = a.value_counts(normalize=True).reindex(allv, fill_value=0)
        q = b.value_counts(normalize=True).reindex(allv, fill_value=0)
        assert abs(jensen_shannon(a, b) - jensenshannon(p, q, base=2)) < 1e-9


def test_same_data_does_not_drift_and_shifted_data_does(small_bank_csv):
    df = pd.read_csv(small_bank_csv)
    half = len(df) // 2
    same = compare(df.iloc[:half], df.iloc[half:])
    assert not same.drifted and same.drift_share < 0.2
    shifted = df.iloc[half:].copy()
    for column in ("age", "duration", "campaign", "euribor3m", "nr.employed", "cons.price.idx", "emp.var.rate",
                   "cons.conf.idx", "pdays", "previous"):
        shifted[column] = shifted[column] * 1.5 + shifted[column].std() * 2
    for column in ("job", "marital", "education", "month", "day_of_week"):
        shifted[column] = "unknown"
    drifted = compare(df.iloc[:half], shifted)
    assert drifted.drifted and drifted.drift_share >= 0.5
    assert drifted.columns["age"]["drifted"] and drifted.columns["age"]["metric"] == "wasserstein_normalized"


def test_small_windows_give_no_verdict(small_bank_csv):
    df = pd.read_csv(small_bank_csv)
    result = compare(df, df.iloc[:10], min_rows=100)
    assert not result.drifted and result.verdict.startswith("not enough data")
    assert result.drifted is None and result.not_enough_data and result.columns == {}
    assert result.to_dict()["drifted"] is None


def test_exact_distances_match_scipy_within_1e6_relative():
    rng = np.random.default_rng(7)
    for _ in range(30):
        a = rng.gamma(rng.uniform(0.5, 5), rng.uniform(1, 100), rng.integers(20, 3000))
        b = rng.gamma(rng.uniform(0.5, 5), rng.uniform(1, 100), rng.integers(20, 3000))
        if rng.random() < 0.5:
            a, b = np.round(a), np.round(b)  # ties
        expected = wasserstein_distance(a, b) / np.std(a)
        assert wasserstein_normalized(a, b) == pytest.approx(expected, rel=1e-6)
        wa, wb = rng.random(a.size), rng.random(b.size)
        assert wasserstein_atoms(a, wa, b, wb) == pytest.approx(wasserstein_distance(a, b, wa, wb), rel=1e-6)
        k = int(rng.integers(2, 40))
        p, q = rng.integers(0, 50, k), rng.integers(0, 50, k)
        p[0] += 1
        q[-1] += 1
        assert js_distance(p, q) == pytest.approx(jensenshannon(p, q, base=2), rel=1e-6, abs=1e-12)


def test_psi_by_hand():
    p, q = np.array([50, 30, 20]), np.array([30, 30, 40])
    expected = sum((b - a) * np.log(b / a) for a, b in ((0.5, 0.3), (0.3, 0.3), (0.2, 0.4)))
    assert psi(p, q) == pytest.approx(expected, rel=1e-12)
    assert psi(p, p) == 0.0


def test_per_column_thresholds_critical_columns_and_label_drift(bank_csv):
    df = pd.read_csv(bank_csv).sample(frac=1.0, random_state=3).reset_index(drop=True)
    half = len(df) // 2
    ref = build_profile(df.iloc[:half])
    current = df.iloc[half:].copy()
    current["euribor3m"] = current["euribor3m"] + df["euribor3m"].std()
    cur = build_profile(current, reference=ref)
    plain = compare_profiles(ref, cur)
    assert plain.drifted_columns == ["euribor3m"] and plain.drifted is False
    entry = plain.columns["euribor3m"]
    assert set(entry) == {"metric", "score", "threshold", "drifted", "psi"} and entry["psi"] > 0.25
    critical = compare_profiles(ref, cur, critical=["euribor3m"])
    assert critical.drifted and "critical column(s) drifted: euribor3m" in critical.verdict
    relaxed = compare_profiles(ref, cur, thresholds={"euribor3m": 5.0}, critical=["euribor3m"])
    assert relaxed.columns["euribor3m"]["threshold"] == 5.0 and not relaxed.drifted
    assert plain.target["drifted"] is False and 0.05 < plain.target["rate"]["reference"] < 0.2
    flipped = current.copy()
    flipped["y"] = np.where(np.arange(len(flipped)) % 2 == 0, "yes", flipped["y"])
    labels = compare_profiles(ref, build_profile(flipped, reference=ref), thresholds={"euribor3m": 5.0})
    assert labels.target["drifted"] and labels.drifted and "label drift" in labels.verdict
    assert not compare_profiles(ref, build_profile(flipped, reference=ref), thresholds={"euribor3m": 5.0},
                                target_counts=False).drifted
    unlabelled = build_profile(current.drop(columns=["y"]), reference=ref)
    assert compare_profiles(ref, unlabelled).target is None


def test_cli_drift_json_report_model_and_bad_input(bank_csv, tmp_path, capsys):
    import json

    from shared.domain.profile import build_profile as profile_of
    from tools.cli import main

    df = pd.read_csv(bank_csv).sample(frac=1.0, random_state=9)
    half = len(df) // 2
    ref_csv, cur_csv = tmp_path / "ref.csv", tmp_path / "cur.csv"
    df.iloc[:half].to_csv(ref_csv, index=False)
    shifted = df.iloc[half:].assign(euribor3m=lambda f: f["euribor3m"] + 3.0)
    shifted.to_csv(cur_csv, index=False, sep=";", decimal=",")  # another dialect
    report = tmp_path / "out.html"
    assert main(["drift", "--reference", str(ref_csv), "--current", str(cur_csv), "--json", "--report",
                 str(report), "--critical", "euribor3m"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {"drifted", "drift_share", "columns", "rows"} <= set(out) and out["drifted"] is True
    assert set(out["columns"]["euribor3m"]) == {"metric", "score", "threshold", "drifted", "psi"}
    assert out["columns"]["euribor3m"]["drifted"] and out["rows"] == {"reference": half, "current": len(df) - half}
    html = report.read_text()
    assert html.count("<svg") == 21 and "DRIFTED" in html and "critical column(s) drifted: euribor3m" in html
    assert "http" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "") and "<script" not in html
    model = tmp_path / "run" / "model"
    profile_of(df.iloc[:half]).save(model / "reference_profile.json")
    assert main(["drift", "--model", str(model.parent), "--current", str(cur_csv), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["columns"] == out["columns"]
    assert main(["drift", "--model", str(model), "--current", str(cur_csv)]) == 0
    assert "euribor3m" in capsys.readouterr().out
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    for argv in (["--reference", str(ref_csv), "--current", str(bad)],
                 ["--reference", str(tmp_path / "none.csv"), "--current", str(cur_csv)],
                 ["--model", str(tmp_path), "--current", str(cur_csv)]):
        assert main(["drift", *argv]) == 2
        err = capsys.readouterr().err
        assert err.startswith("retrain drift: ") and err.count("\n") == 1 and "Traceback" not in err
