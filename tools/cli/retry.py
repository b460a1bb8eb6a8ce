"""`retrain retry`: a retrain request that failed back into the outbox."""

from __future__ import annotations

import argparse

from tools.cli.command import CommandError, Exit, add_command


def cmd_retry(args: argparse.Namespace) -> int:
    """A retrain request that failed (its submit deadline passed) back into the outbox, with a new deadline
    (SUBMIT_DEADLINE_S); the running host's outbox timer submits it."""
    from shared.bootstrap import build_stores
    from shared.services.dispatch import DispatchPolicy, retry
    from tools.cli.context import stack_settings

    settings = stack_settings()
    stores = build_stores(settings)
    try:
        request = retry(args.request, outbox=stores.outbox, audit=stores.audit,
                        policy=DispatchPolicy(deadline_s=settings.submit_deadline_s))
    except (LookupError, ValueError) as exc:
        raise CommandError(exc.args[0]) from None
    print(f"queued again: request {request.id} (dataset v{request.dataset_version}, {request.reason}); the "
          "outbox timer submits it when nothing is in flight")
    return Exit.OK


def add_parsers(sub: argparse._SubParsersAction) -> None:
    retry_cmd = add_command(sub, "retry", cmd_retry,
                            help="submit again a retrain request that failed (see `retrain status`: the audit id "
                                 "of the trigger is the request id)")
    retry_cmd.add_argument("request", metavar="RUN", help="the failed request's id (its trigger's audit id)")
