"""The `host.json` values that change delivery semantics: `functionTimeout` and the queue options
(`extensions.queues`), which the blob trigger shares for its retries. Read the way the Azure host reads them, so a
value that would be refused in Azure is refused here too."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum

# Defaults and bounds of the Azure host (azure-functions-host src/WebJobs.Script/Config/
# ScriptJobHostOptionsSetup.cs): no `functionTimeout` -> 30 minutes outside the (legacy) Consumption plan, at least
# 1 second, and `-1` means unbounded on the plans that allow it (Flex Consumption, Premium, Dedicated).
# https://learn.microsoft.com/azure/azure-functions/functions-scale#timeout
DEFAULT_FUNCTION_TIMEOUT_S = 30 * 60.0
MIN_FUNCTION_TIMEOUT_S = 1.0

_TIMESPAN = re.compile(r"^(-)?(?:(\d+)\.)?(\d{1,2}):(\d{1,2})(?::(\d{1,2})(?:\.(\d{1,7}))?)?$")


class HostJsonError(ValueError):
    """A host.json value the Azure host would refuse at startup."""


class MessageEncoding(Enum):
    BASE64 = "base64"
    NONE = "none"


@dataclass(frozen=True)
class QueueOptions:
    """`extensions.queues` with the extension's defaults (QueuesOptions, Microsoft.Azure.WebJobs.Extensions.Storage.
    Queues 5.x; https://learn.microsoft.com/azure/azure-functions/functions-bindings-storage-queue#host-json).
    `maxDequeueCount` also bounds blob trigger retries: "The same MaxDequeueCount setting is used for poison blob
    handling and poison queue message handling" (functions-bindings-storage-blob-trigger#poison-blobs; the shared
    blob queue listener is built with QueuesOptions in SharedBlobQueueListenerFactory.cs)."""

    max_dequeue_count: int = 5
    visibility_timeout_s: float = 0.0  # delay before a failed message is visible again
    max_polling_interval_s: float = 60.0
    batch_size: int = 16
    new_batch_threshold: int = 8  # fetch more when this few or fewer are running (batchSize / 2 on one core)
    message_encoding: MessageEncoding = MessageEncoding.BASE64


def timespan_seconds(text: str) -> float:
    """A .NET TimeSpan string (`hh:mm:ss`, `d.hh:mm:ss`, `hh:mm:ss.fff`, or a whole number of days) in seconds."""
    raw = str(text).strip()
    if re.fullmatch(r"-?\d+", raw):
        return int(raw) * 86400.0
    m = _TIMESPAN.match(raw)
    if not m:
        raise HostJsonError(f"'{text}' is not a TimeSpan like 00:05:00")
    sign, days, hours, minutes, seconds, fraction = m.groups()
    if int(hours) > 23 or int(minutes) > 59 or int(seconds or 0) > 59:
        raise HostJsonError(f"'{text}' is not a TimeSpan like 00:05:00")
    total = (int(days or 0) * 86400 + int(hours) * 3600 + int(minutes) * 60 + int(seconds or 0)
             + float(f"0.{fraction}" if fraction else 0))
    return -total if sign else total


def function_timeout_s(host_json: Mapping) -> float | None:
    """Seconds an invocation may run, or None for `-1` (unbounded). Out-of-range values fail startup, as in Azure."""
    raw = host_json.get("functionTimeout")
    if raw is None:
        return DEFAULT_FUNCTION_TIMEOUT_S
    seconds = timespan_seconds(str(raw))
    if seconds == -86400.0:
        return None
    if seconds < MIN_FUNCTION_TIMEOUT_S:
        raise HostJsonError(f"FunctionTimeout must be greater than 00:00:01 (got '{raw}')")
    return seconds


def _section(host_json: Mapping, name: str) -> Mapping:
    section = (host_json.get("extensions") or {}).get(name) or {}
    return section if isinstance(section, Mapping) else {}


def _int(section: Mapping, key: str, default: int, low: int, high: int) -> int:
    raw = section.get(key)
    if raw is None:
        return default
    try:
        value = int(raw)
    except (TypeError, ValueError):
        raise HostJsonError(f"extensions.queues.{key} must be an integer (got {raw!r})") from None
    if not low <= value <= high:
        raise HostJsonError(f"extensions.queues.{key} must be between {low} and {high} (got {value})")
    return value


def queue_options(host_json: Mapping) -> QueueOptions:
    section = _section(host_json, "queues")
    defaults = QueueOptions()
    batch = _int(section, "batchSize", defaults.batch_size, 1, 32)
    threshold_default = batch // 2
    polling = section.get("maxPollingInterval")
    visibility = section.get("visibilityTimeout")
    encoding = str(section.get("messageEncoding") or "base64").lower()
    if encoding not in {e.value for e in MessageEncoding}:
        raise HostJsonError(f"extensions.queues.messageEncoding must be base64 or none (got {encoding!r})")
    max_polling = timespan_seconds(str(polling)) if polling is not None else defaults.max_polling_interval_s
    if max_polling < 0.1:  # QueuesOptions refuses less than QueuePollingIntervals.Minimum (100 ms)
        raise HostJsonError("extensions.queues.maxPollingInterval must be at least 00:00:00.100")
    return QueueOptions(
        max_dequeue_count=_int(section, "maxDequeueCount", defaults.max_dequeue_count, 1, 2**31 - 1),
        visibility_timeout_s=max(0.0, timespan_seconds(str(visibility))) if visibility is not None else 0.0,
        max_polling_interval_s=max_polling,
        batch_size=batch,
        new_batch_threshold=_int(section, "newBatchThreshold", threshold_default, 0, 2**31 - 1),
        message_encoding=MessageEncoding(encoding))
