"""Prequential replay of the whole loop: does retraining pay off on data that drifts in time?

    .venv/bin/python bench/replay.py [--data CSV] [--periods 10] [--first 4] [--order calendar|file|column:NAME]
        [--budget-s 30] [--out DIR] [--timeout-s 1800] [--evaluation-rows auto|hash|newest]

The labelled file is put in time order (`calendar`: the bank-marketing months rebuilt from `cons.price.idx`,
bench/train_quality.py CALENDAR; `file`: as written; `column:NAME`: sorted by that column) and cut into
`--periods` periods of equal rows. A local stack is started on free ports (Azurite, the Functions host, the
pipeline endpoint with real training, the scoring endpoint). The first cumulative snapshot (periods 1..first)
is uploaded with `retrain upload FILE --wait --json`; then for each next period:

1. the period is scored before any model has seen it: through the live scoring endpoint (`retrain score --data
   --json`: accuracy, and the model version that answered; that endpoint answers labels only, as Azure's no-code
   MLflow deployment does), and the AUC of that same version from its registered folder (its digest checked)
   scored in process; its drift report against the live model's reference profile (`retrain drift --report`);
2. the same period is scored by the first model the loop deployed, never replaced (static), and by a default
   LightGBM (`LGBMClassifier()`, bench/train_quality.py) fitted on every earlier row (retrained each period);
3. the next cumulative snapshot (every row up to this period) is uploaded and waited for (deployed or kept).

Writes to `--out` (default .local/replay/<time>): snapshots/, periods/, drift-period-N.html, replay.svg (the
per-period chart), replay.json (every figure). The last line printed is one JSON object: periods, ours_mean_auc,
static_mean_auc, retrained_lightgbm_mean_auc (and accuracies), promotions, kept_champion, seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from shared.adapters import storage  # noqa: E402
from shared.domain import schema  # noqa: E402
from shared.domain.evaluation_slice import EvaluationRows  # noqa: E402
from shared.services.dashboard import REPLAY_BLOB  # noqa: E402

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "bankmarketing_train.csv"
RETRAIN = [sys.executable, "-m", "tools.cli"]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=str(DEFAULT_DATA), help="labelled CSV (default: the training file)")
    p.add_argument("--periods", type=int, default=10, help="periods of equal rows (default 10)")
    p.add_argument("--first", type=int, default=4, help="periods in the first snapshot (default 4)")
    p.add_argument("--order", default="calendar",
                   help="calendar (months rebuilt from cons.price.idx), file, or column:NAME (default calendar)")
    p.add_argument("--budget-s", type=int, default=30, help="training budget per pipeline run (default 30)")
    p.add_argument("--out", default="", help="output folder (default .local/replay/<UTC time>)")
    p.add_argument("--timeout-s", type=float, default=1800, help="longest wait for one upload's outcome")
    p.add_argument("--evaluation-rows", choices=[r.value for r in EvaluationRows], default=EvaluationRows.AUTO,
                   help="the stack's EVALUATION_ROWS (default auto: the service default)")
    args = p.parse_args(argv)
    if not 1 <= args.first < args.periods:
        p.error("--first must be at least 1 and less than --periods")
    return args


def ordered(df: pd.DataFrame, order: str) -> pd.DataFrame:
    """The rows in time order (a stable sort: rows of one month keep their file order)."""
    if order == "file":
        return df.reset_index(drop=True)
    if order == "calendar":
        from train_quality import calendar_months

        key = calendar_months(df)
    elif order.startswith("column:"):
        name = order.partition(":")[2]
        if name not in df.columns:
            raise SystemExit(f"replay: --order {order}: no column {name!r} in the file")
        key = df[name]
    else:
        raise SystemExit(f"replay: --order must be calendar, file or column:NAME, got {order!r}")
    return df.iloc[np.argsort(key.to_numpy(), kind="stable")].reset_index(drop=True)


def cli(env: dict[str, str], *argv: str, timeout: float) -> dict:
    """`retrain ARGV... --json` in its own process, as a user's script runs it; its one JSON line."""
    proc = subprocess.run([*RETRAIN, *argv], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    lines = proc.stdout.strip().splitlines()
    if not lines:
        raise SystemExit(f"replay: `retrain {' '.join(argv[:2])}` printed nothing (exit {proc.returncode}): "
                         f"{proc.stderr.strip()[-500:]}")
    answer = json.loads(lines[-1])
    answer["exit_code"] = proc.returncode
    return answer


def registered_figures(models, version: int, period: pd.DataFrame, runs_dir: Path) -> dict:
    """AUC / accuracy of a registered model version on the period, from its folder, loaded only after the check
    every local load path makes (shared.scoring.trusted_model: under the stack's runs, registered digest)."""
    from shared.jobs.training.evaluate import score_frame
    from shared.scoring.runtime import ScoringModel
    from shared.scoring.trusted_model import check_model_folder

    model = next(m for m in models.list() if m.version == version)
    folder = check_model_folder(model.model_dir, root=runs_dir, expected_digest=model.digest, version=version).path
    figures = score_frame(ScoringModel.load(folder, version=str(version)), period)
    return {"auc": figures["auc"], "accuracy": figures["accuracy"], "model_dir": str(folder)}


def lightgbm_retrained(before: pd.DataFrame, period: pd.DataFrame) -> dict:
    """Default LightGBM fitted on every earlier row (bench/train_quality.py lightgbm_default), threshold 0.5."""
    from train_quality import lightgbm_default, scores, split_xy

    features = list(schema.FEATURES)
    X_tr, y_tr = split_xy(before, features)
    X_te, y_te = split_xy(period, features)
    pipe, fit_params = lightgbm_default(features)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pipe.fit(X_tr, y_tr, **fit_params)
        p_yes = pipe.predict_proba(X_te)[:, 1]
    auc, acc = scores(y_te, p_yes, (p_yes > 0.5).astype(np.int64))
    return {"auc": auc, "accuracy": acc}


def chart_svg(rows: list[dict], path: Path) -> None:
    """A line chart of each policy's AUC per period, as a self-contained SVG."""
    series = (("ours (live)", "ours_auc", "#1f77b4"), ("first model, never retrained", "static_auc", "#d62728"),
              ("default LightGBM, retrained", "lightgbm_auc", "#2ca02c"))
    values = [r[key] for r in rows for _, key, _ in series]
    low, high = min(values) - 0.02, min(1.0, max(values) + 0.02)
    width, height, left, top, bottom = 720, 360, 60, 30, 50
    plot_w, plot_h = width - left - 200, height - top - bottom

    def x(i):
        return left + (plot_w * i / max(1, len(rows) - 1))

    def y(v):
        return top + plot_h * (1 - (v - low) / (high - low))

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" '
             f'font-size="12"><rect width="100%" height="100%" fill="white"/>',
             f'<text x="{left}" y="18" font-size="14">AUC per period, scored before the period was learnt</text>',
             f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" stroke="#444"/>',
             f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_h}" stroke="#444"/>']
    for k in range(5):
        v = low + (high - low) * k / 4
        parts.append(f'<text x="{left - 8}" y="{y(v) + 4:.1f}" text-anchor="end">{v:.2f}</text>')
        parts.append(f'<line x1="{left}" y1="{y(v):.1f}" x2="{left + plot_w}" y2="{y(v):.1f}" stroke="#eee"/>')
    for i, r in enumerate(rows):
        parts.append(f'<text x="{x(i):.1f}" y="{top + plot_h + 18}" text-anchor="middle">{r["period"]}</text>')
    parts.append(f'<text x="{left + plot_w / 2}" y="{height - 10}" text-anchor="middle">period</text>')
    for n, (label, key, colour) in enumerate(series):
        points = " ".join(f"{x(i):.1f},{y(r[key]):.1f}" for i, r in enumerate(rows))
        parts.append(f'<polyline points="{points}" fill="none" stroke="{colour}" stroke-width="2"/>')
        for i, r in enumerate(rows):
            parts.append(f'<circle cx="{x(i):.1f}" cy="{y(r[key]):.1f}" r="3" fill="{colour}"/>')
        mean = np.mean([r[key] for r in rows])
        ly = top + 20 + 22 * n
        parts.append(f'<line x1="{left + plot_w + 15}" y1="{ly}" x2="{left + plot_w + 35}" y2="{ly}" '
                     f'stroke="{colour}" stroke-width="2"/>')
        parts.append(f'<text x="{left + plot_w + 40}" y="{ly + 4}">{label} ({mean:.3f})</text>')
    parts.append("</svg>")
    path.write_text("\n".join(parts) + "\n", encoding="utf-8")


def main(argv=None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    from local.stack import start_on_free_ports
    from shared.bootstrap import build_stores
    from shared.jobs.training.features import target_labels
    from shared.settings import Settings

    out = Path(args.out or ROOT / ".local" / "replay" / time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()))
    for sub in ("snapshots", "periods"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    df = ordered(pd.read_csv(args.data, low_memory=False), args.order)
    bounds = np.linspace(0, len(df), args.periods + 1).astype(int)
    print(f"{len(df)} rows in {args.order} order, {args.periods} periods of ~{len(df) // args.periods} rows; first "
          f"snapshot: periods 1-{args.first}; training budget {args.budget_s}s; output {out}", flush=True)

    local_dir = Path(tempfile.mkdtemp(prefix="replay-stack-"))
    # No drift timer (the replay asks for every retraining itself); no coalescing window (one run per upload).
    stack = start_on_free_ports(local_dir, training_budget_s=args.budget_s, drift_schedule="0 0 0 1 1 *",
                                extra_settings={"COALESCE_S": "0", "EVALUATION_ROWS": args.evaluation_rows})
    env = {k: v for k, v in os.environ.items()
           if k not in ("AzureWebJobsStorage", "SCORING_URL", "SCORING_KEY", "RETRAIN_MODE")}
    env["RETRAIN_LOCAL_DIR"] = str(local_dir)
    rows: list[dict] = []
    outcomes: list[str] = []
    print(f"dashboard: {stack.config.host_url}/api/dashboard (add ?code=KEY: `RETRAIN_LOCAL_DIR={local_dir} "
          f".venv/bin/retrain keys --json` prints dashboard_url); the replay's figures appear there per period",
          flush=True)
    try:
        settings = Settings(storage_connection=stack.config.connection_string)
        models = build_stores(settings).models
        reports = storage.blob_service(settings).get_container_client(settings.reports_container)
        storage.ensure_container(storage.blob_service(settings), settings.reports_container)

        def publish(summary: dict) -> None:
            """The figures so far, where the dashboard reads them (shared.services.dashboard.REPLAY_BLOB)."""
            doc = {"summary": summary, "periods": rows}
            reports.upload_blob(REPLAY_BLOB, json.dumps(doc).encode(), overwrite=True)

        def upload(through: int) -> dict:
            snapshot = out / "snapshots" / f"through-period-{through}.csv"
            df.iloc[:bounds[through]].to_csv(snapshot, index=False)
            t0 = time.perf_counter()
            answer = cli(env, "upload", str(snapshot), "--wait", "--json", "--timeout-s", str(args.timeout_s),
                         timeout=args.timeout_s + 60)
            outcomes.append(answer["final_outcome"])
            print(f"  upload through period {through} ({bounds[through]} rows): {answer['final_outcome']} "
                  f"model v{answer.get('model_version') or '-'} in {time.perf_counter() - t0:.0f}s: "
                  f"{str(answer.get('detail') or '')[:160]}", flush=True)
            if answer["exit_code"] != 0:
                raise SystemExit(f"replay: the upload through period {through} ended {answer['final_outcome']}")
            return answer

        upload(args.first)
        first_version = max(m.version for m in models.list())
        for k in range(args.first, args.periods):
            period = df.iloc[bounds[k]:bounds[k + 1]].reset_index(drop=True)
            period_file = out / "periods" / f"period-{k + 1}.csv"
            period.to_csv(period_file, index=False)
            served = cli(env, "score", "--data", str(period_file), "--json", timeout=600)
            live = int(served["model_version"])
            ours = registered_figures(models, live, period, stack.config.runs_dir)
            static = registered_figures(models, first_version, period, stack.config.runs_dir)
            baseline = lightgbm_retrained(df.iloc[:bounds[k]], period)
            report = out / f"drift-period-{k + 1}.html"
            drift = cli(env, "drift", "--model", ours["model_dir"], "--current", str(period_file), "--report",
                        str(report), "--json", timeout=600)
            row = {"period": k + 1, "rows": len(period), "positive_rate": round(float(target_labels(period).mean()), 4),
                   "live_version": live, "ours_auc": ours["auc"], "ours_accuracy": ours["accuracy"],
                   "endpoint_accuracy": served["accuracy"], "static_auc": static["auc"],
                   "static_accuracy": static["accuracy"], "lightgbm_auc": baseline["auc"],
                   "lightgbm_accuracy": baseline["accuracy"], "drifted": bool(drift.get("drifted")),
                   "drift_report": report.name}
            rows.append(row)
            publish({"periods": len(rows), "order": args.order, "evaluation_rows": args.evaluation_rows})
            print(f"period {k + 1}: {len(period)} rows, positive rate {row['positive_rate']:.3f}; live v{live} AUC "
                  f"{ours['auc']:.4f} acc {served['accuracy']:.4f} (endpoint) | first v{first_version} AUC "
                  f"{static['auc']:.4f} | LightGBM retrained AUC {baseline['auc']:.4f} | drift "
                  f"{'yes' if row['drifted'] else 'no'}", flush=True)
            if k + 1 < args.periods:
                upload(k + 1)
    finally:
        stack.stop()
    chart_svg(rows, out / "replay.svg")

    def mean(key):
        return round(float(np.mean([r[key] for r in rows])), 4)

    summary = {"periods": len(rows), "ours_mean_auc": mean("ours_auc"), "static_mean_auc": mean("static_auc"),
               "retrained_lightgbm_mean_auc": mean("lightgbm_auc"), "ours_mean_accuracy": mean("ours_accuracy"),
               "static_mean_accuracy": mean("static_accuracy"),
               "retrained_lightgbm_mean_accuracy": mean("lightgbm_accuracy"),
               "promotions": outcomes.count("deployed"), "kept_champion": outcomes.count("kept_champion"),
               "uploads": len(outcomes), "budget_s": args.budget_s, "order": args.order,
               "evaluation_rows": args.evaluation_rows,
               "seconds": round(time.perf_counter() - started, 1), "out": str(out)}
    (out / "replay.json").write_text(json.dumps({"summary": summary, "periods": rows}, indent=2) + "\n")
    print(f"chart {out / 'replay.svg'}; figures {out / 'replay.json'}", flush=True)
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
