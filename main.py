"""The Python worker's entry module (app setting PYTHON_SCRIPT_FILE_NAME=main.py).

Named main.py, not function_app.py, because the `function_app/` package holding the triggers would
shadow a `function_app.py` module of the same name.
"""

import azure.functions as func

from shared import redaction

redaction.install_logging()  # from the first line on, the worker's log records mask the secret settings' values

from function_app import (  # noqa: E402 - after the log redaction, so an import-time log line is masked too
    api_docs,
    blob_upload,
    dashboard_http,
    drift_http,
    drift_timer,
    health_http,
    models_http,
    outbox_timer,
    reconcile_timer,
    retrain_http,
    rollout_queue,
    run_completed,
    runs_http,
)

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
for blueprint in (blob_upload.bp, drift_timer.bp, drift_http.bp, reconcile_timer.bp, outbox_timer.bp, retrain_http.bp,
                  run_completed.bp, rollout_queue.bp, runs_http.bp, models_http.bp, health_http.bp, api_docs.bp,
                  dashboard_http.bp):
    app.register_functions(blueprint)
