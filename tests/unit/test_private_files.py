"""Logs, spans and secrets are 0600 in 0700 folders, also when an older version (or a loose umask) made them
0644 in 0755 folders: each writer narrows what exists, not only what it creates."""

from __future__ import annotations

import json
import os
import stat
import sys

import pytest

from local import stack_secrets
from local.processes import start_child
from shared import private_files, telemetry


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def loose(tmp_path, *files: str):
    """A 0755 folder with 0644 files in it, as an older version left them."""
    folder = tmp_path / "state"
    folder.mkdir()
    folder.chmod(0o755)
    for name in files:
        (folder / name).write_text("{}" if name.endswith(".json") else "old line\n")
        (folder / name).chmod(0o644)
    return folder


def test_open_private_narrows_an_existing_file_and_folder(tmp_path):
    folder = loose(tmp_path, "a.log")
    fd = private_files.open_private(folder / "a.log")
    try:
        os.write(fd, b"new line\n")
    finally:
        os.close(fd)
    assert mode(folder) == 0o700 and mode(folder / "a.log") == 0o600
    assert (folder / "a.log").read_text() == "old line\nnew line\n"  # appended, not truncated


def test_new_files_and_folders_are_private(tmp_path):
    path = tmp_path / "new" / "deeper" / "b.log"
    with private_files.open_private_binary(path) as fh:
        fh.write(b"x")
    private_files.write_private_text(tmp_path / "new" / "c.json", "{}")
    assert mode(path) == 0o600 and mode(path.parent) == 0o700 and mode(tmp_path / "new" / "c.json") == 0o600


def test_child_process_logs_are_private(tmp_path):
    logs = loose(tmp_path, "child.log")
    child = start_child("child", [sys.executable, "-c", "print('hello from the child')"], ports=(), log_dir=logs)
    child.proc.wait(30)
    child.stop()
    assert mode(logs) == 0o700 and mode(logs / "child.log") == 0o600
    assert "hello from the child" in (logs / "child.log").read_text()


@pytest.mark.parametrize("complete", [False, True], ids=["keys-missing", "keys-present"])
def test_the_stack_secrets_file_is_private_when_it_exists(tmp_path, complete):
    local = loose(tmp_path, "secrets.json")
    if complete:
        values = {name: stack_secrets._new(name) for name in stack_secrets.NAMES}
        (local / "secrets.json").write_text(json.dumps(values))
    loaded = stack_secrets.load_or_create(local)
    assert set(stack_secrets.NAMES) <= set(loaded)
    assert mode(local) == 0o700 and mode(local / "secrets.json") == 0o600


def test_local_spans_and_metrics_are_private(tmp_path):
    local = loose(tmp_path, telemetry.SPANS_FILE, telemetry.METRICS_FILE)
    telemetry.shutdown()
    try:
        assert telemetry.configure(local_dir=local) == "local"
        with telemetry.span("probe", api_key="k-1"):
            pass
        telemetry.record_metric("probe_seconds", 1.0)
        telemetry.flush()
    finally:
        telemetry.shutdown()
    assert mode(local) == 0o700
    assert mode(local / telemetry.SPANS_FILE) == 0o600 and mode(local / telemetry.METRICS_FILE) == 0o600
    assert '"probe"' in (local / telemetry.SPANS_FILE).read_text()
