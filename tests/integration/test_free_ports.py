"""Children started on fresh ports survive a port taken between choosing it and binding it: they are started
again on new ports (local.processes.start_on_free_ports)."""

from __future__ import annotations

import socket

import pytest
import requests

from local import processes
from local.processes import PortInUse, python_argv, start_on_free_ports


def http_server_argv(ports: tuple[int, ...]) -> list[str]:
    return python_argv("http.server", str(ports[0]), "--bind", "127.0.0.1")


@pytest.fixture
def taken():
    """A loopback port another process holds (bound, not listening: connecting to it is refused)."""
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        yield held.getsockname()[1]


def test_a_child_that_loses_its_port_is_started_again_on_a_new_one(tmp_path, taken, monkeypatch):
    real = processes.free_ports
    handed = []

    def first_the_taken_port(count):
        ports = (taken,) if not handed else real(count)
        handed.append(ports)
        return ports

    monkeypatch.setattr(processes, "free_ports", first_the_taken_port)
    child, (port,) = start_on_free_ports("web", 1, http_server_argv, log_dir=tmp_path)
    try:
        assert handed[0] == (taken,) and port != taken and len(handed) == 2
        assert requests.get(f"http://127.0.0.1:{port}/", timeout=10).status_code == 200
        assert "Address already in use" in (tmp_path / "web.log").read_text()  # the first start's output
    finally:
        child.stop()


def test_it_gives_up_after_the_attempts_and_says_so(tmp_path, taken, monkeypatch):
    monkeypatch.setattr(processes, "free_ports", lambda count: (taken,))
    with pytest.raises(PortInUse, match="a port was taken on each of 2 starts"):
        start_on_free_ports("web", 1, http_server_argv, log_dir=tmp_path, attempts=2)


def test_a_child_failing_for_another_reason_is_not_retried(tmp_path, monkeypatch):
    real, calls = processes.free_ports, []
    monkeypatch.setattr(processes, "free_ports", lambda count: calls.append(count) or real(count))
    with pytest.raises(RuntimeError, match="exited with code 2") as info:
        start_on_free_ports("bad", 1, lambda ports: python_argv("http.server", "--no-such-flag"), log_dir=tmp_path)
    assert not isinstance(info.value, PortInUse) and len(calls) == 1
