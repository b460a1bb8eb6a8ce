"""Read side of the API: a run we submitted, with what happened to it."""

from __future__ import annotations

from dataclasses import asdict


def get_run(run_id: str, *, runs) -> tuple[int, dict]:
    run = runs.get(run_id)
    if run is None:
        return 404, {"type": "about:blank", "title": "Not Found", "status": 404,
                     "detail": f"no run {run_id!r} was submitted by this service"}
    return 200, asdict(run)


def list_runs(*, runs, limit: int = 50, status: str | None = None) -> tuple[int, dict]:
    items = runs.list()
    if status:
        items = [r for r in items if r.status.lower() == status.lower()]
    return 200, {"runs": [asdict(r) for r in items[-limit:][::-1]]}
