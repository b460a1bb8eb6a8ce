"""The local scoring endpoint: the Azure ML scoring contract of the deployed bank-marketing model, blue/green.

    POST /score            Authorization: Bearer <SCORING_KEY>, Content-Type: application/json; the contract of an
                           Azure ML no-code MLflow deployment behind a managed online endpoint (formats.py):
        {"input_data": {"columns": [...], "index": [...]?, "data": [[...], ...]}, "params": {...}?}
            -> [0|1, ...]  (the model's prediction per row: 1 = "yes"), header `azureml-model-deployment: blue|green`
        a request the deployment refuses -> 424 {"message": ...} with `ms-azureml-model-error-statuscode`
            (400 / 405 / 415 / 500, the inference server's own status and message) and
            `ms-azureml-model-error-reason: model_error`; no deployment yet -> 404; no key -> 401
    GET  /swagger.json     the OpenAPI (Swagger 2.0) document of /score, like Azure ML generates (no auth)
    GET  / , /health       {"status": "ok", "model_version": "N" | null}
    POST /admin/deploy     Authorization: Bearer <SCORING_ADMIN_KEY>,
                           {"model_dir": "/abs/path/model", "version": "3", "digest": "sha256:...",
                            "smoke_records": [...]?}
                           the folder must lie under --models-root (links resolved) and its content must match
                           `digest` (the registry's hash) before anything is unpickled: 400 without a digest,
                           403 outside the root or when the content differs
    POST /admin/rollback   (admin key) traffic back to the other slot's model, instantly; the optional body
                           {"from_version": "N"} makes it conditional on model vN being live (else 409)
    GET  /admin/status     (admin key) slots, live slot, its counters since the switch, recent switch events

Two slots, "blue" and "green". A deploy loads the new model off the event loop, smoke-tests it with the given
records (or the model's saved input example), puts it into the idle slot and switches traffic by replacing
one reference; the previous model stays loaded in the other slot, so a rollback is one more reference swap.
A request reads that reference once, so requests in flight during a switch finish on the model they started
with. A model that fails to load or to score answers 422 and traffic stays where it was. Deploys run one at
a time; scoring and rollbacks never wait for them.

Automatic rollback: the first `rollback_window` requests after a deploy are watched; when model failures (the
model raising while scoring, not a request it refuses) reach `rollback_min_failures` and exceed
`rollback_error_rate` of the requests seen so far, traffic goes back to the previous slot and an `auto_rollback`
event is recorded.

POST /score is a plain ASGI handler in front of FastAPI (no routing, request object or response class on the
hot path), and uvicorn's access log is off unless --access-log (it cost a fifth of a one-record request); a
/score answer other than 200 is logged by the handler. Keys are compared in constant time and never logged
or echoed.

    SCORING_KEY=... SCORING_ADMIN_KEY=... python -m local.scoring_server --port 5001 --models-root RUNS_DIR
        [--model-dir DIR --model-digest sha256:...]
        [--rollback-window 50] [--rollback-error-rate 0.1] [--rollback-min-failures 3] [--access-log]

The package, one job per module: `bluegreen` (slots, switches, auto-rollback), `formats` (the request
contract), `auth` (the bearer-key check), `score_route` (POST /score), `admin_requests` / `deploy` /
`admin_routes` (the admin routes), `swagger` (the OpenAPI document), `app` (create_app), `cli` (main).
"""

from local.scoring_server.admin_requests import DeployRequest
from local.scoring_server.app import create_app
from local.scoring_server.bluegreen import (
    EVENTS_KEPT,
    ROLLBACK_ERROR_RATE,
    ROLLBACK_MIN_FAILURES,
    ROLLBACK_WINDOW,
    SLOTS,
    BlueGreen,
    Generation,
    Loaded,
    NothingToRollBack,
)
from local.scoring_server.cli import main
from local.scoring_server.deploy import trusted_folder
from local.scoring_server.formats import (
    FORMATS_HINT,
    MAX_RECORDS,
    ContainerStatus,
    RequestError,
    input_records,
    parse_body,
    predictions,
)
from local.scoring_server.score_route import INLINE_ROWS, MAX_BODY_BYTES, ClientGone, ScoreRoute
from local.scoring_server.swagger import EXAMPLE_RECORD, swagger_document

__all__ = [
    "EVENTS_KEPT", "EXAMPLE_RECORD", "FORMATS_HINT", "INLINE_ROWS", "MAX_BODY_BYTES", "MAX_RECORDS",
    "ROLLBACK_ERROR_RATE", "ROLLBACK_MIN_FAILURES", "ROLLBACK_WINDOW", "SLOTS", "BlueGreen", "ClientGone",
    "DeployRequest", "Generation", "Loaded", "NothingToRollBack", "RequestError", "ScoreRoute", "ContainerStatus",
    "create_app", "input_records", "main", "parse_body", "predictions", "swagger_document", "trusted_folder",
]
