"""Metrics: histograms and counters, created once per name and recorded with sanitized attributes."""

from __future__ import annotations

from typing import Any

from shared.telemetry.attributes import sanitize
from shared.telemetry.state import _lock, _state


def record_metric(name: str, value: float, *, kind: str = "histogram", unit: str = "", **attributes: Any) -> None:
    """Record a measurement: `kind="histogram"` (durations, sizes, scores) or `kind="counter"` (monotonic counts;
    `value` is the increment). A no-op until `configure()` set up a backend with metrics."""
    meter = _state.meter
    if meter is None:
        return
    key = (kind, name)
    instrument = _state.instruments.get(key)
    if instrument is None:
        with _lock:
            instrument = _state.instruments.get(key)
            if instrument is None:
                if kind == "counter":
                    instrument = meter.create_counter(name, unit=unit)
                elif kind == "histogram":
                    instrument = meter.create_histogram(name, unit=unit)
                else:
                    raise ValueError(f"metric kind must be 'histogram' or 'counter', got {kind!r}")
                _state.instruments[key] = instrument
    clean = sanitize(attributes)
    if kind == "counter":
        instrument.add(value, clean)
    else:
        instrument.record(value, clean)
