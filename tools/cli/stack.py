"""`retrain up`, `run`, `demo` (the embedded local stack) and `retrain upload` (a file into the running one)."""

from __future__ import annotations

import argparse
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
    from local.session import upload_file
    from tools.cli.context import running_stack

    path = Path(args.file)
    if not path.is_file():
        raise CommandError(f"{path} is not a file", Exit.USAGE)
    name = upload_file(running_stack().storage_connection, path, args.name, args.container)
    print(f"uploaded {path} ({path.stat().st_size:,} bytes) to {name}; follow it with `retrain status`")
    return Exit.OK


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
