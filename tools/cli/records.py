"""`retrain status`, `history` and `rejections`: what the running stack recorded, as tables or JSON lines."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime

from shared.domain.outcomes import Outcome
from shared.domain.records import AuditRecord
from tools.cli.command import Exit, add_command

COMPLETION_FUNCTIONS = ("run_completed", "reconcile_timer", "promote", "rollback")
# events that changed nothing (audited, but not completions): duplicates, non-events, and events not believed
NOT_COMPLETIONS = (Outcome.IGNORED, Outcome.DUPLICATE, Outcome.FOREIGN_TOPIC, Outcome.REJECTED_EVENT,
                   Outcome.UNCONFIRMED)


def when(ts: float | None) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S") if ts else "-"


def _timings(record: AuditRecord) -> str:
    s, parts = record.stages, []
    start = s.get("uploaded") or record.started_at
    if "accepted" in s:
        parts.append(f"post {s['accepted'] - start:.2f}s")
    if "serving" in s:
        parts.append(f"serve {s['serving'] - record.started_at:.1f}s")
        if record.data.get("upload_to_serving_s") is not None:
            parts.append(f"upload→serving {record.data['upload_to_serving_s']:.1f}s")
    if record.finished_at:
        parts.append(f"took {record.finished_at - record.started_at:.2f}s")
    return ", ".join(parts)


def _figure(side: dict | None, key: str = "auc") -> str:
    value = (side or {}).get(key)
    return f"{value:.4f}" if isinstance(value, int | float) else "-"


def history_rows(records: list[AuditRecord]) -> list[dict]:
    """Completion outcomes (event, reconcile, promote, rollback) with both models' figures and the reason."""
    rows = []
    for r in records:
        if r.function not in COMPLETION_FUNCTIONS or r.outcome in NOT_COMPLETIONS \
                or (r.function == "reconcile_timer" and not r.run_id):
            continue
        decision = r.data.get("decision") or {}
        rows.append({"id": r.id, "at": r.started_at, "function": r.function, "trigger": r.trigger,
                     "run_id": r.run_id, "dataset_version": r.dataset_version, "model_version": r.model_version,
                     "outcome": r.outcome, "reason": r.detail, "challenger": decision.get("challenger"),
                     "champion": decision.get("champion"), "deployment": r.data.get("deployment"),
                     "replaced": r.data.get("replaced"), "stages": r.stages,
                     "seconds": round(r.finished_at - r.started_at, 3) if r.finished_at else None})
    return rows


def _print_json_lines(items: list[dict]) -> int:
    for item in items:
        print(json.dumps(item, default=str))
    return Exit.OK


def _print_table(title: str, columns: tuple[str, ...], rows: list[tuple[str, ...]]) -> int:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, show_lines=False)
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*row)
    Console(width=max(160, Console().width)).print(table)
    return Exit.OK


def cmd_status(args: argparse.Namespace) -> int:
    from tools.cli.context import open_stores

    records = open_stores().audit.list(limit=args.limit)
    if args.json:
        return _print_json_lines([record.to_dict() for record in records])
    return _print_table(
        f"audit trail ({len(records)} most recent)",
        ("when (UTC)", "trigger", "dataset", "pipeline run", "outcome", "model", "timings", "detail"),
        [(when(r.started_at), f"{r.trigger}:{r.function}", f"v{r.dataset_version}" if r.dataset_version else "-",
          r.run_id or "-", r.outcome, f"v{r.model_version}" if r.model_version else "-", _timings(r), r.detail)
         for r in records])


def cmd_history(args: argparse.Namespace) -> int:
    from tools.cli.context import open_stores

    rows: list[dict] = []
    for record in open_stores().audit.newest(page=min(max(args.limit * 4, 50), 1000)):  # newest first, by page
        rows[:0] = history_rows([record])
        if len(rows) >= args.limit:
            break
    if args.json:
        return _print_json_lines(rows)
    return _print_table(
        f"deploy history ({len(rows)} most recent)",
        ("when (UTC)", "by", "run", "model", "outcome", "new AUC", "live AUC", "slot", "reason"),
        [(when(row["at"]), row["function"], row["run_id"] or "-",
          f"v{row['model_version']}" if row["model_version"] else "-", row["outcome"], _figure(row["challenger"]),
          _figure(row["champion"]), str((row["deployment"] or {}).get("slot") or "-"), row["reason"])
         for row in rows])


def cmd_rejections(args: argparse.Namespace) -> int:
    """The per-caller, per-minute counts of requests refused before they authenticated (unsigned, badly signed,
    replayed, too large...), newest first: what a flood looks like, without one audit row per request."""
    from tools.cli.context import open_stores

    rows = open_stores().rejections.list(limit=args.limit)
    if args.json:
        return _print_json_lines([{"caller": row.caller, "minute": row.minute, "count": row.count,
                                   "first_at": row.first_at, "last_at": row.last_at, "reasons": list(row.reasons)}
                                  for row in rows])
    if not rows:
        print("no refused unauthenticated requests recorded")
    for row in rows:
        last = row.reasons[-1] if row.reasons else {}
        print(f"{when(row.minute)}  {row.caller:<39} {row.count:>6} refused  last: {last.get('status', '-')} "
              f"{last.get('route', '')} {str(last.get('reason', ''))[:100]}")
    return Exit.OK


def add_parsers(sub: argparse._SubParsersAction) -> None:
    status = add_command(sub, "status", cmd_status, help="the audit history: one line per trigger")
    status.add_argument("--limit", type=int, default=50)
    status.add_argument("--json", action="store_true", help="one JSON object per line")

    history = add_command(sub, "history", cmd_history,
                          help="what each completed run led to: deployed, kept champion, rolled back, promoted by "
                               "hand; both models' figures and the reason")
    history.add_argument("--limit", type=int, default=50)
    history.add_argument("--json", action="store_true", help="one JSON object per line")

    rejections = add_command(sub, "rejections", cmd_rejections,
                             help="refused unauthenticated requests per caller and minute (the aggregate that "
                                  "replaces one audit row each)")
    rejections.add_argument("--limit", type=int, default=20, help="how many caller-minutes, newest first (20)")
    rejections.add_argument("--json", action="store_true", help="one JSON object per line")
