"""The environment a job process (training step, drift job) starts with: an allowlist, never the parent's.

The processes that start jobs hold secrets in their environment (the pipeline endpoint: LOCAL_PIPELINE_TOKEN, the
storage connection string and the Event Grid URL with its system key; the Functions host: every app setting). A job
runs code from the model and the data it is given, so it inherits none of them: it gets what Python, the numeric
libraries and locale handling need, plus what its caller passes explicitly (the drift job: the storage connection
it reads its inputs with). The training step takes everything else on its command line (data file, output folder,
MLflow tracking URI) and needs no secret at all.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

# Names passed through as they are: the process basics, locale, temp folder, Python's own switches and the thread
# counts of the numeric libraries (a 2-core box sets them; nothing here is a secret).
ALLOWED = frozenset({
    "PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "TZ", "TMPDIR", "TEMP", "TMP",
    "PYTHONPATH", "PYTHONHASHSEED", "PYTHONDONTWRITEBYTECODE", "PYTHONUNBUFFERED", "PYTHONIOENCODING",
    "PYTHONUTF8", "PYTHONWARNINGS", "VIRTUAL_ENV",
    "OMP_NUM_THREADS", "OMP_THREAD_LIMIT", "OMP_WAIT_POLICY", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
    "NUMEXPR_NUM_THREADS", "NUMEXPR_MAX_THREADS", "VECLIB_MAXIMUM_THREADS", "LOKY_MAX_CPU_COUNT",
    "SYSTEMROOT", "WINDIR", "COMSPEC", "PATHEXT",  # Windows needs these to start Python at all
})
ALLOWED_PREFIXES = ("LC_",)


def is_allowed(name: str) -> bool:
    return name in ALLOWED or name.startswith(ALLOWED_PREFIXES)


def minimal_env(extra: Mapping[str, str] | None = None, *, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The allowlisted part of `environ` (default: this process's), plus `extra` (what the caller hands over on
    purpose; it wins)."""
    source = os.environ if environ is None else environ
    env = {name: value for name, value in source.items() if is_allowed(name)}
    env.update(extra or {})
    return env
