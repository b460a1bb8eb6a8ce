"""`retrain drift` and `retrain validate`: offline checks of a data file, by the rules the service applies."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from tools.cli.command import CommandError, Exit, add_command


def _column_thresholds(items: list[str] | None) -> dict[str, float]:
    """`--column-threshold NAME=VALUE`, repeated."""
    from shared.domain.profile import ProfileError

    thresholds = {}
    for item in items or []:
        name, sep, value = item.partition("=")
        if not sep:
            raise ProfileError(f"--column-threshold wants NAME=VALUE, got {item!r}")
        try:
            thresholds[name.strip()] = float(value)
        except ValueError:
            raise ProfileError(f"--column-threshold {item!r}: {value!r} is not a number") from None
    return thresholds


def _reference_profile(args: argparse.Namespace):
    """The model's reference_profile.json (`--model`), or the reference CSV profiled on the fly."""
    from shared.domain.profile import Profile, ProfileError, build_profile, read_frame

    if not args.model:
        return build_profile(read_frame(args.reference))
    model = Path(args.model)
    candidates = [model / "reference_profile.json", model / "model" / "reference_profile.json"]
    found = next((p for p in candidates if p.is_file()), None)
    if found is None:
        raise ProfileError(f"{model} has no reference_profile.json (looked in {model} and {model / 'model'})")
    return Profile.load(found)


def _print_drift(result, report: str | None) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"drift: reference {result.rows['reference']:,} rows, current {result.rows['current']:,} rows")
    for column in ("column", "metric", "score", "threshold", "PSI", "drifted"):
        table.add_column(column)
    entries = list(result.columns.items()) + ([("y (label)", result.target)] if result.target else [])
    for name, e in entries:
        table.add_row(name, e["metric"], "-" if e["score"] is None else f"{e['score']:.4f}", f"{e['threshold']:g}",
                      "-" if e["psi"] is None else f"{e['psi']:.4f}", "DRIFTED" if e["drifted"] else "no")
    console = Console(width=max(100, Console().width))
    if result.columns:
        console.print(table)
    label = "NOT ENOUGH DATA" if result.not_enough_data else "DRIFTED" if result.drifted else "NO DRIFT"
    console.print(f"{label}: {result.verdict}", markup=False)
    if report:
        console.print(f"report: {report}", markup=False)


def cmd_drift(args: argparse.Namespace) -> int:
    """Compare a current CSV with a reference (CSV, or the model's reference_profile.json)."""
    from shared.domain.drift import compare_profiles
    from shared.domain.drift_report import render_html
    from shared.domain.profile import ProfileError, build_profile, read_frame

    try:
        thresholds = _column_thresholds(args.column_threshold)
        critical = [c.strip() for c in (args.critical or "").split(",") if c.strip()]
        reference = _reference_profile(args)
        current = build_profile(read_frame(args.current), reference=reference)
        result = compare_profiles(reference, current, threshold=args.threshold, share=args.share,
                                  min_rows=args.min_rows, thresholds=thresholds, critical=critical)
        if args.report:
            Path(args.report).write_text(render_html(result, reference, current), encoding="utf-8")
    except (ProfileError, OSError) as exc:
        raise CommandError(str(exc), Exit.USAGE) from None
    if args.json:
        print(json.dumps(result.to_dict()))
    else:
        _print_drift(result, args.report)
    return Exit.OK


def cmd_validate(args: argparse.Namespace) -> int:
    from shared.domain.validation import validate_file
    from tools.cli.context import settings

    path = Path(args.file)
    if not path.is_file():
        raise CommandError(f"{path} is not a file", Exit.USAGE)
    limits = settings() if args.min_rows is None or args.max_bytes is None else None  # the service's limits
    min_rows = args.min_rows if args.min_rows is not None else limits.min_rows
    max_bytes = args.max_bytes if args.max_bytes is not None else limits.max_upload_bytes
    try:
        result = validate_file(path, min_rows=min_rows, max_bytes=max_bytes)
    except OSError as exc:
        raise CommandError(f"cannot read {path}: {exc.strerror or exc}", Exit.USAGE) from None
    if args.json:
        print(json.dumps({**result.to_dict(), "file": str(path)}))
    else:
        shape = ", ".join(part for part in (
            f"{result.size:,} bytes", f"dialect {result.dialect.name}" if result.dialect else "",
            f"{result.data_rows:,} rows" if result.data_rows is not None else "",
            f"{result.data_columns} columns" if result.data_columns is not None else "") if part)
        print(f"{'ACCEPTED' if result.ok else 'REJECTED'} {path} ({shape})")
        for error in result.errors:
            print(f"  error: {error}")
        for warning in result.warnings:
            print(f"  warning: {warning}")
    return Exit.OK if result.ok else Exit.FAILED


def add_parsers(sub: argparse._SubParsersAction) -> None:
    drift = add_command(sub, "drift", cmd_drift,
                        help="compare a CSV with a reference (CSV or the model's reference profile): per-column "
                             "scores, verdict, optional HTML report")
    drift_ref = drift.add_mutually_exclusive_group(required=True)
    drift_ref.add_argument("--reference", help="reference CSV (profiled on the fly)")
    drift_ref.add_argument("--model", help="MLflow model directory holding reference_profile.json")
    drift.add_argument("--current", required=True, help="current CSV")
    drift.add_argument("--json", action="store_true", help="print one JSON object")
    drift.add_argument("--report", help="write a self-contained HTML report here")
    drift.add_argument("--threshold", type=float, default=0.1, help="per-column threshold (default 0.1)")
    drift.add_argument("--column-threshold", action="append", metavar="NAME=VALUE",
                       help="threshold for one column (repeatable; `y` for the label)")
    drift.add_argument("--critical", default="", help="comma-separated columns any of which drifting is drift")
    drift.add_argument("--share", type=float, default=0.5, help="share of drifted columns that is drift (0.5)")
    drift.add_argument("--min-rows", type=int, default=100, help="fewer rows on either side: no verdict (100)")

    validate = add_command(sub, "validate", cmd_validate,
                           help="check a file offline exactly as an upload is checked: verdict, dialect, rows, "
                                "reason (exit 0 accepted, 1 rejected, 2 usage)")
    validate.add_argument("file")
    validate.add_argument("--json", action="store_true",
                          help='print {"accepted", "dialect", "rows", "columns", "reason", "errors", "warnings", '
                               '"file"}')
    validate.add_argument("--min-rows", type=int, help="fewest data rows (default: MIN_ROWS or 500)")
    validate.add_argument("--max-bytes", type=int,
                          help="largest file, and largest unpacked gzip (default: MAX_UPLOAD_BYTES or 209715200)")
