"""Every adapter bootstrap can choose satisfies the Protocol of shared.ports that the services call it through.

Checked structurally from the classes (no instance, no network): each member the Protocol lists exists on the
class, and a method accepts the Protocol's parameters by the same names and kinds (extra parameters only with
defaults). Renaming a method or a parameter on either side fails here, not at the first call in Azure.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any

import pytest

from shared import bootstrap, ports
from shared.adapters.azure_online import AzureEndpointScorer, AzureOnlineDeployer
from shared.adapters.dataset_store import DatasetStore
from shared.adapters.drift_offload import AzureMLDriftJobs, JobState, LocalDriftJobs, WindowPlan, WindowStorage
from shared.adapters.incoming import IncomingBlobs
from shared.adapters.job_outputs import WithJobOutputs
from shared.adapters.outbox import Outbox
from shared.adapters.pipeline_client import BatchEndpointPipelineClient, PipelineRun, PublishedPipelineClient
from shared.adapters.quarantine import Quarantine
from shared.adapters.record_stores import AuditStore, ModelRegistry, RunStore
from shared.adapters.reports import ContainerReports
from shared.adapters.rollout_queue import StorageRolloutQueue
from shared.adapters.scoring import LocalScoringDeployer, ScoringClient
from shared.adapters.webhook_state import (
    Claim,
    IdempotencyResult,
    IdempotencyStore,
    RateDecision,
    RateLimiter,
    RejectionLog,
    ReplayGuard,
    SingleFlight,
)

IMPLEMENTATIONS: dict[type, tuple[type, ...]] = {
    ports.AuditLog: (AuditStore,),
    ports.UploadSource: (IncomingBlobs,),
    ports.RunLog: (RunStore,),
    ports.ModelLog: (ModelRegistry,),
    ports.DatasetLog: (DatasetStore,),
    ports.QuarantineArea: (Quarantine,),
    ports.RetrainOutbox: (Outbox,),
    ports.PipelineClient: (PublishedPipelineClient, BatchEndpointPipelineClient, WithJobOutputs),
    ports.Deployer: (LocalScoringDeployer, AzureOnlineDeployer),
    ports.Scorer: (ScoringClient, AzureEndpointScorer),
    ports.Replays: (ReplayGuard,),
    ports.RateLimit: (RateLimiter,),
    ports.Refusals: (RejectionLog,),
    ports.Idempotency: (IdempotencyStore,),
    ports.Lease: (SingleFlight,),
    ports.WindowStore: (WindowStorage,),
    ports.DriftJobs: (AzureMLDriftJobs, LocalDriftJobs),
    ports.RolloutQueue: (StorageRolloutQueue,),
    ports.ReportReader: (ContainerReports,),
    # the values the services read back
    ports.PipelineRunState: (PipelineRun,),
    ports.IdempotencyStart: (IdempotencyResult,),
    ports.RateVerdict: (RateDecision,),
    ports.LeaseClaim: (Claim,),
    ports.WindowPlanView: (WindowPlan,),
    ports.JobResult: (JobState,),
}


def protocol_members(protocol: type) -> dict[str, Any]:
    """name -> the Protocol's declaration (a function, a property, or an annotation for a plain attribute)."""
    members: dict[str, Any] = {}
    for name, value in vars(protocol).items():
        if name.startswith("_"):
            continue
        if inspect.isfunction(value) or isinstance(value, property):
            members[name] = value
    for name, annotation in vars(protocol).get("__annotations__", {}).items():
        members.setdefault(name, annotation)
    if "__call__" in vars(protocol):
        members["__call__"] = vars(protocol)["__call__"]
    return members


def has_attribute(cls: type, name: str) -> bool:
    """A class attribute or property, a dataclass field, or an attribute its __init__ sets."""
    if hasattr(cls, name):
        return True
    if dataclasses.is_dataclass(cls) and name in {f.name for f in dataclasses.fields(cls)}:
        return True
    init = vars(cls).get("__init__")
    return init is not None and f"self.{name} =" in inspect.getsource(init)


def signature_problems(declared, implemented, where: str) -> list[str]:
    """What a caller using the Protocol's signature could not pass to the implementation."""
    want = [p for p in inspect.signature(declared).parameters.values() if p.name != "self"]
    have = inspect.signature(implemented).parameters
    named_ok = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in have.values())
    problems = []
    positional = [p for p in have.values() if p.name != "self"
                  and p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    for index, param in enumerate(want):
        if param.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD):
            if index >= len(positional) or positional[index].name != param.name:
                problems.append(f"{where}: positional parameter {index + 1} should be {param.name!r}")
        elif param.kind is inspect.Parameter.KEYWORD_ONLY and param.name not in have and not named_ok:
            problems.append(f"{where}: keyword {param.name!r} missing")
        if (param.default is not inspect.Parameter.empty and param.name in have
                and have[param.name].default is inspect.Parameter.empty):
            problems.append(f"{where}: {param.name!r} is optional in the Protocol but required here")
    wanted = {p.name for p in want}
    for param in have.values():
        if param.name == "self" or param.name in wanted or param.kind in (inspect.Parameter.VAR_POSITIONAL,
                                                                           inspect.Parameter.VAR_KEYWORD):
            continue
        if param.default is inspect.Parameter.empty:
            problems.append(f"{where}: parameter {param.name!r} has no default (the Protocol does not pass it)")
    return problems


def conformance_problems(protocol: type, cls: type) -> list[str]:
    problems = []
    for name, declared in protocol_members(protocol).items():
        where = f"{cls.__name__}.{name}"
        if not has_attribute(cls, name):
            problems.append(f"{where} is missing ({protocol.__name__} declares it)")
            continue
        if inspect.isfunction(declared):
            implemented = getattr(cls, name)
            if isinstance(inspect.getattr_static(cls, name), property) or not callable(implemented):
                problems.append(f"{where} is not a method")
                continue
            problems += signature_problems(declared, implemented, where)
    return problems


@pytest.mark.parametrize(("protocol", "cls"), [(p, c) for p, classes in IMPLEMENTATIONS.items() for c in classes],
                         ids=lambda v: v.__name__)
def test_each_adapter_implements_its_port(protocol, cls):
    assert conformance_problems(protocol, cls) == []


def test_every_port_has_an_implementation_listed():
    declared = {v for v in vars(ports).values()
                if isinstance(v, type) and getattr(v, "_is_protocol", False) and v.__module__ == ports.__name__}
    callables = {ports.InferenceReader, ports.ReportWriter}  # functions, checked below
    assert declared - callables == set(IMPLEMENTATIONS)


def test_the_reader_and_writer_bootstrap_builds_take_what_the_ports_say():
    class Container:
        container_name = "c"

    reader, writer = bootstrap.inference_reader(Container(), "endpoint"), bootstrap.report_writer(Container())
    assert list(inspect.signature(reader).parameters) == ["since", "until"]
    assert list(inspect.signature(writer).parameters) == ["name", "html"]


# The check itself fails when an implementation drifts from its Protocol ------------------------------------------
class _Renamed:
    def submit_run(self, *, experiment, parameters, data_paths=None): ...
    def get_run(self, run_id): ...


class _WrongName:
    def submit(self, *, experiment, params, data_paths=None): ...
    def get_run(self, run_id): ...


class _ExtraRequired:
    def submit(self, *, experiment, parameters, data_paths=None, region): ...
    def get_run(self, run_id): ...


class _Required:
    def submit(self, *, experiment, parameters, data_paths): ...
    def get_run(self, run_id): ...


class _Positional:
    def submit(self, *, experiment, parameters, data_paths=None): ...
    def get_run(self, job_id): ...


@pytest.mark.parametrize(("broken", "says"), [(_Renamed, "submit is missing"), (_WrongName, "'parameters' missing"),
                                              (_ExtraRequired, "'region' has no default"),
                                              (_Positional, "should be 'run_id'"),
                                              (_Required, "'data_paths' is optional in the Protocol")])
def test_the_check_fails_for_a_renamed_method_or_parameter(broken, says):
    problems = conformance_problems(ports.PipelineClient, broken)
    assert any(says in p for p in problems), problems
