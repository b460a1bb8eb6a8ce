"""Keys of the embedded stack, created on first start and kept in `.local/secrets.json` (mode 0600).

They play the part of Azure's secrets: the pipeline's bearer token (Azure AD in Azure), the scoring
endpoint's key and its admin key, the webhook's HMAC secret (a Key Vault reference in Azure) and the storage
emulator's account key (Azurite runs with this generated key instead of its published development key, so
another process on the machine cannot read or rewrite the stack's tables and blobs). They are handed to child
processes as app settings and never printed (except by `retrain keys`, on request).
"""

from __future__ import annotations

import base64
import json
import secrets
from pathlib import Path

from shared.private_files import FILE_MODE, private_dir, write_private_text
from shared.settings import AZURITE_ACCOUNT, azurite_connection_string

STORAGE_KEY = "storage_account_key"
NAMES = ("pipeline_token", "scoring_key", "scoring_admin_key", "webhook_secret", STORAGE_KEY)


def new_storage_key() -> str:
    """An account key shaped like Azure's: base64 of 64 random bytes."""
    return base64.b64encode(secrets.token_bytes(64)).decode("ascii")


def _new(name: str) -> str:
    return new_storage_key() if name == STORAGE_KEY else secrets.token_urlsafe(32)


def load_or_create(local_dir: Path) -> dict[str, str]:
    """The stack's secrets; missing ones (a first start, or a file from an older version) are created."""
    path = local_dir / "secrets.json"
    private_dir(local_dir)  # 0700, also when an older version made it 0755
    values: dict[str, str] = {}
    if path.exists():
        if path.stat().st_mode & 0o777 != FILE_MODE:
            path.chmod(FILE_MODE)
        values = json.loads(path.read_text())
    if all(values.get(n) for n in NAMES):
        return values
    for name in NAMES:
        if not values.get(name):
            values[name] = _new(name)
    write_private_text(path, json.dumps(values, indent=2))
    return values


def read(local_dir: Path) -> dict[str, str]:
    """The secrets as they are, without creating any (a second process must not invent keys the running stack
    does not have); {} when there is no file yet."""
    path = local_dir / "secrets.json"
    if not path.exists():
        return {}
    values = json.loads(path.read_text())
    return values if isinstance(values, dict) else {}


def storage_connection_string(storage_key: str, *, blob: int, queue: int, table: int) -> str:
    """The stack's Azurite connection string (account `devstoreaccount1`, the generated key)."""
    return azurite_connection_string(AZURITE_ACCOUNT, storage_key, blob=blob, queue=queue, table=table)
