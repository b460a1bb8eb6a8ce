"""The model folder digest: any changed byte, renamed or added file changes it; links and empty folders are refused."""

from __future__ import annotations

import os

import pytest

from shared.scoring.model_digest import ModelDigestError, folder_digest, same_digest


def _model(folder):
    (folder / "model").mkdir(parents=True)
    (folder / "MLmodel").write_text("flavors: {}\n")
    (folder / "model" / "model.pkl").write_bytes(b"\x80\x04pickle-bytes")
    return folder


def test_same_content_same_digest_wherever_it_lies(tmp_path):
    a, b = _model(tmp_path / "a"), _model(tmp_path / "b")
    assert folder_digest(a) == folder_digest(b)
    assert folder_digest(a).startswith("sha256:") and len(folder_digest(a)) == 7 + 64


@pytest.mark.parametrize("change", ["byte", "rename", "extra", "move"])
def test_any_change_changes_the_digest(tmp_path, change):
    folder = _model(tmp_path / "m")
    before = folder_digest(folder)
    if change == "byte":
        (folder / "model" / "model.pkl").write_bytes(b"\x80\x04pickle-bytez")
    elif change == "rename":
        (folder / "MLmodel").rename(folder / "MLmodel2")
    elif change == "extra":
        (folder / "conda.yaml").write_text("")
    else:  # same bytes under another folder: the path is part of the digest
        (folder / "model" / "model.pkl").rename(folder / "model.pkl")
    assert folder_digest(folder) != before


def test_symbolic_links_are_refused(tmp_path):
    folder = _model(tmp_path / "m")
    os.symlink("/etc/hostname", folder / "model" / "extra")
    with pytest.raises(ModelDigestError, match="symbolic link"):
        folder_digest(folder)
    os.symlink(folder, tmp_path / "link")
    with pytest.raises(ModelDigestError, match="not a plain folder"):
        folder_digest(tmp_path / "link")


def test_missing_or_empty_folders_are_refused(tmp_path):
    with pytest.raises(ModelDigestError):
        folder_digest(tmp_path / "nothing")
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    with pytest.raises(ModelDigestError, match="no files"):
        folder_digest(tmp_path / "empty")


def test_same_digest_needs_both():
    assert same_digest("sha256:ab", "sha256:ab")
    assert not same_digest("sha256:ab", "sha256:ac")
    assert not same_digest("", "")
    assert not same_digest(None, "sha256:ab")
