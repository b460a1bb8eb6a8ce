"""The scoring server unpickles only model folders under its models root whose content is the registered one.

A real server process (uvicorn on 127.0.0.1). The "tripwire" model's pickle creates a file when it is unpickled,
so a refusal is shown to happen before anything is loaded, and the positive control (the same folder, trusted)
shows the tripwire does fire when a folder is loaded.
"""

from __future__ import annotations

import os
import pickle
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from local.processes import PROJECT_ROOT, free_port, python_argv
from shared.adapters.scoring import DeploymentError, LocalScoringDeployer
from shared.scoring.model_digest import folder_digest
from tests.integration.test_scoring_bluegreen import ADMIN_KEY, admin, save_pipeline_model, scoring_server, served


class _Tripwire:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))  # unpickling this creates the marker file


def tripwire_model(folder: Path, like: Path, marker: Path) -> Path:
    """An MLflow model folder (MLmodel of `like`) whose pickle creates `marker` when loaded."""
    shutil.copytree(like, folder)
    (pkl,) = folder.glob("*.pkl")
    pkl.write_bytes(pickle.dumps(_Tripwire(marker)))
    return folder


@pytest.fixture(scope="module")
def runs(small_bank_csv, tmp_path_factory) -> dict[str, Path]:
    """A models root like the stack's (runs/<id>/outputs/model) and folders outside it."""
    frame = pd.read_csv(small_bank_csv, nrows=1200)
    base = tmp_path_factory.mktemp("trust")
    root = base / "pipeline" / "runs"
    good = save_pipeline_model(root / "run-1" / "outputs" / "model", frame, seed=1)
    outside = save_pipeline_model(base / "elsewhere" / "model", frame, seed=2)
    changed = root / "run-2" / "outputs" / "model"
    shutil.copytree(good, changed)
    (pkl,) = changed.glob("*.pkl")
    data = bytearray(pkl.read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit of one byte
    pkl.write_bytes(bytes(data))
    link = root / "run-3" / "outputs" / "model"
    link.parent.mkdir(parents=True)
    os.symlink(outside, link)
    return {"base": base, "root": root, "good": good, "outside": outside, "changed": changed, "link": link}


@pytest.fixture(scope="module")
def server(runs, tmp_path_factory):
    yield from scoring_server(tmp_path_factory.mktemp("trust-scoring"), "--models-root", str(runs["root"]))


def deploy(server, model_dir: Path, version: str, digest: str | None):
    body = {"model_dir": str(model_dir), "version": version}
    if digest is not None:
        body["digest"] = digest
    return admin(server, "POST", "/admin/deploy", json=body)


@pytest.fixture
def v1_live(server, runs):
    """The trusted folder serving as v1, whatever earlier tests of the module deployed: what a refusal must leave."""
    answer = deploy(server, runs["good"], "1", folder_digest(runs["good"]))
    assert answer.status_code == 200, answer.text


def test_a_registered_folder_under_the_root_deploys(server, runs, records):
    answer = deploy(server, runs["good"], "1", folder_digest(runs["good"]))
    assert answer.status_code == 200, answer.text
    assert served(server, records[:2]) == "1"


@pytest.mark.parametrize("where", ["/etc", "tmp"])
def test_a_folder_outside_the_runs_root_is_403(server, runs, where, v1_live):
    folder = Path("/etc") if where == "/etc" else runs["outside"]
    digest = folder_digest(runs["outside"])  # its own, correct digest does not help
    answer = deploy(server, folder, "7", digest)
    assert answer.status_code == 403, answer.text
    body = answer.json()
    assert body["reason"] == "outside_root" and "is not under the models root" in body["error"]
    assert body["serving"] == "1"


def test_a_copy_with_one_byte_changed_is_403(server, runs, records, v1_live):
    answer = deploy(server, runs["changed"], "8", folder_digest(runs["good"]))
    assert answer.status_code == 403 and answer.json()["reason"] == "digest_mismatch"
    assert "does not match the digest registered" in answer.json()["error"]
    assert served(server, records[:1]) == "1"


def test_a_link_in_the_root_pointing_out_is_403(server, runs):
    answer = deploy(server, runs["link"], "9", folder_digest(runs["outside"]))
    assert answer.status_code == 403 and answer.json()["reason"] == "outside_root"


def test_a_deploy_without_a_digest_is_400_with_what_to_do(server, runs):
    answer = deploy(server, runs["good"], "10", None)
    assert answer.status_code == 400 and answer.json()["reason"] == "no_digest"
    assert "retrain" in answer.json()["error"]
    answer = deploy(server, runs["good"], "10", "sha256:short")
    assert answer.status_code == 400 and answer.json()["reason"] == "bad_digest"


def test_refused_folders_are_never_unpickled(server, runs):
    outside_marker, inside_marker = runs["base"] / "outside.unpickled", runs["base"] / "inside.unpickled"
    outside = tripwire_model(runs["base"] / "evil-out" / "model", runs["good"], outside_marker)
    inside = tripwire_model(runs["root"] / "run-4" / "outputs" / "model", runs["good"], inside_marker)
    assert deploy(server, outside, "11", folder_digest(outside)).status_code == 403
    assert deploy(server, inside, "12", folder_digest(runs["good"])).status_code == 403
    assert not outside_marker.exists() and not inside_marker.exists()
    # the control: the same kind of folder, trusted, is unpickled (and then refused as not a classifier)
    answer = deploy(server, inside, "13", folder_digest(inside))
    assert answer.status_code == 422 and inside_marker.exists()


def test_the_deployer_refuses_a_model_registered_without_a_digest(server, runs):
    deployer = LocalScoringDeployer(server.url, ADMIN_KEY)
    with pytest.raises(DeploymentError, match="model v5 has no registered content hash .* retrain"):
        deployer.deploy(model_dir=str(runs["good"]), version=5)
    with pytest.raises(DeploymentError, match=r"refused \(403\)"):
        deployer.deploy(model_dir="/etc", version=5, digest=folder_digest(runs["good"]))
    assert deployer.deploy(model_dir=str(runs["good"]), version=6, digest=folder_digest(runs["good"]))["deployed"] \
        == "6"


def test_without_a_models_root_the_server_loads_nothing(runs, tmp_path_factory):
    server = scoring_server(tmp_path_factory.mktemp("no-root"))
    endpoint = next(server)
    try:
        answer = deploy(endpoint, runs["good"], "1", folder_digest(runs["good"]))
        assert answer.status_code == 403 and answer.json()["reason"] == "no_root"
    finally:
        next(server, None)


@pytest.mark.parametrize("case", ["outside", "changed", "no digest"])
def test_a_restart_does_not_serve_an_untrusted_folder(runs, case):
    folder = {"outside": runs["outside"], "changed": runs["changed"], "no digest": runs["good"]}[case]
    digest = "" if case == "no digest" else folder_digest(runs["good"] if case == "changed" else runs["outside"])
    env = {"PATH": os.environ["PATH"], "SCORING_KEY": "k" * 16, "SCORING_ADMIN_KEY": "a" * 16}
    done = subprocess.run(python_argv("local.scoring_server", "--port", str(free_port()), "--models-root",
                                      str(runs["root"]), "--model-dir", str(folder), "--model-digest", digest),
                          cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr
    assert f"error: not serving {folder}" in done.stderr
    assert {"outside": "not under the models root", "changed": "does not match the digest",
            "no digest": "no registered content hash"}[case] in done.stderr


@pytest.fixture(scope="module")
def records(small_bank_csv) -> list[dict]:
    from shared.domain import schema

    return pd.read_csv(small_bank_csv, nrows=50)[list(schema.FEATURES)].to_dict(orient="records")
