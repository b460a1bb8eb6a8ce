"""The admin routes of the local scoring endpoint (admin key): deploy, rollback, status.

Deploys run one at a time; scoring and rollbacks never wait for them.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from local.scoring_server.admin_requests import DeployRequest, deploy_request, error, json_body, rollback_guard
from local.scoring_server.auth import bearer_matches
from local.scoring_server.bluegreen import BlueGreen, NothingToRollBack
from local.scoring_server.deploy import deploy_model, trusted_folder
from shared.scoring.trusted_model import UntrustedModel

log = logging.getLogger("scoring")

UNAUTHORIZED = "missing or invalid admin key: send the header `Authorization: Bearer <key>`"


def add_admin_routes(app: FastAPI, state: BlueGreen, key: bytes, models_root: Path | None = None) -> None:
    deploy_lock = asyncio.Lock()

    @app.post("/admin/deploy")
    async def deploy(request: Request):
        if not bearer_matches(request.scope["headers"], key):
            return error(401, UNAUTHORIZED)
        body, problem = await json_body(request)
        if problem is not None:
            return problem
        wanted = deploy_request(body)
        if isinstance(wanted, JSONResponse):
            return wanted
        try:  # before the lock and before anything is unpickled: where the folder is and what it holds
            folder = await run_in_threadpool(trusted_folder, wanted.model_dir, wanted.digest, wanted.version,
                                             models_root)
        except UntrustedModel as exc:
            log.warning("deploy of model v%s refused (%s): %s", wanted.version, exc.refusal, exc)
            return error(exc.refusal.status, f"model v{wanted.version} not deployed: {exc}", reason=exc.refusal,
                         serving=state.live_version())
        wanted = DeployRequest(folder, wanted.version, wanted.smoke_records, wanted.digest)
        async with deploy_lock:  # deploys run one at a time; scoring and rollbacks never wait for this lock
            return await deploy_model(state, wanted)

    @app.post("/admin/rollback")
    async def rollback(request: Request):
        if not bearer_matches(request.scope["headers"], key):
            return error(401, UNAUTHORIZED)
        from_version = await rollback_guard(request)
        if isinstance(from_version, JSONResponse):
            return from_version
        try:
            live, previous = state.rollback("rollback", "requested with POST /admin/rollback",
                                            from_version=from_version)
        except NothingToRollBack as exc:
            return error(409, str(exc))
        log.warning("rolled back from model v%s (slot %s) to v%s (slot %s)", previous.model.version,
                    previous.slot, live.model.version, live.slot)
        return {"rolled_back_to": live.model.version, "from": previous.model.version, "slot": live.slot,
                "from_slot": previous.slot}

    @app.get("/admin/status")
    async def status(request: Request):
        if not bearer_matches(request.scope["headers"], key):
            return error(401, UNAUTHORIZED)
        return state.status()
