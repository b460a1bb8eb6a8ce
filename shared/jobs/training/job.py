"""The pipeline step's process entry point.

    python -m shared.jobs.training.job --data CSV --out DIR --budget-s N [--seed N] [--exclude-columns a,b]
        [--dataset-version V] [--dataset-hash H] [--run-id ID] [--mlflow-uri URI] [--experiment NAME]
        [--max-iter N]

Reads a comma-separated dataset version, trains (FLAML-searched LightGBM, bagged), writes `DIR/model/`
(MLflow model) and `DIR/metrics.json`, records the run in MLflow tracking when `--mlflow-uri` is given, and
always writes `DIR/status.json` = {"status": "Completed"|"Failed", "error": ..., "metrics": ...}. While it runs,
`DIR/progress.json` says how far it is (phase, elapsed time, budget, search trials, best score: `progress`).
Exit code 0 on success, 1 on failure; a bad input file gives a one-line error, not a traceback.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import time
import traceback
import uuid
from pathlib import Path
from typing import Any

from shared.domain.evaluation_slice import DEFAULT_PERCENT, EvaluationRows
from shared.domain.pipeline_params import PRIMARY_METRICS
from shared.domain.profile import REFERENCE_PROFILE

# Failures caused by the input (file, content, arguments): reported in one line, without a traceback.
_INPUT_ERRORS: tuple[type[BaseException], ...] = (ValueError, OSError, UnicodeDecodeError)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m shared.jobs.training.job", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="training CSV (comma-separated, header row, target column y)")
    p.add_argument("--out", required=True, help="output directory for model/, metrics.json and status.json")
    p.add_argument("--budget-s", type=float, required=True, help="time budget in seconds (search, evaluation, fits)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--exclude-columns", default="", help="comma-separated feature columns to leave out")
    p.add_argument("--dataset-version", default="")
    p.add_argument("--dataset-hash", default="", help="default: sha256 of the data file")
    p.add_argument("--run-id", default="", help="default: a new random id")
    p.add_argument("--mlflow-uri", default="", help="MLflow tracking URI, e.g. file:///.../.local/mlruns")
    p.add_argument("--experiment", default="bankmarketing-retrain", help="MLflow experiment name")
    p.add_argument("--primary-metric", default="AUC_weighted", choices=sorted(PRIMARY_METRICS),
                   help="metric the search optimizes (Azure AutoML name)")
    p.add_argument("--trigger-id", default="", help="audit id of the trigger that asked for this run (lineage)")
    p.add_argument("--reason", default="", help="why the run was asked for: upload, drift, http, ... (lineage)")
    p.add_argument("--drift-report", default="", help="the drift report that asked for the run (lineage)")
    p.add_argument("--max-iter", type=int, default=None, help="cap on FLAML trials (reproducible searches)")
    p.add_argument("--evaluation-percent", type=int, default=DEFAULT_PERCENT,
                   help="rows held out of training for champion/challenger evaluation (0: none)")
    p.add_argument("--evaluation-rows", default=EvaluationRows.AUTO.value,
                   choices=[r.value for r in EvaluationRows],
                   help="which rows: by row hash, the newest in file order (then the model is refitted on all "
                        "rows once both are scored), or auto: newest when the file is in time order")
    p.add_argument("--champion-model", default="", help="MLflow model directory of the live model, scored on "
                   "the same held-out rows")
    p.add_argument("--champion-version", default="", help="the live model's version (recorded with its figures)")
    p.add_argument("--champion-digest", default="", help="the live model folder's registered content hash "
                   "(sha256:...): the folder is loaded only if its bytes hash to this")
    return p


def say(message: str) -> None:
    print(f"[train {time.strftime('%H:%M:%S')}] {message}", flush=True)


def _one_line(exc: BaseException) -> str:
    import pandas as pd

    if isinstance(exc, FileNotFoundError):
        return f"data file not found: {exc.filename}"
    if isinstance(exc, IsADirectoryError):
        return f"data path is a directory, not a CSV file: {exc.filename}"
    if isinstance(exc, pd.errors.EmptyDataError):
        return "the data file is empty (no header row)"
    if isinstance(exc, pd.errors.ParserError):
        return "malformed CSV: " + " ".join(str(exc).split())
    if isinstance(exc, UnicodeDecodeError):
        return f"the data file is not UTF-8 text (byte {exc.start}: {exc.reason})"
    return " ".join(str(exc).split()) or type(exc).__name__


def read_csv(path: Path):
    import pandas as pd

    return pd.read_csv(path, sep=",", low_memory=False)


def write_status(out: Path, status: str, *, error: str | None = None, metrics: dict | None = None,
                 extra: dict | None = None) -> None:
    out.mkdir(parents=True, exist_ok=True)
    body: dict[str, Any] = {"status": status, "error": error, "metrics": metrics, **(extra or {})}
    tmp = out / ".status.json.tmp"
    tmp.write_text(json.dumps(body, indent=2, default=str) + "\n")
    tmp.replace(out / "status.json")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    out = Path(args.out)
    data = Path(args.data)
    run_id = args.run_id or f"local-{uuid.uuid4().hex[:12]}"
    started = time.perf_counter()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        print(f"error: cannot create output directory {out}: {exc.strerror}", file=sys.stderr, flush=True)
        return 1
    write_status(out, "Running", extra={"run_id": run_id})
    from shared.jobs.training.progress import Phase, file_progress

    progress = file_progress(out, budget_s=args.budget_s)

    try:
        say(f"run {run_id}: reading {data}")
        frame = read_csv(data)
        from shared.jobs.training.time_order import period_columns

        periods = period_columns(frame)
        rule = resolve_rows(EvaluationRows(args.evaluation_rows), periods)
        if periods:
            say(f"the file is in time order: {', '.join(periods)} each name one stretch of rows (left out; fixed "
                "time-order configuration instead of the search)")
        everything = frame
        frame, held_out = split_evaluation_rows(data, frame, args.evaluation_percent, rule)
        if held_out is not None:
            say(f"{len(held_out)} rows ({args.evaluation_percent}%, {rule.how}) held out for champion/challenger "
                "evaluation")
        dataset_hash = args.dataset_hash or _file_hash(data)
        excluded = [c.strip() for c in args.exclude_columns.split(",") if c.strip()]
        say(f"{len(frame)} rows x {len(frame.columns)} columns; "
            + ("time-order configuration" if periods else
               f"searching LightGBM with FLAML (3-fold CV) for {args.budget_s:g}s")
            + f" (seed {args.seed}" + (f", excluding {', '.join(excluded)}" if excluded else "") + ")")

        from shared.jobs.training.mlflow_model import save_model
        from shared.jobs.training.tracking import log_to_mlflow
        from shared.jobs.training.train import train

        def fit(rows):
            return train(rows, budget_s=args.budget_s, seed=args.seed, exclude_columns=excluded,
                         max_iter=args.max_iter, period_columns=periods or None, progress=progress)

        result = fit(frame)
        m = result.metrics
        kept = " (the starting configuration)" if m["prior_kept"] else ""
        say(f"best config after {m['search_trials']} trials{kept}: {json.dumps(result.best_config, sort_keys=True)}")
        say(f"{m['evaluation']} ({m['cv_rows']} rows): AUC {m['auc']:.4f}, accuracy {m['accuracy']:.4f}, "
            f"F1 {m['f1']:.4f} at threshold {m['threshold']:.3f}; model: {m['bag_size']} bagged LightGBM fit(s)")
        if held_out is not None and rule is EvaluationRows.NEWEST:
            # Judged on the newest rows it did not see, then refitted on every row: the newest period is the
            # one the next records resemble most, so the deployed model must have learnt it.
            progress.phase(Phase.EVALUATING)
            scored_dir = save_model(result, out / "held-out-fit", dataset_version=args.dataset_version,
                                    dataset_hash=dataset_hash, run_id=run_id)
            evaluation = evaluate_slice(held_out, scored_dir, args, rule)
            shutil.rmtree(out / "held-out-fit", ignore_errors=True)
            with progress.holding(Phase.REFIT):
                result = fit(everything)
            result.metrics["evaluation_slice"] = {**evaluation, "refit_rows": len(everything)}
            say(f"refitted on all {len(everything)} rows")
            frame = everything
        progress.phase(Phase.SAVING)
        model_dir = save_model(result, out, dataset_version=args.dataset_version, dataset_hash=dataset_hash,
                               run_id=run_id)
        say(f"saved MLflow model to {model_dir}")
        from shared.domain.profile import build_profile

        build_profile(frame).save(model_dir / REFERENCE_PROFILE)  # what drift checks compare against
        say(f"saved the reference profile of the {len(frame)} training rows ({REFERENCE_PROFILE})")
        if held_out is not None and rule is EvaluationRows.HASH:
            progress.phase(Phase.EVALUATING)
            result.metrics["evaluation_slice"] = evaluate_slice(held_out, model_dir, args, rule)
            progress.phase(Phase.SAVING)
        if "evaluation_slice" in result.metrics:
            _add_to_metrics_file(out, "evaluation_slice", result.metrics["evaluation_slice"])
        # The folder is final now: its content hash is what the registry records (on_run_completed) and what
        # every local load path checks before it unpickles the model.
        from shared.scoring.model_digest import folder_digest

        result.metrics["model_digest"] = folder_digest(model_dir)
        _add_to_metrics_file(out, "model_digest", result.metrics["model_digest"])
        say(f"model content digest {result.metrics['model_digest']}")
    except _INPUT_ERRORS as exc:
        progress.phase(Phase.FAILED)
        return _fail(out, run_id, _one_line(exc))
    except Exception as exc:  # a bug rather than bad input: keep the traceback in the log
        traceback.print_exc()
        progress.phase(Phase.FAILED)
        return _fail(out, run_id, f"{type(exc).__name__}: {_one_line(exc)}")

    extra: dict[str, Any] = {"run_id": run_id, "model_dir": str(model_dir.resolve()),
                             "dataset_version": args.dataset_version, "dataset_hash": dataset_hash,
                             "primary_metric": args.primary_metric, "trigger_id": args.trigger_id,
                             "reason": args.reason, "drift_report": args.drift_report or None}
    if args.mlflow_uri:
        try:
            mlflow_run = log_to_mlflow(
                result, args.mlflow_uri, args.experiment, run_name=run_id, model_dir=model_dir,
                params={"run_id": run_id, "dataset_version": args.dataset_version, "dataset_hash": dataset_hash,
                        "primary_metric": args.primary_metric, "trigger_id": args.trigger_id,
                        "reason": args.reason, "drift_report": args.drift_report or None})
            extra["mlflow_run_id"] = mlflow_run
            say(f"logged to MLflow experiment '{args.experiment}' (run {mlflow_run})")
        except Exception as exc:  # tracking is a record, not the product: the model stands without it
            extra["mlflow_error"] = f"{type(exc).__name__}: {_one_line(exc)}"
            say(f"warning: MLflow logging failed: {extra['mlflow_error']}")
    progress.phase(Phase.DONE)
    write_status(out, "Completed", metrics=result.metrics, extra=extra)
    say(f"completed in {time.perf_counter() - started:.1f}s")
    return 0


def resolve_rows(rows: EvaluationRows, periods: list[str]) -> EvaluationRows:
    """AUTO: the newest rows when the file is in time order (it has period columns), else by row hash."""
    if rows is EvaluationRows.AUTO:
        return EvaluationRows.NEWEST if periods else EvaluationRows.HASH
    return rows


def split_evaluation_rows(path: Path, frame, percent: int, rule: EvaluationRows = EvaluationRows.HASH):
    """(training rows, held-out rows or None). HASH hashes each row's values as written in the file, so it
    matches the rows whatever dataset version they are in; NEWEST takes the last rows in file order (see
    shared.domain.evaluation_slice)."""
    import pandas as pd

    from shared.domain.evaluation_slice import newest_split, split_frame

    if percent <= 0:
        return frame, None
    if rule is EvaluationRows.NEWEST:
        train_pos, eval_pos = newest_split(len(frame), percent)
    else:
        text = pd.read_csv(path, sep=",", dtype=str, keep_default_na=False)
        train_pos, eval_pos = split_frame(text, percent)
    if len(eval_pos) < 20 or len(train_pos) < 100:
        say(f"warning: too few rows to hold {percent}% out ({len(eval_pos)}); training on all, no evaluation slice")
        return frame, None
    return frame.iloc[train_pos].reset_index(drop=True), frame.iloc[eval_pos].reset_index(drop=True)


def evaluate_slice(held_out, model_dir: Path, args, rule: EvaluationRows = EvaluationRows.HASH) -> dict[str, Any]:
    """The saved new model (challenger) and, when given, the live one (champion) scored on the same held-out
    rows, both loaded the way the scoring endpoint loads them, and the paired difference of their AUCs with its
    bootstrap standard error (`difference`: what the promotion gate reads as noise)."""
    from shared.jobs.training.evaluate import EvaluationError, figures, paired_auc_difference, scored
    from shared.scoring.runtime import ScoringModel

    summary: dict[str, Any] = {"percent": args.evaluation_percent, "rows": len(held_out), "rule": rule.value,
                               "champion": None}
    new = None
    try:
        new = scored(ScoringModel.load(model_dir, version="challenger"), held_out)
        summary["challenger"] = figures(*new)
    except EvaluationError as exc:
        summary["challenger"], summary["challenger_error"] = None, str(exc)
    if args.champion_model:
        try:
            summary["champion"], old = score_champion(held_out, args)
            if new is not None:
                summary["difference"] = paired_auc_difference(new[0], new[1], old[1])
        except Exception as exc:  # noqa: BLE001 - the live model failing to score is a finding, not a crash
            summary["champion_error"] = f"{type(exc).__name__}: {_one_line(exc)}"
    challenger = summary.get("challenger") or {}
    champ = summary.get("champion") or {}
    say(f"held-out rows: new model AUC {challenger.get('auc', float('nan')):.4f}"
        + (f", live v{args.champion_version} AUC {champ['auc']:.4f}" if champ else "")
        + (f", difference {summary['difference']['auc']:+.4f} (SE {summary['difference']['se']})"
           if "difference" in summary else ""))
    return summary


class ChampionMismatch(ValueError):
    """The champion folder's bytes are not the ones registered: not loaded (a pickle is code)."""


def score_champion(held_out, args) -> tuple[dict[str, Any], tuple]:
    """The live model's figures on the held-out rows, with the content hash of the folder that was scored
    (`digest`): the completion handler uses them as "same rows, same champion" only when that hash is the live
    model's registered one. With `--champion-digest`, a folder whose hash differs is refused before loading."""
    from shared.jobs.training.evaluate import figures, scored
    from shared.scoring.model_digest import folder_digest, same_digest
    from shared.scoring.runtime import ScoringModel

    digest = folder_digest(args.champion_model)
    if args.champion_digest and not same_digest(digest, args.champion_digest):
        raise ChampionMismatch(f"the champion folder hashes to {digest}, not to its registered "
                               f"{args.champion_digest}; not loaded")
    champion = ScoringModel.load(args.champion_model, version=str(args.champion_version or "live"))
    predictions = scored(champion, held_out)
    return {**figures(*predictions), "version": args.champion_version or None, "digest": digest}, predictions


def _add_to_metrics_file(out: Path, key: str, value: Any) -> None:
    path = out / "metrics.json"
    summary = json.loads(path.read_text())
    summary[key] = value
    tmp = out / ".metrics.json.tmp"
    tmp.write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    tmp.replace(path)


def _file_hash(path: Path) -> str:
    """Same form as the dataset store's `content_hash` ("sha256:<hex>"), streamed."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return "sha256:" + digest.hexdigest()


def _fail(out: Path, run_id: str, message: str) -> int:
    print(f"error: {message}", file=sys.stderr, flush=True)
    try:
        write_status(out, "Failed", error=message, extra={"run_id": run_id})
    except OSError as exc:
        print(f"error: cannot write {out / 'status.json'}: {exc.strerror}", file=sys.stderr, flush=True)
    return 1


if __name__ == "__main__":
    sys.exit(main())
