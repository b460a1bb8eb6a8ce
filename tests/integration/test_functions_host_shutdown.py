"""The host's stop is bounded by FUNCTIONS_HOST_SHUTDOWN_TIMEOUT_S plus its thread grace, whatever its threads are
stuck in: a listener's storage call to a server that never answers (read timeout and SDK retries) or a function
that ran past functionTimeout and still blocks in C code (the storage SDK's retry back-off, in the outage test)."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from local.functions_host.invoker import Invoker
from local.functions_host.lifecycle import threads_finished
from local.functions_host.loader import IndexedFunction
from local.processes import python_argv, start_on_free_ports
from tests.waiting import wait_for

SHUTDOWN_S = 2.0
# what the host adds after it: 1 s to cancel leftover tasks, local.functions_host.host.EXECUTOR_GRACE_S for threads
GRACE_S = 1.0 + 3.0

HEADER = """
import threading

import azure.functions as func

app = func.FunctionApp()
"""
# a function past functionTimeout, blocked in C: the timeout's interrupt cannot land before it returns
STUCK_FUNCTION = """
@app.timer_trigger(arg_name="timer", schedule="0 0 0 1 1 *", run_on_startup=True)
def stuck_on_startup(timer: func.TimerRequest) -> None:
    threading.Event().wait(120)
"""
# a listener whose storage calls get no answer
STUCK_LISTENER = """
@app.queue_trigger(arg_name="msg", queue_name="work", connection="BlackHole")
def worker(msg: func.QueueMessage) -> None:
    pass
"""
TIMED_OUT = "Timeout value of 00:00:01 exceeded by function 'Functions.stuck_on_startup'"


class BlackHole:
    """A storage endpoint that takes connections and never answers: every read waits for the client's read_timeout,
    then the SDK retries. `calls` counts the connections made to it (one in flight is a stuck storage call)."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def calls(self) -> int:
        return len(self.held)

    def _accept(self) -> None:
        while True:
            try:
                self.held.append(self.server.accept()[0])
            except OSError:  # closed
                return

    def close(self) -> None:
        self.server.close()
        for conn in self.held:
            conn.close()


@pytest.fixture
def black_hole():
    hole = BlackHole()
    try:
        yield hole
    finally:
        hole.close()


def write_app(root: Path, *functions: str) -> Path:
    app = root / "app"
    app.mkdir()
    (app / "function_app.py").write_text(HEADER + "".join(functions))
    (app / "host.json").write_text(json.dumps({"version": "2.0", "functionTimeout": "00:00:01"}))
    return app


@pytest.mark.parametrize("stuck", [STUCK_FUNCTION, STUCK_LISTENER], ids=["function", "listener"])
def test_the_stop_waits_for_no_stuck_thread_past_its_bound(tmp_path, black_hole, stuck):
    key = base64.b64encode(os.urandom(32)).decode()
    endpoint = f"http://127.0.0.1:{black_hole.port}/acct"
    conn = f"DefaultEndpointsProtocol=http;AccountName=acct;AccountKey={key};QueueEndpoint={endpoint}"
    app = write_app(tmp_path, stuck)
    env = {"AzureWebJobsStorage": "", "BlackHole": conn, "PYTHON_SCRIPT_FILE_NAME": "function_app.py",
           "RETRAIN_LOCAL_DIR": str(tmp_path / "local"), "FUNCTIONS_HOST_SHUTDOWN_TIMEOUT_S": str(SHUTDOWN_S)}
    child, _ = start_on_free_ports(
        "stuck-host", 1, lambda ports: python_argv("local.functions_host", "--script-root", str(app), "--port",
                                                   str(ports[0]), "--settings", str(tmp_path / "none.json")),
        log_dir=tmp_path, env=env, timeout=30)
    try:
        if stuck is STUCK_FUNCTION:
            wait_for(lambda: TIMED_OUT in child.log_path.read_text(errors="replace"), what="the function's timeout")
        else:
            wait_for(lambda: black_hole.calls, what="the queue listener's first storage call")
    finally:
        started = time.monotonic()
        child.stop(SHUTDOWN_S + GRACE_S + 10)
        took = time.monotonic() - started
    log = child.log_path.read_text(errors="replace")
    assert child.proc.returncode == 0, f"exit {child.proc.returncode} after {took:.1f}s\n{log[-2000:]}"
    assert took < SHUTDOWN_S + GRACE_S + 3, f"the host took {took:.1f}s to stop"  # 3 s more for the exit
    assert "Exiting without waiting for threads that are still busy" in log


def test_threads_finished_gives_up_after_its_grace():
    release = threading.Event()
    executor = ThreadPoolExecutor(1)
    executor.submit(release.wait, 30)
    try:
        started = time.monotonic()
        assert threads_finished(executor, 0.3) is False
        assert time.monotonic() - started < 2
    finally:
        release.set()
    idle = ThreadPoolExecutor(1)
    idle.submit(lambda: None).result()
    assert threads_finished(idle, 0.3) is True


def test_a_timed_out_invocation_keeps_its_thread_busy_until_it_returns(tmp_path):
    release = threading.Event()

    def blocked(req) -> None:
        release.wait(30)  # in C: the timeout's interrupt waits for it

    fn = IndexedFunction("blocked", "httpTrigger", [{"type": "httpTrigger", "direction": "in", "name": "req"}],
                         blocked)
    invoker = Invoker(tmp_path, timeout_s=0.2)

    async def timed_out() -> bool:
        return (await invoker.invoke(fn, None, reason="test")).ok

    try:
        assert asyncio.run(timed_out()) is False
        assert invoker.running == 0 and invoker.busy_threads == 1
        release.set()
        wait_for(lambda: invoker.busy_threads == 0, timeout=5, what="the thread to return")
    finally:
        release.set()
        invoker.shutdown()
