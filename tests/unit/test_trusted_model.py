"""Which model folders a local load path may unpickle: under the models root (links resolved), with the content
hash the registry recorded; everything else is refused with the reason and nothing is loaded."""

from __future__ import annotations

import os
import shutil

import pytest

from shared.scoring.model_digest import folder_digest
from shared.scoring.trusted_model import Refusal, UntrustedModel, check_model_folder


def _model(folder):
    (folder / "code").mkdir(parents=True)
    (folder / "MLmodel").write_text("flavors: {}\n")
    (folder / "model.pkl").write_bytes(b"\x80\x04pickle-bytes")
    (folder / "code" / "train.py").write_text("x = 1\n")
    return folder


@pytest.fixture
def runs(tmp_path):
    root = tmp_path / "pipeline" / "runs"
    model = _model(root / "run-1" / "outputs" / "model")
    return root, model, folder_digest(model)


def refusal(model_dir, root, digest) -> UntrustedModel:
    with pytest.raises(UntrustedModel) as info:
        check_model_folder(model_dir, root=root, expected_digest=digest, version=3)
    return info.value


def test_a_registered_folder_under_the_root_is_trusted(runs):
    root, model, digest = runs
    trusted = check_model_folder(model, root=root, expected_digest=digest, version=3)
    assert trusted.path == model.resolve() and trusted.digest == digest


def test_a_model_without_a_registered_digest_is_refused_with_what_to_do(runs):
    root, model, _ = runs
    for missing in ("", None, "  "):
        exc = refusal(model, root, missing)
        assert exc.refusal is Refusal.NO_DIGEST and exc.refusal.status == 400
        assert "model v3 has no registered content hash" in str(exc) and "retrain" in str(exc)


@pytest.mark.parametrize("digest", ["sha256:abc", "md5:" + "0" * 64, "sha256:" + "A" * 64, "sha256:" + "0" * 65])
def test_a_malformed_digest_is_refused(runs, digest):
    root, model, _ = runs
    exc = refusal(model, root, digest)
    assert exc.refusal is Refusal.BAD_DIGEST and exc.refusal.status == 400


def test_without_a_models_root_nothing_is_loaded(runs):
    _, model, digest = runs
    for root in (None, ""):
        assert refusal(model, root, digest).refusal is Refusal.NO_ROOT


def test_folders_outside_the_root_are_refused_even_with_their_own_digest(runs, tmp_path):
    root, _, _ = runs
    elsewhere = _model(tmp_path / "elsewhere" / "model")
    for folder in (elsewhere, tmp_path, root, root.parent, root / ".." / "elsewhere" / "model"):
        exc = refusal(folder, root, folder_digest(elsewhere))
        assert exc.refusal is Refusal.OUTSIDE_ROOT and exc.refusal.status == 403, folder
    assert refusal("/etc", root, folder_digest(elsewhere)).refusal is Refusal.OUTSIDE_ROOT
    assert refusal("relative/model", root, folder_digest(elsewhere)).refusal is Refusal.OUTSIDE_ROOT


def test_a_link_inside_the_root_pointing_out_is_refused(runs, tmp_path):
    root, _, _ = runs
    elsewhere = _model(tmp_path / "elsewhere" / "model")
    link = root / "run-2" / "outputs" / "model"
    link.parent.mkdir(parents=True)
    os.symlink(elsewhere, link)
    exc = refusal(link, root, folder_digest(elsewhere))
    assert exc.refusal is Refusal.OUTSIDE_ROOT and "not under the models root" in str(exc)


def test_a_link_inside_the_model_folder_is_refused(runs):
    root, model, digest = runs
    os.symlink("/etc/hostname", model / "code" / "extra.py")
    exc = refusal(model, root, digest)
    assert exc.refusal is Refusal.NOT_A_MODEL and "symbolic link" in str(exc)


def test_a_changed_byte_is_refused(runs):
    root, model, digest = runs
    copy = root / "run-9" / "outputs" / "model"
    shutil.copytree(model, copy)
    assert check_model_folder(copy, root=root, expected_digest=digest).digest == digest  # same bytes: same hash
    data = bytearray((copy / "model.pkl").read_bytes())
    data[-1] ^= 1
    (copy / "model.pkl").write_bytes(bytes(data))
    exc = refusal(copy, root, digest)
    assert exc.refusal is Refusal.DIGEST_MISMATCH and exc.refusal.status == 403
    assert "does not match the digest registered" in str(exc)


def test_a_missing_folder_is_refused(runs):
    root, _, digest = runs
    exc = refusal(root / "run-404" / "outputs" / "model", root, digest)
    assert exc.refusal is Refusal.NOT_A_MODEL and "does not exist" in str(exc)
