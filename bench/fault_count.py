"""What a fault campaign left behind, counted from the durable records: the figures and every problem found.

Each problem has a `kind` (`ProblemKind`); the campaign is `ok` exactly when the problem list is empty, so a new
check cannot be forgotten in the verdict. The records read: the audit trail, the outbox, the runs, datasets and
models tables (a `Snapshot`), the pipeline endpoint's own run list (bench/fault_endpoint.py) and the fault proxy's
log of submissions (bench/fault_proxy.py).
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from bench.fault_endpoint import EndpointRun
from bench.fault_plan import Upload
from bench.fault_proxy import ProxyEvent

FINAL_UPLOAD = {"submitted", "superseded", "duplicate", "rejected", "failed"}
# a delivery of an upload that stopped half-way, closed by the delivery that handled the upload (or by the reconcile
# timer): closed with its reason, so not dangling; it never speaks for the upload
CLOSED_EXTRA = FINAL_UPLOAD | {"interrupted"}
COMPLETION = {"deployed", "kept_champion", "rolled_back", "failed"}


class ProblemKind(StrEnum):
    LOST = "lost"  # an upload, a version or a request that never got its end
    DOUBLED = "doubled"  # two runs, versions, completions or models where one was due
    UNTRACKED = "untracked"  # a run the endpoint started that the service never recorded
    DANGLING = "dangling"  # an audit record left open beside the one that finished the upload
    UNEXPECTED_OUTCOME = "unexpected_outcome"  # e.g. a valid upload rejected
    DISAGREE = "audit_outbox_disagree"  # the trigger's audit record says otherwise than its request
    LATEST_NOT_TRAINED = "latest_not_trained"  # latest wins: the newest version must be the one trained
    RETRY_AFTER = "retry_after_not_honoured"
    SINGLE_FLIGHT = "single_flight_broken"  # a run started while another was unfinished
    SUBMISSIONS = "submissions_differ"  # runs the endpoint started != requests that ended submitted
    STORAGE_LOSS = "storage_lost_records"  # an Azurite restart lost audit records
    NOT_QUIET = "not_quiet"  # work still pending or in flight at the timeout
    HOST_DEAD = "host_dead"


@dataclass
class Snapshot:
    audit: list = field(default_factory=list)
    requests: list = field(default_factory=list)
    runs: list = field(default_factory=list)
    endpoint: list[EndpointRun] = field(default_factory=list)
    datasets: list = field(default_factory=list)
    models: list = field(default_factory=list)


class Problems(list):
    """The problems found, each a dict with `kind` and `problem` (what, in words) and its evidence."""

    def add(self, kind: ProblemKind, problem: str, **evidence: Any) -> dict:
        item = {"kind": kind.value, "problem": problem, **evidence}
        self.append(item)
        return item

    def of(self, kind: ProblemKind) -> list[dict]:
        return [p for p in self if p["kind"] == kind.value]


def upload_records(uploads: list[Upload], audit: list) -> dict[str, list]:
    by_source: dict[str, list] = defaultdict(list)
    for r in audit:
        if r.trigger == "blob":
            by_source[r.source.split("/", 1)[-1]].append(r)
    return {u.name: by_source.get(u.name, []) for u in uploads}


def final_record(records: list, requests: list):
    """The record that speaks for an upload: the one that owns an outbox request (a retried trigger writes a second
    record, `duplicate … a retried trigger`), else the last final one; None while none is final."""
    owners = {r.id for r in requests}
    final = [r for r in records if r.outcome in FINAL_UPLOAD]
    owning = [r for r in final if r.id in owners]
    if owning:
        return owning[0]
    real = [r for r in final if "a retried trigger" not in r.detail]
    return (real or final or [None])[-1]


def _request_view(r) -> dict:
    return {"request": r.id, "version": r.dataset_version, "status": r.status, "attempts": r.attempts,
            "run_id": r.run_id, "superseded_by": r.superseded_by, "last_error": r.last_error[:200]}


def _proxy_view(p: ProxyEvent, t0: float) -> dict:
    return {"call": p.index, "t": round(p.at - t0, 1), "fault": p.kind, "upstream": p.upstream_status,
            "run_id": p.run_id[:16], "client_gone": p.client_gone}


@dataclass
class Counting:
    uploads: list[Upload]
    snap: Snapshot
    proxy_events: list[ProxyEvent]
    t0: float = field(default_factory=time.time)  # wall clock the evidence's times are relative to
    problems: Problems = field(default_factory=Problems)

    def proxy_for(self, trigger_ids: set[str]) -> list[dict]:
        return [_proxy_view(p, self.t0) for p in self.proxy_events if p.index >= 0 and p.trigger_id in trigger_ids]

    # -- each upload: one final audit outcome ---------------------------------------------------------------
    def check_uploads(self) -> tuple[Counter, list[dict]]:
        snap, problems = self.snap, self.problems
        req_by_id = {r.id: r for r in snap.requests}
        per_upload = upload_records(self.uploads, snap.audit)
        outcomes: Counter = Counter()
        extra_records: list[dict] = []
        for u in self.uploads:
            records = per_upload[u.name]
            final = final_record(records, snap.requests)
            if final is None:
                problems.add(ProblemKind.LOST, "lost: upload without a final audit outcome", upload=u.name,
                             upload_kind=u.kind, records=[(r.id, r.outcome, r.detail[:160]) for r in records],
                             outbox=[_request_view(req_by_id[r.id]) for r in records if r.id in req_by_id],
                             proxy=self.proxy_for({r.id for r in records}))
                outcomes["(none)"] += 1
                continue
            outcomes[final.outcome] += 1
            for r in records:
                if r is final:
                    continue
                extra_records.append({"upload": u.name, "record": r.id, "outcome": r.outcome,
                                      "detail": r.detail[:160], "final": final.id})
                if r.outcome not in CLOSED_EXTRA:
                    problems.add(ProblemKind.DANGLING, "dangling audit record (left open by a killed invocation; "
                                 "the retried trigger wrote another)", upload=u.name, record=r.id, outcome=r.outcome,
                                 final_record=final.id, final_outcome=final.outcome)
            expected = ("rejected",) if u.kind.startswith("malformed") else (
                "submitted", "superseded", "duplicate", "failed")
            if final.outcome not in expected:
                problems.add(ProblemKind.UNEXPECTED_OUTCOME, f"unexpected outcome for a {u.kind} upload",
                             upload=u.name, record=final.id, outcome=final.outcome, detail=final.detail[:200])
        return outcomes, extra_records

    # -- each version and request: an end -------------------------------------------------------------------
    def check_requests(self) -> None:
        snap, problems = self.snap, self.problems
        req_by_id = {r.id: r for r in snap.requests}
        by_version: dict[int, list] = defaultdict(list)
        for r in snap.requests:
            by_version[r.dataset_version].append(r)
        for d in snap.datasets:
            reqs = by_version.get(d.version, [])
            if not reqs:
                problems.add(ProblemKind.LOST, "lost: accepted dataset version without a retrain request",
                             version=d.version, source=d.source_blob, hash=d.content_hash[:19])
            for r in reqs:
                ended = (r.status == "submitted" and r.run_id) or (r.status == "superseded" and r.superseded_by) or \
                        (r.status == "failed" and r.last_error)
                if not ended:
                    problems.add(ProblemKind.LOST, "lost: request did not end submitted / superseded / failed "
                                 "with a reason", request=r.id, version=d.version, status=r.status,
                                 last_error=r.last_error[:160])
        for r in snap.requests:  # a superseded request's chain must end in a request that ran (or failed, said why)
            seen, cur = set(), r
            while cur is not None and cur.status == "superseded" and cur.id not in seen:
                seen.add(cur.id)
                cur = req_by_id.get(cur.superseded_by or "")
            if cur is None or cur.status not in ("submitted", "failed"):
                problems.add(ProblemKind.LOST, "lost: superseded request whose successor never ran", request=r.id,
                             version=r.dataset_version, ends_at=getattr(cur, "id", None),
                             status=getattr(cur, "status", None))
        known = {e.run_id for e in snap.endpoint}
        for r in snap.requests:
            if r.status == "submitted" and r.run_id not in known:
                problems.add(ProblemKind.LOST, "lost: request submitted with a run the endpoint does not know",
                             request=r.id, run_id=r.run_id)
        audit_by_id = {r.id: r for r in snap.audit}
        for r in snap.requests:  # the trigger's audit record must say what became of its request
            rec = audit_by_id.get(r.id)
            if r.status in ("submitted", "superseded", "failed") and (rec is None or rec.outcome != r.status):
                problems.add(ProblemKind.DISAGREE, "audit and outbox disagree", request=r.id, outbox_status=r.status,
                             audit_outcome=None if rec is None else rec.outcome,
                             audit_detail=None if rec is None else rec.detail[:200],
                             outbox_last_error=r.last_error[:200], superseded_by=r.superseded_by)
        # newest by upload time (a request without one: by when it was asked), as the product promises: two uploads
        # of one burst may be numbered in the other order when their triggers run concurrently. A blob's
        # Last-Modified has one-second resolution, so uploads of the same second tie and either may win.
        def upload_time(r) -> float:
            return r.uploaded_at or r.requested_at

        latest = max((upload_time(r) for r in snap.requests), default=None)
        tied = sorted((r for r in snap.requests if upload_time(r) == latest), key=lambda r: r.dataset_version)
        newest = tied[-1] if tied else None
        if newest is not None and not any(r.status == "submitted" for r in tied):
            by = req_by_id.get(newest.superseded_by or "")
            problems.add(ProblemKind.LATEST_NOT_TRAINED,
                         "the newest dataset version was not the one trained (latest wins)", request=newest.id,
                         version=newest.dataset_version, status=newest.status,
                         uploaded_at=round(upload_time(newest) - self.t0, 2), tied=[r.id for r in tied],
                         superseded_by=None if by is None else {
                             "request": by.id, "version": by.dataset_version,
                             "uploaded_at": round(upload_time(by) - self.t0, 2)},
                         last_error=newest.last_error[:200])

    # -- Retry-After honoured: the next POST of the same trigger id came at least that long after a 429 -------
    def check_retry_after(self) -> int:
        posts = sorted((p for p in self.proxy_events if p.index >= 0), key=lambda p: p.at)
        early = []
        for i, p in enumerate(posts):
            if p.retry_after_s:
                nxt = next((q for q in posts[i + 1:] if q.trigger_id == p.trigger_id), None)
                if nxt is not None and nxt.at - p.at < p.retry_after_s - 0.05:
                    early.append({"trigger_id": p.trigger_id, "retry_after_s": p.retry_after_s,
                                  "next_after_s": round(nxt.at - p.at, 2)})
        if early:
            self.problems.add(ProblemKind.RETRY_AFTER, "Retry-After not honoured", cases=early)
        return sum(1 for p in posts if p.retry_after_s)

    # -- single flight: no run created while an earlier one had not ended -----------------------------------
    def check_single_flight(self) -> int | None:
        runs = self.snap.endpoint
        if any(e.created is None or (e.finished and e.ended is None) for e in runs):
            return None  # the kind's run list does not say when runs ended: not measurable
        ordered = sorted(runs, key=lambda e: e.created or "")
        overlaps = [(prev.run_id, cur.run_id) for prev, cur in zip(ordered, ordered[1:], strict=False)
                    if (prev.ended or "9") > (cur.created or "")]
        if overlaps:
            self.problems.add(ProblemKind.SINGLE_FLIGHT, "single flight broken: a run started while another was "
                              "unfinished", pairs=overlaps)
        return len(overlaps)

    # -- doubled: two runs for one trigger id or one version (or one content), two completions of one run ----
    def check_doubled(self) -> dict[str, list]:
        snap, problems = self.snap, self.problems
        by_trigger: dict[str, list] = defaultdict(list)
        by_version: dict[str, list] = defaultdict(list)
        by_content: dict[str, list] = defaultdict(list)
        version_hash = {d.version: d.content_hash for d in snap.datasets}
        for e in snap.endpoint:
            by_trigger[e.trigger_id].append(e)
            by_version[e.dataset_version].append(e)
            by_content[version_hash.get(int(e.dataset_version or 0), "?")].append(e)
        for key, runs in by_trigger.items():
            if len(runs) > 1:
                problems.add(ProblemKind.DOUBLED, "doubled: several pipeline runs for one trigger id", trigger_id=key,
                             runs=[e.run_id for e in runs], proxy=self.proxy_for({key}))
        for key, runs in by_version.items():
            if len(runs) > 1:
                problems.add(ProblemKind.DOUBLED, "doubled: several pipeline runs for one dataset version",
                             version=key, runs=[e.run_id for e in runs], triggers=[e.trigger_id for e in runs])
        for key, runs in by_content.items():
            versions = {e.dataset_version for e in runs}
            if len(versions) > 1:
                problems.add(ProblemKind.DOUBLED, "doubled: the same content trained under several dataset versions",
                             hash=key[:19], versions=sorted(versions), runs=[e.run_id for e in runs])
        by_hash: dict[str, list] = defaultdict(list)
        for d in snap.datasets:
            by_hash[d.content_hash].append(d)
        for key, versions in by_hash.items():
            if len(versions) > 1:
                problems.add(ProblemKind.DOUBLED, "doubled: one content registered as several dataset versions "
                             "(deduplication missed)", hash=key[:19],
                             versions=[(d.version, d.source_blob, d.dialect) for d in versions])
        completions: dict[str, list] = defaultdict(list)
        for r in snap.audit:
            if r.trigger in ("eventgrid", "timer") and r.run_id and r.outcome in COMPLETION:
                completions[r.run_id].append(r)
        for run_id, records in completions.items():
            if len(records) > 1:
                problems.add(ProblemKind.DOUBLED, "doubled: one run completed more than once", run_id=run_id,
                             records=[(r.id, r.outcome) for r in records])
        for run_id, n in Counter(m.run_id for m in snap.models).items():
            if n > 1:
                problems.add(ProblemKind.DOUBLED, "doubled: several models registered for one run", run_id=run_id,
                             models=n)
        return {"by_hash": list(by_hash), "completions": list(completions.values())}

    # -- untracked: runs the endpoint started that this service never recorded ------------------------------
    def check_untracked(self) -> list[EndpointRun]:
        snap = self.snap
        known = {r.run_id for r in snap.runs}
        req_by_id = {r.id: r for r in snap.requests}
        untracked = [e for e in snap.endpoint if e.run_id not in known]
        for e in untracked:
            req = req_by_id.get(e.trigger_id)
            rec = next((r for r in snap.audit if r.id == e.trigger_id), None)
            self.problems.add(ProblemKind.UNTRACKED, "untracked pipeline run: started by the endpoint, never recorded "
                              "here (its training is wasted and its completion ignored)", run_id=e.run_id,
                              trigger_id=e.trigger_id, dataset_version=e.dataset_version, endpoint_status=e.status,
                              outbox=None if req is None else _request_view(req),
                              audit=None if rec is None else {"outcome": rec.outcome, "detail": rec.detail[:200]},
                              proxy=self.proxy_for({e.trigger_id}))
        return untracked


def count(uploads: list[Upload], snap: Snapshot, proxy_events: list[ProxyEvent], *, t0: float,
          host_alive: bool, quiet: bool, not_quiet_because: list[str], notes: list[str] | None = None) -> dict:
    """Every figure of the campaign and its problems; `ok` is True exactly when no problem was found."""
    c = Counting(uploads=uploads, snap=snap, proxy_events=proxy_events, t0=t0)
    outcomes, extra_records = c.check_uploads()
    c.check_requests()
    retry_after_checked = c.check_retry_after()
    overlaps = c.check_single_flight()
    doubled = c.check_doubled()
    untracked = c.check_untracked()
    problems = c.problems
    submitted = [r for r in snap.requests if r.status == "submitted"]
    if len(snap.endpoint) != len(submitted):
        problems.add(ProblemKind.SUBMISSIONS, "submissions (runs the endpoint started) differ from the requests that "
                     "ended submitted", submissions=len(snap.endpoint), requests_submitted=len(submitted))
    for note in notes or []:
        if note.startswith("Azurite restart lost"):
            problems.add(ProblemKind.STORAGE_LOSS, note)
    if not quiet:
        problems.add(ProblemKind.NOT_QUIET, "not quiet at the timeout", because=not_quiet_because)
    if not host_alive:
        problems.add(ProblemKind.HOST_DEAD, "the Functions host is not alive at the end")

    known = {r.run_id for r in snap.runs}
    ignored_then_known = [r for r in snap.audit if r.trigger == "eventgrid" and r.outcome == "ignored"
                          and r.run_id in known and "not a run this service submitted" in r.detail]
    completed_by: Counter = Counter()
    for records in doubled["completions"]:
        completed_by["event" if records[0].trigger == "eventgrid" else "reconcile"] += 1
    numbers = sorted(d.version for d in snap.datasets)
    lookups = [p for p in proxy_events if p.lookup]
    return {
        "uploads": len(uploads),
        "uploads_with_final_outcome": sum(outcomes.values()) - outcomes.get("(none)", 0),
        "outcomes": dict(sorted(outcomes.items())),
        "upload_kinds": dict(sorted(Counter(u.kind.split(":")[0] for u in uploads).items())),
        "submissions": len(snap.endpoint),
        "requests": dict(sorted(Counter(r.status for r in snap.requests).items())),
        "requests_submitted": len(submitted),
        "distinct_datasets": len(doubled["by_hash"]),
        "dataset_versions": len(snap.datasets),
        "expected_distinct_datasets": len({u.content for u in uploads if u.content is not None}),
        "runs": dict(sorted(Counter(r.status for r in snap.runs).items())),
        "endpoint_runs": dict(sorted(Counter(e.status for e in snap.endpoint).items())),
        "untracked_runs": len(untracked),
        "completed_by": dict(completed_by),
        "models_registered": len(snap.models),
        "eventgrid_outcomes": dict(sorted(Counter(r.outcome for r in snap.audit if r.trigger == "eventgrid").items())),
        "ignored_before_recorded": len(ignored_then_known),
        "extra_upload_records": len(extra_records),
        "dangling_records": len(problems.of(ProblemKind.DANGLING)),
        "lost": len(problems.of(ProblemKind.LOST)),
        "duplicated": len(problems.of(ProblemKind.DOUBLED)),
        "attempts_max": max((r.attempts for r in snap.requests), default=0),
        "run_lookups": len(lookups),
        "version_gaps": sorted(set(range(1, numbers[-1] + 1)) - set(numbers)) if numbers else [],
        "endpoint_overlaps": overlaps,
        "retry_after_checked": retry_after_checked,
        "host_alive": host_alive,
        "quiet": quiet,
        "not_quiet_because": not_quiet_because,
        "problem_kinds": dict(sorted(Counter(p["kind"] for p in problems).items())),
        "problems": list(problems),
        "extra_records": extra_records,
        "ok": not problems,
    }
