"""How an Azure ML service error is read: its HTTP status, whether another attempt may succeed, whether the
resource is missing. The azure-core exceptions are imported when first needed (the import is heavy)."""

from __future__ import annotations

RETRYABLE_STATUS = frozenset({408, 424, 429, 500, 502, 503, 504})


def status_of(exc: BaseException) -> int | None:
    status = getattr(exc, "status_code", None)
    if status is None:
        status = getattr(getattr(exc, "response", None), "status_code", None)
    return status if isinstance(status, int) else None


def transient(exc: BaseException) -> bool:
    """Worth another smoke attempt: the container may still be warming up behind the front door."""
    from azure.core.exceptions import ServiceRequestError, ServiceResponseError

    status = status_of(exc)
    if status is not None:
        return status in RETRYABLE_STATUS
    return isinstance(exc, ServiceRequestError | ServiceResponseError | ConnectionError | TimeoutError)


def not_found(exc: BaseException) -> bool:
    from azure.core.exceptions import ResourceNotFoundError

    return isinstance(exc, ResourceNotFoundError) or status_of(exc) == 404
