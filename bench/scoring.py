"""Single-record scoring speed: our local scoring endpoint against `mlflow models serve` of the same model.

    .venv/bin/python bench/scoring.py [--requests 2000] [--model DIR] [--rows 4000] [--budget-s 20]

Both servers run on loopback in one run, each as one process. Ours gets what an Azure ML no-code MLflow
deployment reads, `{"input_data": {"columns", "index", "data"}}` (one row), on POST /score (Bearer key) and
answers a bare list; MLflow gets `{"dataframe_split": {...}}` on POST /invocations, started with
`mlflow models serve --env-manager local` from a separate venv, `.local/bench-venv`, made here from the pins
in requirements-bench.txt (the main venv only has mlflow-skinny, which cannot serve; MLflow 3.17 needs
pyarrow < 26, so the main constraints.txt is used without its pyarrow line). Without --model, a model is
trained on the first --rows rows of ../shared/data/bankmarketing_train.csv (generated data if it is absent)
with `shared.jobs.training.train.train` and saved with `shared.jobs.training.mlflow_model.save_model`.

Load generator: CONCURRENCY client threads, each with one keep-alive HTTP/1.1 connection over a raw socket,
pre-encoded requests cycling through 200 distinct records and a minimal response reader (status line,
Content-Length); a request costs the client about 40-50 us of CPU (printed with each figure), a fraction of
the server's cost. Each figure is a fixed number of requests (--requests) after a short warm-up; latency is
measured per request in the client. The machine's other load counts too: run it on a quiet machine.
Prints req/s, p50 and p99 for concurrency 1 and 8 and ends with one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from local.processes import Child, python_argv, start_on_free_ports  # noqa: E402
from shared.scoring.model_digest import folder_digest  # noqa: E402
from shared.scoring.payloads import mlflow_request  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "bankmarketing_train.csv"
BENCH_VENV = ROOT / ".local" / "bench-venv"
REQUIREMENTS = ROOT / "requirements-bench.txt"
POOL = 200  # distinct records the clients cycle through


# ------------------------------------------------------------------------------------------ load generator


@dataclass
class LoadResult:
    sent: int = 0
    failed: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)  # seconds, successful and failed
    statuses: dict[str, int] = field(default_factory=dict)

    @property
    def rps(self) -> float:
        return self.sent / self.seconds if self.seconds else 0.0

    def percentile_ms(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return round(1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))], 3) if ordered else 0.0


def build_request(port: int, path: str, body: bytes, headers: dict[str, str] | None = None) -> bytes:
    lines = [f"POST {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Content-Type: application/json",
             f"Content-Length: {len(body)}", *(f"{k}: {v}" for k, v in (headers or {}).items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


class Connection:
    """One keep-alive loopback connection; `roundtrip` sends a pre-encoded request and reads one response."""

    def __init__(self, port: int):
        self.port = port
        self.sock: socket.socket | None = None
        self.buffer = b""

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
        self.sock, self.buffer = None, b""

    def roundtrip(self, raw: bytes) -> tuple[int, bytes, list[bytes]]:
        """(status, body, header lines) of one request."""
        if self.sock is None:
            self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=30)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.sendall(raw)
        while b"\r\n\r\n" not in self.buffer:
            self._fill()
        head, _, rest = self.buffer.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        length = next((int(v) for k, _, v in (line.partition(b":") for line in lines[1:])
                       if k.strip().lower() == b"content-length"), None)
        if length is None:
            raise ValueError("response without Content-Length")
        self.buffer = rest
        while len(self.buffer) < length:
            self._fill()
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        if any(line.lower() == b"connection: close" for line in lines[1:]):
            self.close()
        return status, body, lines[1:]

    def _fill(self) -> None:
        assert self.sock is not None
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("server closed the connection")
        self.buffer += chunk


def run_load(port: int, requests: list[bytes], *, total: int, concurrency: int, deadline: float | None = None,
             check=None) -> LoadResult:
    """Send `total` requests (or until `deadline`, a perf_counter time) from `concurrency` threads.
    `check(status, body, header_lines)` -> None when the answer is good, else a failure label."""
    result, lock = LoadResult(), threading.Lock()
    shares = [total // concurrency + (1 if i < total % concurrency else 0) for i in range(concurrency)]

    def worker(offset: int, count: int) -> None:
        conn, mine, statuses, failed = Connection(port), [], {}, 0
        for i in range(count):
            if deadline is not None and time.perf_counter() >= deadline:
                break
            raw = requests[(offset + i) % len(requests)]
            started = time.perf_counter()
            try:
                status, body, head = conn.roundtrip(raw)
                label = check(status, body, head) if check else (None if status == 200 else str(status))
            except (OSError, ValueError) as exc:
                conn.close()
                label = type(exc).__name__
            mine.append(time.perf_counter() - started)
            if label is not None:
                failed += 1
                statuses[label] = statuses.get(label, 0) + 1
        conn.close()
        with lock:
            result.latencies.extend(mine)
            result.sent += len(mine)
            result.failed += failed
            for k, v in statuses.items():
                result.statuses[k] = result.statuses.get(k, 0) + v

    threads = [threading.Thread(target=worker, args=(i * 7919, n)) for i, n in enumerate(shares)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    result.seconds = time.perf_counter() - started
    return result


# --------------------------------------------------------------------------------------------- model, data


def bench_frame(rows: int):
    import pandas as pd

    if DATA.exists():
        return pd.read_csv(DATA, nrows=rows)
    from shared.domain.sample_data import generate_sample

    return generate_sample(rows, seed=7)


def train_model(out: Path, rows: int, budget_s: float, seed: int = 1) -> Path:
    from shared.jobs.training.mlflow_model import save_model
    from shared.jobs.training.train import train

    result = train(bench_frame(rows), budget_s=budget_s, seed=seed, n_jobs=1)  # one thread: no OpenMP contention
    print(f"trained on {rows} rows in {result.metrics['seconds']}s: bag of {result.metrics['bag_size']}, "
          f"auc {result.metrics['auc']}", flush=True)
    return save_model(result, out, dataset_version="bench", run_id=f"bench-{seed}")


def bag_size(model_dir: Path) -> int | None:
    """How many LightGBM models the ensemble averages (each costs a booster call per request)."""
    metrics = Path(model_dir).parent / "metrics.json"
    return json.loads(metrics.read_text()).get("bag_size") if metrics.is_file() else None


def sample_records(n: int) -> list[dict]:
    from shared.domain import schema

    frame = bench_frame(max(n, 500)).sample(n=n, random_state=3)
    return frame[list(schema.FEATURES)].to_dict(orient="records")


# ------------------------------------------------------------------------------------------------ servers


def wait_http(url: str, timeout: float, child: Child | subprocess.Popen) -> None:
    import requests

    deadline = time.monotonic() + timeout
    proc = child.proc if isinstance(child, Child) else child
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: the server exited with code {proc.returncode}")
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer within {timeout:.0f}s")


def start_ours(model_dir: Path, logs: Path, key: str, admin_key: str | None = None,
               models_root: Path | None = None) -> tuple[Child, int]:
    """Our scoring server serving `model_dir` (the operator's own model: its folder, or `models_root`, is the
    only place it loads models from, and the digest is taken from the folder as it is now)."""
    digest = folder_digest(model_dir)
    child, (port,) = start_on_free_ports(
        "scoring", 1, lambda ports: python_argv(
            "local.scoring_server", "--port", str(ports[0]), "--models-root",
            str(models_root or Path(model_dir).resolve().parent), "--model-dir", str(model_dir),
            "--model-digest", digest),
        log_dir=logs, env={"SCORING_KEY": key, "SCORING_ADMIN_KEY": admin_key or secrets.token_urlsafe(16)},
        timeout=120)
    wait_http(f"http://127.0.0.1:{port}/health", 120, child)
    return child, port


def ensure_bench_venv() -> Path:
    """`.local/bench-venv` with the pins of requirements-bench.txt (made once, redone when the pins change)."""
    marker = BENCH_VENV / ".installed"
    if marker.exists() and marker.read_text() == REQUIREMENTS.read_text():
        return BENCH_VENV / "bin"
    print(f"installing the bench venv {BENCH_VENV} from {REQUIREMENTS.name} (once; a few minutes)", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(BENCH_VENV)], check=True)
    pinned = {re.split(r"[=<>!~\[ ]", line, maxsplit=1)[0].lower() for line in REQUIREMENTS.read_text().splitlines()
              if line.strip() and not line.startswith("#")}
    constraints = BENCH_VENV / "constraints-bench.txt"
    constraints.write_text("".join(line + "\n" for line in (ROOT / "constraints.txt").read_text().splitlines()
                                   if line.split("==")[0].strip().lower() not in pinned))
    env = {**os.environ, "PIP_CONSTRAINT": str(constraints)}  # replaces a machine-wide constraint file too
    subprocess.run([str(BENCH_VENV / "bin" / "pip"), "install", "-q", "--disable-pip-version-check", "-r",
                    str(REQUIREMENTS), "-c", str(constraints)], check=True, env=env)
    marker.write_text(REQUIREMENTS.read_text())
    return BENCH_VENV / "bin"


def start_mlflow(model_dir: Path, logs: Path, work: Path) -> tuple[Child, int]:
    """`mlflow models serve --env-manager local` from the bench venv; the project on PYTHONPATH."""
    bin_dir = ensure_bench_venv()
    env = {"PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}", "PYTHONPATH": str(ROOT),
           "MLFLOW_TRACKING_URI": (work / "mlruns").as_uri()}
    child, (port,) = start_on_free_ports(
        "mlflow", 1, lambda ports: [str(bin_dir / "mlflow"), "models", "serve", "-m", str(model_dir),
                                    "--env-manager", "local", "-h", "127.0.0.1", "-p", str(ports[0])],
        log_dir=logs, env=env, cwd=work, timeout=180)
    wait_http(f"http://127.0.0.1:{port}/ping", 180, child)
    return child, port


# -------------------------------------------------------------------------------------------------- bench


def ours_requests(port: int, key: str, records: list[dict]) -> list[bytes]:
    return [build_request(port, "/score", json.dumps(mlflow_request([r])).encode(),
                          {"Authorization": f"Bearer {key}"}) for r in records]


def mlflow_requests(port: int, records: list[dict]) -> list[bytes]:
    return [build_request(port, "/invocations", json.dumps(
        {"dataframe_split": {"columns": list(r), "data": [list(r.values())]}}).encode()) for r in records]


def measure(name: str, port: int, requests: list[bytes], total: int, concurrencies: list[int]) -> dict:
    figures = {}
    for c in concurrencies:
        run_load(port, requests, total=min(300, total), concurrency=c)  # warm-up
        cpu = time.process_time()
        result = run_load(port, requests, total=total, concurrency=c)
        client_us = 1e6 * (time.process_time() - cpu) / max(1, result.sent)
        print(f"{name:>6} c={c}: {result.rps:8.1f} req/s  p50 {result.percentile_ms(0.5):7.3f} ms  "
              f"p99 {result.percentile_ms(0.99):7.3f} ms  failed {result.failed}/{result.sent}  "
              f"(client CPU {client_us:.0f} us/request)", flush=True)
        figures.update({f"{name}_c{c}_rps": round(result.rps, 1), f"{name}_c{c}_p50_ms": result.percentile_ms(0.5),
                        f"{name}_c{c}_p99_ms": result.percentile_ms(0.99), f"{name}_c{c}_failed": result.failed,
                        f"{name}_c{c}_client_cpu_us": round(client_us)})
    return figures


def same_answers(ours_port: int, mlflow_port: int, key: str, records: list[dict]) -> bool:
    """Both servers predict the records alike (the model's raw 1/0: ours as a bare list, as Azure answers)."""
    import requests

    ours = requests.post(f"http://127.0.0.1:{ours_port}/score", json=mlflow_request(records),
                         headers={"Authorization": f"Bearer {key}"}, timeout=30).json()
    theirs = requests.post(f"http://127.0.0.1:{mlflow_port}/invocations", timeout=30, json={
        "dataframe_split": {"columns": list(records[0]), "data": [list(r.values()) for r in records]}}).json()
    return ours == [int(p) for p in theirs["predictions"]]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="measured requests per figure (default 2000)")
    parser.add_argument("--model", type=Path, help="an MLflow model directory (default: train one)")
    parser.add_argument("--rows", type=int, default=4000, help="training rows when training (default 4000)")
    parser.add_argument("--budget-s", type=float, default=20, help="training budget when training (default 20)")
    parser.add_argument("--concurrency", default="1,8", help="comma-separated client threads (default 1,8)")
    parser.add_argument("--skip-mlflow", action="store_true", help="measure ours only (no bench venv needed)")
    args = parser.parse_args()
    concurrencies = [int(c) for c in args.concurrency.split(",")]
    key = secrets.token_urlsafe(24)
    children: list[Child] = []
    with tempfile.TemporaryDirectory(prefix="scoring-bench-") as tmp:
        work = Path(tmp)
        try:
            model_dir = args.model or train_model(work / "model", args.rows, args.budget_s)
            records = sample_records(POOL)
            ours, ours_port = start_ours(model_dir, work / "logs", key)
            children.append(ours)
            figures = {"requests": args.requests, "model": str(model_dir) if args.model else "trained",
                       "bag_size": bag_size(model_dir)}
            figures.update(measure("ours", ours_port, ours_requests(ours_port, key, records), args.requests,
                                   concurrencies))
            if not args.skip_mlflow:
                mlflow, mlflow_port = start_mlflow(model_dir, work / "logs", work)
                children.append(mlflow)
                figures["same_answers"] = same_answers(ours_port, mlflow_port, key, records)
                figures.update(measure("mlflow", mlflow_port, mlflow_requests(mlflow_port, records), args.requests,
                                       concurrencies))
                for c in concurrencies:
                    figures[f"c{c}_speedup"] = round(figures[f"ours_c{c}_rps"] / figures[f"mlflow_c{c}_rps"], 1)
        finally:
            for child in reversed(children):
                child.stop()
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
