"""The scoring endpoint, seen from the completion handler: deploy a model to it, and score with it.

Local: our scoring server's admin route loads the model into its idle slot, smoke-tests it and switches
traffic without a restart. Azure: `shared.adapters.azure_online.AzureOnlineDeployer` (managed online endpoint,
blue/green deployments) has the same deploy / rollback / status interface (shared.ports.Deployer).
"""

from __future__ import annotations

from typing import Any

import requests

from shared.ports import DeploymentError  # the error a manual promote/rollback tells apart; raised here


class ScoringClient:
    """Azure ML scoring contract: POST /score, `Authorization: Bearer KEY`, body {"data": [records]}."""

    def __init__(self, base_url: str, key: str, *, session: requests.Session | None = None, timeout_s: float = 30):
        self.base_url = base_url.rstrip("/")
        self._key = key
        self._session = session or requests.Session()
        self._timeout = timeout_s

    def score(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        response = self._session.post(f"{self.base_url}/score", json={"data": records},
                                      headers={"Authorization": f"Bearer {self._key}"}, timeout=self._timeout)
        if response.status_code != 200:
            raise DeploymentError(f"scoring request answered {response.status_code}: {response.text[:300]}")
        return response.json()


class LocalScoringDeployer:
    """The local scoring server's admin routes: deploy (to the idle slot), rollback and status."""

    def __init__(self, base_url: str, admin_key: str, *, session: requests.Session | None = None,
                 timeout_s: float = 120):
        self.base_url = base_url.rstrip("/")
        self._key = admin_key
        self._session = session or requests.Session()
        self._timeout = timeout_s

    def deploy(self, *, model_dir: str, version: int, smoke_records: list[dict[str, Any]] | None = None,
               digest: str = "") -> dict:
        """Load `model_dir` into the idle slot and switch. `digest` is the registry's content hash of the folder:
        the server loads nothing that is not under its models root with exactly that content, so a model
        registered without one (an old record) is refused here, with what to do, before any request."""
        if not digest:
            raise DeploymentError(f"model v{version} has no registered content hash (digest), so the scoring "
                                  "endpoint will not load its folder; retrain to register a verifiable model "
                                  "(`retrain trigger --dataset latest`), then promote that version")
        body: dict[str, Any] = {"model_dir": model_dir, "version": str(version), "digest": digest}
        if smoke_records:
            body["smoke_records"] = smoke_records
        return self._call("POST", "/admin/deploy", f"deploy of model v{version}", json=body)

    def rollback(self, *, from_version: int | str | None = None) -> dict:
        """Traffic back to the model in the other slot: {"rolled_back_to", "from", "slot", "from_slot"}. With
        `from_version`, only while that version is live (else DeploymentError, 409): a rollback after the
        endpoint already rolled back by itself must not bring the failing model back."""
        body = {"from_version": str(from_version)} if from_version is not None else None
        return self._call("POST", "/admin/rollback", "rollback", json=body)

    def status(self) -> dict:
        """Slots, the live slot, its counters since the switch and recent switch events."""
        return self._call("GET", "/admin/status", "status request")

    def _call(self, method: str, path: str, what: str, **kwargs: Any) -> dict:
        """One admin request; failures become DeploymentError naming the answer, never the key."""
        try:
            response = self._session.request(method, f"{self.base_url}{path}", timeout=self._timeout,
                                             headers={"Authorization": f"Bearer {self._key}"}, **kwargs)
        except requests.RequestException as exc:
            raise DeploymentError(f"scoring endpoint {self.base_url} unreachable: {type(exc).__name__}") from None
        if response.status_code != 200:
            raise DeploymentError(f"{what} refused ({response.status_code}): {response.text[:300]}")
        return response.json()

