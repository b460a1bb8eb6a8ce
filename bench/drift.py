"""Drift-check speed and memory: 1,000,000 current rows x the 20 features against a stored reference profile.

    .venv/bin/python bench/drift.py [--rows 1000000] [--seed 0]

The reference is ../shared/data/bankmarketing_train.csv (generated data from shared.domain.sample_data if it
is absent); its profile is built and saved to a temp file once. Each contender then runs in its own fresh
subprocess, which generates the current frame in memory by resampling the reference rows (string columns as
pandas categoricals, the efficient in-memory form; `ours_str` repeats ours on plain string columns) and then
times only the check:

- ours: load the stored profile, profile the current frame on its edges, compare (shared.domain.drift);
- baseline: a straightforward pandas/scipy implementation of the same metrics on raw values (it needs the raw
  reference): scipy.stats.wasserstein_distance / reference std per numeric column, and
  scipy.spatial.distance.jensenshannon(base=2) on value_counts per categorical column;
- evidently (`--with-evidently`): `Report([DataDriftPreset()])` on the raw reference and current frames, in
  .local/evidently-venv (built once from requirements-evidently.txt: Evidently needs pandas < 3); without the
  flag `evidently_s` is null.

Peak RSS is the child's VmHWM (whole process: interpreter, imports, the generated frame, the check). Prints
one line per contender and ends with one JSON line.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DATA = ROOT.parent / "shared" / "data" / "bankmarketing_train.csv"


def _reference_frame():
    import pandas as pd

    if DATA.exists():
        return pd.read_csv(DATA), str(DATA)
    from shared.domain.sample_data import generate_sample

    return generate_sample(32950, 42), "generated (shared.domain.sample_data)"


def _current_frame(rows: int, seed: int, categorical: bool):
    import numpy as np

    reference, _ = _reference_frame()
    if categorical:
        reference = reference.astype({c: "category" for c in reference.columns if reference[c].dtype.kind in "OUT"
                                      or str(reference[c].dtype) in ("str", "string")})
    idx = np.random.default_rng(seed).integers(0, len(reference), rows)
    return reference.iloc[idx].reset_index(drop=True), reference


def _peak_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(contender: str, rows: int, seed: int, profile_path: str) -> dict:
    t0 = time.perf_counter()
    current, reference = _current_frame(rows, seed, categorical=contender != "ours_str")
    generate_s = time.perf_counter() - t0
    if contender in ("ours", "ours_str"):
        from shared.domain.drift import compare_profiles
        from shared.domain.profile import Profile, build_profile

        del reference  # ours never needs the raw reference
        t = time.perf_counter()
        ref = Profile.load(profile_path)
        result = compare_profiles(ref, build_profile(current, reference=ref))
        seconds = time.perf_counter() - t
        drifted, share = result.drifted, result.drift_share
    elif contender == "baseline":
        import numpy as np
        from scipy.spatial.distance import jensenshannon
        from scipy.stats import wasserstein_distance

        from shared.domain import schema

        t = time.perf_counter()
        drifted_cols = 0
        for column in schema.FEATURES:
            if column in schema.NUMERIC:
                ref_values = reference[column].to_numpy(dtype=float)
                score = wasserstein_distance(ref_values, current[column].to_numpy(dtype=float)) / np.std(ref_values)
            else:
                p = reference[column].astype(str).value_counts(normalize=True)
                q = current[column].astype(str).value_counts(normalize=True)
                levels = p.index.union(q.index)
                score = jensenshannon(p.reindex(levels, fill_value=0), q.reindex(levels, fill_value=0), base=2)
            drifted_cols += bool(score > 0.1)
        seconds = time.perf_counter() - t
        share = drifted_cols / len(schema.FEATURES)
        drifted = share >= 0.5
    elif contender == "evidently":
        from evidently import Report
        from evidently.presets import DataDriftPreset

        from shared.domain import schema

        features = list(schema.FEATURES)
        t = time.perf_counter()
        snapshot = Report([DataDriftPreset()]).run(current_data=current[features], reference_data=reference[features])
        share = _drifted_share(snapshot.dict())
        seconds = time.perf_counter() - t
        drifted = share is not None and share >= 0.5
    else:
        raise SystemExit(f"unknown contender {contender}")
    return {"contender": contender, "seconds": round(seconds, 4), "generate_s": round(generate_s, 3),
            "peak_mb": round(_peak_mb(), 1), "drifted": drifted, "drift_share": share}


def _drifted_share(report: dict) -> float | None:
    """The share of drifted columns from an Evidently snapshot's DriftedColumnsCount metric."""
    for metric in report.get("metrics", []):
        if "DriftedColumnsCount" in str(metric.get("metric_id") or metric.get("metric_name") or ""):
            value = metric.get("value") or {}
            return float(value["share"]) if isinstance(value, dict) and "share" in value else None
    return None


def run_child(contender: str, rows: int, seed: int, profile_path: str, python: str = sys.executable) -> dict:
    out = subprocess.run([python, __file__, "--child", contender, "--rows", str(rows), "--seed", str(seed),
                          "--profile", profile_path], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"{contender} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _evidently_python() -> str:
    """.local/evidently-venv/bin/python, created from requirements-evidently.txt when missing."""
    venv = ROOT / ".local" / "evidently-venv"
    python = venv / "bin" / "python"
    if not python.exists():
        print("building .local/evidently-venv (once) ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", "-r",
                        str(ROOT / "requirements-evidently.txt")], check=True)
    return str(python)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--child")
    parser.add_argument("--profile")
    parser.add_argument("--with-evidently", action="store_true",
                        help="also run Evidently's DataDriftPreset from .local/evidently-venv (built on first use)")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.rows, args.seed, args.profile)))
        return 0
    from shared.domain.profile import build_profile

    reference, source = _reference_frame()
    with tempfile.TemporaryDirectory() as tmp:
        path = build_profile(reference).save(Path(tmp) / "reference_profile.json")
        print(f"reference: {source}, {len(reference):,} rows; profile {path.stat().st_size / 1024:.1f} KB; "
              f"current: {args.rows:,} resampled rows x 20 features")
        results = {name: run_child(name, args.rows, args.seed, str(path)) for name in ("ours", "ours_str", "baseline")}
        results["evidently"] = (run_child("evidently", args.rows, args.seed, str(path), python=_evidently_python())
                                if args.with_evidently else
                                {"seconds": None, "peak_mb": None, "note": "not asked for: --with-evidently"})
    for name, r in results.items():
        if r["seconds"] is None:
            print(f"{name:>9}: skipped ({r['note']})")
        else:
            print(f"{name:>9}: {r['seconds']:.3f} s check, {r['peak_mb']:.0f} MB peak RSS "
                  f"(frame generation {r['generate_s']:.2f} s; drifted={r['drifted']}, share={r['drift_share']})")
    print(json.dumps({"rows": args.rows, "ours_s": results["ours"]["seconds"],
                      "ours_peak_mb": results["ours"]["peak_mb"], "ours_str_s": results["ours_str"]["seconds"],
                      "ours_str_peak_mb": results["ours_str"]["peak_mb"],
                      "baseline_s": results["baseline"]["seconds"],
                      "baseline_peak_mb": results["baseline"]["peak_mb"],
                      "evidently_s": results["evidently"]["seconds"],
                      "evidently_peak_mb": results["evidently"]["peak_mb"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
