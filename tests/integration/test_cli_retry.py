"""`retrain retry RUN` against Azurite: a failed request goes back to the outbox with a new deadline."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

from local.processes import PROJECT_ROOT
from shared.adapters import storage
from shared.adapters.outbox import Outbox, RetrainRequest
from shared.bootstrap import build_stores
from shared.domain.records import AuditRecord
from shared.settings import Settings


def run_cli(azurite, *args):
    env = {**os.environ, "AzureWebJobsStorage": azurite}
    return subprocess.run([sys.executable, "-m", "tools.cli", *args], cwd=PROJECT_ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


def test_retry_puts_a_failed_request_back_and_refuses_anything_else(azurite):
    settings = Settings(storage_connection=azurite)
    stores = build_stores(settings)
    outbox = Outbox(storage.ensure_table(storage.table_service(settings), settings.outbox_table))
    rid = f"blob-{uuid.uuid4().hex[:8]}"
    stores.audit.save(AuditRecord(id=rid, trigger="blob", function="blob_upload", started_at=1.0, outcome="failed",
                                  detail="pipeline submit failed"))
    outbox.enqueue(RetrainRequest(id=rid, trigger="blob", reason="upload", dataset_version=4, requested_at=1.0,
                                  not_before=1.0, deadline=2.0))
    claimed = outbox.claim(now=3.0)
    assert claimed.id == rid
    outbox.finish(rid, "failed", error="cannot connect")

    done = run_cli(azurite, "retry", rid)
    assert done.returncode == 0, done.stderr
    assert f"queued again: request {rid} (dataset v4, upload)" in done.stdout
    again = outbox.get(rid)
    assert again.status == "pending" and again.deadline > 1_000_000_000 and "retried by hand" in again.last_error
    assert stores.audit.get(rid).outcome == "queued"

    busy = run_cli(azurite, "retry", rid)
    assert busy.returncode == 1 and "is pending, not failed" in busy.stderr
    missing = run_cli(azurite, "retry", "nope")
    assert missing.returncode == 1 and "no retrain request 'nope'" in missing.stderr
