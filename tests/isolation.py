"""Settings whose containers and tables belong to one test, so tests share one Azurite without seeing each other."""

from __future__ import annotations

import uuid
from types import SimpleNamespace

from shared.adapters import storage
from shared.adapters.outbox import Outbox
from shared.bootstrap import build_stores
from shared.settings import Settings


def isolated_settings(connection: str, **overrides) -> Settings:
    suffix = uuid.uuid4().hex[:8]
    names = {f"{kind}_table": f"{kind}{suffix}" for kind in ("audit", "runs", "datasets", "models", "webhook",
                                                             "outbox")}
    names.update(datasets_container=f"datasets{suffix}", inference_container=f"inference{suffix}",
                 reports_container=f"reports{suffix}")
    return Settings(storage_connection=connection, **{**names, **overrides})


def outbox_env(connection: str, data: bytes, versions: int) -> SimpleNamespace:
    """One test's stores, outbox and `versions` registered dataset versions of `data` (each a distinct content)."""
    settings = isolated_settings(connection)
    storage.ensure_container(storage.blob_service(settings), settings.datasets_container)
    stores = build_stores(settings)
    registered = [stores.datasets.register(data + b"\n" * i, content_hash=f"h{i}", rows=3000, columns=21,
                                           source_blob=f"incoming/{i}.csv", source_etag=str(i), dialect="comma")
                  for i in range(versions)]
    outbox = Outbox(storage.ensure_table(storage.table_service(settings), settings.outbox_table))
    return SimpleNamespace(stores=stores, outbox=outbox, versions=registered)
