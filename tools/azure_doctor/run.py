"""Running the checks in order, and `main` (what `retrain azure doctor` calls)."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from pathlib import Path

from tools.azure_doctor.checks.collected_data import check_collected_data
from tools.azure_doctor.checks.credential import check_credential
from tools.azure_doctor.checks.pipeline import check_pipeline
from tools.azure_doctor.checks.roles import check_storage_roles, check_workspace_roles
from tools.azure_doctor.checks.scoring import check_scoring
from tools.azure_doctor.checks.settings import check_settings
from tools.azure_doctor.checks.storage import check_storage
from tools.azure_doctor.checks.workspace import check_workspace
from tools.azure_doctor.credential import DEFAULT_TIMEOUT_S
from tools.azure_doctor.doctor import Doctor
from tools.azure_doctor.redact import clip, scrub
from tools.azure_doctor.results import FAIL, OK, SKIPPED, Check, exit_code, render, to_json


def run_checks(env: Mapping[str, str], doctor: Doctor | None = None) -> list[Check]:
    doctor = doctor or Doctor()
    settings_check, settings = check_settings(env)
    checks = [settings_check]
    names = ("credential", "workspace", "workspace roles", "pipeline endpoint", "scoring endpoint", "storage",
             "storage roles", "collected data")
    if settings_check.status != OK or settings is None:
        checks += [Check(n, SKIPPED, "not checked: the settings are not valid", "fix the settings check first")
                   for n in names]
        return [_scrubbed(c, doctor) for c in checks]
    doctor.settings = settings
    checks.append(check_credential(doctor))
    for check in (check_workspace, check_workspace_roles, check_pipeline, check_scoring, check_storage,
                  check_storage_roles, check_collected_data):
        try:
            checks.append(check(settings, doctor))
        except Exception as exc:  # noqa: BLE001 - one broken check must not hide the others
            label = check.__name__.removeprefix("check_").replace("_", " ")
            checks.append(Check(label, FAIL, f"the check itself failed: {type(exc).__name__}: {clip(str(exc))}",
                                "report it with this output"))
    return [_scrubbed(c, doctor) for c in checks]


def _scrubbed(check: Check, doctor: Doctor) -> Check:
    return Check(check.name, check.status, scrub(check.message, doctor.secrets), scrub(check.hint, doctor.secrets))


def load_env(settings_file: str | None, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment, with a local.settings.json-style file's "Values" on top when given."""
    env = dict(os.environ if base is None else base)
    if settings_file:
        data = json.loads(Path(settings_file).read_text(encoding="utf-8"))
        values = data.get("Values") if isinstance(data, dict) else None
        if not isinstance(values, dict):
            raise ValueError(f"{settings_file} has no \"Values\" object")
        env.update({str(k): "" if v is None else str(v) for k, v in values.items()})
    return env


def main(*, json_output: bool = False, settings_file: str | None = None, timeout_s: float = DEFAULT_TIMEOUT_S,
         doctor: Doctor | None = None, env: Mapping[str, str] | None = None, out=None) -> int:
    import logging
    import sys

    # DefaultAzureCredential logs its whole "Attempted credentials" text as a warning; the credential check
    # reports it, once and shorter.
    logging.getLogger("azure.identity").setLevel(logging.ERROR)
    out = out or sys.stdout
    try:
        environment = load_env(settings_file, env)
    except (OSError, ValueError) as exc:
        print(f"retrain azure doctor: cannot read settings file: {exc}", file=sys.stderr)
        return 2
    doctor = doctor or Doctor(timeout_s=timeout_s)
    started = time.monotonic()
    checks = run_checks(environment, doctor)
    if json_output:
        print(json.dumps(to_json(checks), indent=2), file=out)
    else:
        from rich.console import Console

        render(checks, Console(file=out, width=max(140, Console().width)))
        print(f"({time.monotonic() - started:.1f}s)", file=out)
    return exit_code(checks)
