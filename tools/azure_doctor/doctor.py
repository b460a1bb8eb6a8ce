"""`Doctor`: what the checks need from outside (credential, HTTP session, storage clients, ARM URL), each
replaceable so tests run the checks against local HTTP servers; and the two answers a check gives when it
cannot be made."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import requests

from shared import redaction
from shared.adapters.pipeline_client import ARM_SCOPE
from shared.settings import Settings
from tools.azure_doctor.credential import DEFAULT_TIMEOUT_S, TokenError, default_credential, get_token
from tools.azure_doctor.redact import clip
from tools.azure_doctor.results import FAIL, SKIPPED, Check

ARM_URL = "https://management.azure.com"
ML_API_VERSION = "2024-04-01"  # Microsoft.MachineLearningServices, GA (workspaces, onlineEndpoints)
PERMISSIONS_API_VERSION = "2022-04-01"  # Microsoft.Authorization/permissions


class Unreachable(Exception):
    """No HTTP answer (DNS, refused, timeout): the reason, short."""


def why_unreachable(exc: Exception, timeout_s: float) -> str:
    text = str(exc)
    if isinstance(exc, requests.Timeout) or "timed out" in text.lower():
        return f"no answer within {timeout_s:g}s"
    if "NameResolution" in text or "Name or service not known" in text or "getaddrinfo" in text \
            or "Failed to resolve" in text or "nodename nor servname" in text:
        return "DNS lookup failed"
    if "refused" in text.lower():
        return "connection refused"
    return f"cannot connect ({type(exc).__name__})"


def arm_error(response: requests.Response) -> str:
    try:
        error = response.json().get("error") or {}
        code, message = error.get("code"), error.get("message")
    except (ValueError, AttributeError):
        code, message = None, response.text[:200]
    return ": ".join(part for part in (code, clip(message or "", 240)) if part)


def storage_clients(settings: Settings, credential: Any, timeout_s: float = DEFAULT_TIMEOUT_S):
    """Blob and table service clients as shared.adapters.storage builds them, without retries and with short
    timeouts, so an unreachable account answers in seconds."""
    from azure.data.tables import TableServiceClient
    from azure.storage.blob import BlobServiceClient

    common = {"retry_total": 0, "connection_timeout": timeout_s, "read_timeout": timeout_s}
    if settings.storage_account_url:
        table_url = settings.storage_account_url.replace(".blob.", ".table.")
        return (BlobServiceClient(settings.storage_account_url, credential=credential, **common),
                TableServiceClient(table_url, credential=credential, **common))
    return (BlobServiceClient.from_connection_string(settings.storage_connection, **common),
            TableServiceClient.from_connection_string(settings.storage_connection, **common))


def container_client(account_url: str, container: str, credential: Any, timeout_s: float = DEFAULT_TIMEOUT_S):
    """A blob container on another account (the workspace's datastore), without retries and with short timeouts."""
    from azure.storage.blob import ContainerClient

    return ContainerClient(account_url, container, credential=credential, retry_total=0,
                           connection_timeout=timeout_s, read_timeout=timeout_s)


@dataclass
class Doctor:
    """What the checks need from outside; every field can be replaced (tests: local HTTP servers)."""

    credential: Any = None  # has get_token(scope); None: built lazily (default_credential)
    session: requests.Session = field(default_factory=requests.Session)
    storage_factory: Callable[..., Any] = storage_clients  # (settings, credential, timeout_s) -> (blob, table)
    container_factory: Callable[..., Any] = container_client  # (account_url, container, credential, timeout_s)
    arm_url: str = ARM_URL
    timeout_s: float = DEFAULT_TIMEOUT_S
    settings: Settings | None = None
    _tokens: dict[str, Any] = field(default_factory=dict, repr=False)
    secrets: set[str] = field(default_factory=set, repr=False)  # tokens handed out: scrubbed from every message
    arm_reachable: bool | None = None  # None: not tried yet

    def token(self, scope: str) -> str:
        """A bearer token (cached per scope); raises TokenError (status skipped or fail)."""
        if scope not in self._tokens:
            try:
                if self.credential is None:
                    self.credential = default_credential(self.timeout_s)
                token = get_token(self.credential, scope, self.timeout_s).token
                self.secrets.add(token)
                redaction.register(token)  # also masked in log lines, not only in the checks' messages
                self._tokens[scope] = token
            except TokenError as exc:
                self._tokens[scope] = exc
        value = self._tokens[scope]
        if isinstance(value, TokenError):
            raise value
        return value

    def has_token(self) -> bool:
        try:
            self.token(ARM_SCOPE)
            return True
        except TokenError:
            return False

    def get(self, url: str, *, scope: str, params: Mapping[str, str] | None = None) -> requests.Response:
        headers = {"Authorization": f"Bearer {self.token(scope)}", "Accept": "application/json"}
        try:
            return self.session.get(url, params=params, headers=headers, timeout=self.timeout_s,
                                    allow_redirects=False)
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise Unreachable(why_unreachable(exc, self.timeout_s)) from None

    def arm(self, path: str, api_version: str) -> requests.Response:
        url = f"{self.arm_url.rstrip('/')}/{path.lstrip('/')}"
        try:
            response = self.get(url, scope=ARM_SCOPE, params={"api-version": api_version})
        except Unreachable:
            if self.arm_reachable is None:
                self.arm_reachable = False
            raise
        self.arm_reachable = True
        return response

    @property
    def arm_host(self) -> str:
        return urlsplit(self.arm_url).netloc or self.arm_url


def needs_token(name: str, doctor: Doctor, *, arm: bool = True) -> Check | None:
    """The Check to report instead when there is no ARM token (or, for ARM calls, ARM was unreachable)."""
    if not doctor.has_token():
        return Check(name, SKIPPED, "not checked: no credential (see the credential check)",
                     "fix the credential check first")
    if arm and doctor.arm_reachable is False:
        return Check(name, SKIPPED, f"not checked: {doctor.arm_host} cannot be reached (offline?)",
                     "run it where Azure Resource Manager is reachable")
    return None


def unreachable(name: str, doctor: Doctor, host: str, why: str) -> Check:
    if doctor.arm_reachable:  # Azure answers, this host does not: a wrong URL, a firewall, a private endpoint
        return Check(name, FAIL, f"{host}: {why}", "check the URL, DNS and network rules (private endpoints "
                                                   "resolve only inside their virtual network)")
    return Check(name, SKIPPED, f"not checked: {host}: {why} (offline?)",
                 "run it where Azure is reachable")


def arm_unreachable(name: str, doctor: Doctor, exc: Unreachable) -> Check:
    """An ARM call got no answer: the check could not be made (offline?)."""
    return Check(name, SKIPPED, f"not checked: {doctor.arm_host}: {exc} (offline?)",
                 "run it where Azure Resource Manager is reachable")
