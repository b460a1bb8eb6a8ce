"""Credentials: azure-identity in Azure; a static bearer token for the embedded local pipeline endpoint.

Both expose `get_token(*scopes) -> AccessToken`, so clients take either without knowing which."""

from __future__ import annotations

import time

from azure.core.credentials import AccessToken


class StaticTokenCredential:
    """The local pipeline endpoint checks a bearer token like Azure ML does; this hands it out."""

    def __init__(self, token: str):
        if not token:
            raise ValueError("empty token")
        self._token = token

    def get_token(self, *scopes: str, **kwargs) -> AccessToken:
        return AccessToken(self._token, int(time.time()) + 3600)

    def __repr__(self) -> str:  # never show the token
        return "StaticTokenCredential(***)"


def azure_credential():
    """Managed identity in Azure, a service principal from env vars, or a developer's `az login`."""
    from azure.identity import DefaultAzureCredential

    return DefaultAzureCredential(exclude_interactive_browser_credential=True)
