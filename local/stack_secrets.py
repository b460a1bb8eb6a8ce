"""Keys of the embedded stack, created on first start and kept in `.local/secrets.json` (mode 0600).

They play the part of Azure's secrets: the pipeline's bearer token (Azure AD in Azure), the scoring
endpoint's key and its admin key, and the webhook's HMAC secret (a Key Vault reference in Azure). They are
handed to child processes as app settings and never printed.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

NAMES = ("pipeline_token", "scoring_key", "scoring_admin_key", "webhook_secret")


def load_or_create(local_dir: Path) -> dict[str, str]:
    path = local_dir / "secrets.json"
    values: dict[str, str] = {}
    if path.exists():
        values = json.loads(path.read_text())
    if all(values.get(n) for n in NAMES):
        return values
    for name in NAMES:
        values.setdefault(name, secrets.token_urlsafe(32))
    local_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(values, fh, indent=2)
    return values
