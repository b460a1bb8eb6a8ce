"""A check's result, and what the doctor makes of them all: the exit code, JSON, the table."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any


class Status(StrEnum):
    """A check's outcome; the JSON output shows the value."""

    OK = "ok"
    FAIL = "fail"
    SKIPPED = "skipped"


OK, FAIL, SKIPPED = Status.OK, Status.FAIL, Status.SKIPPED


SYMBOLS = {OK: "✓", FAIL: "✗", SKIPPED: "–"}


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    message: str
    hint: str = ""


def exit_code(checks: list[Check]) -> int:
    if any(c.status == FAIL for c in checks):
        return 1
    return 2 if any(c.status == SKIPPED for c in checks) else 0


def to_json(checks: list[Check]) -> dict[str, Any]:
    return {"ok": all(c.status == OK for c in checks), "checks": [asdict(c) for c in checks]}


def summary(checks: list[Check]) -> str:
    counts = {s: sum(c.status == s for c in checks) for s in (OK, FAIL, SKIPPED)}
    text = f"{counts[OK]} ok, {counts[FAIL]} failed, {counts[SKIPPED]} not checked"
    if counts[FAIL]:
        return text + ": fix the failed checks before deploying"
    if counts[SKIPPED]:
        return text + ": run it again with a login and network to make the rest"
    return text + ": ready to deploy"


def render(checks: list[Check], console=None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    styles = {OK: "green", FAIL: "red", SKIPPED: "yellow"}
    table = Table(title="retrain azure doctor", show_lines=True)
    table.add_column("", no_wrap=True)
    table.add_column("check", no_wrap=True)
    table.add_column("result", overflow="fold")
    table.add_column("to fix", overflow="fold")
    for c in checks:
        style = styles[c.status]
        table.add_row(f"[{style}]{SYMBOLS[c.status]}[/]", f"[{style}]{c.name}[/]", c.message, c.hint)
    console.print(table)
    console.print(summary(checks), highlight=False)
