"""Nothing lost, nothing doubled: a seeded fault campaign against the whole local stack.

    .venv/bin/python bench/faults.py [--uploads 24] [--seed 1] [--timeout-s 900] [--keep]

Starts the local stack (Azurite, scoring server, pipeline endpoint, our Functions host running main.py) on free
loopback ports in a temporary folder, with a fault-injecting proxy (bench/fault_proxy.py) between the host and
the pipeline endpoint, a 3 s training budget, COALESCE_S=3, PIPELINE_TIMEOUT_S=3 and small files (600-1500 rows
of ../shared/data/bankmarketing_train.csv, or of the generated sample). Then, per seed:

- N uploads in bursts of 2-5: new data, exact duplicates under another name, the same rows in the semicolon
  (UCI) dialect, malformed files (extra field, missing column, too few rows, non-numeric, bad target, not UTF-8,
  empty);
- every pipeline submission answered by the proxy's seeded schedule: forwarded, 500, 503, 429 + Retry-After,
  held past the client timeout (dropped, or forwarded so the run starts and the answer is lost), forwarded then
  answered 502;
- SIGKILL of the Functions host while a training run is in flight and uploads are being handled, then a restart
  (same folder and settings); an Azurite restart (same data folder and ports) while uploads are in flight; a
  SIGKILL of the host at the moment it POSTs a submission (the run starts, the answer goes nowhere), then a
  restart;
- each run's terminal event re-POSTed twice at once as soon as it ends (racing the endpoint's own delivery),
  and later a stale `RunStatusChanged` Running and the terminal event once more.

When the system is quiet (every upload has a final audit outcome, no outbox request pending or submitting, no run
in flight here or at the endpoint) it counts from the durable records (audit, outbox, runs, datasets, models
tables; the pipeline endpoint's own run list) and prints a table, the problems found with their evidence, and one
JSON line. Exit 0 when nothing was lost or doubled and the host is alive, else 1.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import shutil
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from azure.data.tables import TableServiceClient  # noqa: E402
from azure.storage.blob import BlobServiceClient  # noqa: E402

from bench.fault_proxy import FaultProxy, FaultSchedule  # noqa: E402
from local.pipeline_endpoint import DEFAULT_PIPELINE_ID, local_workspace_id, submit_url  # noqa: E402
from local.processes import PortInUse, free_ports  # noqa: E402
from local.stack import STACK_PORTS, Stack, StackConfig  # noqa: E402
from shared.adapters import storage  # noqa: E402
from shared.adapters.outbox import Outbox  # noqa: E402
from shared.bootstrap import build_stores  # noqa: E402
from shared.settings import Settings  # noqa: E402

SHARED_DATA = ROOT.parent / "shared" / "data" / "bankmarketing_train.csv"
FINAL_UPLOAD = {"submitted", "superseded", "duplicate", "rejected", "failed"}
COMPLETION = {"deployed", "kept_champion", "rolled_back", "failed"}
MALFORMED = ("extra_field", "missing_column", "too_few_rows", "non_numeric", "bad_target", "not_utf8", "empty")
T0 = time.monotonic()
START_WALL = time.time()


def say(msg: str) -> None:
    print(f"[{time.monotonic() - T0:7.1f}s] {msg}", flush=True)


# ------------------------------------------------------------------------------------------------- the uploads
@dataclass
class Upload:
    index: int
    burst: int
    name: str
    kind: str  # unique | exact_duplicate | semicolon | malformed:<why>
    content: int | None  # which unique content it carries (None for malformed)
    data: bytes
    uploaded_at: float | None = None


def source_frame(min_rows: int) -> tuple[pd.DataFrame, str]:
    if SHARED_DATA.exists():
        return pd.read_csv(SHARED_DATA), str(SHARED_DATA)
    from shared.domain.sample_data import generate_sample

    return generate_sample(8000, seed=7), "generated (shared.domain.sample_data)"


def _malformed(why: str, frame: pd.DataFrame, rng: random.Random) -> bytes:
    if why == "empty":
        return b""
    if why == "too_few_rows":
        return frame.head(40).to_csv(index=False).encode()
    if why == "missing_column":
        return frame.drop(columns=["euribor3m"]).to_csv(index=False).encode()
    if why == "non_numeric":
        bad = frame.copy()
        bad["campaign"] = bad["campaign"].astype(object)
        bad.iloc[7, bad.columns.get_loc("campaign")] = "three"
        return bad.to_csv(index=False).encode()
    if why == "bad_target":
        bad = frame.copy()
        bad.iloc[2, bad.columns.get_loc("y")] = "maybe"
        return bad.to_csv(index=False).encode()
    lines = frame.to_csv(index=False).encode().split(b"\n")
    at = rng.randint(3, min(40, len(lines) - 2))
    if why == "extra_field":
        lines[at] += b",oops"
    else:  # not_utf8: a Latin-1 byte in the middle of a line
        lines[at] = lines[at].replace(b",", b",\xe9", 1)
    return b"\n".join(lines)


def build_plan(n: int, seed: int, frame: pd.DataFrame) -> list[Upload]:
    """Deterministic per seed: burst sizes, kinds, rows and names."""
    rng = random.Random(f"uploads-{seed}")
    uploads: list[Upload] = []
    uniques: list[pd.DataFrame] = []
    burst = 0
    tag = f"s{seed}"
    while len(uploads) < n:
        for _ in range(min(rng.randint(2, 5), n - len(uploads))):
            i = len(uploads)
            kind = "unique" if not uniques else rng.choices(
                ["unique", "exact_duplicate", "semicolon", "malformed"], weights=[45, 15, 15, 25])[0]
            if kind == "unique":
                rows = frame.sample(n=rng.randint(600, 1500), random_state=rng.randrange(2**31))
                uniques.append(rows)
                content, data = len(uniques) - 1, rows.to_csv(index=False).encode()
            elif kind == "exact_duplicate":
                content = rng.randrange(len(uniques))
                data = uniques[content].to_csv(index=False).encode()
            elif kind == "semicolon":  # the UCI original: ';' and every text field quoted
                content = rng.randrange(len(uniques))
                data = uniques[content].to_csv(index=False, sep=";", quoting=csv.QUOTE_NONNUMERIC).encode()
            else:
                why = rng.choice(MALFORMED)
                kind, content = f"malformed:{why}", None
                data = _malformed(why, frame.sample(n=600, random_state=rng.randrange(2**31)), rng)
            uploads.append(Upload(index=i, burst=burst, name=f"{tag}-{i:02d}-{kind.replace(':', '-')}.csv",
                                  kind=kind, content=content, data=data))
        burst += 1
    return uploads


# ------------------------------------------------------------------------------------ the pipeline endpoint view
class Endpoint:
    """The local pipeline endpoint's own run list (its REST API, straight to it, not through the proxy)."""

    def __init__(self, base: str, token: str):
        self.list_url = submit_url(base).split("/PipelineSubmit/")[0] + f"/Pipeline/{DEFAULT_PIPELINE_ID}"
        self.headers = {"Authorization": f"Bearer {token}"}

    def runs(self) -> list[dict]:
        response = requests.get(self.list_url, headers=self.headers, timeout=10)
        response.raise_for_status()
        return response.json()


def run_event(run: dict, *, status: str | None = None) -> dict:
    """Azure ML's event for `run` in the Event Grid schema (as the local endpoint sends it); `status` forces a
    RunStatusChanged with that runStatus (a stale `Running` after the end)."""
    ended = run["Status"]["RunStatus"]
    completed = status is None and ended == "Completed"
    data = {"experimentId": str(uuid.uuid5(uuid.NAMESPACE_URL, run["ExperimentName"])),
            "experimentName": run["ExperimentName"], "runId": run["Id"], "runType": "azureml.PipelineRun",
            "runTags": {k: v for k, v in run["ParameterAssignments"].items() if k in ("trigger_id", "reason")},
            "runProperties": {"azureml.runsource": "azureml.PipelineRun"}}
    if not completed:
        data["runStatus"] = status or ended
    return {"id": str(uuid.uuid4()), "topic": local_workspace_id(),  # the stack's AZUREML_WORKSPACE_ID
            "subject": f"experiments/{data['experimentId']}/runs/{run['Id']}",
            "eventType": "Microsoft.MachineLearningServices." + ("RunCompleted" if completed else "RunStatusChanged"),
            "eventTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "data": data, "dataVersion": "2",
            "metadataVersion": "1"}


class EventReplayer:
    """Duplicate and out-of-order completion events: for each run that ends, its terminal event twice at once
    (racing the endpoint's own delivery), then after `later_s` a stale RunStatusChanged Running and the terminal
    event once more. Retries while the host is down (connection refused) or answers 5xx."""

    def __init__(self, stack: Stack, endpoint: Endpoint, later_s: float = 8.0):
        self.stack, self.endpoint, self.later_s = stack, endpoint, later_s
        self.seen: set[str] = set()
        self.sent: Counter = Counter()
        self.answers: Counter = Counter()
        self.pending = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="event-replayer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def busy(self) -> bool:
        with self._lock:
            return self.pending > 0

    def _loop(self) -> None:
        while not self._stop.wait(1.0):
            try:
                runs = self.endpoint.runs()
            except Exception:  # noqa: S112 - the endpoint is busy or restarting: look again in a second
                continue
            for run in runs:
                if run["Status"]["RunStatus"] in ("Completed", "Failed", "Canceled") and run["Id"] not in self.seen:
                    self.seen.add(run["Id"])
                    for _ in range(2):
                        self._spawn(run, None, "terminal_duplicate", 0.0)
                    self._spawn(run, "Running", "stale_running", self.later_s)
                    self._spawn(run, None, "terminal_late", self.later_s + 2)

    def _spawn(self, run: dict, status: str | None, label: str, delay: float) -> None:
        with self._lock:
            self.pending += 1
        threading.Thread(target=self._send, args=(run, status, label, delay), daemon=True).start()

    def _send(self, run: dict, status: str | None, label: str, delay: float) -> None:
        try:
            if delay:
                time.sleep(delay)
            event = run_event(run, status=status)
            for _ in range(60):
                try:
                    response = requests.post(self.stack.eventgrid_webhook(), json=[event], timeout=60,
                                             headers={"aeg-event-type": "Notification"})
                    answer = str(response.status_code)
                    if response.status_code < 500:
                        break
                except requests.RequestException as exc:
                    answer = type(exc).__name__
                with self._lock:
                    self.answers[f"retry:{answer}"] += 1
                if self._stop.wait(1.0):
                    return
            with self._lock:
                self.sent[label] += 1
                self.answers[answer] += 1
        finally:
            with self._lock:
                self.pending -= 1


# ------------------------------------------------------------------------------------------------- the campaign
@dataclass
class Campaign:
    args: argparse.Namespace
    stack: Stack
    proxy: FaultProxy
    endpoint: Endpoint
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
                if any(r["Status"]["RunStatus"] == "Running" for r in self.endpoint.runs()):
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
            return {"endpoint_running": [r["Id"][:8] for r in self.endpoint.runs()
                                         if r["Status"]["RunStatus"] in ("NotStarted", "Running")],
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
                fired = self.proxy.kill_on_next_submit(lambda: self.kill_host("at the moment it POSTs a submission"))
                self.upload(batch)
                if fired.wait(a.submit_kill_wait_s):
                    time.sleep(2)
                    self.restart_host()
                else:
                    self.proxy.disarm()
                    self.notes.append(f"no submission within {a.submit_kill_wait_s:.0f} s: the mid-submit kill "
                                      "was skipped")
            else:
                self.upload(batch)
            time.sleep(rng.uniform(0.5, 7.0))

    # -- quiet ----------------------------------------------------------------------------------------------
    def snapshot(self) -> dict:
        audit = self.stores.audit.list()
        return {"audit": audit, "requests": self.outbox.list(), "runs": self.stores.runs.list(),
                "endpoint": self.endpoint.runs(), "datasets": self.stores.datasets.list(),
                "models": self.stores.models.list()}

    def unquiet(self, snap: dict) -> list[str]:
        why = []
        per_upload = upload_records(self.uploads, snap["audit"])
        open_uploads = [u.name for u in self.uploads if final_record(per_upload[u.name], snap) is None]
        if open_uploads:
            why.append(f"{len(open_uploads)} uploads without a final outcome")
        waiting = [r for r in snap["requests"] if r.status in ("pending", "submitting")]
        if waiting:
            why.append(f"outbox: {dict(Counter(r.status for r in waiting))}")
        flying = [r for r in snap["runs"] if r.status in ("Submitted", "Handling")]
        if flying:
            why.append(f"runs in flight: {dict(Counter(r.status for r in flying))}")
        busy = [r for r in snap["endpoint"] if r["Status"]["RunStatus"] in ("NotStarted", "Queued", "Running")]
        if busy:
            why.append(f"endpoint runs not ended: {len(busy)}")
        return why

    def wait_quiet(self, deadline: float, settle_s: float) -> tuple[bool, dict, list[str]]:
        """Quiet: every upload has a final outcome, nothing pending or submitting, no run in flight, three looks in a
        row. Also quiet ("settled") when only uploads without a final outcome remain and nothing else has moved for
        `settle_s` (longer than the blob receipt lease a killed invocation leaves): nothing will finish them."""
        calm, why, snap = 0, ["not looked yet"], {}
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


# ---------------------------------------------------------------------------------------------- counting
def upload_records(uploads: list[Upload], audit: list) -> dict[str, list]:
    by_source: dict[str, list] = defaultdict(list)
    for r in audit:
        if r.trigger == "blob":
            by_source[r.source.split("/", 1)[-1]].append(r)
    return {u.name: by_source.get(u.name, []) for u in uploads}


def _request_view(r) -> dict:
    return {"request": r.id, "version": r.dataset_version, "status": r.status, "attempts": r.attempts,
            "run_id": r.run_id, "superseded_by": r.superseded_by, "last_error": r.last_error[:200]}


def _proxy_view(p) -> dict:
    return {"call": p.index, "t": round(p.at - START_WALL, 1), "fault": p.kind, "upstream": p.upstream_status,
            "run_id": p.run_id[:8], "client_gone": p.client_gone}


def final_record(records: list, snap: dict):
    """The record that speaks for an upload: the one that owns an outbox request (a retried trigger writes a second
    record, `duplicate … a retried trigger`), else the last final one; None while none is final."""
    owners = {r.id for r in snap["requests"]}
    final = [r for r in records if r.outcome in FINAL_UPLOAD]
    owning = [r for r in final if r.id in owners]
    if owning:
        return owning[0]
    real = [r for r in final if "a retried trigger" not in r.detail]
    return (real or final or [None])[-1]


def count(c: Campaign, snap: dict) -> dict:
    uploads, audit, requests_, runs = c.uploads, snap["audit"], snap["requests"], snap["runs"]
    ep_runs, datasets, models = snap["endpoint"], snap["datasets"], snap["models"]
    problems: list[dict] = []
    req_by_id = {r.id: r for r in requests_}

    # every upload: a final audit outcome
    per_upload = upload_records(uploads, audit)
    outcomes: Counter = Counter()
    finals: dict[str, object] = {}
    extra_records = []
    for u in uploads:
        records = per_upload[u.name]
        final = final_record(records, snap)
        finals[u.name] = final
        if final is None:
            problems.append({"problem": "lost: upload without a final audit outcome", "upload": u.name,
                             "kind": u.kind, "records": [(r.id, r.outcome, r.detail[:160]) for r in records],
                             "outbox": [_request_view(req_by_id[r.id]) for r in records if r.id in req_by_id],
                             "proxy": [_proxy_view(p) for p in c.proxy.events
                                       if p.trigger_id in {r.id for r in records}]})
            outcomes["(none)"] += 1
            continue
        outcomes[final.outcome] += 1
        for r in records:
            if r is not final:
                extra_records.append({"upload": u.name, "record": r.id, "outcome": r.outcome,
                                      "detail": r.detail[:160], "final": final.id})
                if r.outcome not in FINAL_UPLOAD:
                    problems.append({"problem": "dangling audit record (left open by a killed invocation; the "
                                                "retried trigger wrote another)", "upload": u.name,
                                     "record": r.id, "outcome": r.outcome, "final_record": final.id,
                                     "final_outcome": final.outcome, "counted_as": "audit trail"})
        expected = ("rejected",) if u.kind.startswith("malformed") else (
            "submitted", "superseded", "duplicate", "failed")
        if final.outcome not in expected:
            problems.append({"problem": f"unexpected outcome for a {u.kind} upload", "upload": u.name,
                             "record": final.id, "outcome": final.outcome, "detail": final.detail[:200]})

    # dataset versions: one per distinct content; each with a request that ended properly
    by_hash: dict[str, list] = defaultdict(list)
    for d in datasets:
        by_hash[d.content_hash].append(d)
    expected_contents = len({u.content for u in uploads if u.content is not None})
    requests_by_version: dict[int, list] = defaultdict(list)
    for r in requests_:
        requests_by_version[r.dataset_version].append(r)
    lost = [p for p in problems if p["problem"].startswith("lost")]
    for d in datasets:
        reqs = requests_by_version.get(d.version, [])
        if not reqs:
            item = {"problem": "lost: accepted dataset version without a retrain request", "version": d.version,
                    "source": d.source_blob, "hash": d.content_hash[:19]}
            problems.append(item)
            lost.append(item)
        for r in reqs:
            ok = (r.status == "submitted" and r.run_id) or (r.status == "superseded" and r.superseded_by) or \
                 (r.status == "failed" and r.last_error)
            if not ok:
                item = {"problem": "lost: request did not end submitted / superseded / failed with a reason",
                        "request": r.id, "version": d.version, "status": r.status, "last_error": r.last_error[:160]}
                problems.append(item)
                lost.append(item)
    for r in requests_:  # a superseded request's chain must end in a request that ran (or failed, said why)
        seen, cur = set(), r
        while cur is not None and cur.status == "superseded" and cur.id not in seen:
            seen.add(cur.id)
            cur = req_by_id.get(cur.superseded_by or "")
        if cur is None or cur.status not in ("submitted", "failed"):
            item = {"problem": "lost: superseded request whose successor never ran", "request": r.id,
                    "version": r.dataset_version, "ends_at": getattr(cur, "id", None),
                    "status": getattr(cur, "status", None)}
            problems.append(item)
            lost.append(item)
    for r in requests_:
        if r.status == "submitted" and r.run_id not in {e["Id"] for e in ep_runs}:
            item = {"problem": "lost: request submitted with a run the endpoint does not know", "request": r.id,
                    "run_id": r.run_id}
            problems.append(item)
            lost.append(item)
    audit_by_id = {r.id: r for r in audit}
    for r in requests_:  # the trigger's audit record must say what became of its request
        rec = audit_by_id.get(r.id)
        if r.status in ("submitted", "superseded", "failed") and (rec is None or rec.outcome != r.status):
            problems.append({"problem": "audit and outbox disagree", "request": r.id, "outbox_status": r.status,
                             "audit_outcome": None if rec is None else rec.outcome,
                             "audit_detail": None if rec is None else rec.detail[:200],
                             "outbox_last_error": r.last_error[:200], "superseded_by": r.superseded_by})
    newest = max(requests_, key=lambda r: r.dataset_version, default=None)
    if newest is not None and newest.status != "submitted":
        by = req_by_id.get(newest.superseded_by or "")
        problems.append({"problem": "the newest dataset version was not the one trained (latest wins)",
                         "request": newest.id, "version": newest.dataset_version, "status": newest.status,
                         "requested_at": round(newest.requested_at - START_WALL, 2),
                         "superseded_by": None if by is None else {"request": by.id, "version": by.dataset_version,
                                                                   "requested_at": round(by.requested_at - START_WALL,
                                                                                         2)},
                         "last_error": newest.last_error[:200]})

    # Retry-After honoured: the next POST of the same trigger id came at least that long after a 429
    early = []
    posts = sorted((p for p in c.proxy.events if p.index >= 0), key=lambda p: p.at)
    for i, p in enumerate(posts):
        if p.retry_after_s:
            nxt = next((q for q in posts[i + 1:] if q.trigger_id == p.trigger_id), None)
            if nxt is not None and nxt.at - p.at < p.retry_after_s - 0.05:
                early.append({"trigger_id": p.trigger_id, "retry_after_s": p.retry_after_s,
                              "next_after_s": round(nxt.at - p.at, 2)})
    if early:
        problems.append({"problem": "Retry-After not honoured", "cases": early})
    numbers = sorted(d.version for d in datasets)
    gaps = sorted(set(range(1, numbers[-1] + 1)) - set(numbers)) if numbers else []
    # runs the endpoint had to queue behind another (single flight broken, e.g. by a run nobody recorded)
    ordered = sorted(ep_runs, key=lambda e: e["Status"]["CreationTime"] or "")
    overlaps = sum(1 for prev, cur in zip(ordered, ordered[1:], strict=False)
                   if (prev["Status"]["EndTime"] or "9") > (cur["Status"]["CreationTime"] or ""))

    # doubled: two runs for one trigger id or one dataset version (or one content), two completions of one run
    duplicated: list[dict] = []
    by_trigger: dict[str, list] = defaultdict(list)
    by_version: dict[str, list] = defaultdict(list)
    version_hash = {d.version: d.content_hash for d in datasets}
    by_content: dict[str, list] = defaultdict(list)
    for e in ep_runs:
        p = e["ParameterAssignments"]
        by_trigger[p.get("trigger_id", "")].append(e["Id"])
        by_version[p.get("dataset_version", "")].append(e["Id"])
        by_content[version_hash.get(int(p.get("dataset_version") or 0), "?")].append(e["Id"])
    for key, ids in by_trigger.items():
        if len(ids) > 1:
            duplicated.append({"problem": "doubled: several pipeline runs for one trigger id", "trigger_id": key,
                               "runs": ids})
    for key, ids in by_version.items():
        if len(ids) > 1:
            duplicated.append({"problem": "doubled: several pipeline runs for one dataset version", "version": key,
                               "runs": ids, "triggers": [next(e["ParameterAssignments"].get("trigger_id")
                                                              for e in ep_runs if e["Id"] == i) for i in ids]})
    for key, ids in by_content.items():
        versions = {e["ParameterAssignments"].get("dataset_version") for e in ep_runs if e["Id"] in ids}
        if len(versions) > 1:
            duplicated.append({"problem": "doubled: the same content trained under several dataset versions",
                               "hash": key[:19], "versions": sorted(versions), "runs": ids})
    for key, versions in by_hash.items():
        if len(versions) > 1:
            duplicated.append({"problem": "doubled: one content registered as several dataset versions "
                                          "(deduplication missed)", "hash": key[:19],
                               "versions": [(d.version, d.source_blob, d.dialect) for d in versions]})
    completions: dict[str, list] = defaultdict(list)
    for r in audit:
        if r.trigger in ("eventgrid", "timer") and r.run_id and r.outcome in COMPLETION:
            completions[r.run_id].append(r)
    for run_id, records in completions.items():
        if len(records) > 1:
            duplicated.append({"problem": "doubled: one run completed more than once", "run_id": run_id,
                               "records": [(r.id, r.outcome) for r in records]})
    models_by_run = Counter(m.run_id for m in models)
    for run_id, n in models_by_run.items():
        if n > 1:
            duplicated.append({"problem": "doubled: several models registered for one run", "run_id": run_id,
                               "models": n})
    problems.extend(duplicated)

    # runs the endpoint started that this service never recorded (their answer was lost and not resubmitted)
    known = {r.run_id for r in runs}
    untracked = [e for e in ep_runs if e["Id"] not in known]
    for e in untracked:
        tid = e["ParameterAssignments"].get("trigger_id", "")
        req = req_by_id.get(tid)
        rec = next((r for r in audit if r.id == tid), None)
        problems.append({"problem": "untracked pipeline run: started by the endpoint, never recorded here "
                                    "(its training is wasted and its completion ignored)", "run_id": e["Id"],
                         "trigger_id": tid, "dataset_version": e["ParameterAssignments"].get("dataset_version"),
                         "endpoint_status": e["Status"]["RunStatus"],
                         "outbox": None if req is None else _request_view(req),
                         "audit": None if rec is None else {"outcome": rec.outcome, "detail": rec.detail[:200]},
                         "proxy": [_proxy_view(p) for p in c.proxy.events if p.trigger_id == tid]})
    ignored_then_known = [r for r in audit if r.trigger == "eventgrid" and r.outcome == "ignored" and r.run_id in known
                          and "not a run this service submitted" in r.detail]

    completed_by = Counter()
    for records in completions.values():
        completed_by["event" if records[0].trigger == "eventgrid" else "reconcile"] += 1
    submitted = [r for r in requests_ if r.status == "submitted"]
    return {
        "uploads": len(uploads),
        "uploads_with_final_outcome": sum(outcomes.values()) - outcomes.get("(none)", 0),
        "outcomes": dict(sorted(outcomes.items())),
        "upload_kinds": dict(sorted(Counter(u.kind.split(":")[0] for u in uploads).items())),
        "submissions": len(ep_runs),
        "requests": dict(sorted(Counter(r.status for r in requests_).items())),
        "requests_submitted": len(submitted),
        "distinct_datasets": len(by_hash),
        "dataset_versions": len(datasets),
        "expected_distinct_datasets": expected_contents,
        "runs": dict(sorted(Counter(r.status for r in runs).items())),
        "endpoint_runs": dict(sorted(Counter(e["Status"]["RunStatus"] for e in ep_runs).items())),
        "untracked_runs": len(untracked),
        "completed_by": dict(completed_by),
        "models_registered": len(models),
        "eventgrid_outcomes": dict(sorted(Counter(r.outcome for r in audit if r.trigger == "eventgrid").items())),
        "ignored_before_recorded": len(ignored_then_known),
        "extra_upload_records": len(extra_records),
        "dangling_records": sum(1 for p in problems if p["problem"].startswith("dangling")),
        "lost": len(lost),
        "duplicated": len(duplicated),
        "attempts_max": max((r.attempts for r in requests_), default=0),
        "version_gaps": gaps,
        "endpoint_overlaps": overlaps,
        "retry_after_checked": sum(1 for p in posts if p.retry_after_s),
        "problems": problems,
        "extra_records": extra_records,
    }


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
    table = Table(title=f"fault campaign, seed {c.args.seed}", show_lines=False)
    table.add_column("figure")
    table.add_column("value", overflow="fold")
    table.add_column("target")
    rows = [
        ("uploads", result["uploads"], ""),
        ("upload kinds", result["upload_kinds"], ""),
        ("uploads with a final audit outcome", result["uploads_with_final_outcome"], "= uploads"),
        ("outcomes", result["outcomes"], ""),
        ("outbox requests", result["requests"], "none pending/submitting"),
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
        ("429s whose Retry-After was checked", result["retry_after_checked"], "next try not earlier"),
        ("dataset version numbers skipped (killed invocations)", result["version_gaps"], ""),
        ("endpoint runs started while another was unfinished", result["endpoint_overlaps"], "0 (single flight)"),
        ("proxy: submissions by fault (GET/HEAD forwarded)", result["faults"]["proxy"], ""),
        ("other faults", {k: v for k, v in result["faults"].items() if k != "proxy"}, ""),
        ("lost", result["lost"], "0"),
        ("duplicated", result["duplicated"], "0"),
        ("host alive", result["host_alive"], "True"),
        ("quiet", result["quiet"], "True"),
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


def start_stack_behind_proxy(args: argparse.Namespace, tmp: Path) -> tuple[Stack, FaultProxy, int]:
    """The stack on fresh ports, its pipeline endpoint reached through the fault proxy. The proxy must know the
    endpoint's port before the stack starts, so this retries as `local.stack.start_on_free_ports` does: when a
    child finds a port taken between choosing and binding it, everything starts again on new ports."""
    weights = None if args.proxy_faults else {"forward": 1}
    for _ in range(5):
        ports = dict(zip(STACK_PORTS, free_ports(len(STACK_PORTS)), strict=True))
        proxy = FaultProxy(upstream=f"http://127.0.0.1:{ports['pipeline_port']}",
                           schedule=FaultSchedule(args.seed, weights), client_timeout_s=args.pipeline_timeout_s).start()
        stack = Stack(StackConfig(
            local_dir=tmp, **ports, training_budget_s=args.budget_s, blob_poll_s=0.5,
            drift_schedule="0 0 0 1 1 *", reconcile_schedule=args.reconcile_schedule,
            extra_settings={"PIPELINE_ENDPOINT_URL": submit_url(proxy.base_url),
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
        return stack, proxy, ports["pipeline_port"]
    raise PortInUse(f"the local stack lost a port on each of 5 starts; see {tmp / 'logs'}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--uploads", type=int, default=24)
    parser.add_argument("--seed", type=int, default=1)
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
    parser.add_argument("--submit-kill-wait-s", type=float, default=120)
    parser.add_argument("--settle-s", type=float, default=45,
                        help="stop waiting when only uploads without a final outcome remain this long")
    parser.add_argument("--keep", action="store_true", help="keep the stack's folder (printed) for inspection")
    args = parser.parse_args()

    started = time.monotonic()
    frame, source = source_frame(args.min_rows)
    uploads = build_plan(args.uploads, args.seed, frame)
    say(f"data: {source}; plan: {len(uploads)} uploads in {len({u.burst for u in uploads})} bursts, "
        f"{dict(Counter(u.kind for u in uploads))}")
    tmp = Path(tempfile.mkdtemp(prefix=f"retrain-faults-{args.seed}-"))
    t = time.monotonic()
    stack, proxy, pipeline_port = start_stack_behind_proxy(args, tmp)
    stack_start_s = round(time.monotonic() - t, 1)
    durations: dict[str, float] = {}
    result: dict = {}
    replayer = None
    campaign = None
    try:
        durations["stack_start"] = stack_start_s
        endpoint = Endpoint(f"http://127.0.0.1:{pipeline_port}", stack.secrets["pipeline_token"])
        campaign = Campaign(args=args, stack=stack, proxy=proxy, endpoint=endpoint, uploads=uploads)
        replayer = EventReplayer(stack, endpoint)
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
        result = count(campaign, snap)
        result["host_alive"] = host_alive(stack)
        result["quiet"] = quiet
        result["not_quiet_because"] = why
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
    ok = bool(result) and result["lost"] == 0 and result["duplicated"] == 0 and result["host_alive"] and \
        result["quiet"] and result["uploads_with_final_outcome"] == result["uploads"] and \
        result["submissions"] == result["requests_submitted"]
    summary = {k: result.get(k) for k in ("uploads", "outcomes", "uploads_with_final_outcome", "submissions",
                                          "requests_submitted", "requests", "distinct_datasets",
                                          "expected_distinct_datasets", "dataset_versions", "untracked_runs",
                                          "endpoint_overlaps", "lost", "duplicated", "dangling_records", "host_alive",
                                          "quiet", "faults", "durations_s")}
    summary.update(seed=args.seed, ok=ok, problems=[p["problem"] for p in result.get("problems", [])])
    print(json.dumps(summary, default=str))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
