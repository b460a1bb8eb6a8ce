"""Durable webhook state in Azure Tables, shared by every Functions instance: replay guard, idempotency keys,
per-caller rate limits, the per-caller count of refused unauthenticated requests (RejectionLog) and the drift
check's single-flight lease (SingleFlight). Each decision is one conditional write (insert, or update on the ETag
just read), so concurrent instances cannot both win; no in-process state is trusted.

Order in the signed routes (shared.services.http_guard): `RejectionLog.throttled`, cheap checks, verify the
signature, `ReplayGuard.remember`, `RateLimiter.hit`, then `IdempotencyStore.begin`, handle, `complete`/`abandon`.

One store per module (`replay`, `idempotency`, `rate_limit`, `rejections`, `single_flight`); `tables` holds the
conditional writes they share.
"""

from shared.adapters.webhook_state.idempotency import IdempotencyKeyError, IdempotencyResult, IdempotencyStore, State
from shared.adapters.webhook_state.rate_limit import RateDecision, RateLimiter
from shared.adapters.webhook_state.rejections import RejectionCount, RejectionLog
from shared.adapters.webhook_state.replay import ReplayGuard
from shared.adapters.webhook_state.single_flight import Claim, SingleFlight

__all__ = ["Claim", "IdempotencyKeyError", "IdempotencyResult", "IdempotencyStore", "RateDecision", "RateLimiter",
           "RejectionCount", "RejectionLog", "ReplayGuard", "SingleFlight", "State"]
