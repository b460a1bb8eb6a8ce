"""How a command is declared and how it fails: one place for the `retrain <command>: <message>` error line.

Each command module registers its sub-commands with `add_command`, which records the handler and the command's
full name (`retrain azure publish`) on the parsed arguments; a handler raises `CommandError` instead of printing
its own error and choosing an exit code, and `tools.cli.parser.main` prints it.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from enum import IntEnum

Handler = Callable[[argparse.Namespace], int]


class Exit(IntEnum):
    """The CLI's exit codes (docs/cli.md)."""

    OK = 0
    FAILED = 1  # the command ran and failed, or what it needs (the running stack, a setting) is missing
    USAGE = 2  # a bad argument or input file


class CommandError(Exception):
    """A command cannot go on; the message never holds a secret and is printed after the command's name."""

    def __init__(self, message: str, code: Exit = Exit.FAILED):
        super().__init__(message)
        self.code = code


def add_command(sub: argparse._SubParsersAction, name: str, handler: Handler, **kwargs) -> argparse.ArgumentParser:
    """A sub-command whose parsed arguments carry its handler (`run`) and full name (`command_name`)."""
    parser = sub.add_parser(name, **kwargs)
    parser.set_defaults(run=handler, command_name=parser.prog)
    return parser
