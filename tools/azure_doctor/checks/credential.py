"""The `credential` check: a token for Azure Resource Manager, and whose it is."""

from __future__ import annotations

from shared.adapters.pipeline_client import ARM_SCOPE
from tools.azure_doctor.credential import LOGIN_HINT, TokenError, token_identity
from tools.azure_doctor.doctor import Doctor
from tools.azure_doctor.results import OK, Check


def check_credential(doctor: Doctor) -> Check:
    try:
        token = doctor.token(ARM_SCOPE)
    except TokenError as exc:
        return Check("credential", exc.status, str(exc), LOGIN_HINT)
    return Check("credential", OK, f"token for {ARM_SCOPE} obtained for {token_identity(token)}; the checks below "
                                   "run as this identity")
