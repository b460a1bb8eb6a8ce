"""`retrain up`, `retrain run` and `retrain demo`: start the stack, upload the data, show each stage."""

from __future__ import annotations

import itertools
import json
import signal
import sys
import threading
import time
from dataclasses import fields
from pathlib import Path

from rich.console import Console
from rich.text import Text

from local.follow import STAGES, LoopFailed, TrainingDisplay, follow_upload
from local.processes import PROJECT_ROOT
from local.stack import STACK_PORTS, Stack, StackConfig, dashboard_url, start_on_free_ports
from shared.adapters import storage
from shared.adapters.scoring import LocalScoringDeployer
from shared.bootstrap import build_stores
from shared.domain import schema
from shared.domain.outcomes import Outcome
from shared.settings import Settings

SHARED_DATA = PROJECT_ROOT.parent / "shared" / "data" / "bankmarketing_train.csv"


def default_data(local_dir: Path) -> Path:
    """The real sample file beside the project when present, else a generated one with the same schema."""
    if SHARED_DATA.exists():
        return SHARED_DATA
    from shared.domain.sample_data import write_sample_csv

    path = local_dir / "data" / "bankmarketing_generated.csv"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        write_sample_csv(path, rows=32950, seed=42)
    return path


def upload_file(connection: str, path: Path, name: str | None = None, container: str = "incoming") -> str:
    """Upload `path`; returns `container/blob` as the blob trigger names it."""
    return put_file(connection, path, name, container)[0]


def put_file(connection: str, path: Path, name: str | None = None,
             container: str = "incoming") -> tuple[str, str]:
    """Upload `path`; returns `container/blob` and the ETag this write gave the blob (without quotes, as the blob
    trigger records it): what tells this upload's audit record from another write of the same name."""
    from azure.storage.blob import BlobServiceClient

    blobs = BlobServiceClient.from_connection_string(connection)
    storage.ensure_container(blobs, container)
    blob_name = name or f"{time.strftime('%Y%m%dT%H%M%S')}-{path.name}"
    with open(path, "rb") as fh:
        answer = blobs.get_blob_client(container, blob_name).upload_blob(fh, overwrite=True)
    return f"{container}/{blob_name}", str(answer.get("etag") or "").strip('"')


def _sample_records(path: Path, rows: int = 2) -> list[dict]:
    from shared.domain.validation import validate_csv

    with path.open("rb") as fh:
        head = b"".join(itertools.islice(fh, rows + 1))
    result = validate_csv(head, min_rows=1, max_bytes=10**9, require_both_classes=False)
    if not result.ok:
        return []
    return result.frame[list(schema.FEATURES)].to_dict(orient="records")


def _audit_line(record) -> str:
    """One finished trigger, as `retrain status` shows it."""
    parts = [f"{record.trigger}:{record.function}", record.outcome]
    if record.dataset_version:
        parts.append(f"dataset v{record.dataset_version}")
    if record.run_id:
        parts.append(f"run {record.run_id}")
    if record.model_version:
        parts.append(f"model v{record.model_version}")
    return " · ".join(parts) + (f" — {record.detail}" if record.detail else "")


class _StopRequested(Exception):
    pass


def _install_signal_handlers(stop: threading.Event) -> None:
    def handler(signum, _frame):
        stop.set()
        raise _StopRequested()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


def _retrain_duplicate(stack: Stack, version: int, console: Console) -> str:
    """The file is a dataset version already (uploads are deduplicated by content): ask for a retrain of that
    version over the signed webhook instead, as `retrain trigger --dataset vN` would; returns its audit id."""
    from tools.webhook_client import RetrainClient

    console.log(f"the file is dataset v{version} already (same rows): no new version; asking for a retrain of "
                f"v{version} over the webhook")
    client = RetrainClient(stack.config.host_url, stack.host_keys.function_keys["default"],
                           stack.secrets["webhook_secret"])
    answer = client.trigger(f"v{version}", reason="retrain run: the same data again", requested_by="retrain run")
    body = answer.json() or {}
    if answer.status not in (202, 409) or not (body.get("audit_id") or answer.status == 409):
        raise LoopFailed(f"the webhook refused the retrain: {answer.status} {body.get('detail', '')}",
                         {"status": "failed", "dataset_version": version})
    if answer.status == 409:  # already queued or in flight for that version: follow that one
        raise LoopFailed(f"a retrain of v{version} is already under way ({body.get('detail', '')})",
                         {"status": "busy", "dataset_version": version})
    return body["audit_id"]


def _start_stack(config: StackConfig, free_ports: bool, on_step) -> Stack:
    """The stack on the configured ports, or on fresh ones (`--free-ports`) with the retrying start: a port chosen
    free can be taken before its server binds it, and start_on_free_ports starts again on new ones then."""
    if free_ports:
        others = {f.name: getattr(config, f.name) for f in fields(config)
                  if f.name not in STACK_PORTS and f.name != "local_dir"}
        return start_on_free_ports(config.local_dir, on_step=on_step, **others)
    stack = Stack(config)
    stack.start(on_step)  # stops what it started before raising
    return stack


def run_session(*, config: StackConfig, data: Path | None, upload: bool, once: bool, timeout_s: float,
                console: Console | None = None, free_ports: bool = False) -> int:
    console = console or Console(log_path=False)
    stop = threading.Event()
    _install_signal_handlers(stop)
    stack: Stack | None = None
    summary: dict = {"status": "not_started"}
    code = 1
    try:
        started = time.time()
        with console.status("starting the local stack…"):
            stack = _start_stack(config, free_ports, lambda msg: console.log(msg))
        config = stack.config
        console.log(f"[green]local stack up[/] in {time.time() - started:.1f}s — Functions host {config.host_url}, "
                    f"scoring {config.scoring_url}, logs in {stack.logs_dir}")
        # The page's URL holds the function key (`?code=`, as a browser passes it): printed for the interactive
        # commands (`make run`, `retrain up`), never by the non-interactive demo, whose output ends up in logs.
        page = dashboard_url(config.host_url, stack.host_keys.function_keys["default"])
        console.print(f"dashboard: {page}  (holds the function key: keep it to yourself)" if not once else
                      f"dashboard: {page.split('?', 1)[0]}  (`retrain keys --json` prints it with its key)",
                      soft_wrap=True, highlight=False)
        audit = build_stores(Settings(storage_connection=config.connection_string)).audit
        pipeline = stack.pipeline_client()
        scorer = LocalScoringDeployer(config.scoring_url, stack.secrets["scoring_admin_key"]).scorer(
            stack.secrets["scoring_key"])  # names the version that answered, as the completion handler reads it
        if upload:
            path = data or default_data(config.local_dir)
            sample = _sample_records(path)
            t0 = time.time()
            source = upload_file(config.connection_string, path)
            console.log(f"uploaded {path} → {source}")
            labels = dict(STAGES)

            def report(stage: str, elapsed: float) -> None:
                console.log(f"[green]✓[/] {labels[stage]:<42} +{elapsed:6.1f}s")

            waiting = "waiting for the loop (blob trigger → pipeline → completion → deploy)…"
            with console.status(waiting) as status:
                # while the run trains: its progress file, one line in place on a terminal, else every ~10 s
                training = TrainingDisplay(live=console.is_terminal, idle=waiting,
                                           update=lambda line: status.update(Text(line)),
                                           emit=lambda line: console.log(Text(line)))
                watch = {"runs_dir": config.runs_dir, "training": training}
                try:
                    summary = follow_upload(source=source, t0=t0, audit=audit, pipeline=pipeline, scorer=scorer,
                                            sample=sample, report=report, timeout_s=timeout_s, **watch)
                except LoopFailed as exc:
                    if exc.summary.get("status") != "duplicate":
                        raise
                    record_id = _retrain_duplicate(stack, exc.summary["dataset_version"], console)
                    summary = follow_upload(source=source, t0=t0, audit=audit, pipeline=pipeline, scorer=scorer,
                                            sample=sample, report=report, timeout_s=timeout_s,
                                            record_id=record_id, **watch)
            metrics = summary.get("metrics") or {}
            console.log(f"[bold green]model v{summary['model_version']} deployed[/] from dataset "
                        f"v{summary['dataset_version']} (run {summary['run_id']}; cross-validated AUC "
                        f"{metrics.get('auc', float('nan')):.4f}); upload→POST {summary['upload_to_post_s']:.2f}s, "
                        f"upload→serving {summary['upload_to_serving_s']:.1f}s")
        code = 0
        if not once:
            console.log("serving. Upload more data with `.venv/bin/retrain upload FILE`; "
                        "history with `.venv/bin/retrain status`. Ctrl-C stops everything.")
            shown = {r.id for r in audit.list()}
            while not stop.is_set():
                for record in audit.list():
                    if record.id not in shown and record.outcome != Outcome.IN_PROGRESS:
                        shown.add(record.id)
                        console.log(_audit_line(record))
                dead = stack.dead_children()
                if dead:
                    console.log(f"[red]{', '.join(dead)} exited unexpectedly; see {stack.logs_dir}[/]")
                    code = 1
                    break
                stop.wait(1.0)
    except LoopFailed as exc:
        summary = exc.summary
        summary["error"] = str(exc)
        console.log(f"[red]loop failed:[/] {exc}")
        code = 1
    except (_StopRequested, KeyboardInterrupt):
        console.log("stopping…")
        code = 0 if not once else 130
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if stack is not None:
            stack.stop()
        console.log("all local processes stopped")
    if once:
        for key, value in (summary.pop("metrics", None) or {}).items():
            summary.setdefault(key, value)
        sys.stdout.flush()
        print(json.dumps(summary, default=str), flush=True)
    return code
