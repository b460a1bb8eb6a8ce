"""Host keys: master, function and system keys in `{local_dir}/secrets/host.json` (mode 0600), created once.

The same three kinds the real host keeps: the master key opens everything, function keys open FUNCTION-level
HTTP functions, system keys (`eventgrid_extension`, `blobs_extension`) open extension webhooks. Values never go to logs.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

SYSTEM_KEY_EVENTGRID = "eventgrid_extension"
SYSTEM_KEY_BLOBS = "blobs_extension"  # the blob trigger's Event Grid webhook (/runtime/webhooks/blobs)
SYSTEM_KEYS = (SYSTEM_KEY_EVENTGRID, SYSTEM_KEY_BLOBS)


def local_dir_for(script_root: Path) -> Path:
    """`RETRAIN_LOCAL_DIR`, else `{script_root}/.local`."""
    return Path(os.environ.get("RETRAIN_LOCAL_DIR") or Path(script_root) / ".local")


def keys_path(local_dir: Path) -> Path:
    return Path(local_dir) / "secrets" / "host.json"


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


@dataclass(frozen=True)
class HostKeys:
    master_key: str
    function_keys: dict[str, str] = field(default_factory=dict)
    system_keys: dict[str, str] = field(default_factory=dict)

    def __repr__(self) -> str:  # never show values
        return (f"HostKeys(master_key=***, function_keys={sorted(self.function_keys)}, "
                f"system_keys={sorted(self.system_keys)})")

    def is_master(self, key: str | None) -> bool:
        return bool(key) and _same(key, self.master_key)

    def is_function_key(self, key: str | None) -> bool:
        """A function key or the master key (what FUNCTION-level functions accept)."""
        if not key:
            return False
        results = [_same(key, value) for value in self.function_keys.values()]
        return any(results) or self.is_master(key)

    def is_system_key(self, name: str, key: str | None) -> bool:
        """The named system key or the master key."""
        if not key:
            return False
        expected = self.system_keys.get(name)
        return (expected is not None and _same(key, expected)) | self.is_master(key)

    def all_values(self) -> list[str]:
        return [self.master_key, *self.function_keys.values(), *self.system_keys.values()]


def _new_key() -> str:
    return secrets.token_urlsafe(32)


def _parse(doc: object) -> HostKeys | None:
    if not isinstance(doc, dict) or not isinstance(doc.get("masterKey"), str) or not doc["masterKey"]:
        return None
    functions = doc.get("functionKeys") if isinstance(doc.get("functionKeys"), dict) else {}
    system = doc.get("systemKeys") if isinstance(doc.get("systemKeys"), dict) else {}
    return HostKeys(doc["masterKey"], {str(k): str(v) for k, v in functions.items() if v},
                    {str(k): str(v) for k, v in system.items() if v})


def _write_private(path: Path, keys: HostKeys, *, replace: bool) -> bool:
    """Write atomically with mode 0600. With replace=False, lose (return False) if another process won the race."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(OSError):
        os.chmod(path.parent, 0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    body = json.dumps({"masterKey": keys.master_key, "functionKeys": keys.function_keys,
                       "systemKeys": keys.system_keys}, indent=2)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(body)
        if replace:
            os.replace(tmp, path)
            return True
        try:
            os.link(tmp, path)  # atomic create-if-absent
            return True
        except FileExistsError:
            return False
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def load_or_create_keys(local_dir: Path) -> HostKeys:
    """Read `{local_dir}/secrets/host.json`, creating it (or the keys it lacks) on first use."""
    path = keys_path(local_dir)
    for _ in range(3):
        existing = None
        if path.is_file():
            try:
                existing = _parse(json.loads(path.read_text(encoding="utf-8")))
            except ValueError:
                existing = None
            if existing is None:
                raise ValueError(f"{path} is not a valid host keys file; move it away to create new keys")
            if (path.stat().st_mode & 0o077) != 0:
                os.chmod(path, 0o600)
        if existing is not None:
            if "default" in existing.function_keys and all(k in existing.system_keys for k in SYSTEM_KEYS):
                return existing
            completed = HostKeys(existing.master_key,
                                 {"default": _new_key(), **existing.function_keys},
                                 {**{k: _new_key() for k in SYSTEM_KEYS}, **existing.system_keys})
            _write_private(path, completed, replace=True)
            return completed
        created = HostKeys(_new_key(), {"default": _new_key()}, {k: _new_key() for k in SYSTEM_KEYS})
        if _write_private(path, created, replace=False):
            return created
    raise RuntimeError(f"could not create {path}")
