"""The local stack as the API tests need it: timers that never fire on their own, a tiny training budget, the
app's services built (the first API call creates the containers the dataset store writes to), and the stores."""

from __future__ import annotations

import requests

from local.stack import Stack, start_on_free_ports
from shared.bootstrap import build_stores
from shared.settings import Settings


def start_api_stack(local_dir, *, budget_s: int = 3, **settings: str) -> Stack:
    s = start_on_free_ports(local_dir, training_budget_s=budget_s, blob_poll_s=0.5, drift_schedule="0 0 0 1 1 *",
                            reconcile_schedule="0 0 0 1 1 *", extra_settings=settings)
    config = s.config
    try:
        key = s.host_keys.function_keys["default"]
        assert requests.get(config.host_url + "/api/runs", headers={"x-functions-key": key},
                            timeout=30).status_code == 200
        stores = build_stores(Settings(storage_connection=config.connection_string))
    except BaseException:
        s.stop()
        raise
    s.audit, s.runs, s.datasets = stores.audit, stores.runs, stores.datasets
    return s
