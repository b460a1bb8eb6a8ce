"""Which model folders a local load path may unpickle: only a folder under the stack's run outputs whose bytes
are the ones the registry recorded at registration.

A pickle is code. The model registry (a storage table) says where a model lives and what its content hash is;
the scoring server's `/admin/deploy`, `retrain promote` (through that route) and the restart path all call
`check_model_folder` before anything is loaded. The checks, in order:

- a digest is expected (`sha256:<64 hex>`): a model registered without one (an old record) is refused with
  what to do, never trusted silently;
- the folder, with every symbolic link resolved, lies under the models root (the local pipeline endpoint's
  runs folder): `/etc`, a temp folder or a link pointing out of the root are refused;
- its content digest (`shared.scoring.model_digest.folder_digest`, which also refuses links inside the folder)
  equals the expected one, compared in constant time.

In Azure the model folder lives in Azure ML and the online deployment loads it there; the digest is recorded in
the registry but not checked by this process (there is no local folder to hash).
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from pathlib import Path

from shared.scoring.model_digest import ModelDigestError, folder_digest, same_digest

DIGEST_PATTERN = re.compile(r"sha256:[0-9a-f]{64}")


class Refusal(enum.StrEnum):
    """Why a folder was not loaded; `status` is the HTTP answer the scoring server gives for it."""

    NO_DIGEST = "no_digest"  # the registry has no content hash for this model (or the request sent none)
    BAD_DIGEST = "bad_digest"  # the expected digest is not `sha256:<64 hex>`
    NO_ROOT = "no_root"  # this process was given no models root: it loads nothing
    OUTSIDE_ROOT = "outside_root"  # the folder (links resolved) is not under the models root
    NOT_A_MODEL = "not_a_model"  # missing, not a folder, empty, or holding a symbolic link
    DIGEST_MISMATCH = "digest_mismatch"  # the bytes changed since registration

    @property
    def status(self) -> int:
        return 400 if self in (Refusal.NO_DIGEST, Refusal.BAD_DIGEST) else 403


class UntrustedModel(ValueError):
    """The folder must not be loaded; the message says why and what to do (it names no secret)."""

    def __init__(self, refusal: Refusal, message: str):
        super().__init__(message)
        self.refusal = refusal


@dataclass(frozen=True)
class TrustedFolder:
    path: Path  # resolved
    digest: str


def check_model_folder(model_dir: str | Path, *, root: str | Path | None, expected_digest: str | None,
                       version: str | int = "?") -> TrustedFolder:
    """The resolved folder when it may be loaded, else UntrustedModel naming the reason."""
    expected = (expected_digest or "").strip()
    if not expected:
        raise UntrustedModel(Refusal.NO_DIGEST, f"model v{version} has no registered content hash (digest): it "
                             "was registered before digests were recorded, so its folder cannot be verified and is "
                             "not loaded; retrain to register a verifiable model (`retrain trigger --dataset "
                             "latest`), then promote that version")
    if not DIGEST_PATTERN.fullmatch(expected):
        raise UntrustedModel(Refusal.BAD_DIGEST, f"model v{version}: the expected digest must be "
                             "'sha256:' followed by 64 lowercase hex digits")
    if root is None or not str(root).strip():
        raise UntrustedModel(Refusal.NO_ROOT, "this scoring server was started without a models root "
                             "(--models-root), so it loads no model folder")
    root_path = Path(root).resolve()
    folder = Path(model_dir)
    if not folder.is_absolute():
        raise UntrustedModel(Refusal.OUTSIDE_ROOT, f"model v{version}: the model folder must be an absolute path "
                             f"under the models root {root_path}")
    resolved = folder.resolve()  # every link resolved: a link inside the root that points out is caught here
    if resolved == root_path or not resolved.is_relative_to(root_path):
        raise UntrustedModel(Refusal.OUTSIDE_ROOT, f"model v{version}: {folder} is not under the models root "
                             f"{root_path} (the local pipeline's run outputs); only models trained by this stack "
                             "are loaded")
    try:
        actual = folder_digest(resolved)
    except (ModelDigestError, OSError) as exc:
        raise UntrustedModel(Refusal.NOT_A_MODEL, f"model v{version}: {exc}") from None
    if not same_digest(actual, expected):
        raise UntrustedModel(Refusal.DIGEST_MISMATCH, f"model v{version}: the content of {folder} does not match "
                             "the digest registered for it (the folder changed after registration); not loaded")
    return TrustedFolder(resolved, actual)
