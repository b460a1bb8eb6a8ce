"""`retrain up`, `run`, `demo` (the embedded local stack) and `retrain upload` (a file into the running one; with
`--wait`, followed to its final outcome)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tools.cli.command import CommandError, Exit, add_command


def _session(args: argparse.Namespace, *, upload: bool, once: bool) -> int:
    from local.connection import local_dir
    from local.session import run_session
    from local.stack import StackConfig

    data = Path(args.data).resolve() if getattr(args, "data", None) else None
    if data is not None and not data.exists():
        print(f"retrain: {data} does not exist", file=sys.stderr)
        return Exit.USAGE
    config = StackConfig(local_dir=local_dir(), host_port=args.port, training_budget_s=args.budget_s)
    return run_session(config=config, data=data, upload=upload, once=once, timeout_s=args.timeout_s,
                       free_ports=args.free_ports)


def cmd_up(args: argparse.Namespace) -> int:
    return _session(args, upload=False, once=False)


def cmd_run(args: argparse.Namespace) -> int:
    return _session(args, upload=True, once=False)


def cmd_demo(args: argparse.Namespace) -> int:
    return _session(args, upload=True, once=True)


def cmd_upload(args: argparse.Namespace) -> int:
    import time

    from local.session import put_file
    from tools.cli.context import running_stack, settings

    path = Path(args.file)
    if not path.is_file():
        raise CommandError(f"{path} is not a file", Exit.USAGE)
    if args.timeout_s <= 0:
        raise CommandError("--timeout-s must be a positive number of seconds", Exit.USAGE)
    incoming = settings().incoming_container
    if args.wait and args.container != incoming:
        raise CommandError(f"--wait follows uploads to the {incoming!r} container the blob trigger watches "
                           f"(INCOMING_CONTAINER), not {args.container!r}", Exit.USAGE)
    stack = running_stack()
    since = time.time()
    source, etag = put_file(stack.storage_connection, path, args.name, args.container)
    size = path.stat().st_size
    if not args.wait:
        if args.json:
            print(json.dumps({"blob": source, "etag": etag, "bytes": size}))
        else:
            print(f"uploaded {path} ({size:,} bytes) to {source}; follow it with `retrain status`")
        return Exit.OK
    if not args.json:
        print(f"uploaded {path} ({size:,} bytes) to {source}; waiting for its outcome (at most {args.timeout_s:g} s)",
              flush=True)
    return _wait(source, etag, since, args)


def _wait(source: str, etag: str, since: float, args: argparse.Namespace) -> int:
    """Follow the upload to its final audit record and report it (tools/cli/upload_outcome.py)."""
    from tools.cli.context import open_stores
    from tools.cli.upload_outcome import UploadRef, WaitTimedOut, wait_for_outcome

    try:
        final = wait_for_outcome(open_stores(), UploadRef(source, etag, since), timeout_s=args.timeout_s)
    except WaitTimedOut as exc:
        raise CommandError(f"{source}: {exc}; follow it with `retrain status`") from None
    if args.json:
        print(json.dumps(final.to_dict(), default=str))
    else:
        record = final.record
        parts = [p for p in (f"dataset v{record.dataset_version}" if record.dataset_version else "",
                             f"run {record.run_id}" if record.run_id else "",
                             f"model v{record.model_version}" if record.model_version else "",
                             f"via the newer request {final.superseded_by[-1]}" if final.superseded_by else "") if p]
        detail = record.detail or "-"
        if not detail.startswith(f"{final.outcome}:"):  # a rejection's detail says `rejected: ...` itself
            detail = f"{final.outcome}: {detail}"
        print(f"{detail} ({', '.join(parts + [f'audit {record.id}'])})", file=sys.stdout if final.ok else sys.stderr)
    return Exit.OK if final.ok else Exit.FAILED


def _stack_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=int, default=7071, help="Functions host port (default 7071)")
    parser.add_argument("--budget-s", type=int, default=30, help="training budget per pipeline run (s)")
    parser.add_argument("--timeout-s", type=float, default=1800, help="give up waiting for a deploy after this")
    parser.add_argument("--free-ports", action="store_true",
                        help="pick free loopback ports instead of 10000-10002/7071/8401/8402")


def add_parsers(sub: argparse._SubParsersAction) -> None:
    up = add_command(sub, "up", cmd_up, help="start the embedded local stack and keep it serving until Ctrl-C")
    _stack_flags(up)
    run = add_command(sub, "run", cmd_run,
                      help="start the stack, upload the training file, show each stage, keep serving")
    _stack_flags(run)
    run.add_argument("--data", help="CSV to upload (default ../shared/data/bankmarketing_train.csv or generated)")
    demo = add_command(sub, "demo", cmd_demo, help="like run, once: exit 0 when a new model answers; last line is JSON")
    _stack_flags(demo)
    demo.add_argument("--data", help="CSV to upload (default as for run)")

    upload = add_command(sub, "upload", cmd_upload, help="upload a dataset file to the incoming container")
    upload.add_argument("file")
    upload.add_argument("--name", help="blob name (default: timestamp-filename)")
    upload.add_argument("--container", default="incoming")
    upload.add_argument("--wait", action="store_true",
                        help="wait for this upload's final outcome (deployed, kept_champion, duplicate: exit 0; "
                             "rejected, failed, rolled_back: exit 1) and print its final audit record")
    upload.add_argument("--json", action="store_true",
                        help='with --wait: the final audit record as one JSON object ("final_outcome", '
                             '"upload_id", "superseded_by", then the record\'s fields); without: '
                             '{"blob", "etag", "bytes"}')
    upload.add_argument("--timeout-s", type=float, default=3600,
                        help="with --wait: give up (exit 1) after this many seconds (default 3600)")
