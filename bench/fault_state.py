"""Print the durable records a kept fault campaign left behind (bench/faults.py --keep prints the folder).

    .venv/bin/python bench/fault_state.py /tmp/retrain-faults-1-XXXX [--all-events]

Starts Azurite on that folder's data (free loopback ports), prints the audit trail (times relative to the first
record), the outbox, the runs and the dataset versions, and stops Azurite again.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from azure.data.tables import TableServiceClient  # noqa: E402

from local import stack_secrets  # noqa: E402
from local.processes import azurite_argv, azurite_env, start_on_free_ports  # noqa: E402
from shared.adapters.outbox import Outbox  # noqa: E402
from shared.bootstrap import build_stores  # noqa: E402
from shared.settings import AZURITE_ACCOUNT, Settings, azurite_connection_string  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--all-events", action="store_true", help="also the ignored / duplicate event records")
    args = parser.parse_args()
    # the campaign's stack kept its generated key with its secrets; Azurite keeps data per account name, so any
    # key of ours opens the folder's data (a fresh one when the folder has no secrets file)
    key = stack_secrets.read(args.folder).get(stack_secrets.STORAGE_KEY) or stack_secrets.new_storage_key()
    child, (blob, queue, table) = start_on_free_ports(
        "fault-state-azurite", 3, lambda ports: azurite_argv(args.folder / "azurite", *ports),
        log_dir=args.folder / "logs", env=azurite_env(AZURITE_ACCOUNT, key), timeout=30)
    try:
        conn = azurite_connection_string(AZURITE_ACCOUNT, key, blob=blob, queue=queue, table=table)
        stores = build_stores(Settings(storage_connection=conn))
        outbox = Outbox(TableServiceClient.from_connection_string(conn).get_table_client("outbox"))
        audit = stores.audit.list()
        t0 = min((r.started_at for r in audit), default=0.0)
        print("--- audit")
        for r in audit:
            if r.trigger == "timer" and "nothing" in r.detail:
                continue
            if r.trigger == "eventgrid" and r.outcome in ("ignored", "duplicate") and not args.all_events:
                continue
            print(f"{r.started_at - t0:7.2f} {r.id:28} {r.trigger:9} {r.outcome:13} v{r.dataset_version} "
                  f"run={str(r.run_id)[:8]} {r.source[-32:]:32} | {r.detail[:160]}")
        print("--- outbox")
        for q in outbox.list():
            print(f"{q.requested_at - t0:7.2f} {q.id:28} v{q.dataset_version} {q.status:11} attempts={q.attempts} "
                  f"run={str(q.run_id)[:8]} superseded_by={q.superseded_by} error={q.last_error[:120]}")
        print("--- runs")
        for r in stores.runs.list():
            print(f"{r.submitted_at - t0:7.2f} {r.run_id} trigger={r.trigger_id} v{r.dataset_version} {r.status} "
                  f"{r.detail[:100]}")
        print("--- datasets")
        for d in stores.datasets.list():
            print(f"{d.registered_at - t0:7.2f} v{d.version} {d.source_blob} {d.dialect} {d.content_hash[:23]}")
    finally:
        child.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
