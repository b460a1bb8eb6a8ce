"""The dashboard's server time with a long history: 1,000 audit records, 100 runs, 40 model versions, 200 drift
checks, through the real local stack (Azurite + our Functions host on loopback).

    .venv/bin/python bench/dashboard.py [--records 1000] [--requests 40] [--target-ms 300]

Seeds the stack's own stores with records shaped as the services write them (uploads, completions with their
champion/challenger decision, drift checks with per-column scores and a stored report), then times, per request,
GET /api/dashboard (the page) and GET /api/dashboard/data (the snapshot the page polls) from the client side: the
host's full path (key check, worker dispatch, table reads, JSON). Also times shared.services.dashboard.snapshot
in-process against the same Azurite, to show where the time goes. Prints p50/p95/max and ends with one JSON line;
exits 1 when the data route's p95 is over --target-ms. The machine's other load counts: run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from local.stack import start_on_free_ports  # noqa: E402
from shared.adapters import storage  # noqa: E402
from shared.adapters.outbox import Outbox  # noqa: E402
from shared.adapters.reports import ContainerReports  # noqa: E402
from shared.bootstrap import build_stores, report_writer  # noqa: E402
from shared.domain import schema  # noqa: E402
from shared.domain.outcomes import Outcome, RunStatus  # noqa: E402
from shared.domain.records import AuditRecord, RunRecord  # noqa: E402
from shared.services.dashboard import DashboardSources, snapshot  # noqa: E402
from shared.settings import Settings  # noqa: E402


def seed(settings: Settings, records: int) -> dict:
    """`records` audit records (every 5th a drift check, every 10th a completion), a run per 10 records, a model
    per 25 records."""
    stores = build_stores(settings)
    blobs = storage.blob_service(settings)
    storage.ensure_container(blobs, settings.reports_container)
    write = report_writer(blobs.get_container_client(settings.reports_container))
    t0 = time.time() - records * 60
    versions = 0
    for i in range(records):
        at = t0 + i * 60
        if i % 5 == 0:
            scores = {c: round(0.01 + (i % 37) / 400 + k / 1000, 4) for k, c in enumerate(schema.FEATURES)}
            rid = f"timer-bench-{i:05d}"
            report = write(f"bench/{rid}.html", "<html><body>report</body></html>") if i % 50 == 0 else None
            record = AuditRecord(id=rid, trigger="timer", function="drift_timer", started_at=at,
                                 outcome=Outcome.NO_DRIFT, detail="no drift: 1/20 columns drifted",
                                 model_version=max(versions, 1),
                                 data={"drift": {"drifted": False, "drift_share": 0.05, "drifted_columns": ["age"],
                                                 "scores": scores}, **({"report": report} if report else {})})
        elif i % 10 == 1:
            run_id = f"retrain-bench-{i:05d}"
            stores.runs.create(RunRecord(run_id=run_id, trigger_id=f"blob-bench-{i:05d}", trigger="blob",
                                         reason="upload", dataset_version=i, experiment="bench", submitted_at=at,
                                         status=RunStatus.DEPLOYED, finished_at=at + 30))
            record = AuditRecord(id=f"evt-bench-{i:05d}", trigger="eventgrid", function="run_completed",
                                 started_at=at, outcome=Outcome.KEPT_CHAMPION, run_id=run_id, dataset_version=i,
                                 detail="kept v1 live",
                                 data={"decision": {"outcome": "kept_champion", "reason": "worse by 0.01",
                                                    "challenger": {"auc": 0.93, "rows": 3000},
                                                    "champion": {"auc": 0.94, "rows": 3000}}})
            if i % 25 == 1 or versions == 0:
                model = stores.models.register(run_id=run_id, dataset_version=i, model_dir=f"/bench/{i}",
                                               metrics={"auc": 0.93 + (i % 7) / 1000, "accuracy": 0.91})
                record.model_version, versions = model.version, model.version
        else:
            record = AuditRecord(id=f"blob-bench-{i:05d}", trigger="blob", function="blob_upload", started_at=at,
                                 outcome=Outcome.SUBMITTED, source=f"incoming/bench-{i}.csv", dataset_version=i,
                                 detail=f"dataset v{i} (3000 rows, comma) submitted (upload)")
        record.finished_at = at + 1
        stores.audit.save(record)
    if versions:
        stores.models.set_live(1)
    return {"stores": stores, "reports": ContainerReports(blobs.get_container_client(settings.reports_container)),
            "models": versions}


def percentiles(ms: list[float]) -> dict:
    ordered = sorted(ms)
    return {"p50_ms": round(statistics.median(ordered), 1),
            "p95_ms": round(ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))], 1),
            "max_ms": round(ordered[-1], 1)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--records", type=int, default=1000)
    p.add_argument("--requests", type=int, default=40)
    p.add_argument("--target-ms", type=float, default=300.0)
    args = p.parse_args()

    started = time.perf_counter()
    local_dir = Path(tempfile.mkdtemp(prefix="dashboard-bench-"))
    stack = start_on_free_ports(local_dir, training_budget_s=3, drift_schedule="0 0 0 1 1 *",
                                reconcile_schedule="0 0 0 1 1 *")
    try:
        settings = Settings(storage_connection=stack.config.connection_string)
        t = time.perf_counter()
        seeded = seed(settings, args.records)
        print(f"seeded {args.records} audit records, {seeded['models']} model versions in "
              f"{time.perf_counter() - t:.1f}s", flush=True)
        key = {"x-functions-key": stack.host_keys.function_keys["default"]}
        session = requests.Session()
        figures = {}
        for name, path in (("data", "/api/dashboard/data"), ("page", "/api/dashboard")):
            url = stack.config.host_url + path
            for _ in range(3):  # warm-up: the worker builds its services on first use
                session.get(url, headers=key, timeout=60).raise_for_status()
            ms = []
            for _ in range(args.requests):
                t = time.perf_counter()
                answer = session.get(url, headers=key, timeout=60)
                ms.append((time.perf_counter() - t) * 1000)
                answer.raise_for_status()
            figures[name] = {**percentiles(ms), "bytes": len(answer.content)}
            print(f"GET {path}: p50 {figures[name]['p50_ms']} ms, p95 {figures[name]['p95_ms']} ms, max "
                  f"{figures[name]['max_ms']} ms, {figures[name]['bytes']:,} bytes", flush=True)
        doc = session.get(stack.config.host_url + "/api/dashboard/data", headers=key, timeout=60).json()
        s = seeded["stores"]
        outbox = Outbox(storage.ensure_table(storage.table_service(settings), settings.outbox_table))
        sources = DashboardSources(audit=s.audit, runs=s.runs, models=s.models, outbox=outbox,
                                   reports=seeded["reports"])
        ms = []
        for _ in range(args.requests):
            t = time.perf_counter()
            snapshot(sources)
            ms.append((time.perf_counter() - t) * 1000)
        figures["snapshot_in_process"] = percentiles(ms)
        print(f"snapshot() in process: p50 {figures['snapshot_in_process']['p50_ms']} ms, p95 "
              f"{figures['snapshot_in_process']['p95_ms']} ms", flush=True)
    finally:
        stack.stop()
    summary = {"records": args.records, "requests": args.requests, "models": len(doc["models"]),
               "drift_checks": len(doc["drift"]["checks"]), "timeline_rows": len(doc["timeline"]),
               "audit_read": doc["audit_window"]["read"],
               "data_p50_ms": figures["data"]["p50_ms"], "data_p95_ms": figures["data"]["p95_ms"],
               "data_max_ms": figures["data"]["max_ms"], "data_bytes": figures["data"]["bytes"],
               "page_p95_ms": figures["page"]["p95_ms"],
               "snapshot_p50_ms": figures["snapshot_in_process"]["p50_ms"],
               "target_ms": args.target_ms, "met": figures["data"]["p95_ms"] <= args.target_ms,
               "seconds": round(time.perf_counter() - started, 1)}
    print(json.dumps(summary), flush=True)
    return 0 if summary["met"] else 1


if __name__ == "__main__":
    sys.exit(main())
