"""What the commands read: the app settings (by their one declaration in shared.settings), the running local
stack and its stores (built by shared.bootstrap, as the app builds them)."""

from __future__ import annotations

from dataclasses import replace

from local.connection import StackInfo, StackNotRunning, find_stack
from shared.bootstrap import Stores, build_stores
from shared.settings import Settings, SettingsError
from tools.cli.command import CommandError, Exit


def settings() -> Settings:
    """The app settings this environment sets (MIN_ROWS, SUBMIT_DEADLINE_S...), parsed as the app parses them,
    without the app's start-up checks (the CLI needs no pipeline URL, say)."""
    try:
        return Settings.from_env(check=False)
    except SettingsError as exc:  # a malformed setting: bad input, like a bad flag
        raise CommandError(str(exc), Exit.USAGE) from None


def running_stack() -> StackInfo:
    """The running local stack (or the storage AzureWebJobsStorage names)."""
    try:
        return find_stack()
    except StackNotRunning as exc:
        raise CommandError(str(exc)) from None


def stack_settings() -> Settings:
    """The app settings on the running stack's storage (its connection string, never an account URL the
    environment may also name)."""
    return replace(settings(), storage_connection=running_stack().storage_connection, storage_account_url="")


def open_stores() -> Stores:
    """The audit trail, runs, models, datasets, outbox and refusal counts of the running stack."""
    return build_stores(stack_settings())

