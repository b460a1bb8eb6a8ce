"""Settings whose containers and tables belong to one test, so tests share one Azurite without seeing each other."""

from __future__ import annotations

import uuid

from shared.settings import Settings


def isolated_settings(connection: str, **overrides) -> Settings:
    suffix = uuid.uuid4().hex[:8]
    names = {f"{kind}_table": f"{kind}{suffix}" for kind in ("audit", "runs", "datasets", "models", "webhook",
                                                             "outbox")}
    names.update(datasets_container=f"datasets{suffix}", inference_container=f"inference{suffix}",
                 reports_container=f"reports{suffix}")
    return Settings(storage_connection=connection, **{**names, **overrides})
