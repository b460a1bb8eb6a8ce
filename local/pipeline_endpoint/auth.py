"""Bearer tokens per audience, as Azure checks them: each route accepts only a token for its own resource.

Locally a token for scope S is `scoped_token(secret, S)` (shared.adapters.credentials). Audiences: the batch
endpoint's invocation host wants `https://ml.azure.com` (azure-ai-ml `BatchEndpointOperations.invoke` asks for
`_resource_to_scopes(_get_aml_resource_id_from_metadata())`, i.e. https://ml.azure.com/.default), the workspace's
ARM jobs API `https://management.azure.com`, v1 PipelineSubmit settings.pipeline_token_scope (ARM by default).
The 401 bodies follow ARM's error envelope and codes (InvalidAuthenticationToken, InvalidAuthenticationTokenAudience:
https://learn.microsoft.com/azure/azure-resource-manager/troubleshooting/common-deployment-errors); the invocation
host's exact 401 body is not documented (unconfirmed: same envelope assumed)."""

from __future__ import annotations

import hmac

from fastapi import Request
from fastapi.responses import JSONResponse

from shared.adapters.credentials import audience, scoped_token

ML_AUDIENCE = "https://ml.azure.com"
ARM_AUDIENCE = "https://management.azure.com"


def error(status: int, code: str, message: str) -> JSONResponse:
    """Azure's error envelope."""
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


def _unauthorized(code: str, message: str) -> JSONResponse:
    response = error(401, code, message)
    response.headers["WWW-Authenticate"] = ('Bearer authorization_uri="https://login.microsoftonline.com/common", '
                                            'error="invalid_token"')
    return response


def refusal(request: Request, secret: str, scope: str) -> JSONResponse | None:
    """None if the request carries the token of `scope`'s audience; else the 401 Azure would answer."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        return _unauthorized("AuthenticationFailed", "Authentication failed. The 'Authorization' header is missing "
                                                     "or not a Bearer token.")
    wanted = audience(scope)
    if hmac.compare_digest(token.encode(), scoped_token(secret, wanted).encode()):
        return None
    for other in {ML_AUDIENCE, ARM_AUDIENCE} - {wanted}:
        if hmac.compare_digest(token.encode(), scoped_token(secret, other).encode()):
            return _unauthorized("InvalidAuthenticationTokenAudience",
                                 f"The access token has been obtained for wrong audience or resource '{other}'. It "
                                 f"should exactly match with one of the allowed audiences '{wanted}'.")
    return _unauthorized("InvalidAuthenticationToken", "The access token is invalid.")
