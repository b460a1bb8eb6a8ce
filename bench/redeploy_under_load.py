"""Redeploys under load: does any scoring request fail while the local endpoint switches models?

    .venv/bin/python bench/redeploy_under_load.py [--seconds 16] [--clients 4] [--model DIR --model DIR ...]

Starts our scoring server on loopback with the first model, keeps --clients threads scoring single records
over keep-alive connections (the raw-socket load generator of bench/scoring.py) for --seconds (at most
--max-requests requests), and meanwhile, through `LocalScoringDeployer`, performs three redeploys
(alternating the model directories) and one forced rollback (POST /admin/rollback), a step every
--step-s seconds. Every request is counted: failed = not 200, an answer that is not a list of one prediction, or a
connection error. Without --model, two small models are trained (different seeds) on the first --rows rows of
the bank-marketing file. Prints p50/p99, the switch events and the answers per deployment (the
`azureml-model-deployment` header), and ends with one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import scoring as bench  # noqa: E402  (its load generator and server helpers)
from shared.adapters.scoring import LocalScoringDeployer  # noqa: E402
from shared.scoring.contract import DEPLOYMENT_HEADER  # noqa: E402
from shared.scoring.model_digest import folder_digest  # noqa: E402


def switch_plan(models: list[Path], step_s: float, deployer: LocalScoringDeployer, records: list[dict],
                log: list[dict]) -> None:
    """Three redeploys (versions 2, 3, 4 alternating the model dirs) and one rollback, `step_s` apart."""
    plan = [("deploy", 2), ("deploy", 3), ("rollback", None), ("deploy", 4)]
    for kind, version in plan:
        time.sleep(step_s)
        started = time.perf_counter()
        try:
            if kind == "deploy":
                model_dir = models[(version - 1) % len(models)]
                answer = deployer.deploy(model_dir=str(model_dir), version=version, smoke_records=records[:20],
                                         digest=folder_digest(model_dir))
                entry = {"op": "deploy", "version": str(version), "slot": answer["slot"], "ok": True}
            else:
                answer = deployer.rollback()
                entry = {"op": "rollback", "version": answer["rolled_back_to"], "slot": answer["slot"], "ok": True}
        except Exception as exc:  # the report says what went wrong; the load goes on
            entry = {"op": kind, "version": str(version), "ok": False, "error": str(exc)[:200]}
        entry["seconds"] = round(time.perf_counter() - started, 3)
        log.append(entry)
        print(f"  {entry}", flush=True)


def checker(deployments: dict[str, int]):
    """A good answer is a 200 with a bare list of one prediction (the managed endpoint's answer); counts the
    answers per deployment (slot) named in the `azureml-model-deployment` header, the one place Azure names
    who answered."""
    lock = threading.Lock()
    header = DEPLOYMENT_HEADER.encode() + b":"

    def check(status: int, body: bytes, head: list[bytes]) -> str | None:
        if status != 200:
            return str(status)
        answer = json.loads(body)
        if not isinstance(answer, list) or len(answer) != 1:
            return "bad answer"
        slot = next((line[len(header):].strip().decode() for line in head if line.lower().startswith(header)), "?")
        with lock:
            deployments[slot] = deployments.get(slot, 0) + 1
        return None
    return check


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, action="append", help="model directory (repeat; default: train 2)")
    parser.add_argument("--seconds", type=float, default=16, help="load duration (default 16)")
    parser.add_argument("--step-s", type=float, default=3, help="seconds between switches (default 3)")
    parser.add_argument("--clients", type=int, default=4, help="client threads (default 4)")
    parser.add_argument("--max-requests", type=int, default=200_000, help="upper bound on requests sent")
    parser.add_argument("--rows", type=int, default=3000, help="training rows when training (default 3000)")
    parser.add_argument("--budget-s", type=float, default=8, help="training budget per model (default 8)")
    args = parser.parse_args()
    args.seconds = max(args.seconds, 4 * args.step_s + 2)  # the load outlasts the last switch
    key, admin_key = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
    with tempfile.TemporaryDirectory(prefix="redeploy-bench-") as tmp:
        work = Path(tmp)
        models = args.model or [bench.train_model(work / f"m{seed}", args.rows, args.budget_s, seed=seed)
                                for seed in (1, 2)]
        records = bench.sample_records(bench.POOL)
        # the server loads models only from under one folder: the closest one above every model given
        root = Path(os.path.commonpath([str(Path(m).resolve().parent) for m in models]))
        server, port = bench.start_ours(models[0], work / "logs", key, admin_key, models_root=root)
        try:
            figures = run(args, port, key, admin_key, models, records)
        finally:
            server.stop()
    print(json.dumps(figures))
    return 0 if figures["failed"] == 0 else 1


def run(args, port: int, key: str, admin_key: str, models: list[Path], records: list[dict]) -> dict:
    deployer = LocalScoringDeployer(f"http://127.0.0.1:{port}", admin_key)
    requests_ = bench.ours_requests(port, key, records)
    deployments: dict[str, int] = {}
    log: list[dict] = []
    switches = threading.Thread(target=switch_plan, args=(models, args.step_s, deployer, records, log))
    deadline = time.perf_counter() + args.seconds
    switches.start()
    result = bench.run_load(port, requests_, total=args.max_requests, concurrency=args.clients, deadline=deadline,
                            check=checker(deployments))
    switches.join()
    events = deployer.status()["events"]
    for event in events:
        came_from = f"from v{event['from_version']}" if event['from_version'] else "at start"
        print(f"  event {event['event']:<13} v{event['version']} on {event['slot']} ({came_from})")
    print(f"sent {result.sent} failed {result.failed} {result.statuses or ''} in {result.seconds:.1f}s "
          f"({result.rps:.0f} req/s)  p50 {result.percentile_ms(0.5)} ms  p99 {result.percentile_ms(0.99)} ms")
    print(f"answers per deployment: {dict(sorted(deployments.items()))}")
    return {"sent": result.sent, "failed": result.failed, "p50_ms": result.percentile_ms(0.5),
            "p99_ms": result.percentile_ms(0.99), "rps": round(result.rps, 1),
            "redeploys": sum(1 for e in log if e["op"] == "deploy" and e["ok"]),
            "rollbacks": sum(1 for e in log if e["op"] == "rollback" and e["ok"]),
            "switch_seconds": [e["seconds"] for e in log], "deployments": dict(sorted(deployments.items())),
            "clients": args.clients, "seconds": args.seconds}


if __name__ == "__main__":
    sys.exit(main())
