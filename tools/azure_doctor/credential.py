"""The credential the checks run as (the app's DefaultAzureCredential chain): its tokens, bounded in time, its
failures sorted into `fail` (refused) and `skipped` (none, or offline), and who a token is for."""

from __future__ import annotations

import base64
import json
import re
import threading
from typing import Any

from tools.azure_doctor.redact import clip
from tools.azure_doctor.results import FAIL, SKIPPED, Status

DEFAULT_TIMEOUT_S = 5.0
LOGIN_HINT = ("run `az login` (and `az account set -s <subscription>`), or set AZURE_TENANT_ID, AZURE_CLIENT_ID and "
              "AZURE_CLIENT_SECRET for a service principal; managed identity works only inside Azure")


class TokenError(Exception):
    """No token: `status` fail when Entra ID refused the credential, skipped when there is none or no network."""

    def __init__(self, status: Status, message: str):
        super().__init__(message)
        self.status = status


def get_token(credential: Any, scope: str, timeout_s: float) -> Any:
    """get_token with a wall-clock bound: a daemon thread, so a credential stuck on a network call (an IMDS
    endpoint that never answers) cannot hold the doctor or its exit."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["token"] = credential.get_token(scope)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            box["error"] = exc

    worker = threading.Thread(target=run, name="doctor-get-token", daemon=True)
    worker.start()
    worker.join(timeout_s)
    if worker.is_alive():
        raise TokenError(SKIPPED, f"the credential did not answer within {timeout_s:g}s (a managed identity "
                                   "endpoint that is not there, or no network)")
    if "error" in box:
        raise classify(box["error"])
    return box["token"]


_CRED_LINE = re.compile(r"^\s*(\w+Credential):\s*(.*)$")
_KEY_CREDENTIALS = ("EnvironmentCredential", "WorkloadIdentityCredential", "ManagedIdentityCredential",
                    "AzureCliCredential")


def summarize_chain(message: str) -> str:
    """DefaultAzureCredential's long 'Attempted credentials' text as one line, the useful ones first."""
    found: dict[str, str] = {}
    for line in message.splitlines():
        m = _CRED_LINE.match(line)
        if m:
            reason = m.group(2).replace(f"{m.group(1)} authentication unavailable.", "").strip() or "unavailable"
            found[m.group(1)] = clip(reason.split(". ")[0].rstrip("."), 90)
    if not found:
        return clip(message, 300)
    shown = [f"{name}: {found[name]}" for name in _KEY_CREDENTIALS if name in found]
    rest = len(found) - len(shown)
    return "; ".join(shown) + (f"; {rest} more unavailable" if rest else "")


def classify(exc: BaseException) -> TokenError:
    from azure.core.exceptions import ClientAuthenticationError, ServiceRequestError
    from azure.identity import CredentialUnavailableError

    text = str(exc)
    none = f"no credential: DefaultAzureCredential found none ({summarize_chain(text)})"
    if isinstance(exc, CredentialUnavailableError):
        return TokenError(SKIPPED, none)
    if "AADSTS" in text:  # Entra ID answered and refused: a wrong secret, tenant or client id
        code = re.search(r"AADSTS\d+", text)
        return TokenError(FAIL, f"Microsoft Entra ID refused the credential ({code.group(0) if code else 'AADSTS'}): "
                                 f"{clip(summarize_chain(text), 240)}")
    if isinstance(exc, ServiceRequestError) or any(w in text for w in ("resolve", "Connection", "timed out")):
        # a configured credential (service principal, managed identity endpoint) that cannot reach its service
        return TokenError(SKIPPED, f"cannot reach the token service (offline?): {clip(summarize_chain(text), 240)}")
    if "failed to retrieve a token from the included credentials" in text and "unavailable" in text:
        return TokenError(SKIPPED, none)
    if isinstance(exc, ClientAuthenticationError):
        return TokenError(FAIL, f"authentication failed: {clip(summarize_chain(text), 300)}")
    return TokenError(FAIL, f"getting a token failed: {type(exc).__name__}: {clip(text, 240)}")


def token_identity(token: str) -> str:
    """Who the token is for (user name or app id, object id), from its unverified claims; never the token."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError):
        return "an identity"
    who = claims.get("upn") or claims.get("unique_name") or (f"app {claims['appid']}" if claims.get("appid") else "")
    oid = claims.get("oid")
    return " ".join(part for part in (who or "an identity", f"(object id {oid})" if oid else "") if part)


def default_credential(timeout_s: float = DEFAULT_TIMEOUT_S):
    """The app's chain (credentials.azure_credential): environment service principal, workload identity,
    managed identity (its IMDS probe gives up after 1 s outside Azure), Azure CLI, …; CLI calls bounded too."""
    from azure.identity import DefaultAzureCredential

    return DefaultAzureCredential(exclude_interactive_browser_credential=True,
                                  process_timeout=max(1, int(timeout_s)))
