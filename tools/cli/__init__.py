"""`retrain`: the operator's command. One module per command group (stack, records, deploy, retry, training, data,
keys, webhook, azure), `parser` wires them; `context` opens what they read (settings, the running stack, stores)."""

from tools.cli.parser import main

__all__ = ["main"]
