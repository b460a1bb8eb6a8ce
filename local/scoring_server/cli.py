"""`python -m local.scoring_server`: flags and keys from the command line and the environment, then uvicorn."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from local.scoring_server.app import create_app
from local.scoring_server.bluegreen import ROLLBACK_ERROR_RATE, ROLLBACK_MIN_FAILURES, ROLLBACK_WINDOW
from shared import redaction
from shared.scoring.runtime import ModelLoadError, ScoringInputError
from shared.scoring.trusted_model import UntrustedModel
from shared.settings import Settings

if TYPE_CHECKING:
    from shared.adapters.inference_data import InferenceCollector

log = logging.getLogger("scoring")

ENDPOINT_NAME = Settings.__dataclass_fields__["online_endpoint"].default  # the app reads the same name


def _package_summary() -> str:
    """The first paragraph of the package's docstring, the one place the server is described."""
    return (sys.modules[__package__].__doc__ or "").split("\n\n")[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local.scoring_server", description=_package_summary())
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--model-dir", type=Path, help="a model to serve from the start (else 404 until a deploy)")
    parser.add_argument("--model-version", default="1", help="version label of --model-dir (default 1)")
    parser.add_argument("--model-digest", default="", help="the registered content hash of --model-dir "
                        "(sha256:...); the folder is not loaded unless it matches")
    parser.add_argument("--models-root", type=Path, default=None,
                        help="the only folder model folders are loaded from (the local pipeline's runs folder); "
                             "without it /admin/deploy refuses every folder")
    parser.add_argument("--rollback-window", type=int, default=ROLLBACK_WINDOW,
                        help=f"requests watched after a deploy for auto-rollback; 0 = off (default {ROLLBACK_WINDOW})")
    parser.add_argument("--rollback-error-rate", type=float, default=ROLLBACK_ERROR_RATE,
                        help=f"model-failure share that rolls a new model back (default {ROLLBACK_ERROR_RATE})")
    parser.add_argument("--rollback-min-failures", type=int, default=ROLLBACK_MIN_FAILURES,
                        help=f"fewest model failures that can trigger it (default {ROLLBACK_MIN_FAILURES})")
    parser.add_argument("--collect-container", default="",
                        help="collect model_inputs and model_outputs to this blob container (connection string in "
                             "INFERENCE_STORAGE) in Azure ML's data collector layout; off when empty")
    parser.add_argument("--endpoint-name", default=os.environ.get("AZUREML_ONLINE_ENDPOINT") or ENDPOINT_NAME,
                        help="the endpoint name in the collector's paths, modelDataCollector/<endpoint>/<deployment>/ "
                             f"(default: AZUREML_ONLINE_ENDPOINT, else {ENDPOINT_NAME})")
    parser.add_argument("--access-log", action="store_true",
                        help="log every request (off by default: it costs about a fifth of a scoring request)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    redaction.install_logging()  # SCORING_KEY, SCORING_ADMIN_KEY, the storage key: never in a log line
    logging.getLogger("azure").setLevel(logging.WARNING)  # the storage SDK logs every HTTP call at INFO
    scoring_key, admin_key = os.environ.get("SCORING_KEY", ""), os.environ.get("SCORING_ADMIN_KEY", "")
    if not scoring_key or not admin_key:
        print("error: set SCORING_KEY and SCORING_ADMIN_KEY in the environment", file=sys.stderr)
        return 2
    collector = inference_collector(args.collect_container, os.environ.get("INFERENCE_STORAGE", ""),
                                    args.endpoint_name)
    try:
        app = create_app(scoring_key, admin_key, args.model_dir, initial_version=args.model_version,
                         rollback_window=args.rollback_window, rollback_error_rate=args.rollback_error_rate,
                         rollback_min_failures=args.rollback_min_failures, collector=collector,
                         models_root=args.models_root, initial_digest=args.model_digest)
    except UntrustedModel as exc:
        print(f"error: not serving {args.model_dir}: {exc}", file=sys.stderr)
        return 1
    except (ModelLoadError, ScoringInputError) as exc:
        print(f"error: cannot serve {args.model_dir}: {exc}", file=sys.stderr)
        return 1
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    import uvicorn

    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="info", access_log=args.access_log)
    return 0


def inference_collector(container: str, connection: str, endpoint: str) -> InferenceCollector | None:
    """Azure ML's data collector, locally: the inputs and outputs of every answered request go to a blob container,
    where the drift check reads them as it does the workspace blob store in Azure."""
    if not container:
        return None
    if not connection:
        raise SystemExit("error: --collect-container needs INFERENCE_STORAGE (a storage connection string)")
    from azure.storage.blob import BlobServiceClient

    from shared.adapters.inference_data import InferenceCollector, blob_writer

    client = BlobServiceClient.from_connection_string(connection).get_container_client(container)
    try:
        client.create_container()
    except Exception as exc:  # already there, or storage not reachable yet: writes retry later
        log.info("inference data container %s: %s", container, type(exc).__name__)
    return InferenceCollector(blob_writer(client), endpoint=endpoint).start()
