"""A pipeline run ended: register its model, compare it with the live one, deploy it only if it is not worse,
prove it answers (or roll back), and record what happened and why."""

from __future__ import annotations

import io
import logging
import time
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import unquote, urlsplit

import pandas as pd

from shared import telemetry
from shared.domain import schema
from shared.domain.evaluation_slice import EvaluationRows
from shared.domain.outcomes import Outcome, RunStatus
from shared.domain.promotion import Decision, PromotionPolicy, decide
from shared.domain.records import AuditRecord, ModelVersion, RunRecord, new_id
from shared.domain.run_events import (
    EventError,
    RunEnd,
    RunEvent,
    confirmation_problem,
    parse_run_event,
    status_outcome,
    topic_problem,
)
from shared.ports import AuditLog, DatasetLog, Deployer, ModelLog, PipelineClient, RolloutQueue, RunLog, Scorer
from shared.scoring.model_digest import same_digest

log = logging.getLogger(__name__)

SMOKE_ROWS = 5


@dataclass(frozen=True)
class Deployment:
    """What a deployment needs (automatic, or a person's promote/rollback): the registry that says what is live,
    the deployer that switches slots, the scorer that proves the endpoint answers (None: not checked), the
    datasets the smoke records come from, and the audit trail."""

    models: ModelLog
    deployer: Deployer
    scorer: Scorer | None
    datasets: DatasetLog
    audit: AuditLog


@dataclass(frozen=True)
class RunCompletion:
    """What finishing a pipeline run needs: the runs we submitted, the pipeline to confirm and read them, the
    promotion policy, the deployment, the workspace whose events are believed (AZUREML_WORKSPACE_ID), and the
    queue a succeeded run's rollout goes to (None: the rollout runs inline, as the CLI and tests may want)."""

    runs: RunLog
    pipeline: PipelineClient
    deployment: Deployment
    policy: PromotionPolicy = field(default_factory=PromotionPolicy)
    workspace_id: str = ""
    rollouts: RolloutQueue | None = None


@dataclass(frozen=True)
class DeliveredEvent:
    """An Event Grid event as the trigger hands it over (no azure.functions here)."""

    id: str
    event_type: str
    subject: str
    data: dict
    topic: str | None = None


def model_location(outputs: dict) -> str:
    model = outputs.get("model") or {}
    uri = model.get("Uri") or model.get("uri") or ""
    if not uri:
        raise RuntimeError("the run finished without a `model` output")
    parts = urlsplit(uri)
    return unquote(parts.path) if parts.scheme == "file" else uri


def smoke_records(datasets: DatasetLog, dataset_version: int, rows: int = SMOKE_ROWS) -> list[dict]:
    """Real records from the data the model was trained on, without the label."""
    dataset = datasets.get(dataset_version)
    if dataset is None:
        return []
    head = datasets.read(dataset)
    frame = pd.read_csv(io.BytesIO(head), nrows=rows)
    return frame[list(schema.FEATURES)].to_dict(orient="records")


class EventNotConfirmed(RuntimeError):
    """The pipeline could not be asked whether a run really ended: raised so the invocation fails, the Event Grid
    extension answers 500 and Event Grid redelivers the event (it retries failed deliveries with backoff for up to
    24 h: https://learn.microsoft.com/azure/event-grid/delivery-and-retry; a failing Event Grid-triggered function
    is retried that way: https://github.com/Azure/azure-functions-python-worker/issues/874; the local host and
    pipeline endpoint do the same). Nothing is lost either way: the run stays Submitted, and the reconcile timer
    finishes it from the pipeline's own status once the pipeline answers."""


def on_run_completed(delivered: DeliveredEvent, completion: RunCompletion,
                     function: str = "run_completed") -> AuditRecord:
    """Event Grid entry: at-least-once and unordered delivery; a run is finished by the first event that claims
    it, later ones are recorded as duplicates, runs this service did not submit are ignored.

    An event is believed only as far as it can be checked: its `topic` must be the workspace (`workspace_id`,
    AZUREML_WORKSPACE_ID), and a terminal status it claims must be what the pipeline's run GET says before any
    run record changes. A forged or stale claim is recorded as `rejected_event` and changes nothing, so the real
    completion (its event, or the reconcile timer) is still handled."""
    audit = completion.deployment.audit
    record = AuditRecord(id=new_id("evt-"), trigger="eventgrid", function=function, started_at=time.time(),
                         source=f"{delivered.event_type} {delivered.subject}")
    record.data["event_id"] = delivered.id
    problem = topic_problem(delivered.topic, completion.workspace_id)
    if problem is not None:
        log.warning("run event %s ignored: %s", delivered.id, problem)
        return audit.finish(record, Outcome.FOREIGN_TOPIC, f"ignored: {problem}")
    try:
        event = parse_run_event(event_id=delivered.id, event_type=delivered.event_type, subject=delivered.subject,
                                data=delivered.data)
    except EventError as exc:
        return audit.finish(record, Outcome.IGNORED, f"ignored: {exc}")
    if event.outcome != RunEnd.IGNORE and completion.runs.get(event.run_id) is not None:
        confirmed = _confirmed(event, record, pipeline=completion.pipeline, audit=audit)
        if isinstance(confirmed, AuditRecord):
            return confirmed
        event = confirmed
    return finish_run(event, record, completion)


def _confirmed(event: RunEvent, record: AuditRecord, *, pipeline: PipelineClient,
               audit: AuditLog) -> RunEvent | AuditRecord:
    """The event as the pipeline confirms it (status and error from the run GET, never from the event), or the
    finished audit record of an event that is not confirmed (nothing else changed)."""
    record.run_id = event.run_id
    record.data["claimed_status"] = event.status[:100]
    try:
        status = pipeline.get_run(event.run_id)
    except Exception as exc:  # any failure to ask means "not confirmed"
        if getattr(exc, "status", None) == 404:
            detail = f"rejected: the pipeline does not know run {event.run_id} (404); nothing changed"
            log.warning("run event %s %s", event.event_id, detail)
            return audit.finish(record, Outcome.REJECTED_EVENT, detail)
        audit.finish(record, Outcome.UNCONFIRMED,
                     f"not confirmed: the pipeline's run GET failed ({type(exc).__name__}: {str(exc)[:200]}); the "
                     "run is left as it is for Event Grid's redelivery or the reconcile timer")
        raise EventNotConfirmed(f"could not confirm the {event.status!r} of run {event.run_id} with the pipeline: "
                                f"{type(exc).__name__}") from exc
    record.data["pipeline_status"] = status.status
    problem = confirmation_problem(event.status, status.status)
    if problem is not None:
        log.warning("run event %s for run %s rejected: %s", event.event_id, event.run_id, problem)
        return audit.finish(record, Outcome.REJECTED_EVENT, f"rejected: {problem}; nothing changed")
    properties = {"error": run_error(status.raw)} if status_outcome(status.status) == RunEnd.FAILED else {}
    return replace(event, status=status.status, properties=properties)


def run_error(raw: dict) -> str:
    """The error a failed run reports in its run GET (v1 `Error`/`error`, or the text under it)."""
    error = raw.get("Error") or raw.get("error") or {}
    if isinstance(error, dict):
        inner = error.get("error") if isinstance(error.get("error"), dict) else error
        return str(inner.get("message") or inner.get("code") or "")[:500] or "run ended without completing"
    return str(error)[:500] or "run ended without completing"


def finish_run(event: RunEvent, record: AuditRecord, completion: RunCompletion) -> AuditRecord:
    """Shared by the event handler and the reconcile timer (which builds `event` from the run's status)."""
    runs, audit = completion.runs, completion.deployment.audit
    record.run_id = event.run_id
    if event.outcome == RunEnd.IGNORE:
        return audit.finish(record, Outcome.IGNORED, f"ignored: run status {event.status} ends nothing")
    known = runs.get(event.run_id)
    if known is None:
        return audit.finish(record, Outcome.IGNORED, "ignored: not a run this service submitted")
    record.dataset_version = known.dataset_version
    run = runs.claim(event.run_id)
    if run is None:
        return audit.finish(record, Outcome.DUPLICATE, f"duplicate event: run already {known.status.lower()}")
    record.stage("run_completed")
    audit.save(record)
    if event.outcome != RunEnd.FAILED and completion.rollouts is not None:
        return hand_over(event, run, record, completion.rollouts, audit)
    return complete_claimed(event, run, record, completion)


def hand_over(event: RunEvent, run: RunRecord, record: AuditRecord, rollouts: RolloutQueue,
              audit: AuditLog) -> AuditRecord:
    """Registering and rolling out take minutes in Azure, and Event Grid waits 30 s for an answer before it
    redelivers (https://learn.microsoft.com/azure/event-grid/delivery-and-retry): the claimed run's rollout goes
    to the queue (function_app/rollout_queue.py) and the delivery is answered now. The run stays Handling and the
    record open (stage `rollout_queued`) until the rollout finishes them."""
    record.stage("rollout_queued")
    audit.save(record)
    rollouts.put({"run_id": run.run_id, "audit_id": record.id, "status": event.status, "via": event.event_type})
    return record


def complete_claimed(event: RunEvent, run: RunRecord, record: AuditRecord, completion: RunCompletion, *,
                     retried: bool = False) -> AuditRecord:
    """The claimed run's completion: registration, evaluation and rollout as resumable steps (each one recorded on
    `record`, so a retry with the same record resumes after the last step done). `retried`: a failing step raises
    (the queue delivers the message again, and its poison handler records the end) instead of ending the run
    `failed` at once."""
    with telemetry.span("run_completed", kind="consumer", parent={"traceparent": run.traceparent},
                        run_id=run.run_id, dataset_version=run.dataset_version, status=event.status,
                        via=event.event_type) as span:
        done = _complete(event, run, record, completion, retried=retried)
        span.set(outcome=done.outcome, model_version=done.model_version)
        if done.outcome in (Outcome.FAILED, Outcome.ROLLED_BACK):
            span.fail(done.detail)
    telemetry.record_metric("retrain.completions", 1, kind="counter", outcome=done.outcome)
    if done.data.get("upload_to_serving_s") is not None:
        telemetry.record_metric("retrain.upload_to_serving_s", done.data["upload_to_serving_s"], unit="s")
    return done


def _complete(event: RunEvent, run: RunRecord, record: AuditRecord, completion: RunCompletion, *,
              retried: bool) -> AuditRecord:
    runs, deployment = completion.runs, completion.deployment
    models, audit = deployment.models, deployment.audit
    try:
        if event.outcome == RunEnd.FAILED:
            detail = str(event.properties.get("error") or event.status)
            set_run(runs, run, RunStatus.FAILED, detail)
            return audit.finish(record, Outcome.FAILED, f"run {event.status.lower()}: {detail}; nothing deployed")

        model = registered(run, models)  # a retried rollout: registered before, never twice
        resuming = model is not None
        if model is None:
            with telemetry.span("register_model"):
                finished = completion.pipeline.get_run(event.run_id)
                model_dir = model_location(finished.outputs)
                metrics = dict(finished.outputs.get("metrics") or {})
                model = models.register(run_id=run.run_id, dataset_version=run.dataset_version, model_dir=model_dir,
                                        metrics=metrics, digest=str(metrics.get("model_digest") or ""))
        metrics = dict(model.metrics or {})
        record.model_version = model.version
        record.stage("registered")
        audit.save(record)

        with telemetry.span("evaluate", model_version=model.version) as span:
            live = models.live()
            if live is not None and live.version == model.version:  # a retry after set_live: judged before
                live = models.previous_live()
            decision = compare(completion.policy, metrics, live)
            span.set(decision=decision.outcome, live_version=live.version if live else None,
                     challenger_auc=(decision.challenger or {}).get("auc"),
                     champion_auc=(decision.champion or {}).get("auc"))
        record.stage("evaluated")
        record.data["decision"] = decision.to_dict()
        record.data["metrics"] = {k: metrics[k] for k in ("auc", "accuracy", "f1") if k in metrics}
        if not decision.promote:
            set_run(runs, run, RunStatus.KEPT_CHAMPION, decision.reason, model_version=model.version)
            return audit.finish(record, Outcome.KEPT_CHAMPION,
                        f"kept v{live.version if live else '-'} live; new model v{model.version} not deployed: "
                        f"{decision.reason}")

        audit.save(record)
        result = deploy_version(model, deployment, samples=smoke_records(deployment.datasets, run.dataset_version),
                                record=record, resuming=resuming)
        if result["outcome"] != Outcome.DEPLOYED:
            set_run(runs, run, RunStatus.ROLLED_BACK, result["detail"], model_version=model.version)
            return audit.finish(record, result["outcome"], result["detail"])
        set_run(runs, run, RunStatus.DEPLOYED, "", model_version=model.version)
        if run.uploaded_at:
            record.data["upload_to_serving_s"] = round(record.stages["serving"] - run.uploaded_at, 3)
        return audit.finish(record, Outcome.DEPLOYED, f"model v{model.version} serving: {decision.reason}")
    except Exception as exc:
        log.exception("completion of run %s failed", event.run_id)
        if retried:
            record.data["last_error"] = f"{type(exc).__name__}: {str(exc)[:300]}"
            audit.save(record)
            raise
        set_run(runs, run, RunStatus.FAILED, f"completion failed: {exc}")
        return audit.finish(record, Outcome.FAILED, f"completion failed: {exc}")


def registered(run: RunRecord, models: ModelLog) -> ModelVersion | None:
    """The model a previous try of this run's completion registered, if any (a registration is one step)."""
    return next((m for m in models.list() if m.run_id == run.run_id), None)


def compare(policy: PromotionPolicy, metrics: dict[str, Any], live: ModelVersion | None) -> Decision:
    """The run's evaluation of both models on its held-out rows, when it provably scored the model that is live
    now: the content hash of the folder it scored (`champion.digest`) equals the live model's registered digest.
    Otherwise (the live model changed since the run was submitted, the run could not score it, or either hash is
    missing or differs) the recorded held-out figures of both runs (different rows: noted as the basis)."""
    evaluation = metrics.get("evaluation_slice") or {}
    challenger = dict(evaluation.get("challenger") or {})
    if not challenger and live is None and "auc" in metrics:  # a run without held-out rows: its CV figures
        return _with_basis(decide(policy, {"auc": metrics["auc"]}, None), "cross_validation")
    if live is None:
        return _with_basis(decide(policy, challenger, None), f"held_out_rows, {_rows(evaluation)}")
    champion = evaluation.get("champion") or None
    scored = str((champion or {}).get("digest") or "")
    if champion and same_digest(scored, live.digest):
        noise = (evaluation.get("difference") or {}).get("se")  # the paired AUC difference's SE on these rows
        return _with_basis(decide(policy, challenger, champion, champion_version=live.version,
                                  noise=noise if isinstance(noise, int | float) else None),
                           f"same_rows, {_rows(evaluation)}")
    recorded = dict(((live.metrics or {}).get("evaluation_slice") or {}).get("challenger") or {})
    decision = decide(policy, challenger, recorded or None, champion_version=live.version)
    if not champion:
        why = evaluation.get("champion_error") or "the run did not score the live model"
    elif not live.digest:
        why = f"the live v{live.version} has no registered digest"
    elif str(champion.get("version")) != str(live.version):
        why = "the run scored v{} but v{} is live now".format(champion.get("version"), live.version)
    else:
        why = f"the model the run scored is not the registered v{live.version} (content digest differs)"
    return _with_basis(decision, f"recorded_figures ({why})")


def _rows(evaluation: dict[str, Any]) -> str:
    """Which held-out rows both were scored on (shared.domain.evaluation_slice.EvaluationRows), for the reason."""
    rule = EvaluationRows.NEWEST if evaluation.get("rule") == EvaluationRows.NEWEST else EvaluationRows.HASH
    return f"{evaluation.get('rows', '?')} rows {rule.how}"


def _with_basis(decision: Decision, basis: str) -> Decision:
    return Decision(decision.outcome, f"{decision.reason} [basis: {basis}]", decision.challenger,
                    decision.champion)


def deploy_version(model: ModelVersion, deployment: Deployment, *, samples: list[dict],
                   record: AuditRecord, resuming: bool = False) -> dict[str, Any]:
    """Blue/green deploy (the deployer smoke-tests the idle slot and switches), then check that the endpoint
    answers with the new version; if it does not, switch back. Returns {"outcome", "detail"}.

    Resumable: the switch is recorded before (`deploying`) and after (`deployed`) it happens; a retry of the same
    record that finds `deployed`, or finds `deploying` and an endpoint already answering with this version (the
    try was killed after the switch), does not switch again. `resuming` (an earlier completion of the same run
    registered the model, e.g. before the reconcile timer released the run) asks the endpoint even without a
    `deploying` stage on this record."""
    deployer, scorer = deployment.deployer, deployment.scorer
    if not _switched(model, record, scorer, resuming=resuming):
        record.stage("deploying")
        record.data["deploying_version"] = model.version
        deployment.audit.save(record)
        with telemetry.span("deploy", model_version=model.version) as span:
            answer = deployer.deploy(model_dir=model.model_dir, version=model.version, smoke_records=samples,
                                     digest=model.digest)  # a local endpoint loads the folder only with this content
            span.set(slot=answer.get("slot"), previous_version=answer.get("previous"))
        record.stage("deployed")
        record.data["deployment"] = {k: answer.get(k) for k in ("slot", "previous_slot", "previous", "seconds")
                                     if k in answer}
        deployment.audit.save(record)
    if scorer is not None:
        try:
            reply = scorer.score(samples[:1] if samples else [])
            served = str(reply.get("model_version"))
            if served != str(model.version):
                raise RuntimeError(f"the endpoint answered with model {served}, expected {model.version}")
            record.data["smoke_answer"] = reply.get("result")
        except Exception as exc:  # the switch happened but the endpoint does not serve the model: undo it
            log.warning("model v%s failed its post-switch check: %s; rolling back", model.version, exc)
            back = deployer.rollback(from_version=model.version)
            record.stage("rolled_back")
            record.data["rollback"] = back
            return {"outcome": Outcome.ROLLED_BACK,
                    "detail": f"model v{model.version} failed its check after the switch ({exc}); "
                              f"rolled back to v{back.get('rolled_back_to') or back.get('deployed')}"}
    record.stage("serving")
    deployment.models.set_live(model.version)
    return {"outcome": Outcome.DEPLOYED, "detail": ""}


def _switched(model: ModelVersion, record: AuditRecord, scorer: Scorer | None, *, resuming: bool) -> bool:
    """Whether an earlier try already switched traffic to `model` (see deploy_version)."""
    began = record.data.get("deploying_version") == model.version
    if began and "deployed" in record.stages:
        return True
    if not (began or resuming):
        return False
    if scorer is None:
        return False  # nothing to ask: deploy again (the deployer's switch is to the same version)
    try:
        served = str(scorer.score([]).get("model_version"))
    except Exception:  # an endpoint that cannot answer: the check after the switch decides
        return False
    if served == str(model.version):
        record.stage("deployed")
        record.data["deployment"] = {"resumed": True}
        return True
    return False


def set_run(runs: RunLog, run: RunRecord, status: RunStatus, detail: str, *, model_version: int | None = None) -> None:
    run.status, run.detail, run.finished_at = status, detail, time.time()
    if model_version is not None:
        run.model_version = model_version
    runs.save(run)
