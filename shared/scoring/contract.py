"""What a managed online endpoint adds around its deployment's answer: one definition for the local endpoint
that serves it and the client that reads it (Azure or local alike).

Learn, "Troubleshoot online endpoints" > "HTTP status codes"
(https://learn.microsoft.com/azure/machine-learning/how-to-troubleshoot-online-endpoints#http-status-codes):
401 without a valid key; 404 when "the endpoint doesn't have any valid deployment with positive weight";
424 "If your model container returns a non-200 response", with the response headers
`ms-azureml-model-error-statuscode` and `ms-azureml-model-error-reason`. The answering deployment is named in
the `azureml-model-deployment` response header; the same request header pins a deployment
(https://learn.microsoft.com/azure/machine-learning/how-to-safely-rollout-online-endpoints).
"""

from __future__ import annotations

from typing import Final

DEPLOYMENT_HEADER: Final = "azureml-model-deployment"  # request: pin a deployment; response: who answered
MODEL_ERROR_STATUS: Final = 424
MODEL_ERROR_STATUS_HEADER: Final = "ms-azureml-model-error-statuscode"
MODEL_ERROR_REASON_HEADER: Final = "ms-azureml-model-error-reason"
MODEL_ERROR_REASON: Final = "model_error"
NO_DEPLOYMENT_STATUS: Final = 404
