"""Deploying a model folder into the idle slot: trust check, load and smoke test off the event loop, switch.

A model that fails to load or to score answers 422 and traffic stays where it was.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from local.scoring_server.admin_requests import DeployRequest, error
from local.scoring_server.bluegreen import BlueGreen
from shared.scoring.runtime import ModelLoadError, ScoringInputError, ScoringModel
from shared.scoring.trusted_model import check_model_folder

log = logging.getLogger("scoring")


def trusted_folder(model_dir: Path, digest: str, version: str, models_root: Path | None) -> Path:
    """The folder to load, once it is known to be under the models root with the registered content; else
    UntrustedModel (nothing has been unpickled)."""
    return check_model_folder(model_dir, root=models_root, expected_digest=digest, version=version).path


async def deploy_model(state: BlueGreen, wanted: DeployRequest) -> dict[str, Any] | JSONResponse:
    """Load and smoke-test off the event loop, then switch; a refused model leaves traffic where it was."""
    started = time.perf_counter()
    state.deploying = wanted.version
    try:
        candidate = await run_in_threadpool(ScoringModel.load, wanted.model_dir, wanted.version)
        smoke = await run_in_threadpool(candidate.smoke, wanted.smoke_records)
    except (ModelLoadError, ScoringInputError) as exc:
        return _refused(state, wanted.version, str(exc))
    except Exception as exc:  # anything else from a broken artifact is still the model's fault
        log.exception("deploy of model v%s failed", wanted.version)
        return _refused(state, wanted.version, f"{type(exc).__name__}: {exc}")
    finally:
        state.deploying = None
    live, previous = state.deploy(candidate)
    seconds = round(time.perf_counter() - started, 3)
    log.info("deployed model v%s from %s to slot %s in %.2fs (previous: %s, direct path: %s)", wanted.version,
             wanted.model_dir, live.slot, seconds, previous.model.version if previous else None,
             candidate.direct_path)
    return {"deployed": wanted.version, "previous": previous.model.version if previous else None, "smoke": smoke,
            "seconds": seconds, "slot": live.slot, "previous_slot": previous.slot if previous else None}


def _refused(state: BlueGreen, version: str, reason: str) -> JSONResponse:
    log.warning("model v%s not deployed: %s", version, reason)
    return error(422, f"model v{version} not deployed: {reason}", serving=state.live_version())
