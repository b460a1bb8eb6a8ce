"""`retrain train` and `retrain evaluate`: the pipeline's training step and a saved model's figures, by hand."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from tools.cli.command import CommandError, Exit, add_command

# shared.domain.evaluation_slice.EvaluationRows, spelt out: importing it would load pandas for every command
EVALUATION_ROWS = ("auto", "hash", "newest")


def cmd_train(args: argparse.Namespace) -> int:
    from shared.jobs.training import job

    argv = ["--data", args.data, "--out", args.out, "--budget-s", str(args.budget_s), "--seed", str(args.seed)]
    if args.exclude_columns:
        argv += ["--exclude-columns", args.exclude_columns]
    argv += ["--evaluation-rows", args.evaluation_rows]
    return job.main(argv)


def model_folder(path: Path) -> Path:
    """The MLflow model folder: `path` itself, or the `model/` folder inside what `retrain train --out` wrote."""
    if not (path / "MLmodel").is_file() and (path / "model" / "MLmodel").is_file():
        return path / "model"
    return path


def cmd_evaluate(args: argparse.Namespace) -> int:
    from shared.jobs.training.evaluate import EvaluationError, evaluate

    path = Path(args.data)
    if not path.is_file():
        raise CommandError(f"{path} is not a file", Exit.USAGE)
    try:
        figures = evaluate(model_folder(Path(args.model)), path.read_bytes())
    except EvaluationError as exc:
        raise CommandError(str(exc), Exit.USAGE) from None
    if args.json:
        print(json.dumps(figures))
    else:
        print("  ".join(f"{k}={v}" for k, v in figures.items()))
    return Exit.OK


def add_parsers(sub: argparse._SubParsersAction) -> None:
    train = add_command(sub, "train", cmd_train, help="train a model from a CSV (the pipeline's training step)")
    train.add_argument("--data", required=True)
    train.add_argument("--out", required=True)
    train.add_argument("--budget-s", type=int, default=60)
    train.add_argument("--seed", type=int, default=42)
    train.add_argument("--exclude-columns", default="")
    train.add_argument("--evaluation-rows", choices=EVALUATION_ROWS, default="auto",
                       help="held-out rows: by row hash, the newest in file order (then refitted on all rows), or "
                            "auto: newest when the file is in time order (docs/training.md#time-order)")

    evaluate = add_command(sub, "evaluate", cmd_evaluate,
                           help="score a labelled CSV with a saved model: rows, AUC, accuracy, F1")
    evaluate.add_argument("--model", required=True,
                          help="the MLflow model directory, or the folder `retrain train --out` wrote")
    evaluate.add_argument("--data", required=True)
    evaluate.add_argument("--json", action="store_true", help="print one JSON object")
