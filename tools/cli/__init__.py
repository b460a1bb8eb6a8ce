"""`retrain`: run the embedded stack, feed it data, read the audit trail, train and score by hand."""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path

from shared.domain.outcomes import Outcome


def _stack_config(args):
    from local.connection import local_dir
    from local.processes import free_port
    from local.stack import StackConfig

    config = StackConfig(local_dir=local_dir(), host_port=args.port, training_budget_s=args.budget_s)
    if args.free_ports:
        for name in ("blob_port", "queue_port", "table_port", "host_port", "pipeline_port", "scoring_port"):
            setattr(config, name, free_port())
    return config


def cmd_session(args, *, upload: bool, once: bool) -> int:
    from local.session import run_session

    data = Path(args.data).resolve() if getattr(args, "data", None) else None
    if data is not None and not data.exists():
        print(f"retrain: {data} does not exist", file=sys.stderr)
        return 2
    return run_session(config=_stack_config(args), data=data, upload=upload, once=once, timeout_s=args.timeout_s)


def cmd_upload(args) -> int:
    from local.connection import StackNotRunning, find_stack
    from local.session import upload_file

    path = Path(args.file)
    if not path.is_file():
        print(f"retrain upload: {path} is not a file", file=sys.stderr)
        return 2
    try:
        stack = find_stack()
    except StackNotRunning as exc:
        print(f"retrain upload: {exc}", file=sys.stderr)
        return 1
    name = upload_file(stack.storage_connection, path, args.name, args.container)
    print(f"uploaded {path} ({path.stat().st_size:,} bytes) to {name}; follow it with `retrain status`")
    return 0


def _when(ts: float | None) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S") if ts else "-"


def _timings(record) -> str:
    s, parts = record.stages, []
    start = s.get("uploaded") or record.started_at
    if "accepted" in s:
        parts.append(f"post {s['accepted'] - start:.2f}s")
    if "serving" in s:
        parts.append(f"serve {s['serving'] - record.started_at:.1f}s")
        if record.data.get("upload_to_serving_s") is not None:
            parts.append(f"upload→serving {record.data['upload_to_serving_s']:.1f}s")
    if record.finished_at:
        parts.append(f"took {record.finished_at - record.started_at:.2f}s")
    return ", ".join(parts)


def cmd_status(args) -> int:
    from rich.console import Console
    from rich.table import Table

    from local.connection import StackNotRunning

    try:
        stores = _stores()
    except StackNotRunning as exc:
        print(f"retrain status: {exc}", file=sys.stderr)
        return 1
    records = stores.audit.list(limit=args.limit)
    if args.json:
        for record in records:
            print(json.dumps(record.to_dict(), default=str))
        return 0
    table = Table(title=f"audit trail ({len(records)} most recent)", show_lines=False)
    for column in ("when (UTC)", "trigger", "dataset", "pipeline run", "outcome", "model", "timings", "detail"):
        table.add_column(column, overflow="fold")
    for r in records:
        table.add_row(_when(r.started_at), f"{r.trigger}:{r.function}",
                      f"v{r.dataset_version}" if r.dataset_version else "-", r.run_id or "-", r.outcome,
                      f"v{r.model_version}" if r.model_version else "-", _timings(r), r.detail)
    Console(width=max(160, Console().width)).print(table)
    return 0


COMPLETION_FUNCTIONS = ("run_completed", "reconcile_timer", "promote", "rollback")
# events that changed nothing (audited, but not completions): duplicates, non-events, and events not believed
NOT_COMPLETIONS = (Outcome.IGNORED, Outcome.DUPLICATE, Outcome.FOREIGN_TOPIC, Outcome.REJECTED_EVENT,
                   Outcome.UNCONFIRMED)


def _figure(side: dict | None, key: str = "auc") -> str:
    value = (side or {}).get(key)
    return f"{value:.4f}" if isinstance(value, int | float) else "-"


def history_rows(records) -> list[dict]:
    """Completion outcomes (event, reconcile, promote, rollback) with both models' figures and the reason."""
    rows = []
    for r in records:
        if r.function not in COMPLETION_FUNCTIONS or r.outcome in NOT_COMPLETIONS \
                or (r.function == "reconcile_timer" and not r.run_id):
            continue
        decision = r.data.get("decision") or {}
        rows.append({"id": r.id, "at": r.started_at, "function": r.function, "trigger": r.trigger,
                     "run_id": r.run_id, "dataset_version": r.dataset_version, "model_version": r.model_version,
                     "outcome": r.outcome, "reason": r.detail, "challenger": decision.get("challenger"),
                     "champion": decision.get("champion"), "deployment": r.data.get("deployment"),
                     "replaced": r.data.get("replaced"), "stages": r.stages,
                     "seconds": round(r.finished_at - r.started_at, 3) if r.finished_at else None})
    return rows


def cmd_history(args) -> int:
    from rich.console import Console
    from rich.table import Table

    from local.connection import StackNotRunning

    try:
        stores = _stores()
    except StackNotRunning as exc:
        print(f"retrain history: {exc}", file=sys.stderr)
        return 1
    rows = []
    for record in stores.audit.newest(page=min(max(args.limit * 4, 50), 1000)):  # newest first, a page at a time
        rows[:0] = history_rows([record])
        if len(rows) >= args.limit:
            break
    if args.json:
        for row in rows:
            print(json.dumps(row, default=str))
        return 0
    table = Table(title=f"deploy history ({len(rows)} most recent)")
    for column in ("when (UTC)", "by", "run", "model", "outcome", "new AUC", "live AUC", "slot", "reason"):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(_when(row["at"]), row["function"], row["run_id"] or "-",
                      f"v{row['model_version']}" if row["model_version"] else "-", row["outcome"],
                      _figure(row["challenger"]), _figure(row["champion"]),
                      str((row["deployment"] or {}).get("slot") or "-"), row["reason"])
    Console(width=max(160, Console().width)).print(table)
    return 0


def _stores():
    from local.connection import find_stack
    from shared.bootstrap import build_stores
    from shared.settings import Settings

    return build_stores(Settings(storage_connection=find_stack().storage_connection))


def _deploy_parts() -> dict:
    """Registry, deployer and scorer: the Azure ones from app settings (RETRAIN_MODE=azure), else the running
    local stack's, with its keys from `.local/secrets.json`."""
    if os.environ.get("RETRAIN_MODE", "").strip().lower() == "azure":
        from shared.bootstrap import build
        from shared.settings import get_settings

        s = build(get_settings())
        return {"models": s.models, "deployer": s.deployer, "scorer": s.scorer, "datasets": s.datasets,
                "audit": s.audit}
    from local import stack_secrets
    from local.connection import find_stack, local_dir
    from shared.adapters.scoring import LocalScoringDeployer, ScoringClient

    stack = find_stack()
    if not stack.scoring_url:
        raise RuntimeError("the running stack has no scoring endpoint URL (set SCORING_URL)")
    secrets = stack_secrets.load_or_create(local_dir())
    stores = _stores()
    return {"models": stores.models, "datasets": stores.datasets, "audit": stores.audit,
            "deployer": LocalScoringDeployer(stack.scoring_url, secrets["scoring_admin_key"]),
            "scorer": ScoringClient(stack.scoring_url, secrets["scoring_key"])}


def cmd_override(args) -> int:
    from local.connection import StackNotRunning
    from shared.services.manual_deploy import promote, rollback

    who = os.environ.get("USER") or os.environ.get("USERNAME") or "cli"
    try:
        parts = _deploy_parts()
    except (StackNotRunning, RuntimeError) as exc:
        print(f"retrain {args.command}: {exc}", file=sys.stderr)
        return 1
    if args.command == "promote":
        record = promote(args.version, requested_by=who, **parts)
    else:
        record = rollback(requested_by=who, **parts)
    ok = record.outcome in (Outcome.PROMOTED, Outcome.ROLLED_BACK)
    print(f"{record.outcome}: {record.detail} (audit {record.id})", file=sys.stdout if ok else sys.stderr)
    return 0 if ok else 1


def cmd_retry(args) -> int:
    """A retrain request that failed (its submit deadline passed) back into the outbox, with a new deadline; the
    running host's outbox timer submits it."""
    from local.connection import StackNotRunning, find_stack
    from shared.adapters import storage
    from shared.adapters.outbox import Outbox
    from shared.bootstrap import build_stores
    from shared.services.dispatch import DispatchPolicy, retry
    from shared.settings import Settings

    try:
        settings = Settings(storage_connection=find_stack().storage_connection,
                            submit_deadline_s=float(os.environ.get("SUBMIT_DEADLINE_S") or 3600))
    except StackNotRunning as exc:
        print(f"retrain retry: {exc}", file=sys.stderr)
        return 1
    stores = build_stores(settings)
    outbox = Outbox(storage.ensure_table(storage.table_service(settings), settings.outbox_table))
    try:
        request = retry(args.request, outbox=outbox, audit=stores.audit,
                        policy=DispatchPolicy(deadline_s=settings.submit_deadline_s))
    except (LookupError, ValueError) as exc:
        print(f"retrain retry: {exc.args[0]}", file=sys.stderr)
        return 1
    print(f"queued again: request {request.id} (dataset v{request.dataset_version}, {request.reason}); the "
          "outbox timer submits it when nothing is in flight")
    return 0


def cmd_train(args) -> int:
    from shared.jobs.training import job

    argv = ["--data", args.data, "--out", args.out, "--budget-s", str(args.budget_s), "--seed", str(args.seed)]
    if args.exclude_columns:
        argv += ["--exclude-columns", args.exclude_columns]
    return job.main(argv)


def cmd_evaluate(args) -> int:
    from shared.jobs.training.evaluate import EvaluationError, evaluate

    path = Path(args.data)
    if not path.is_file():
        print(f"retrain evaluate: {path} is not a file", file=sys.stderr)
        return 2
    try:
        figures = evaluate(Path(args.model), path.read_bytes())
    except EvaluationError as exc:
        print(f"retrain evaluate: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(figures))
    else:
        print("  ".join(f"{k}={v}" for k, v in figures.items()))
    return 0


def cmd_azure_publish(args) -> int:
    from shared.jobs import publish as azure_publish

    plan = azure_publish.PublishPlan(endpoint_name=args.endpoint_name, deployment_name=args.deployment_name,
                                     compute=args.compute, version=args.version)
    if args.dry_run:
        code = azure_publish.stage_code()
        component = azure_publish.build_component(code, plan.version)
        pipeline = azure_publish.build_pipeline_component(component, plan.compute)
        endpoint, deployment = azure_publish.build_deployment(pipeline, plan)
        for name, entity in (("component", component), ("pipeline", pipeline), ("endpoint", endpoint),
                             ("deployment", deployment)):
            result = entity._validate() if hasattr(entity, "_validate") else None
            verdict = "valid" if result is None or result.passed else f"INVALID: {result.error_messages}"
            print(f"{name}: {type(entity).__name__} {verdict}")
        print(f"component inputs: {', '.join(component.inputs)}")
        print(f"command: {component.command}")
        return 0
    missing = [flag for flag, value in (("--subscription", args.subscription), ("--resource-group",
               args.resource_group), ("--workspace", args.workspace)) if not value]
    if missing:
        print(f"retrain azure publish: set {', '.join(missing)} (or AZURE_SUBSCRIPTION_ID, AZURE_RESOURCE_GROUP, "
              "AZUREML_WORKSPACE_NAME)", file=sys.stderr)
        return 2
    from azure.ai.ml import MLClient

    from shared.adapters.credentials import azure_credential

    client = MLClient(azure_credential(), args.subscription, args.resource_group, args.workspace)
    azure_publish.publish(client, plan)
    return 0


def cmd_azure_doctor(args) -> int:
    from tools import azure_doctor

    return azure_doctor.main(json_output=args.json, settings_file=args.settings, timeout_s=args.timeout_s)


def cmd_drift(args) -> int:
    """Compare a current CSV with a reference (CSV, or the model's reference_profile.json)."""
    from shared.domain.drift import compare_profiles
    from shared.domain.drift_report import render_html
    from shared.domain.profile import Profile, ProfileError, build_profile, read_frame

    try:
        thresholds = {}
        for item in args.column_threshold or []:
            name, sep, value = item.partition("=")
            if not sep:
                raise ProfileError(f"--column-threshold wants NAME=VALUE, got {item!r}")
            try:
                thresholds[name.strip()] = float(value)
            except ValueError:
                raise ProfileError(f"--column-threshold {item!r}: {value!r} is not a number") from None
        critical = [c.strip() for c in (args.critical or "").split(",") if c.strip()]
        if args.model:
            model = Path(args.model)
            candidates = [model / "reference_profile.json", model / "model" / "reference_profile.json"]
            found = next((p for p in candidates if p.is_file()), None)
            if found is None:
                raise ProfileError(f"{model} has no reference_profile.json (looked in {model} and {model / 'model'})")
            reference = Profile.load(found)
        else:
            reference = build_profile(read_frame(args.reference))
        current = build_profile(read_frame(args.current), reference=reference)
        result = compare_profiles(reference, current, threshold=args.threshold, share=args.share,
                                  min_rows=args.min_rows, thresholds=thresholds, critical=critical)
        if args.report:
            Path(args.report).write_text(render_html(result, reference, current), encoding="utf-8")
    except (ProfileError, OSError) as exc:
        print(f"retrain drift: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result.to_dict()))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"drift: reference {result.rows['reference']:,} rows, current {result.rows['current']:,} rows")
    for column in ("column", "metric", "score", "threshold", "PSI", "drifted"):
        table.add_column(column)
    entries = list(result.columns.items()) + ([("y (label)", result.target)] if result.target else [])
    for name, e in entries:
        table.add_row(name, e["metric"], "-" if e["score"] is None else f"{e['score']:.4f}", f"{e['threshold']:g}",
                      "-" if e["psi"] is None else f"{e['psi']:.4f}", "DRIFTED" if e["drifted"] else "no")
    console = Console(width=max(100, Console().width))
    if result.columns:
        console.print(table)
    label = "NOT ENOUGH DATA" if result.not_enough_data else "DRIFTED" if result.drifted else "NO DRIFT"
    console.print(f"{label}: {result.verdict}", markup=False)
    if args.report:
        console.print(f"report: {args.report}", markup=False)
    return 0


ENV_BASE_URL = "RETRAIN_BASE_URL"
ENV_FUNCTION_KEY = "RETRAIN_FUNCTION_KEY"
ENV_WEBHOOK_SECRET = "RETRAIN_WEBHOOK_SECRET"  # noqa: S105 - the variable's name, not a secret
_NOT_RUNNING = (f"the local stack is not running: start it with `.venv/bin/retrain up` (or `make run`), or set "
                f"{ENV_BASE_URL}, {ENV_FUNCTION_KEY} and {ENV_WEBHOOK_SECRET} to talk to a deployed function app")


class WebhookConfigError(RuntimeError):
    """Where to send a retrain request, or with which keys, is unknown; the message never holds a secret."""


def _is_loopback(url: str) -> bool:
    import ipaddress
    from urllib.parse import urlsplit

    host = (urlsplit(url).hostname or "").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _read_json(path: Path, what: str) -> dict:
    if not path.is_file():
        raise WebhookConfigError(f"{path} does not exist: start the local stack once (`.venv/bin/retrain up`) "
                                 f"to create the {what}")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise WebhookConfigError(f"{path} cannot be read as JSON; move it away and restart the stack") from None
    if not isinstance(doc, dict):
        raise WebhookConfigError(f"{path} is not a JSON object; move it away and restart the stack")
    return doc


def _local_function_key(local: Path) -> str:
    """The host's `default` function key: what every FUNCTION-level route accepts (local/functions_host/keys.py)."""
    from local.functions_host.keys import keys_path

    path = keys_path(local)
    functions = _read_json(path, "host keys").get("functionKeys")
    key = functions.get("default") if isinstance(functions, dict) else None
    if not isinstance(key, str) or not key:
        raise WebhookConfigError(f"{path} has no default function key: restart the local stack (`.venv/bin/retrain "
                                 f"up`) to add one, or set {ENV_FUNCTION_KEY}")
    return key


def _local_webhook_secret(local: Path) -> str:
    """The stack's `webhook_secret` (local/stack_secrets.py), read only: creating one here would not reach the host
    that is already running."""
    path = local / "secrets.json"
    secret = _read_json(path, "stack secrets").get("webhook_secret")
    if not isinstance(secret, str) or not secret:
        raise WebhookConfigError(f"{path} has no webhook_secret: restart the local stack (`.venv/bin/retrain up`) to "
                                 f"create it, or set {ENV_WEBHOOK_SECRET}")
    return secret


def webhook_settings() -> dict[str, str]:
    """`base_url`, `function_key` and `webhook_secret` for POST /api/retrain: RETRAIN_BASE_URL,
    RETRAIN_FUNCTION_KEY and RETRAIN_WEBHOOK_SECRET win (how the CLI talks to Azure); what they leave unset comes
    from the running local stack (`.local/stack.json`, `.local/secrets/host.json`, `.local/secrets.json`). The
    local stack's keys are only ever paired with a loopback URL."""
    from local.connection import StackNotRunning, find_stack, local_dir
    from tools.webhook_client import display_url, normalize_base_url

    env_url = os.environ.get(ENV_BASE_URL, "").strip()
    env_key = os.environ.get(ENV_FUNCTION_KEY, "").strip()
    env_secret = os.environ.get(ENV_WEBHOOK_SECRET, "").strip()
    if env_url:
        try:
            base_url = normalize_base_url(env_url)
        except ValueError as exc:
            raise WebhookConfigError(f"{ENV_BASE_URL}: {exc}") from None
    else:
        try:
            host_url = find_stack().host_url
        except StackNotRunning:
            raise WebhookConfigError(_NOT_RUNNING) from None
        if not host_url:
            raise WebhookConfigError(_NOT_RUNNING)
        try:
            base_url = normalize_base_url(host_url)
        except ValueError as exc:
            raise WebhookConfigError(f"the running stack's host URL: {exc}") from None
    if not (env_key and env_secret) and not _is_loopback(base_url):
        missing = " and ".join(n for n, v in ((ENV_FUNCTION_KEY, env_key), (ENV_WEBHOOK_SECRET, env_secret)) if not v)
        raise WebhookConfigError(f"the base URL is {display_url(base_url)}: set {missing} for it (the local stack's "
                                 "keys are only used with a local host)")
    local = local_dir()
    return {"function_key": env_key or _local_function_key(local),
            "webhook_secret": env_secret or _local_webhook_secret(local),
            "base_url": base_url}


def _storage_connection_string(base_url: str) -> str | None:
    """AzureWebJobsStorage when set, else the running local stack's Azurite (its generated account key) when the
    base URL is a local one; None otherwise (a remote app's storage is never guessed from the local stack)."""
    from local.connection import StackNotRunning, find_stack

    if os.environ.get("AzureWebJobsStorage", "").strip():
        return os.environ["AzureWebJobsStorage"].strip()
    if not _is_loopback(base_url):
        return None
    try:
        return find_stack().storage_connection
    except StackNotRunning:
        return None


def cmd_keys(args) -> int:
    try:
        settings = webhook_settings()
    except WebhookConfigError as exc:
        print(f"retrain keys: {exc}", file=sys.stderr)
        return 1
    storage = _storage_connection_string(settings["base_url"])
    if args.json:
        print(json.dumps({"function_key": settings["function_key"], "webhook_secret": settings["webhook_secret"],
                          "base_url": settings["base_url"], "storage_connection_string": storage}))
        return 0

    def source(env: str) -> str:
        return f"from {env}" if os.environ.get(env, "").strip() else "local stack"

    print("SECRETS — shown because you asked; keep them out of logs, tickets, chat and shell history.\n"
          f"  base_url        {settings['base_url']}  ({source(ENV_BASE_URL)})\n"
          f"  function_key    {settings['function_key']}  (x-functions-key header; {source(ENV_FUNCTION_KEY)})\n"
          f"  webhook_secret  {settings['webhook_secret']}  (HMAC-SHA256 key for X-Retrain-Signature; "
          f"{source(ENV_WEBHOOK_SECRET)})\n"
          + (f"  storage_connection_string  {storage}  (storage tables, queues and blobs; "
             f"{source('AzureWebJobsStorage')})\n" if storage else "")
          + "Ask for a retrain with `.venv/bin/retrain trigger --dataset latest`, which signs and sends for you.")
    return 0


class _UsageError(ValueError):
    pass


def coerce_parameter(name: str, raw: str):
    """A `--param NAME=VALUE` value with the type the pipeline declares for NAME (shared/domain/pipeline_params.py);
    for a name it does not know (or one the service sets itself), JSON when VALUE parses as JSON, else the string,
    and the service answers."""
    from shared.api.openapi import RESERVED_PARAMETERS
    from shared.domain import pipeline_params

    definition = pipeline_params.PARAMETERS.get(name)
    if definition is not None and name not in RESERVED_PARAMETERS:
        try:
            return definition.parse(raw)
        except pipeline_params.ParameterError as exc:
            raise _UsageError(f"--param {name}: {str(exc).split(': ', 1)[-1]}") from None

    def no_constants(token: str):
        raise ValueError(token)

    try:
        return json.loads(raw, parse_constant=no_constants)
    except ValueError:
        return raw


def trigger_parameters(parameters_json: str | None, params: list[str] | None) -> dict:
    """`--parameters JSON` (an object, values as given), then each `--param NAME=VALUE` (coerced; later wins)."""
    merged: dict = {}
    if parameters_json:
        try:
            doc = json.loads(parameters_json)
        except ValueError as exc:
            raise _UsageError(f"--parameters is not valid JSON: {exc}") from None
        if not isinstance(doc, dict):
            raise _UsageError('--parameters must be a JSON object like \'{"time_budget_s": 120}\'')
        merged.update(doc)
    for item in params or []:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise _UsageError(f"--param wants NAME=VALUE, got {item!r}")
        merged[name.strip()] = coerce_parameter(name.strip(), value)
    return merged


def cmd_trigger(args) -> int:
    import uuid

    from tools.webhook_client import RetrainClient, RetrainClientError

    try:
        parameters = trigger_parameters(args.parameters, args.param)
    except _UsageError as exc:
        print(f"retrain trigger: {exc}", file=sys.stderr)
        return 2
    try:
        settings = webhook_settings()
    except WebhookConfigError as exc:
        print(f"retrain trigger: {exc}", file=sys.stderr)
        return 1
    secrets_ = [settings["function_key"], settings["webhook_secret"]]

    def say(text: str, *, err: bool = False) -> None:
        for value in secrets_:  # belt and braces: nothing the service echoes may show a key
            text = text.replace(value, "***")
        print(text, file=sys.stderr if err else sys.stdout)

    key = args.idempotency_key or str(uuid.uuid4())
    if not args.idempotency_key:
        say(f"idempotency key: {key} (to retry this request safely, pass --idempotency-key {key})", err=True)
    try:
        client = RetrainClient(settings["base_url"], settings["function_key"], settings["webhook_secret"])
        result = client.trigger(args.dataset, parameters=parameters or None, reason=args.reason,
                                requested_by=args.requested_by, idempotency_key=key)
    except RetrainClientError as exc:
        say(f"retrain trigger: {exc}", err=True)
        say(f"to retry safely, pass --idempotency-key {key}", err=True)
        return 1
    except ValueError as exc:  # an unserializable body, a bad base URL
        say(f"retrain trigger: {exc}", err=True)
        return 2
    body = result.json()
    if args.json:
        if body is None:
            body = {"type": "about:blank", "title": result.title, "status": result.status, "detail": result.detail}
        say(json.dumps(body))
    if result.ok:
        if not args.json:
            extra = f", dataset v{body['dataset_version']}" if isinstance(body, dict) and \
                body.get("dataset_version") is not None else ""
            say(f"submitted: run {result.run_id or '-'}, status {result.status_text or result.status}{extra}")
            if result.location:
                say(f"location: {result.location} (GET it with the x-functions-key header to follow the run)")
        return 0
    line = f"error {result.status} {result.title}: {result.detail}"
    if result.status == 429 and result.retry_after is not None:
        line += f" (retry after {result.retry_after:.0f} s)"
    say(line, err=True)
    if result.status == 429 or result.status >= 500:
        say(f"to retry safely, pass --idempotency-key {key}", err=True)
    return 1


def cmd_drift_check(args) -> int:
    """A signed POST /api/drift-check (the same credentials as `retrain trigger`)."""
    from tools.webhook_client import RetrainClient, RetrainClientError

    try:
        settings = webhook_settings()
    except WebhookConfigError as exc:
        print(f"retrain drift-check: {exc}", file=sys.stderr)
        return 1
    secrets_ = [settings["function_key"], settings["webhook_secret"]]

    def say(text: str, *, err: bool = False) -> None:
        for value in secrets_:
            text = text.replace(value, "***")
        print(text, file=sys.stderr if err else sys.stdout)

    try:
        result = RetrainClient(settings["base_url"], settings["function_key"], settings["webhook_secret"]).drift_check()
    except (RetrainClientError, ValueError) as exc:
        say(f"retrain drift-check: {exc}", err=True)
        return 1
    body = result.json()
    if args.json:
        say(json.dumps(body if body is not None else {"status": result.status, "detail": result.detail}))
    elif result.ok and isinstance(body, dict):
        say(f"{body.get('outcome')}: {body.get('detail')} (audit {body.get('audit_id')})")
        if body.get("report"):
            say(f"report: {body['report']}")
    if result.ok:
        return 0
    line = f"error {result.status} {result.title}: {result.detail}"
    if result.location:
        line += f" (see {result.location})"
    if result.status == 429 and result.retry_after is not None:
        line += f" (retry after {result.retry_after:.0f} s)"
    say(line, err=True)
    return 1


def cmd_rejections(args) -> int:
    """The per-caller, per-minute counts of requests refused before they authenticated (unsigned, badly signed,
    replayed, too large...), newest first: what a flood looks like, without one audit row per request."""
    from local.connection import StackNotRunning, find_stack
    from shared.adapters import storage
    from shared.adapters.webhook_state import RejectionLog
    from shared.settings import Settings

    try:
        settings = Settings(storage_connection=find_stack().storage_connection)
    except StackNotRunning as exc:
        print(f"retrain rejections: {exc}", file=sys.stderr)
        return 1
    log = RejectionLog(storage.ensure_table(storage.table_service(settings), settings.webhook_table))
    rows = log.list(limit=args.limit)
    if args.json:
        for row in rows:
            print(json.dumps({"caller": row.caller, "minute": row.minute, "count": row.count,
                              "first_at": row.first_at, "last_at": row.last_at, "reasons": list(row.reasons)}))
        return 0
    if not rows:
        print("no refused unauthenticated requests recorded")
    for row in rows:
        last = row.reasons[-1] if row.reasons else {}
        print(f"{_when(row.minute)}  {row.caller:<39} {row.count:>6} refused  last: {last.get('status', '-')} "
              f"{last.get('route', '')} {str(last.get('reason', ''))[:100]}")
    return 0


def cmd_validate(args) -> int:
    import dataclasses

    from shared.domain.validation import validate_file
    from shared.settings import Settings

    def limit(env_name: str, setting: str) -> int:  # the service's limit: its app setting if set, else the default
        default = next(f.default for f in dataclasses.fields(Settings) if f.name == setting)
        try:
            return int(os.environ.get(env_name, default))
        except ValueError:
            return default

    path = Path(args.file)
    if not path.is_file():
        print(f"retrain validate: {path} is not a file", file=sys.stderr)
        return 2
    min_rows = args.min_rows if args.min_rows is not None else limit("MIN_ROWS", "min_rows")
    max_bytes = args.max_bytes if args.max_bytes is not None else limit("MAX_UPLOAD_BYTES", "max_upload_bytes")
    try:
        result = validate_file(path, min_rows=min_rows, max_bytes=max_bytes)
    except OSError as exc:
        print(f"retrain validate: cannot read {path}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({**result.to_dict(), "file": str(path)}))
    else:
        shape = ", ".join(part for part in (
            f"{result.size:,} bytes", f"dialect {result.dialect.name}" if result.dialect else "",
            f"{result.data_rows:,} rows" if result.data_rows is not None else "",
            f"{result.data_columns} columns" if result.data_columns is not None else "") if part)
        print(f"{'ACCEPTED' if result.ok else 'REJECTED'} {path} ({shape})")
        for error in result.errors:
            print(f"  error: {error}")
        for warning in result.warnings:
            print(f"  warning: {warning}")
    return 0 if result.ok else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="retrain", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    def stack_flags(p):
        p.add_argument("--port", type=int, default=7071, help="Functions host port (default 7071)")
        p.add_argument("--budget-s", type=int, default=30, help="training budget per pipeline run (s)")
        p.add_argument("--timeout-s", type=float, default=1800, help="give up waiting for a deploy after this")
        p.add_argument("--free-ports", action="store_true",
                       help="pick free loopback ports instead of 10000-10002/7071/8401/8402")

    up = sub.add_parser("up", help="start the embedded local stack and keep it serving until Ctrl-C")
    stack_flags(up)
    run = sub.add_parser("run", help="start the stack, upload the training file, show each stage, keep serving")
    stack_flags(run)
    run.add_argument("--data", help="CSV to upload (default ../shared/data/bankmarketing_train.csv or generated)")
    demo = sub.add_parser("demo", help="like run, once: exit 0 when a new model answers; last line is JSON")
    stack_flags(demo)
    demo.add_argument("--data", help="CSV to upload (default as for run)")

    upload = sub.add_parser("upload", help="upload a dataset file to the incoming container")
    upload.add_argument("file")
    upload.add_argument("--name", help="blob name (default: timestamp-filename)")
    upload.add_argument("--container", default="incoming")

    status = sub.add_parser("status", help="the audit history: one line per trigger")
    status.add_argument("--limit", type=int, default=50)
    status.add_argument("--json", action="store_true", help="one JSON object per line")

    history = sub.add_parser("history", help="what each completed run led to: deployed, kept champion, rolled "
                                             "back, promoted by hand; both models' figures and the reason")
    history.add_argument("--limit", type=int, default=50)
    history.add_argument("--json", action="store_true", help="one JSON object per line")
    promote = sub.add_parser("promote", help="deploy a registered model version by hand (blue/green, audited)")
    promote.add_argument("version", type=int)
    sub.add_parser("rollback", help="go back to the model that was live before the current one (audited)")

    train = sub.add_parser("train", help="train a model from a CSV (the pipeline's training step)")
    train.add_argument("--data", required=True)
    train.add_argument("--out", required=True)
    train.add_argument("--budget-s", type=int, default=60)
    train.add_argument("--seed", type=int, default=42)
    train.add_argument("--exclude-columns", default="")

    evaluate = sub.add_parser("evaluate", help="score a labelled CSV with a saved model: rows, AUC, accuracy, F1")
    evaluate.add_argument("--model", required=True, help="the MLflow model directory (…/model)")
    evaluate.add_argument("--data", required=True)
    evaluate.add_argument("--json", action="store_true", help="print one JSON object")

    drift = sub.add_parser("drift", help="compare a CSV with a reference (CSV or the model's reference profile): "
                                         "per-column scores, verdict, optional HTML report")
    drift_ref = drift.add_mutually_exclusive_group(required=True)
    drift_ref.add_argument("--reference", help="reference CSV (profiled on the fly)")
    drift_ref.add_argument("--model", help="MLflow model directory holding reference_profile.json")
    drift.add_argument("--current", required=True, help="current CSV")
    drift.add_argument("--json", action="store_true", help="print one JSON object")
    drift.add_argument("--report", help="write a self-contained HTML report here")
    drift.add_argument("--threshold", type=float, default=0.1, help="per-column threshold (default 0.1)")
    drift.add_argument("--column-threshold", action="append", metavar="NAME=VALUE",
                       help="threshold for one column (repeatable; `y` for the label)")
    drift.add_argument("--critical", default="", help="comma-separated columns any of which drifting is drift")
    drift.add_argument("--share", type=float, default=0.5, help="share of drifted columns that is drift (0.5)")
    drift.add_argument("--min-rows", type=int, default=100, help="fewer rows on either side: no verdict (100)")

    keys = sub.add_parser("keys", help="show the function key, webhook secret and base URL for POST /api/retrain "
                                       "(SECRETS: for your eyes only)",
                          description="Show the running local stack's function key (x-functions-key), webhook "
                                      "secret (signs X-Retrain-Signature), base URL and storage connection string "
                                      "(Azurite's generated account key). RETRAIN_BASE_URL, RETRAIN_FUNCTION_KEY, "
                                      "RETRAIN_WEBHOOK_SECRET and AzureWebJobsStorage win over the local stack.")
    keys.add_argument("--json", action="store_true",
                      help='print {"function_key": ..., "webhook_secret": ..., "base_url": ..., '
                           '"storage_connection_string": ...}')

    trigger = sub.add_parser("trigger", help="ask for a retrain: a signed POST /api/retrain (the reference client)",
                             description="Sign and send POST {base_url}/api/retrain for the running local stack, or "
                                         "for RETRAIN_BASE_URL with RETRAIN_FUNCTION_KEY and RETRAIN_WEBHOOK_SECRET. "
                                         "Network errors, timeouts and 5xx are retried with the same Idempotency-Key "
                                         "and body; 429 waits for Retry-After (up to 60 s).")
    trigger.add_argument("--dataset", required=True,
                         help="`latest`, a registered version (3 or v3) or the URI of a blob holding a CSV")
    trigger.add_argument("--param", action="append", metavar="NAME=VALUE",
                         help="a training pipeline parameter, typed as the pipeline declares it (repeatable; "
                              "wins over --parameters)")
    trigger.add_argument("--parameters", metavar="JSON", help="pipeline parameters as a JSON object")
    trigger.add_argument("--reason", metavar="TEXT", help="why (recorded with the run)")
    trigger.add_argument("--requested-by", metavar="WHO", help="who asks (recorded in the audit)")
    trigger.add_argument("--idempotency-key", metavar="KEY",
                         help="reuse the key a previous attempt printed to retry it safely (default: a new uuid4)")
    trigger.add_argument("--json", action="store_true", help="print the response body as JSON")

    drift_check = sub.add_parser("drift-check", help="run the drift check now: a signed POST /api/drift-check",
                                 description="Sign and send POST {base_url}/api/drift-check (empty body) with the "
                                             "same credentials as `retrain trigger`. Sent once: a 409 names the "
                                             "check that is running.")
    drift_check.add_argument("--json", action="store_true", help="print the response body as JSON")
    rejections = sub.add_parser("rejections", help="refused unauthenticated requests per caller and minute "
                                                   "(the aggregate that replaces one audit row each)")
    rejections.add_argument("--limit", type=int, default=20, help="how many caller-minutes, newest first (20)")
    rejections.add_argument("--json", action="store_true", help="one JSON object per line")

    retry_cmd = sub.add_parser("retry", help="submit again a retrain request that failed (see `retrain status`: the "
                                             "audit id of the trigger is the request id)")
    retry_cmd.add_argument("request", metavar="RUN", help="the failed request's id (its trigger's audit id)")

    validate = sub.add_parser("validate", help="check a file offline exactly as an upload is checked: verdict, "
                                               "dialect, rows, reason (exit 0 accepted, 1 rejected, 2 usage)")
    validate.add_argument("file")
    validate.add_argument("--json", action="store_true",
                          help='print {"accepted", "dialect", "rows", "columns", "reason", "errors", "warnings", '
                               '"file"}')
    validate.add_argument("--min-rows", type=int, help="fewest data rows (default: MIN_ROWS or 500)")
    validate.add_argument("--max-bytes", type=int,
                          help="largest file, and largest unpacked gzip (default: MAX_UPLOAD_BYTES or 209715200)")

    azure = sub.add_parser("azure", help="Azure ML: publish the training pipeline")
    azure_sub = azure.add_subparsers(dest="azure_command", required=True)
    publish = azure_sub.add_parser("publish", help="define the training pipeline (azure-ai-ml v2) and publish it "
                                                   "behind a batch endpoint; prints the invocation URL")
    publish.add_argument("--subscription", default=os.environ.get("AZURE_SUBSCRIPTION_ID"))
    publish.add_argument("--resource-group", default=os.environ.get("AZURE_RESOURCE_GROUP"))
    publish.add_argument("--workspace", default=os.environ.get("AZUREML_WORKSPACE_NAME"))
    publish.add_argument("--compute", default="cpu-cluster", help="compute cluster for the pipeline")
    publish.add_argument("--endpoint-name", default="bankmarketing-retrain")
    publish.add_argument("--deployment-name", default="train")
    publish.add_argument("--version", default="1", help="component version")
    publish.add_argument("--dry-run", action="store_true", help="build and validate offline; call nothing")
    doctor = azure_sub.add_parser(
        "doctor", help="before deploying: are the workspace, pipeline and scoring endpoints and storage reachable "
                       "with the current credential, with the roles the app needs? (exit 0 all ok, 1 a check "
                       "failed, 2 some could not be made, e.g. offline)")
    doctor.add_argument("--json", action="store_true", help='print {"ok": bool, "checks": [{"name", "status", '
                                                            '"message", "hint"}]}')
    doctor.add_argument("--settings", metavar="FILE",
                        help='a local.settings.json-style file; its "Values" win over the environment')
    doctor.add_argument("--timeout-s", type=float, default=5.0, help="per call and per token (default 5)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handlers = {
        "up": lambda: cmd_session(args, upload=False, once=False),
        "run": lambda: cmd_session(args, upload=True, once=False),
        "demo": lambda: cmd_session(args, upload=True, once=True),
        "upload": lambda: cmd_upload(args),
        "status": lambda: cmd_status(args),
        "history": lambda: cmd_history(args),
        "promote": lambda: cmd_override(args),
        "rollback": lambda: cmd_override(args),
        "train": lambda: cmd_train(args),
        "evaluate": lambda: cmd_evaluate(args),
        "azure": lambda: cmd_azure_doctor(args) if args.azure_command == "doctor" else cmd_azure_publish(args),
        "drift": lambda: cmd_drift(args),
        "keys": lambda: cmd_keys(args),
        "trigger": lambda: cmd_trigger(args),
        "drift-check": lambda: cmd_drift_check(args),
        "rejections": lambda: cmd_rejections(args),
        "validate": lambda: cmd_validate(args),
        "retry": lambda: cmd_retry(args),
    }
    return handlers[args.command]()


if __name__ == "__main__":
    sys.exit(main())
