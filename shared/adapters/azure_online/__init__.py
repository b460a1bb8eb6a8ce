"""Blue/green redeploys of the MLflow model on an Azure ML managed online endpoint (azure-ai-ml v2).

Same interface as `LocalScoringDeployer`, so the completion handler can use either. A deploy registers the
model, creates it as the idle colour's deployment (no-code: MLflow models need no scoring script or
environment), optionally mirrors live traffic to it, smoke-tests it directly, and only then moves 100 % of the
traffic in one endpoint update and deletes the old deployment. Anything failing before that update leaves the
traffic as it was and removes the half-made deployment, so a bad model never serves.

Azure keeps one deployment after a success, so which model version is live and which was live before is kept
in tags: `model_version` on each deployment, `live_model_version` / `previous_model_version` on the endpoint.
`rollback()` redeploys the previous version through the same path.

The `MLClient` is built elsewhere (credential from azure-identity). The endpoint key is only ever fetched for
the scoring client; it is never logged, and every message built from a service error is redacted first.

One job per module: `deployer` (the rollout), `endpoint_client` (the MLClient calls on the endpoint, redacted),
`scorer` (scoring through the endpoint), `payloads` (the MLflow request and answers), `model_refs` (which model
a deployment serves, and our tags), `service_errors` (reading an Azure error).
"""

from shared.adapters.azure_online.deployer import MAX_MIRROR_PERCENT, SLOTS, AzureOnlineDeployer
from shared.adapters.azure_online.model_refs import (
    LIVE_TAG,
    MODEL_TAG,
    PREVIOUS_MODEL_TAG,
    PREVIOUS_TAG,
    VERSION_TAG,
    model_identity,
    model_version_of,
)
from shared.adapters.azure_online.payloads import FALLBACK_RECORD, example_records, mlflow_request, parse_predictions
from shared.adapters.azure_online.scorer import DEPLOYMENT_HEADER, AzureEndpointScorer
from shared.adapters.azure_online.service_errors import RETRYABLE_STATUS

__all__ = [
    "DEPLOYMENT_HEADER", "FALLBACK_RECORD", "LIVE_TAG", "MAX_MIRROR_PERCENT", "MODEL_TAG", "PREVIOUS_MODEL_TAG",
    "PREVIOUS_TAG", "RETRYABLE_STATUS", "SLOTS", "VERSION_TAG", "AzureEndpointScorer", "AzureOnlineDeployer",
    "example_records", "mlflow_request", "model_identity", "model_version_of", "parse_predictions",
]
