"""`retrain promote` and `retrain rollback`: blue/green deploys by hand, audited like the automatic ones."""

from __future__ import annotations

import argparse
import os
import sys

from shared.domain.outcomes import Outcome
from shared.domain.records import AuditRecord
from shared.services.on_run_completed import Deployment
from tools.cli.command import CommandError, Exit, add_command


def _who() -> str:
    """Who the audit names as having asked."""
    return os.environ.get("USER") or os.environ.get("USERNAME") or "cli"


def deployment() -> Deployment:
    """Registry, deployer, scorer, datasets and audit: the Azure ones from app settings (RETRAIN_MODE=azure, built
    by shared.bootstrap as the app builds them), else the running local stack's, with its keys from
    `.local/secrets.json`."""
    from tools.cli.context import open_stores, running_stack, settings

    if settings().mode == "azure":
        from shared.bootstrap import build
        from shared.settings import get_settings

        return build(get_settings()).deployment
    from local import stack_secrets
    from local.connection import local_dir
    from shared.adapters.scoring import LocalScoringDeployer

    stack = running_stack()
    if not stack.scoring_url:
        raise CommandError("the running stack has no scoring endpoint URL (set SCORING_URL)")
    secrets = stack_secrets.load_or_create(local_dir())
    stores = open_stores()
    deployer = LocalScoringDeployer(stack.scoring_url, secrets["scoring_admin_key"])
    return Deployment(models=stores.models, datasets=stores.datasets, audit=stores.audit, deployer=deployer,
                      scorer=deployer.scorer(secrets["scoring_key"]))


def _report(record: AuditRecord) -> int:
    ok = record.outcome in (Outcome.PROMOTED, Outcome.ROLLED_BACK)
    print(f"{record.outcome}: {record.detail} (audit {record.id})", file=sys.stdout if ok else sys.stderr)
    return Exit.OK if ok else Exit.FAILED


def cmd_promote(args: argparse.Namespace) -> int:
    from shared.services.manual_deploy import promote

    return _report(promote(args.version, deployment(), requested_by=_who()))


def cmd_rollback(args: argparse.Namespace) -> int:
    from shared.services.manual_deploy import rollback

    return _report(rollback(deployment(), requested_by=_who()))


def add_parsers(sub: argparse._SubParsersAction) -> None:
    promote = add_command(sub, "promote", cmd_promote,
                          help="deploy a registered model version by hand (blue/green, audited)")
    promote.add_argument("version", type=int)
    add_command(sub, "rollback", cmd_rollback,
                help="go back to the model that was live before the current one (audited)")
