"""`python -m local.functions_host --script-root DIR [--port 7071] [--host 127.0.0.1] [--settings FILE]`"""

from __future__ import annotations

import argparse
import sys

from local.functions_host.host import run_host


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local.functions_host",
                                     description="A small local Azure Functions host for Python v2 apps.")
    parser.add_argument("--script-root", required=True, help="the function app directory (holds host.json)")
    parser.add_argument("--port", type=int, default=7071)
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default: loopback)")
    parser.add_argument("--settings", default=None, help="settings file (default: SCRIPT_ROOT/local.settings.json)")
    args = parser.parse_args(argv)
    return run_host(args.script_root, host=args.host, port=args.port, settings_file=args.settings)


if __name__ == "__main__":
    sys.exit(main())
