"""Where the CLI's webhook credentials come from, and `retrain keys`, which shows them.

RETRAIN_BASE_URL, RETRAIN_FUNCTION_KEY and RETRAIN_WEBHOOK_SECRET win (how the CLI talks to Azure); what they
leave unset comes from the running local stack, whose keys are only ever paired with a loopback URL.
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import dataclass
from pathlib import Path

from tools.cli.command import CommandError, Exit, add_command

ENV_BASE_URL = "RETRAIN_BASE_URL"
ENV_FUNCTION_KEY = "RETRAIN_FUNCTION_KEY"
ENV_WEBHOOK_SECRET = "RETRAIN_WEBHOOK_SECRET"  # noqa: S105 - the variable's name, not a secret
_NOT_RUNNING = (f"the local stack is not running: start it with `.venv/bin/retrain up` (or `make run`), or set "
                f"{ENV_BASE_URL}, {ENV_FUNCTION_KEY} and {ENV_WEBHOOK_SECRET} to talk to a deployed function app")


class WebhookConfigError(CommandError):
    """Where to send a retrain request, or with which keys, is unknown; the message never holds a secret."""


@dataclass(frozen=True)
class WebhookCredentials:
    """What a signed request to the function app needs."""

    base_url: str
    function_key: str
    webhook_secret: str

    @property
    def secrets(self) -> tuple[str, str]:
        return self.function_key, self.webhook_secret


def is_loopback(url: str) -> bool:
    import ipaddress
    from urllib.parse import urlsplit

    host = (urlsplit(url).hostname or "").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _read_json(path: Path, what: str) -> dict:
    if not path.is_file():
        raise WebhookConfigError(f"{path} does not exist: start the local stack once (`.venv/bin/retrain up`) "
                                 f"to create the {what}")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise WebhookConfigError(f"{path} cannot be read as JSON; move it away and restart the stack") from None
    if not isinstance(doc, dict):
        raise WebhookConfigError(f"{path} is not a JSON object; move it away and restart the stack")
    return doc


def _local_host_key(local: Path, section: str, name: str) -> str | None:
    """One key of the local host's keys file (local/functions_host/keys.py): `functionKeys` or `systemKeys`."""
    from local.functions_host.keys import keys_path

    keys = _read_json(keys_path(local), "host keys").get(section)
    key = keys.get(name) if isinstance(keys, dict) else None
    return key if isinstance(key, str) and key else None


def _local_function_key(local: Path) -> str:
    """The host's `default` function key: what every FUNCTION-level route accepts (local/functions_host/keys.py)."""
    from local.functions_host.keys import keys_path

    key = _local_host_key(local, "functionKeys", "default")
    if key is None:
        raise WebhookConfigError(f"{keys_path(local)} has no default function key: restart the local stack "
                                 f"(`.venv/bin/retrain up`) to add one, or set {ENV_FUNCTION_KEY}")
    return key


def _local_webhook_secret(local: Path) -> str:
    """The stack's `webhook_secret` (local/stack_secrets.py), read only: creating one here would not reach the host
    that is already running."""
    path = local / "secrets.json"
    secret = _read_json(path, "stack secrets").get("webhook_secret")
    if not isinstance(secret, str) or not secret:
        raise WebhookConfigError(f"{path} has no webhook_secret: restart the local stack (`.venv/bin/retrain up`) to "
                                 f"create it, or set {ENV_WEBHOOK_SECRET}")
    return secret


def _base_url(env_url: str) -> str:
    """RETRAIN_BASE_URL, else the running local stack's host URL."""
    from local.connection import StackNotRunning, find_stack
    from tools.webhook_client import normalize_base_url

    if env_url:
        try:
            return normalize_base_url(env_url)
        except ValueError as exc:
            raise WebhookConfigError(f"{ENV_BASE_URL}: {exc}") from None
    try:
        host_url = find_stack().host_url
    except StackNotRunning:
        raise WebhookConfigError(_NOT_RUNNING) from None
    if not host_url:
        raise WebhookConfigError(_NOT_RUNNING)
    try:
        return normalize_base_url(host_url)
    except ValueError as exc:
        raise WebhookConfigError(f"the running stack's host URL: {exc}") from None


def webhook_credentials() -> WebhookCredentials:
    """The base URL, function key and webhook secret for POST /api/retrain and /api/drift-check: the environment's
    (RETRAIN_*), else the running local stack's (`.local/stack.json`, `.local/secrets/host.json`,
    `.local/secrets.json`). The local stack's keys are only ever paired with a loopback URL."""
    from local.connection import local_dir
    from tools.webhook_client import display_url

    env_url = os.environ.get(ENV_BASE_URL, "").strip()
    env_key = os.environ.get(ENV_FUNCTION_KEY, "").strip()
    env_secret = os.environ.get(ENV_WEBHOOK_SECRET, "").strip()
    base_url = _base_url(env_url)
    if not (env_key and env_secret) and not is_loopback(base_url):
        missing = " and ".join(n for n, v in ((ENV_FUNCTION_KEY, env_key), (ENV_WEBHOOK_SECRET, env_secret)) if not v)
        raise WebhookConfigError(f"the base URL is {display_url(base_url)}: set {missing} for it (the local stack's "
                                 "keys are only used with a local host)")
    local = local_dir()
    return WebhookCredentials(base_url=base_url, function_key=env_key or _local_function_key(local),
                              webhook_secret=env_secret or _local_webhook_secret(local))


def _storage_connection_string(base_url: str) -> str | None:
    """AzureWebJobsStorage when set, else the running local stack's Azurite (its generated account key) when the
    base URL is a local one; None otherwise (a remote app's storage is never guessed from the local stack)."""
    from local.connection import StackNotRunning, find_stack
    from tools.cli.context import settings

    configured = settings().storage_connection.strip()
    if configured:
        return configured
    if not is_loopback(base_url):
        return None
    try:
        return find_stack().storage_connection
    except StackNotRunning:
        return None


@dataclass(frozen=True)
class StackEndpoints:
    """What else a user drives the stack with: the scoring URI (`<scoring base URL>/score`, what a managed online
    endpoint calls its scoring_uri) and its key, and the Event Grid subscription URL run events go to
    (`eventgrid_webhook_url`, the eventgrid_extension system key included). None where unknown."""

    scoring_url: str | None
    scoring_key: str | None
    eventgrid_webhook_url: str | None


def _stack_endpoints(base_url: str) -> StackEndpoints:
    """SCORING_URL and SCORING_KEY when set; else, for a local base URL, the running local stack's scoring server,
    its key and the host's Event Grid webhook (local.stack.eventgrid_webhook_url: the URL the local pipeline endpoint
    delivers run events to). A remote app's keys are never guessed from the local stack: its Event Grid URL carries
    its own system key (`az functionapp keys list`)."""
    from local import stack_secrets
    from local.connection import StackNotRunning, find_stack, local_dir
    from local.functions_host.keys import SYSTEM_KEY_EVENTGRID
    from local.stack import eventgrid_webhook_url

    def scoring_uri(base: str | None) -> str | None:
        return f"{base.rstrip('/')}/score" if base else None

    scoring_base = os.environ.get("SCORING_URL", "").strip() or None
    scoring_key = os.environ.get("SCORING_KEY", "").strip() or None
    if not is_loopback(base_url):
        return StackEndpoints(scoring_uri(scoring_base), scoring_key, None)
    local = local_dir()
    try:
        scoring_base = scoring_base or find_stack().scoring_url
    except StackNotRunning:
        pass
    scoring_key = scoring_key or stack_secrets.read(local).get("scoring_key") or None
    try:
        system_key = _local_host_key(local, "systemKeys", SYSTEM_KEY_EVENTGRID)
    except WebhookConfigError:  # no local host keys (the RETRAIN_* keys point at another local host): unknown
        system_key = None
    return StackEndpoints(scoring_uri(scoring_base), scoring_key,
                          eventgrid_webhook_url(base_url, system_key) if system_key else None)


def cmd_keys(args: argparse.Namespace) -> int:
    from local.stack import dashboard_url

    credentials = webhook_credentials()
    storage = _storage_connection_string(credentials.base_url)
    endpoints = _stack_endpoints(credentials.base_url)
    dashboard = dashboard_url(credentials.base_url, credentials.function_key)  # GET /api/dashboard, key as ?code=
    if args.json:  # secrets on stdout on purpose: this command's job (they never go to a log)
        print(json.dumps({"function_key": credentials.function_key, "webhook_secret": credentials.webhook_secret,
                          "base_url": credentials.base_url, "storage_connection_string": storage,
                          "scoring_url": endpoints.scoring_url, "scoring_key": endpoints.scoring_key,
                          "eventgrid_webhook_url": endpoints.eventgrid_webhook_url, "dashboard_url": dashboard}))
        return Exit.OK

    def source(env: str) -> str:
        return f"from {env}" if os.environ.get(env, "").strip() else "local stack"

    print("SECRETS — shown because you asked; keep them out of logs, tickets, chat and shell history.\n"
          f"  base_url        {credentials.base_url}  ({source(ENV_BASE_URL)})\n"
          f"  function_key    {credentials.function_key}  (x-functions-key header; {source(ENV_FUNCTION_KEY)})\n"
          f"  webhook_secret  {credentials.webhook_secret}  (HMAC-SHA256 key for X-Retrain-Signature; "
          f"{source(ENV_WEBHOOK_SECRET)})\n"
          + (f"  storage_connection_string  {storage}  (storage tables, queues and blobs; "
             f"{source('AzureWebJobsStorage')})\n" if storage else "")
          + (f"  scoring_url     {endpoints.scoring_url}  ({source('SCORING_URL')})\n" if endpoints.scoring_url else "")
          + (f"  scoring_key     {endpoints.scoring_key}  (Authorization: Bearer; {source('SCORING_KEY')})\n"
             if endpoints.scoring_key else "")
          + (f"  eventgrid_webhook_url  {endpoints.eventgrid_webhook_url}  (Event Grid subscription endpoint for run "
             "events; key included)\n" if endpoints.eventgrid_webhook_url else "")
          + f"  dashboard_url   {dashboard}  (open in a browser; key included)\n"
          + "Ask for a retrain with `.venv/bin/retrain trigger --dataset latest`, which signs and sends for you.")
    return Exit.OK


def add_parsers(sub: argparse._SubParsersAction) -> None:
    keys = add_command(sub, "keys", cmd_keys,
                       help="show the function key, webhook secret and base URL for POST /api/retrain (SECRETS: "
                            "for your eyes only)",
                       description="Show the running local stack's function key (x-functions-key), webhook secret "
                                   "(signs X-Retrain-Signature), base URL, storage connection string (Azurite's "
                                   "generated account key), scoring URL and key, the Event Grid subscription URL "
                                   "for run events (system key included) and the dashboard's URL (function key "
                                   "included). RETRAIN_BASE_URL, RETRAIN_FUNCTION_KEY, "
                                   "RETRAIN_WEBHOOK_SECRET, AzureWebJobsStorage, SCORING_URL and SCORING_KEY win over "
                                   "the local stack.")
    keys.add_argument("--json", action="store_true",
                      help='print {"function_key": ..., "webhook_secret": ..., "base_url": ..., '
                           '"storage_connection_string": ..., "scoring_url": ..., "scoring_key": ..., '
                           '"eventgrid_webhook_url": ..., "dashboard_url": ...} (null where unknown)')
