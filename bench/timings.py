"""Wall-clock figures the tests used to assert, measured here instead (tests assert behaviour, not speed):

    .venv/bin/python bench/timings.py [--rollbacks 20] [--rows 2000]

- rollback: POST /admin/rollback on the local scoring endpoint (uvicorn in this process, two small models
  trained on --rows rows), --rollbacks times; and status + score + rollback while a deploy's model load is held.
- health: `check_pipeline` against a port that accepts and never answers (timeout 0.5 s),
  `HealthChecker` with a storage probe that never returns (deadline 0.5 s), and the storage probe against a
  closed port (one try, not the SDK's retries).
- doctor: `check_credential` with a credential that never answers (timeout 0.3 s).
- gzip bomb: `validate_csv` of 2 GiB of zeros gzipped (about 2 MiB) with a 16 MiB limit: seconds and peak
  traced memory.
Prints each figure and ends with one JSON line.
"""

from __future__ import annotations

import argparse
import json
import secrets
import socket
import statistics
import sys
import tempfile
import threading
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))



def _ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


def rollback_figures(rows: int, rollbacks: int) -> dict:
    import requests
    import uvicorn

    from bench import scoring as bench
    from local.scoring_server import create_app
    from shared.scoring.model_digest import folder_digest
    from shared.scoring.payloads import mlflow_request
    from shared.scoring.runtime import ScoringModel

    work = Path(tempfile.mkdtemp(prefix="bench-timings-"))
    models = [bench.train_model(work / name / "model", rows, budget_s=3, seed=seed)
              for name, seed in (("a", 1), ("b", 2))]
    records = bench.sample_records(5)
    key, admin_key = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
    app = create_app(key, admin_key, rollback_window=0, models_root=work)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)  # a polling loop: the server sets `started` when it listens
    port = server.servers[0].sockets[0].getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    admin = {"Authorization": f"Bearer {admin_key}"}
    session = requests.Session()

    def deploy(model_dir: Path, version: str) -> requests.Response:
        return session.post(url + "/admin/deploy", headers=admin, timeout=120, json={
            "model_dir": str(model_dir), "version": version, "digest": folder_digest(model_dir)})

    def timed(call) -> tuple[float, requests.Response]:
        started = time.perf_counter()
        answer = call()
        return time.perf_counter() - started, answer

    try:
        assert deploy(models[0], "1").ok and deploy(models[1], "2").ok
        swaps = []
        for _ in range(rollbacks):
            seconds, answer = timed(lambda: session.post(url + "/admin/rollback", headers=admin, timeout=30))
            assert answer.status_code == 200, answer.text
            swaps.append(seconds)
        entered, release = threading.Event(), threading.Event()
        original = ScoringModel.load

        def held_load(*args, **kwargs):
            entered.set()
            release.wait(60)
            return original(*args, **kwargs)

        ScoringModel.load = held_load
        try:
            slow = threading.Thread(target=lambda: deploy(models[0], "3"))
            slow.start()
            entered.wait(60)
            during, _ = timed(lambda: (
                session.get(url + "/admin/status", headers=admin, timeout=30),
                session.post(url + "/score", json=mlflow_request(records[:1]), timeout=30,
                             headers={"Authorization": f"Bearer {key}"}),
                session.post(url + "/admin/rollback", headers=admin, timeout=30)))
        finally:
            release.set()
            ScoringModel.load = original
        slow.join(60)
    finally:
        server.should_exit = True
        thread.join(10)
    return {"rollback_p50_ms": _ms(statistics.median(swaps)), "rollback_max_ms": _ms(max(swaps)),
            "status_score_rollback_during_deploy_ms": _ms(during)}


def health_figures() -> dict:
    import requests

    from shared.services import health

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    port = silent.getsockname()[1]
    release = threading.Event()
    try:
        with requests.Session() as session:
            started = time.monotonic()
            check = health.check_pipeline(f"http://127.0.0.1:{port}/x", session, timeout_s=0.5)
            pipeline_s = time.monotonic() - started
            assert check["detail"] == "timeout", check
            checker = health.HealthChecker(storage_probe=lambda: release.wait(10),
                                           pipeline_url=f"http://127.0.0.1:{port}/x", session=session,
                                           timeout_s=5, deadline_s=0.5, cache_s=0)
            started = time.monotonic()
            status, _ = checker()
            checker_s = time.monotonic() - started
            assert status == 503
    finally:
        release.set()
        silent.close()
    from azure.data.tables import TableServiceClient

    from local.processes import free_port
    from local.stack_secrets import new_storage_key
    from shared.settings import AZURITE_ACCOUNT, azurite_connection_string

    closed = free_port()  # nobody listens on it
    table = TableServiceClient.from_connection_string(azurite_connection_string(
        AZURITE_ACCOUNT, new_storage_key(), blob=closed, queue=closed, table=closed)).get_table_client("runs")
    storage = health.check_storage(health.table_probe(table))
    assert storage["detail"] == "unreachable", storage
    return {"pipeline_timeout_0_5_s_took_ms": _ms(pipeline_s), "reported_ms": check["ms"],
            "checker_deadline_0_5_s_took_ms": _ms(checker_s), "storage_probe_closed_port_ms": storage["ms"]}


def doctor_figures() -> dict:
    from azure.core.credentials import AccessToken

    from tools import azure_doctor as doc

    release = threading.Event()

    class Hanging:
        def get_token(self, *scopes, **kwargs):
            release.wait(30)
            return AccessToken("late", int(time.time()) + 60)

    started = time.monotonic()
    try:
        check = doc.check_credential(doc.Doctor(credential=Hanging(), timeout_s=0.3))
    finally:
        release.set()
    assert check.status == "skipped", check
    return {"credential_timeout_0_3_s_took_ms": _ms(time.monotonic() - started)}


def gzip_bomb_figures() -> dict:
    import gzip

    from shared.domain.validation import validate_csv

    member = gzip.compress(bytes(8 << 20), compresslevel=9, mtime=0)  # like tests/corpus.py gzip_bomb
    bomb = gzip.compress(b"age,job\n", mtime=0) + member * ((2 << 30) // (8 << 20))  # 2 GiB of zeros
    tracemalloc.start()
    started = time.perf_counter()
    try:
        result = validate_csv(bomb, min_rows=500, max_bytes=16 << 20)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.errors[0].code == "too_large"
    return {"gzip_bomb_bytes": len(bomb), "gzip_bomb_refused_ms": _ms(time.perf_counter() - started),
            "gzip_bomb_peak_mb": round(peak / (1 << 20), 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rollbacks", type=int, default=20)
    parser.add_argument("--rows", type=int, default=2000)
    args = parser.parse_args()
    figures: dict = {}
    for name, part in (("health", health_figures), ("doctor", doctor_figures), ("gzip bomb", gzip_bomb_figures),
                       ("rollback", lambda: rollback_figures(args.rows, args.rollbacks))):
        result = part()
        for key, value in result.items():
            print(f"{name:>9}: {key} = {value}")
        figures.update(result)
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
