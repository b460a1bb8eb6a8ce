"""The scoring app: the blue/green state, POST /score in front, the public and the admin routes behind."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI

from local.scoring_server.admin_routes import add_admin_routes
from local.scoring_server.bluegreen import ROLLBACK_ERROR_RATE, ROLLBACK_MIN_FAILURES, ROLLBACK_WINDOW, BlueGreen
from local.scoring_server.deploy import trusted_folder
from local.scoring_server.score_route import ScoreRoute
from local.scoring_server.swagger import swagger_document
from shared.scoring.runtime import ScoringModel

if TYPE_CHECKING:
    from shared.adapters.inference_data import InferenceCollector

log = logging.getLogger("scoring")


def create_app(scoring_key: str, admin_key: str, initial_model: Path | None = None, *,
               initial_version: str = "1", rollback_window: int = ROLLBACK_WINDOW,
               rollback_error_rate: float = ROLLBACK_ERROR_RATE,
               rollback_min_failures: int = ROLLBACK_MIN_FAILURES, collector: InferenceCollector | None = None,
               models_root: Path | None = None, initial_digest: str = "") -> FastAPI:
    """The scoring app. `rollback_window` requests after each deploy are watched for a model-failure rate over
    `rollback_error_rate` (with at least `rollback_min_failures` failures); 0 turns auto-rollback off.
    `collector` (an InferenceCollector) receives the records of every answered request, for the drift check.
    Model folders are loaded only from under `models_root` and only with the content hash they were registered
    with (`initial_digest` for `initial_model`, the request's `digest` for a deploy); without a models root no
    folder is loaded at all."""
    if not scoring_key or not admin_key:
        raise ValueError("both a scoring key and an admin key are required")
    score_key, deploy_key = scoring_key.encode("utf-8"), admin_key.encode("utf-8")
    state = BlueGreen(window=rollback_window, error_rate=rollback_error_rate, min_failures=rollback_min_failures)
    if initial_model is not None:
        initial_model = trusted_folder(initial_model, initial_digest, initial_version, models_root)
        model = ScoringModel.load(initial_model, initial_version)
        model.smoke()
        state.deploy(model, reason="served from start")
        log.info("serving model v%s from %s (slot blue)", model.version, initial_model)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        if collector is not None:  # uvicorn re-raises SIGTERM after shutdown: write what is buffered before that
            collector.stop()

    app = FastAPI(title="bankmarketing scoring (local)", docs_url=None, redoc_url=None, openapi_url=None,
                  lifespan=lifespan)
    app.state.slots = state
    app.add_middleware(ScoreRoute, key=score_key, state=state, collector=collector)
    app.state.collector = collector
    _add_public_routes(app, state)
    add_admin_routes(app, state, deploy_key, models_root)
    return app


def _add_public_routes(app: FastAPI, state: BlueGreen) -> None:
    def health() -> dict[str, Any]:
        return {"status": "ok", "model_version": state.live_version()}

    app.get("/")(health)
    app.get("/health")(health)

    @app.get("/swagger.json")
    def swagger() -> dict[str, Any]:
        live = state.live
        return swagger_document(live.model if live else None)
