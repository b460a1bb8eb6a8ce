"""The `retrain` argument parser, assembled from the command modules, and `main`, which runs the chosen one."""

from __future__ import annotations

import argparse
import sys

from tools.cli import azure, data, deploy, keys, records, retry, score, stack, training, webhook
from tools.cli.command import CommandError

DESCRIPTION = "`retrain`: run the embedded stack, feed it data, read the audit trail, train and score by hand."

# In the order `retrain --help` lists them.
COMMAND_MODULES = (stack, records, deploy, retry, training, score, data, keys, webhook, azure)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="retrain", description=DESCRIPTION)
    sub = parser.add_subparsers(dest="command", required=True)
    for module in COMMAND_MODULES:
        module.add_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args))
    except CommandError as exc:
        print(f"{args.command_name}: {exc}", file=sys.stderr)
        return int(exc.code)
