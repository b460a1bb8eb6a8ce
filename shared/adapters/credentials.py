"""Credentials: azure-identity in Azure; a static secret for the embedded local stack.

Both expose `get_token(*scopes) -> AccessToken`, so clients take either without knowing which."""

from __future__ import annotations

import hashlib
import hmac
import time

from azure.core.credentials import AccessToken


def audience(scope: str) -> str:
    """The resource a scope asks a token for: `https://ml.azure.com/.default` and `https://ml.azure.com/` name the
    same audience, as Microsoft Entra ID reads a `/.default` scope as "the resource's permissions"
    (https://learn.microsoft.com/entra/identity-platform/scopes-oidc#the-default-scope)."""
    return scope.removesuffix("/.default").rstrip("/")


def scoped_token(secret: str, scope: str) -> str:
    """The local stack's bearer token for one audience: hex HMAC-SHA256(secret, audience of `scope`).

    Why one token per audience: in Azure a token for `https://management.azure.com` is refused by the batch
    endpoint's invocation host (it wants `https://ml.azure.com`) and the other way round, so a client asking for the
    wrong scope must fail locally too; a single shared token would hide that."""
    if not secret:
        raise ValueError("empty secret")
    return hmac.new(secret.encode(), audience(scope).encode(), hashlib.sha256).hexdigest()


class StaticTokenCredential:
    """The local pipeline endpoint checks a bearer token per audience like Azure does; this hands them out."""

    def __init__(self, secret: str):
        if not secret:
            raise ValueError("empty token")
        self._secret = secret

    def get_token(self, *scopes: str, **kwargs) -> AccessToken:
        if not scopes:
            raise ValueError("get_token needs a scope (the token's audience)")
        return AccessToken(scoped_token(self._secret, scopes[0]), int(time.time()) + 3600)

    def __repr__(self) -> str:  # never show the secret
        return "StaticTokenCredential(***)"


def azure_credential():
    """Managed identity in Azure, a service principal from env vars, or a developer's `az login`."""
    from azure.identity import DefaultAzureCredential

    return DefaultAzureCredential(exclude_interactive_browser_credential=True)
