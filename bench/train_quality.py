"""Training quality on the bank-marketing file: our `train()` against two baselines on the same folds.

    .venv/bin/python bench/train_quality.py [--budget-s 60] [--folds 5] [--data CSV] [--seed 42]
        [--variants with,without] [--skip-ours] [--day-counts on|off] [--split cv|time]

5-fold stratified CV (StratifiedKFold(5, shuffle=True, random_state=0)) of the training file; `--folds N` runs
the first N of those same five folds (quick iterations). On each fold, three models are trained on the 4/5
training part and evaluated on the held-out fold:

- ours: `shared.jobs.training.train.train(part, budget_s=...)` (every row of the part: the pipeline step's 10 %
  champion/challenger hold-out is not applied here); its own decision threshold gives the labels.
- lightgbm: `LGBMClassifier()` with default parameters, categoricals ordinal-encoded, threshold 0.5.
- logreg: `LogisticRegression` on one-hot categoricals + standardized numerics, threshold 0.5.

`--day-counts on` trains ours with the engineered `contacts_same_day` feature (`train(day_counts=True)`; off
by default, as in train()).

`--split time` replaces the CV by one chronological split: the file is shuffled, but each calendar month has its
own consumer price index (CALENDAR below, May 2008 - Nov 2010), so rows up to April 2009 (24,283, ~74%) train
and rows from May 2009 on (8,667, ~26%, all on days never seen in training) test. It shows how the models do
on later contacts, as a deployed model would see them (the positive rate is much higher in the later months).

Everything is repeated without `duration` (it is only known after the call, so it leaks the label). Each row
prints AUC, accuracy and wall seconds; the last line is one JSON object with the means and the paired
per-fold AUC difference ours - lightgbm (mean, standard error, and mean / SE) of the run with duration.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from shared.domain import schema  # noqa: E402

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "bankmarketing_train.csv"
# The consumer price index is monthly and differs between the months of the file: its calendar month.
CALENDAR = {93.994: "2008-05", 94.465: "2008-06", 93.918: "2008-07", 93.444: "2008-08", 93.798: "2008-10",
            93.2: "2008-11", 92.756: "2008-12", 92.843: "2009-03", 93.075: "2009-04", 92.893: "2009-05",
            92.963: "2009-06", 92.469: "2009-07", 92.201: "2009-08", 92.379: "2009-09", 92.431: "2009-10",
            92.649: "2009-11", 92.713: "2009-12", 93.369: "2010-03", 93.749: "2010-04", 93.876: "2010-05",
            94.055: "2010-06", 94.215: "2010-07", 94.027: "2010-08", 94.199: "2010-09", 94.601: "2010-10",
            94.767: "2010-11"}
TIME_SPLIT_FROM = "2009-05"  # first test month of `--split time`
MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--budget-s", type=float, default=60.0, help="train() budget per fold (default 60)")
    p.add_argument("--folds", type=int, default=5, help="run the first N of the 5 folds (default 5)")
    p.add_argument("--data", default=str(DEFAULT_DATA))
    p.add_argument("--seed", type=int, default=42, help="train() seed")
    p.add_argument("--variants", default="with,without", help="with (all features), without (no duration)")
    p.add_argument("--skip-ours", action="store_true", help="baselines only")
    p.add_argument("--day-counts", choices=("on", "off"), default="off",
                   help="ours without (default, as train()) or with the contacts_same_day feature")
    p.add_argument("--split", choices=("cv", "time"), default="cv",
                   help="5-fold stratified CV (default) or one chronological split (see above)")
    args = p.parse_args(argv)
    if not 1 <= args.folds <= 5:
        p.error("--folds must be between 1 and 5")
    return args


def split_xy(df: pd.DataFrame, features: list[str]):
    from shared.jobs.training.features import prepare_features

    X = prepare_features(df, features)
    y = (df[schema.TARGET].astype(str).str.strip().str.lower() == "yes").to_numpy(dtype=np.int64)
    return X, y


def lightgbm_default(features: list[str]):
    from lightgbm import LGBMClassifier
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OrdinalEncoder

    cats = [c for c in features if c in schema.CATEGORICAL]
    nums = [c for c in features if c in schema.NUMERIC]
    prep = ColumnTransformer([("cat", OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1), cats),
                              ("num", "passthrough", nums)])
    # The ordinal codes are declared categorical to LightGBM (first len(cats) columns).
    return Pipeline([("prep", prep), ("model", LGBMClassifier(verbose=-1))]), {
        "model__categorical_feature": list(range(len(cats)))}


def logreg(features: list[str]):
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    cats = [c for c in features if c in schema.CATEGORICAL]
    nums = [c for c in features if c in schema.NUMERIC]
    prep = ColumnTransformer([("cat", OneHotEncoder(handle_unknown="ignore"), cats),
                              ("num", StandardScaler(), nums)])
    return Pipeline([("prep", prep), ("model", LogisticRegression(max_iter=2000))]), {}


def scores(y, p_yes, labels):
    from sklearn.metrics import accuracy_score, roc_auc_score

    return float(roc_auc_score(y, p_yes)), float(accuracy_score(y, labels))


def run_variant(df, folds, args, exclude: list[str], tag: str) -> dict[str, list[dict]]:
    from shared.jobs.training.train import train

    features = [c for c in schema.FEATURES if c not in exclude]
    X, y = split_xy(df, features)
    rows: dict[str, list[dict]] = {"ours": [], "lightgbm": [], "logreg": []}
    for k, (tr, te) in enumerate(folds):
        X_tr, X_te, y_tr, y_te = X.iloc[tr], X.iloc[te], y[tr], y[te]
        if not args.skip_ours:
            t0 = time.perf_counter()
            result = train(df.iloc[tr].reset_index(drop=True), budget_s=args.budget_s, seed=args.seed,
                           exclude_columns=exclude, day_counts=args.day_counts == "on")
            seconds = time.perf_counter() - t0
            model = result.pipeline
            p_yes = model.predict_proba(X_te)[:, 1]
            auc, acc = scores(y_te, p_yes, model.predict(X_te))
            m = result.metrics
            extra = {k: m.get(k) for k in ("threshold", "search_seconds", "search_trials", "search_auc",
                                            "prior_kept", "cv_refined", "bag_size", "best_config")}
            rows["ours"].append({"fold": k, "auc": auc, "accuracy": acc, "seconds": seconds, **extra})
            print(f"[{tag}] fold {k} ours      AUC {auc:.4f}  acc {acc:.4f}  {seconds:6.1f}s  "
                  f"threshold {extra['threshold']}; search {extra['search_seconds']}s, {extra['search_trials']} "
                  f"trials, CV AUC {extra['search_auc']}, start kept {extra['prior_kept']}; refined CV "
                  f"{extra['cv_refined']}; bag {extra['bag_size']}; {json.dumps(extra['best_config'])}", flush=True)
        for name, factory in (("lightgbm", lightgbm_default), ("logreg", logreg)):
            pipe, fit_params = factory(features)
            t0 = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                pipe.fit(X_tr, y_tr, **fit_params)
                p_yes = pipe.predict_proba(X_te)[:, 1]
            seconds = time.perf_counter() - t0
            auc, acc = scores(y_te, p_yes, (p_yes > 0.5).astype(int))
            rows[name].append({"fold": k, "auc": auc, "accuracy": acc, "seconds": seconds})
            print(f"[{tag}] fold {k} {name:9s} AUC {auc:.4f}  acc {acc:.4f}  {seconds:6.1f}s", flush=True)
    for name, entries in rows.items():
        if entries:
            print(f"[{tag}] mean   {name:9s} AUC {mean(entries, 'auc'):.4f}  acc {mean(entries, 'accuracy'):.4f}"
                  f"  {mean(entries, 'seconds'):6.1f}s  (AUC std {std(entries, 'auc'):.4f})", flush=True)
    return rows


def mean(entries, key):
    return float(np.mean([e[key] for e in entries]))


def std(entries, key):
    values = [e[key] for e in entries]
    return float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def paired(ours, base):
    diffs = np.array([a["auc"] - b["auc"] for a, b in zip(ours, base, strict=True)])
    m = float(diffs.mean())
    se = float(diffs.std(ddof=1) / math.sqrt(len(diffs))) if len(diffs) > 1 else float("nan")
    return m, se, (m / se if se and se > 0 else float("nan"))


def calendar_months(df: pd.DataFrame) -> pd.Series:
    """'YYYY-MM' of each row, from its consumer price index; checked against its `month` column."""
    months = df["cons.price.idx"].round(3).map(CALENDAR)
    if months.isna().any():
        raise ValueError(f"{int(months.isna().sum())} row(s) have a consumer price index outside CALENDAR")
    named = months.str[5:].astype(int).map(lambda m: MONTHS[m - 1])
    if (named != df["month"].astype(str).str.lower()).any():
        raise ValueError("CALENDAR disagrees with the month column")
    return months


def time_split(df: pd.DataFrame):
    months = calendar_months(df).to_numpy()
    later = months >= TIME_SPLIT_FROM
    return [(np.flatnonzero(~later), np.flatnonzero(later))]


def main(argv=None) -> int:
    from sklearn.model_selection import StratifiedKFold

    args = parse_args(argv)
    df = pd.read_csv(args.data, low_memory=False)
    y = (df[schema.TARGET] == "yes").to_numpy()
    if args.split == "time":
        folds = time_split(df)
        tr, te = folds[0]
        args.folds = 1
        print(f"{len(df)} rows; time split: {len(tr)} rows before {TIME_SPLIT_FROM} (positive rate "
              f"{y[tr].mean():.4f}) train, {len(te)} rows from then on (positive rate {y[te].mean():.4f}) test; "
              f"budget {args.budget_s:g}s; seed {args.seed}; day counts {args.day_counts}", flush=True)
    else:
        folds = list(StratifiedKFold(5, shuffle=True, random_state=0).split(np.zeros(len(df)), y))[:args.folds]
        print(f"{len(df)} rows, positive rate {y.mean():.4f}; {args.folds} of 5 folds; budget {args.budget_s:g}s; "
              f"seed {args.seed}; day counts {args.day_counts}", flush=True)
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    results = {}
    for variant in variants:
        exclude = [] if variant == "with" else ["duration"]
        results[variant] = run_variant(df, folds, args, exclude, variant)

    summary: dict[str, float | int | str | None] = {"folds": args.folds, "budget_s": args.budget_s,
                                                    "split": args.split, "day_counts": args.day_counts}
    for variant, suffix in (("with", ""), ("without", "_no_duration")):
        rows = results.get(variant)
        if not rows:
            continue
        for name in ("ours", "lightgbm", "logreg"):
            if rows[name]:
                summary[f"{name}_auc{suffix}"] = round(mean(rows[name], "auc"), 5)
                summary[f"{name}_accuracy{suffix}"] = round(mean(rows[name], "accuracy"), 5)
                summary[f"{name}_seconds{suffix}"] = round(mean(rows[name], "seconds"), 2)
        if rows["ours"]:
            summary[f"auc_std{suffix}"] = round(std(rows["ours"], "auc"), 5)
            m, se, z = paired(rows["ours"], rows["lightgbm"])
            summary[f"paired_diff_mean{suffix}"] = round(m, 5)
            summary[f"paired_diff_se{suffix}"] = round(se, 5) if math.isfinite(se) else None
            summary[f"paired_diff_in_se{suffix}"] = round(z, 2) if math.isfinite(z) else None
    print(json.dumps(summary, sort_keys=True), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
