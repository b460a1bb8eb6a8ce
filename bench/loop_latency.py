"""Time the whole local loop: `retrain demo` (upload -> POST -> train -> deploy -> answer) run N times.

    .venv/bin/python bench/loop_latency.py [--runs 3] [--budget-s 30] [--data FILE]

Each run starts a fresh stack on free loopback ports in a temporary folder. Prints one line per run, the
median of each figure, and ends with one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIGURES = ("upload_to_post_s", "training_s", "upload_to_serving_s", "auc", "accuracy")


def one_run(budget_s: int, data: str | None) -> dict:
    with tempfile.TemporaryDirectory(prefix="retrain-bench-") as tmp:
        env = {**os.environ, "RETRAIN_LOCAL_DIR": tmp}
        env.pop("AzureWebJobsStorage", None)
        argv = [sys.executable, "-m", "tools.cli", "demo", "--free-ports", "--budget-s", str(budget_s)]
        if data:
            argv += ["--data", data]
        started = time.time()
        proc = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
        summary = json.loads(proc.stdout.strip().splitlines()[-1])
        summary["wall_s"] = round(time.time() - started, 3)
        summary["exit_code"] = proc.returncode
        return summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--budget-s", type=int, default=30)
    parser.add_argument("--data", help="CSV to upload (default: the demo's default file)")
    args = parser.parse_args()
    results = []
    for i in range(args.runs):
        r = one_run(args.budget_s, args.data)
        results.append(r)
        print(f"run {i + 1}: status={r['status']} " + " ".join(f"{k}={r.get(k)}" for k in FIGURES)
              + f" wall_s={r['wall_s']}", flush=True)
    ok = [r for r in results if r["status"] == "deployed"]
    medians = {f"median_{k}": round(statistics.median(r[k] for r in ok), 4) for k in FIGURES if ok}
    for key, value in medians.items():
        print(f"{key}: {value}")
    print(json.dumps({"runs": args.runs, "deployed": len(ok), "budget_s": args.budget_s, **medians}))
    return 0 if len(ok) == args.runs else 1


if __name__ == "__main__":
    sys.exit(main())
