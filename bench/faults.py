"""Nothing lost, nothing doubled: a seeded fault campaign against the whole local stack.

    .venv/bin/python bench/faults.py [--seed 1] [--uploads 24] [--pipeline-kind batch-endpoint|published]
                                     [--timeout-s 900] [--keep]

Starts the local stack (Azurite, scoring server, pipeline endpoint, our Functions host running main.py) on free
loopback ports in a temporary folder, with a fault-injecting proxy (bench/fault_proxy.py) between the host and
the pipeline endpoint, a 3 s training budget, COALESCE_S=3, PIPELINE_TIMEOUT_S=3 and small files (600-1500 rows
of ../shared/data/bankmarketing_train.csv, or of the generated sample). The pipeline kind (PIPELINE_KIND, default
the stack's) decides which call is faulted and how runs are counted (bench/fault_endpoint.py): v2 invokes the
batch endpoint (`POST /jobs`, no deduplication: a repeated invoke starts another job) and its runs are read with the
ARM jobs list; v1 submits to a published pipeline. Then, per seed:

- N uploads in bursts of 2-5 (bench/fault_plan.py): new data, exact duplicates under another name, the same rows
  in the semicolon (UCI) dialect, malformed files;
- every pipeline submission answered by the proxy's seeded schedule: forwarded, 500, 503, 429 + Retry-After,
  held past the client timeout (dropped, or forwarded so the run starts and the answer is lost), forwarded then
  answered 502; every other call (v2: the job lookups before a resubmission, status GETs) passes through;
- SIGKILL of the Functions host while a training run is in flight and uploads are being handled, then a restart
  (same folder and settings); an Azurite restart (same data folder and ports) while uploads are in flight; a
  SIGKILL of the host at the moment it POSTs a submission (the run starts, the answer goes nowhere), then a
  restart;
- each run's terminal event re-POSTed twice at once as soon as it ends (racing the endpoint's own delivery),
  and later a stale `RunStatusChanged` Running and the terminal event once more (bench/fault_events.py).

When the system is quiet (every upload has a final audit outcome, no outbox request pending or submitting, no run
in flight here or at the endpoint) it counts from the durable records (bench/fault_count.py: audit, outbox, runs,
datasets, models tables; the pipeline endpoint's own run list) and prints a table, the problems found with their
evidence, and one JSON line. `ok` (and exit 0) exactly when the problem list is empty.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from azure.data.tables import TableServiceClient  # noqa: E402
from azure.storage.blob import BlobServiceClient  # noqa: E402

from bench.fault_count import Snapshot, count, final_record, upload_records  # noqa: E402
from bench.fault_endpoint import EndpointKind, PipelineKind, endpoint_kind  # noqa: E402
from bench.fault_events import EventReplayer  # noqa: E402
from bench.fault_plan import Upload, build_plan, source_frame  # noqa: E402
from bench.fault_proxy import FaultProxy, FaultSchedule  # noqa: E402
from local import stack_secrets  # noqa: E402
from local.processes import PortInUse, free_ports  # noqa: E402
from local.stack import STACK_PORTS, Stack, StackConfig  # noqa: E402
from shared.adapters import storage  # noqa: E402
from shared.adapters.outbox import Outbox  # noqa: E402
from shared.bootstrap import build_stores  # noqa: E402
from shared.settings import Settings  # noqa: E402

T0 = time.monotonic()
START_WALL = time.time()


def say(msg: str) -> None:
    print(f"[{time.monotonic() - T0:7.1f}s] {msg}", flush=True)


# ------------------------------------------------------------------------------------------------- the campaign
@dataclass
class Campaign:
    args: argparse.Namespace
    stack: Stack
    proxy: FaultProxy
    endpoint: EndpointKind
    uploads: list[Upload]
    faults: Counter = field(default_factory=Counter)
    timeline: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        conn = self.stack.config.connection_string
        self.blobs = BlobServiceClient.from_connection_string(conn)
        self.stores = build_stores(Settings(storage_connection=conn))
        self.outbox = Outbox(TableServiceClient.from_connection_string(conn).get_table_client("outbox"))

    def mark(self, what: str, **detail) -> None:
        self.timeline.append({"t": round(time.monotonic() - T0, 1), "what": what, **detail})
        say(what + (" " + json.dumps(detail) if detail else ""))

    # -- the steps ------------------------------------------------------------------------------------------
    def upload(self, batch: list[Upload]) -> None:
        storage.ensure_container(self.blobs, "incoming")
        for u in batch:
            for attempt in range(30):
                try:
                    self.blobs.get_blob_client("incoming", u.name).upload_blob(u.data, overwrite=False)
                    break
                except Exception as exc:  # Azurite just restarted
                    if attempt == 29:
                        raise
                    say(f"upload {u.name} retried ({type(exc).__name__})")
                    time.sleep(1)
            u.uploaded_at = time.time()
        self.mark(f"burst {batch[0].burst}: {len(batch)} uploads", kinds=[u.kind for u in batch])

    def wait_running(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if any(r.status == "Running" for r in self.endpoint.runs()):
                    return True
            except Exception:  # noqa: S110 - look again
                pass
            time.sleep(0.3)
        return False

    def wait_handling(self, batch: list[Upload], timeout: float) -> bool:
        names = {f"incoming/{u.name}" for u in batch}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if any(r.source in names for r in self.stores.audit.list()):
                    return True
            except Exception:  # noqa: S110 - look again
                pass
            time.sleep(0.05)
        return False

    def kill_host(self, why: str) -> None:
        code = self.stack.kill("functions")
        self.faults["host_sigkill"] += 1
        self.mark(f"SIGKILL functions host ({why})", exit_code=code, in_flight=self._in_flight_summary())

    def restart_host(self) -> None:
        started = time.monotonic()
        self.stack.restart("functions")
        self.mark("functions host restarted", seconds=round(time.monotonic() - started, 1))

    def restart_azurite(self) -> None:
        before = self._count_records()
        started = time.monotonic()
        self.stack.restart("azurite")
        self.faults["azurite_restart"] += 1
        after = self._count_records()
        self.mark("Azurite restarted (same data folder and ports)", seconds=round(time.monotonic() - started, 1),
                  audit_records_before=before, audit_records_after=after)
        if after is not None and before is not None and after < before:
            self.notes.append(f"Azurite restart lost audit records: {before} before, {after} after")

    def _count_records(self) -> int | None:
        for _ in range(20):
            try:
                return len(self.stores.audit.list())
            except Exception:
                time.sleep(0.5)
        return None

    def _in_flight_summary(self) -> dict:
        try:
            return {"endpoint_running": [r.run_id[:16] for r in self.endpoint.runs() if not r.finished],
                    "outbox": dict(Counter(r.status for r in self.outbox.list())),
                    "blob_records_open": sum(1 for r in self.stores.audit.list() if r.trigger == "blob"
                                             and r.outcome in ("in_progress", "queued"))}
        except Exception as exc:
            return {"error": type(exc).__name__}

    def run(self) -> None:
        a, rng = self.args, random.Random(f"steps-{self.args.seed}")
        bursts = sorted({u.burst for u in self.uploads})
        kill_run_at = 1 if a.host_kill and len(bursts) > 1 else None
        azurite_at = 2 if a.azurite_restart and len(bursts) > 2 else None
        kill_submit_at = min(4, len(bursts) - 1) if a.submit_kill and len(bursts) > 3 else None
        fired = restarted = None
        for b in bursts:
            batch = [u for u in self.uploads if u.burst == b]
            if b == kill_run_at:
                if self.wait_running(120):
                    self.upload(batch)
                    self.wait_handling(batch, 5)  # the blob trigger has started on this burst
                    time.sleep(rng.uniform(0.0, 0.4))
                    self.kill_host("a training run in flight, uploads being handled")
                    time.sleep(2)
                    self.restart_host()
                else:
                    self.notes.append("no run was running within 120 s: the mid-run kill was skipped")
                    self.upload(batch)
            elif b == azurite_at:
                self.upload(batch)
                time.sleep(rng.uniform(0.5, 2.0))
                self.restart_azurite()
            elif b == kill_submit_at:
                # armed from here on: the next submission, whenever single flight lets one go (the uploads go on)
                fired = self.proxy.kill_on_next_submit(lambda: self.kill_host("at the moment it POSTs a submission"))
                restarted = self._restart_when(fired)
                self.upload(batch)
            else:
                self.upload(batch)
            time.sleep(rng.uniform(0.5, 7.0))
        if restarted is not None and not restarted.wait(a.submit_kill_wait_s):
            self.proxy.disarm()
            if not (fired.is_set() and restarted.wait(60)):
                self.notes.append(f"no submission within {a.submit_kill_wait_s:.0f} s of the last upload: the "
                                  "mid-submit kill was skipped")

    def _restart_when(self, fired: threading.Event) -> threading.Event:
        """Restart the host 2 s after `fired` (the proxy killed it mid-submit); the returned event is set then."""
        restarted = threading.Event()

        def watch() -> None:
            if fired.wait(self.args.timeout_s):
                time.sleep(2)
                self.restart_host()
                restarted.set()

        threading.Thread(target=watch, name="restart-after-submit-kill", daemon=True).start()
        return restarted

    # -- quiet ----------------------------------------------------------------------------------------------
    def snapshot(self) -> Snapshot:
        return Snapshot(audit=self.stores.audit.list(), requests=self.outbox.list(), runs=self.stores.runs.list(),
                        endpoint=self.endpoint.runs(), datasets=self.stores.datasets.list(),
                        models=self.stores.models.list())

    def unquiet(self, snap: Snapshot) -> list[str]:
        why = []
        per_upload = upload_records(self.uploads, snap.audit)
        open_uploads = [u.name for u in self.uploads if final_record(per_upload[u.name], snap.requests) is None]
        if open_uploads:
            why.append(f"{len(open_uploads)} uploads without a final outcome")
        # an unconfirmed request is resubmitted (after its lookup) before anything else: still work to do
        waiting = [r for r in snap.requests if r.status in ("pending", "submitting", "unconfirmed")]
        if waiting:
            why.append(f"outbox: {dict(Counter(r.status for r in waiting))}")
        flying = [r for r in snap.runs if r.status in ("Submitted", "Handling")]
        if flying:
            why.append(f"runs in flight: {dict(Counter(r.status for r in flying))}")
        busy = [r for r in snap.endpoint if not r.finished]
        if busy:
            why.append(f"endpoint runs not ended: {len(busy)}")
        return why

    def wait_quiet(self, deadline: float, settle_s: float) -> tuple[bool, Snapshot | None, list[str]]:
        """Quiet: every upload has a final outcome, nothing pending or submitting, no run in flight, three looks in a
        row. Also quiet ("settled") when only uploads without a final outcome remain and nothing else has moved for
        `settle_s` (longer than the blob receipt lease a killed invocation leaves): nothing will finish them."""
        calm, why, snap = 0, ["not looked yet"], None
        last_said, idle_since = "", None
        while time.monotonic() < deadline:
            try:
                snap = self.snapshot()
                why = self.unquiet(snap)
            except Exception as exc:
                why = [f"storage not readable ({type(exc).__name__})"]
            if not why:
                calm += 1
                if calm >= 3:
                    return True, snap, []
            else:
                calm = 0
                text = "; ".join(why)
                if text != last_said:
                    say(f"waiting for quiet: {text}")
                    last_said, idle_since = text, None
                if all(w.endswith("without a final outcome") for w in why):
                    idle_since = idle_since or time.monotonic()
                    if time.monotonic() - idle_since >= settle_s:
                        say(f"settled: nothing moved for {settle_s:.0f} s and {why[0]}")
                        return True, snap, why
            time.sleep(2)
        return False, snap, why

def host_alive(stack: Stack) -> bool:
    if stack.dead_children():
        return False
    try:
        return requests.get(stack.config.host_url + "/api/health", timeout=10).status_code == 200
    except requests.RequestException:
        return False


def print_report(result: dict, c: Campaign) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=140)
    table = Table(title=f"fault campaign, seed {c.args.seed}, {c.args.pipeline_kind}", show_lines=False)
    table.add_column("figure")
    table.add_column("value", overflow="fold")
    table.add_column("target")
    rows = [
        ("uploads", result["uploads"], ""),
        ("upload kinds", result["upload_kinds"], ""),
        ("uploads with a final audit outcome", result["uploads_with_final_outcome"], "= uploads"),
        ("outcomes", result["outcomes"], ""),
        ("outbox requests", result["requests"], "none pending/submitting/unconfirmed"),
        ("submissions (runs the endpoint started)", result["submissions"], "= requests submitted"),
        ("requests ended submitted", result["requests_submitted"], ""),
        ("distinct datasets (content hashes)", result["distinct_datasets"],
         f"= {result['expected_distinct_datasets']} distinct valid contents uploaded"),
        ("dataset versions", result["dataset_versions"], "= distinct datasets"),
        ("runs (service records)", result["runs"], ""),
        ("endpoint runs", result["endpoint_runs"], ""),
        ("untracked endpoint runs", result["untracked_runs"], "0"),
        ("completions by", result["completed_by"], ""),
        ("event grid records", result["eventgrid_outcomes"], ""),
        ("completion events ignored before the run was recorded", result["ignored_before_recorded"], ""),
        ("models registered", result["models_registered"], ""),
        ("extra audit records of retried triggers", result["extra_upload_records"], ""),
        ("dangling audit records", result["dangling_records"], "0"),
        ("most submit attempts of one request", result["attempts_max"], ""),
        ("run lookups through the proxy (v2: GET jobs/<name>, status polls too; v1: the run list)",
         result["run_lookups"], ""),
        ("429s whose Retry-After was checked", result["retry_after_checked"], "next try not earlier"),
        ("dataset version numbers skipped (killed invocations)", result["version_gaps"], ""),
        ("endpoint runs started while another was unfinished", result["endpoint_overlaps"],
         "0 (single flight; None: the run list has no end times)"),
        ("proxy: submissions by fault (other calls forwarded)", result["faults"]["proxy"], ""),
        ("other faults", {k: v for k, v in result["faults"].items() if k != "proxy"}, ""),
        ("lost", result["lost"], "0"),
        ("duplicated", result["duplicated"], "0"),
        ("host alive", result["host_alive"], "True"),
        ("quiet", result["quiet"], "True"),
        ("problems by kind", result["problem_kinds"], "{} (ok)"),
        ("durations (s)", result["durations_s"], ""),
    ]
    for name, value, target in rows:
        table.add_row(name, json.dumps(value) if isinstance(value, (dict, list)) else str(value), target)
    console.print(table)
    if result["problems"]:
        console.print(f"[bold]{len(result['problems'])} problem(s) found[/bold] (evidence from the durable records):")
        for p in result["problems"]:
            console.print("  - " + json.dumps(p, default=str), soft_wrap=True)
    for note in c.notes:
        console.print(f"note: {note}")


def start_stack_behind_proxy(args: argparse.Namespace, tmp: Path) -> tuple[Stack, FaultProxy, EndpointKind]:
    """The stack on fresh ports, its pipeline endpoint reached through the fault proxy. The proxy must know the
    endpoint's port before the stack starts, so this retries as `local.stack.start_on_free_ports` does: when a
    child finds a port taken between choosing and binding it, everything starts again on new ports."""
    weights = None if args.proxy_faults else {"forward": 1}
    secret = stack_secrets.load_or_create(tmp)["pipeline_token"]
    for _ in range(5):
        ports = dict(zip(STACK_PORTS, free_ports(len(STACK_PORTS)), strict=True))
        kind = endpoint_kind(args.pipeline_kind, f"http://127.0.0.1:{ports['pipeline_port']}", secret)
        proxy = FaultProxy(upstream=f"http://127.0.0.1:{ports['pipeline_port']}",
                           schedule=FaultSchedule(args.seed, weights), client_timeout_s=args.pipeline_timeout_s,
                           contract=kind).start()
        stack = Stack(StackConfig(
            local_dir=tmp, **ports, training_budget_s=args.budget_s, blob_poll_s=0.5,
            drift_schedule="0 0 0 1 1 *", reconcile_schedule=args.reconcile_schedule,
            extra_settings={**kind.host_settings(proxy.base_url),
                            "PIPELINE_TIMEOUT_S": str(args.pipeline_timeout_s),
                            "PIPELINE_MAX_RETRIES": str(args.pipeline_max_retries),
                            "MIN_ROWS": str(args.min_rows), "COALESCE_S": str(args.coalesce_s),
                            "SUBMIT_DEADLINE_S": str(args.submit_deadline_s),
                            "RECONCILE_MIN_AGE_S": str(args.reconcile_min_age_s), "DRIFT_COOLDOWN_S": "0"}))
        try:
            stack.start(on_step=say)  # stops what it started before raising
        except PortInUse:
            proxy.stop()
            continue
        except BaseException:
            proxy.stop()
            raise
        return stack, proxy, kind
    raise PortInUse(f"the local stack lost a port on each of 5 starts; see {tmp / 'logs'}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--uploads", type=int, default=24)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--pipeline-kind", choices=[k.value for k in PipelineKind], default=Settings().pipeline_kind,
                        help="PIPELINE_KIND of the stack (default: the settings' default)")
    parser.add_argument("--timeout-s", type=float, default=900, help="the whole campaign, start to quiet")
    parser.add_argument("--budget-s", type=int, default=3, help="training budget per run")
    parser.add_argument("--coalesce-s", type=float, default=3)
    parser.add_argument("--pipeline-timeout-s", type=float, default=3)
    parser.add_argument("--pipeline-max-retries", type=int, default=1,
                        help="the client's own retries before the outbox's (PIPELINE_MAX_RETRIES)")
    parser.add_argument("--submit-deadline-s", type=float, default=900)
    parser.add_argument("--reconcile-min-age-s", type=float, default=30)
    parser.add_argument("--reconcile-schedule", default="*/10 * * * * *")
    parser.add_argument("--min-rows", type=int, default=300)
    parser.add_argument("--no-host-kill", dest="host_kill", action="store_false")
    parser.add_argument("--no-azurite-restart", dest="azurite_restart", action="store_false")
    parser.add_argument("--no-submit-kill", dest="submit_kill", action="store_false")
    parser.add_argument("--no-proxy-faults", dest="proxy_faults", action="store_false")
    parser.add_argument("--submit-kill-wait-s", type=float, default=300,
                        help="after the last upload, how long the armed mid-submit kill may wait for a submission")
    parser.add_argument("--settle-s", type=float, default=45,
                        help="stop waiting when only uploads without a final outcome remain this long")
    parser.add_argument("--keep", action="store_true", help="keep the stack's folder (printed) for inspection")
    args = parser.parse_args()

    started = time.monotonic()
    frame, source = source_frame()
    uploads = build_plan(args.uploads, args.seed, frame)
    say(f"pipeline kind: {args.pipeline_kind}; data: {source}; plan: {len(uploads)} uploads in "
        f"{len({u.burst for u in uploads})} bursts, "
        f"{dict(Counter(u.kind for u in uploads))}")
    tmp = Path(tempfile.mkdtemp(prefix=f"retrain-faults-{args.seed}-"))
    t = time.monotonic()
    stack, proxy, endpoint = start_stack_behind_proxy(args, tmp)
    stack_start_s = round(time.monotonic() - t, 1)
    durations: dict[str, float] = {}
    result: dict = {}
    replayer = None
    campaign = None
    try:
        durations["stack_start"] = stack_start_s
        campaign = Campaign(args=args, stack=stack, proxy=proxy, endpoint=endpoint, uploads=uploads)
        replayer = EventReplayer(endpoint.runs, stack.eventgrid_webhook)
        replayer.start()
        t = time.monotonic()
        campaign.run()
        durations["uploads_and_faults"] = round(time.monotonic() - t, 1)
        t = time.monotonic()
        quiet, snap, why = campaign.wait_quiet(started + args.timeout_s, args.settle_s)
        # let the late duplicate / stale events of the last run land, then look once more
        while replayer.busy() and time.monotonic() < started + args.timeout_s:
            time.sleep(1)
        if quiet and not why:
            quiet, snap, why = campaign.wait_quiet(started + args.timeout_s + 30, args.settle_s)
        durations["quiet_wait"] = round(time.monotonic() - t, 1)
        say("quiet" if quiet else f"NOT quiet after the timeout: {'; '.join(why)}")
        if not snap:
            snap = campaign.snapshot()
        result = count(uploads, snap, list(proxy.events), t0=START_WALL, host_alive=host_alive(stack), quiet=quiet,
                       not_quiet_because=why, notes=campaign.notes)
        result["faults"] = {"proxy": dict(sorted(proxy.counts.items())), **campaign.faults,
                            "events_replayed": dict(replayer.sent), "event_answers": dict(replayer.answers)}
        durations["total"] = round(time.monotonic() - started, 1)
        result["durations_s"] = durations
        print_report(result, campaign)
        say("timeline: " + json.dumps(campaign.timeline))
    finally:
        if replayer:
            replayer.stop()
        stack.stop()
        proxy.stop()
        if args.keep:
            say(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    ok = bool(result) and result["ok"]  # the problem list is empty (bench/fault_count.py)
    summary = {k: result.get(k) for k in ("uploads", "outcomes", "uploads_with_final_outcome", "submissions",
                                          "requests_submitted", "requests", "distinct_datasets",
                                          "expected_distinct_datasets", "dataset_versions", "untracked_runs",
                                          "endpoint_overlaps", "lost", "duplicated", "dangling_records", "host_alive",
                                          "quiet", "run_lookups", "problem_kinds", "faults", "durations_s")}
    summary.update(seed=args.seed, pipeline_kind=args.pipeline_kind, ok=ok,
                   problems=[p["problem"] for p in result.get("problems", [])])
    print(json.dumps(summary, default=str))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
