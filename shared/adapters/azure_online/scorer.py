"""Scoring through the managed online endpoint: the one scoring client (shared/adapters/scoring.py), under the
name the deployer and older imports use."""

from __future__ import annotations

from shared.adapters.scoring import EndpointScorer
from shared.scoring.contract import DEPLOYMENT_HEADER

AzureEndpointScorer = EndpointScorer

__all__ = ["DEPLOYMENT_HEADER", "AzureEndpointScorer"]
