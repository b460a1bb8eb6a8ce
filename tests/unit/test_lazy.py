"""`bootstrap.Lazy`: heavy Azure clients are built on first use, once, not at cold start."""

from __future__ import annotations

from types import SimpleNamespace

from shared.bootstrap import Lazy, LazyScorer


def test_the_factory_runs_on_first_use_only():
    built = []

    def factory():
        built.append(1)
        return SimpleNamespace(jobs="jobs-ops", score=lambda records: {"n": len(records)})

    client = Lazy(factory)
    assert built == []
    assert client.jobs == "jobs-ops" and client.jobs == "jobs-ops" and built == [1]
    assert LazyScorer(factory).score([1, 2]) == {"n": 2} and built == [1, 1]
