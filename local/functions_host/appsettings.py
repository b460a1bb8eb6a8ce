"""App settings as the host sees them: environment first, then `local.settings.json` Values; `%NAME%` references;
the few `host.json` values this host honours."""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Mapping
from pathlib import Path

log = logging.getLogger("functions_host")

DEFAULT_HOST_ID = "retrain-local-host"
DEFAULT_ROUTE_PREFIX = "api"
_REFERENCE = re.compile(r"%([^%]+)%")


class SettingsFileError(ValueError):
    """`local.settings.json` exists but cannot be used."""


class MissingSettingError(KeyError):
    """A `%NAME%` reference names an app setting that is not set."""

    def __init__(self, name: str):
        super().__init__(name)
        self.name = name

    def __str__(self) -> str:
        return f"app setting '{self.name}' is not set"


def load_local_settings(path: Path, environ: dict[str, str] | None = None) -> list[str]:
    """Copy the file's `Values` into the environment for names not already set there (the environment wins).

    A missing file is fine. Returns the names that were applied (never their values)."""
    env = os.environ if environ is None else environ
    if not path.is_file():
        return []
    try:
        doc = json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, ValueError) as exc:
        raise SettingsFileError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise SettingsFileError(f"{path}: expected a JSON object with 'Values'")
    if doc.get("IsEncrypted") is True:
        raise SettingsFileError(f"{path} is encrypted; this host reads only unencrypted settings")
    values = doc.get("Values") or {}
    if not isinstance(values, dict):
        raise SettingsFileError(f"{path}: 'Values' must be an object")
    applied = []
    for name, value in values.items():
        if name not in env:
            env[name] = "" if value is None else str(value)
            applied.append(name)
    return applied


def resolve(value: str, environ: Mapping[str, str] | None = None) -> str:
    """Replace every `%NAME%` in a binding value with the app setting NAME; raise MissingSettingError if unset."""
    env = os.environ if environ is None else environ

    def one(match: re.Match) -> str:
        name = match.group(1)
        if name not in env:
            raise MissingSettingError(name)
        return env[name]

    return _REFERENCE.sub(one, value)


def read_host_json(script_root: Path) -> dict:
    path = script_root / "host.json"
    if not path.is_file():
        return {}
    try:
        doc = json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, ValueError) as exc:
        log.warning("host.json is not valid JSON (%s); using defaults", exc)
        return {}
    return doc if isinstance(doc, dict) else {}


def _extension(host_json: Mapping, name: str) -> Mapping:
    section = (host_json.get("extensions") or {}).get(name) or {}
    return section if isinstance(section, Mapping) else {}


def route_prefix(host_json: Mapping) -> str:
    prefix = _extension(host_json, "http").get("routePrefix", DEFAULT_ROUTE_PREFIX)
    return str(prefix if prefix is not None else DEFAULT_ROUTE_PREFIX).strip("/")


def blob_parallelism(host_json: Mapping) -> int:
    raw = _extension(host_json, "blobs").get("maxDegreeOfParallelism")
    try:
        return max(1, int(raw)) if raw is not None else 8
    except (TypeError, ValueError):
        return 8


def host_id(environ: Mapping[str, str] | None = None) -> str:
    env = os.environ if environ is None else environ
    return (env.get("AzureFunctionsJobHost__id") or DEFAULT_HOST_ID).strip().lower()


def connection_string(connection: str | None, environ: Mapping[str, str] | None = None) -> str | None:
    """The connection string a binding's `connection` names: the setting itself, or `AzureWebJobs{name}`."""
    env = os.environ if environ is None else environ
    name = connection or "AzureWebJobsStorage"
    for candidate in (name, f"AzureWebJobs{name}"):
        if env.get(candidate):
            return env[candidate]
    return None


def float_setting(name: str, default: float, environ: Mapping[str, str] | None = None) -> float:
    env = os.environ if environ is None else environ
    try:
        return float(env[name]) if env.get(name) else default
    except ValueError:
        log.warning("setting %s=%r is not a number; using %s", name, env[name], default)
        return default


def int_setting(name: str, default: int, environ: Mapping[str, str] | None = None) -> int:
    env = os.environ if environ is None else environ
    try:
        return int(env[name]) if env.get(name) else default
    except ValueError:
        log.warning("setting %s=%r is not an integer; using %s", name, env[name], default)
        return default
