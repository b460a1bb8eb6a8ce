"""Child processes of the local stack: start on loopback, wait until they answer, stop them cleanly."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from shared.private_files import open_private_binary

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    """A loopback port that was free a moment ago. Another process can take it before a child binds it: start
    servers with `start_on_free_ports` (it starts them again on new ports when that happens); a bare port is fine
    as "a port nobody listens on"."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_ports(count: int) -> tuple[int, ...]:
    """`count` distinct ports from `free_port`."""
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return tuple(ports)


# What a child that lost a port says before it exits: uvicorn/asyncio ("[Errno 98] ... address already in use"),
# Node (Azurite: "EADDRINUSE").
_ADDRESS_IN_USE = (b"address already in use", b"eaddrinuse", b"errno 98")


class PortInUse(RuntimeError):
    """The child exited because one of its ports was taken (by another process, after we chose it)."""


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.2)
        return s.connect_ex((host, port)) == 0


@dataclass
class Child:
    """One started child process, in its own process group so a stop reaches its children too."""

    name: str
    proc: subprocess.Popen
    ports: tuple[int, ...] = ()
    log_path: Path | None = None
    _log: object = field(default=None, repr=False)
    _log_start: int = 0  # where this start's output begins in a log that earlier starts appended to

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                message = f"{self.name} exited with code {self.proc.returncode}; see {self.log_path}"
                if self._lost_a_port():
                    raise PortInUse(f"{message} (a port of {self.ports} was already in use)")
                raise RuntimeError(message)
            if all(port_open(p) for p in self.ports):
                return
            time.sleep(0.1)
        raise TimeoutError(f"{self.name} did not open ports {self.ports} within {timeout:.0f}s; see {self.log_path}")

    def _lost_a_port(self) -> bool:
        if self.log_path is None or not self.log_path.exists():
            return False
        with open(self.log_path, "rb") as fh:
            fh.seek(self._log_start)
            text = fh.read().lower()
        return any(marker in text for marker in _ADDRESS_IN_USE)

    def stop(self, timeout: float = 15.0) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(5)
        if self._log is not None:
            self._log.close()


def start_child(name: str, argv: list[str], *, ports: tuple[int, ...], log_dir: Path,
                env: dict[str, str] | None = None, cwd: Path = PROJECT_ROOT) -> Child:
    log_path = log_dir / f"{name}.log"
    log = open_private_binary(log_path)  # 0600 in a 0700 folder (narrowed if older): logs name keys' holders
    log_start = log.seek(0, os.SEEK_END)
    proc = subprocess.Popen(argv, cwd=cwd, env={**os.environ, **(env or {})}, stdout=log,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    return Child(name=name, proc=proc, ports=ports, log_path=log_path, _log=log, _log_start=log_start)


def start_on_free_ports(name: str, count: int, argv_for: Callable[[tuple[int, ...]], list[str]], *,
                        log_dir: Path, env: dict[str, str] | None = None, cwd: Path = PROJECT_ROOT,
                        timeout: float = 60.0, attempts: int = 5) -> tuple[Child, tuple[int, ...]]:
    """Start a child on `count` fresh loopback ports and wait until it serves them. Choosing a free port and the
    child binding it are two moments, and another process can take the port in between: the child then exits
    saying the address is in use, and is started again on new ports (Azurite, a node process, cannot be handed
    a bound socket, so retrying serves every child the same way). `retrain up` keeps its fixed ports."""
    for _ in range(attempts):
        ports = free_ports(count)
        child = start_child(name, argv_for(ports), ports=ports, log_dir=log_dir, env=env, cwd=cwd)
        try:
            child.wait_ready(timeout)
        except PortInUse:
            child.stop()
            continue
        except BaseException:
            child.stop()
            raise
        return child, ports
    raise PortInUse(f"{name}: a port was taken on each of {attempts} starts; see {log_dir / (name + '.log')}")


def azurite_argv(data_dir: Path, blob: int, queue: int, table: int) -> list[str]:
    """Azurite from the pinned npm package, loopback only, no telemetry, data under `.local/`."""
    exe = PROJECT_ROOT / "node_modules" / ".bin" / "azurite"
    if not exe.exists():
        raise FileNotFoundError(f"{exe} is missing: run `npm ci` (or `make install`) first")
    return [str(exe), "--silent", "--disableTelemetry", "--skipApiVersionCheck", "--location", str(data_dir),
            "--blobHost", "127.0.0.1", "--blobPort", str(blob), "--queueHost", "127.0.0.1",
            "--queuePort", str(queue), "--tableHost", "127.0.0.1", "--tablePort", str(table)]


def azurite_env(account: str, key: str) -> dict[str, str]:
    """The environment that gives Azurite one account with our generated key. With AZURITE_ACCOUNTS set, Azurite
    disables its default `devstoreaccount1` account and the published key (node_modules/azurite/README.md,
    "Customized Storage Accounts & Keys"; dist/src/common/AccountDataStore.js). A value Azurite cannot parse would
    make it fall back to the published key, so the format is checked here first."""
    import base64
    import binascii

    if not account.isalnum() or not account.islower() or not 3 <= len(account) <= 24:
        raise ValueError("the Azurite account name must be 3-24 lowercase letters and digits")
    try:
        raw = base64.b64decode(key, validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) < 32:
        raise ValueError("the Azurite account key must be base64 of at least 32 random bytes")
    return {"AZURITE_ACCOUNTS": f"{account}:{key}"}


def python_argv(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]
