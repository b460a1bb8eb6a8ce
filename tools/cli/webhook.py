"""`retrain trigger` and `retrain drift-check`: signed requests to the function app, through the reference client
(tools/webhook_client.py), with every key masked in what they print."""

from __future__ import annotations

import argparse
import json
import sys

from tools.cli.command import CommandError, Exit, add_command
from tools.cli.keys import webhook_credentials


class UsageError(CommandError):
    """A `--param` / `--parameters` value the pipeline cannot take."""

    def __init__(self, message: str):
        super().__init__(message, Exit.USAGE)


def coerce_parameter(name: str, raw: str):
    """A `--param NAME=VALUE` value with the type the pipeline declares for NAME (shared/domain/pipeline_params.py);
    for a name it does not know (or one the service sets itself), JSON when VALUE parses as JSON, else the string,
    and the service answers."""
    from shared.api.openapi import RESERVED_PARAMETERS
    from shared.domain import pipeline_params

    definition = pipeline_params.PARAMETERS.get(name)
    if definition is not None and name not in RESERVED_PARAMETERS:
        try:
            return definition.parse(raw)
        except pipeline_params.ParameterError as exc:
            raise UsageError(f"--param {name}: {str(exc).split(': ', 1)[-1]}") from None

    def no_constants(token: str):
        raise ValueError(token)

    try:
        return json.loads(raw, parse_constant=no_constants)
    except ValueError:
        return raw


def trigger_parameters(parameters_json: str | None, params: list[str] | None) -> dict:
    """`--parameters JSON` (an object, values as given), then each `--param NAME=VALUE` (coerced; later wins)."""
    merged: dict = {}
    if parameters_json:
        try:
            doc = json.loads(parameters_json)
        except ValueError as exc:
            raise UsageError(f"--parameters is not valid JSON: {exc}") from None
        if not isinstance(doc, dict):
            raise UsageError('--parameters must be a JSON object like \'{"time_budget_s": 120}\'')
        merged.update(doc)
    for item in params or []:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise UsageError(f"--param wants NAME=VALUE, got {item!r}")
        merged[name.strip()] = coerce_parameter(name.strip(), value)
    return merged


class MaskedOutput:
    """Prints with the keys replaced by `***`: belt and braces, nothing the service echoes may show a key."""

    def __init__(self, secrets: tuple[str, ...]):
        self._secrets = secrets

    def say(self, text: str, *, err: bool = False) -> None:
        for value in self._secrets:
            text = text.replace(value, "***")
        print(text, file=sys.stderr if err else sys.stdout)


def _error_line(result, *, with_location: bool) -> str:
    """`error STATUS TITLE: DETAIL`, with where to look and, for a 429, when to come back."""
    line = f"error {result.status} {result.title}: {result.detail}"
    if with_location and result.location:
        line += f" (see {result.location})"
    if result.status == 429 and result.retry_after is not None:
        line += f" (retry after {result.retry_after:.0f} s)"
    return line


def cmd_trigger(args: argparse.Namespace) -> int:
    import uuid

    from tools.webhook_client import RetrainClient, RetrainClientError

    parameters = trigger_parameters(args.parameters, args.param)
    credentials = webhook_credentials()
    out = MaskedOutput(credentials.secrets)
    key = args.idempotency_key or str(uuid.uuid4())
    if not args.idempotency_key:
        out.say(f"idempotency key: {key} (to retry this request safely, pass --idempotency-key {key})", err=True)
    try:
        client = RetrainClient(credentials.base_url, credentials.function_key, credentials.webhook_secret)
        result = client.trigger(args.dataset, parameters=parameters or None, reason=args.reason,
                                requested_by=args.requested_by, idempotency_key=key)
    except RetrainClientError as exc:
        out.say(f"retrain trigger: {exc}", err=True)
        out.say(f"to retry safely, pass --idempotency-key {key}", err=True)
        return Exit.FAILED
    except ValueError as exc:  # an unserializable body, a bad base URL
        out.say(f"retrain trigger: {exc}", err=True)
        return Exit.USAGE
    body = result.json()
    if args.json:
        if body is None:
            body = {"type": "about:blank", "title": result.title, "status": result.status, "detail": result.detail}
        out.say(json.dumps(body))
    if result.ok:
        if not args.json:
            extra = f", dataset v{body['dataset_version']}" if isinstance(body, dict) and \
                body.get("dataset_version") is not None else ""
            out.say(f"submitted: run {result.run_id or '-'}, status {result.status_text or result.status}{extra}")
            if result.location:
                out.say(f"location: {result.location} (GET it with the x-functions-key header to follow the run)")
        return Exit.OK
    out.say(_error_line(result, with_location=False), err=True)
    if result.status == 429 or result.status >= 500:
        out.say(f"to retry safely, pass --idempotency-key {key}", err=True)
    return Exit.FAILED


def cmd_drift_check(args: argparse.Namespace) -> int:
    """A signed POST /api/drift-check (the same credentials as `retrain trigger`)."""
    from tools.webhook_client import RetrainClient, RetrainClientError

    credentials = webhook_credentials()
    out = MaskedOutput(credentials.secrets)
    try:
        result = RetrainClient(credentials.base_url, credentials.function_key,
                               credentials.webhook_secret).drift_check()
    except (RetrainClientError, ValueError) as exc:
        out.say(f"retrain drift-check: {exc}", err=True)
        return Exit.FAILED
    body = result.json()
    if args.json:
        out.say(json.dumps(body if body is not None else {"status": result.status, "detail": result.detail}))
    elif result.ok and isinstance(body, dict):
        out.say(f"{body.get('outcome')}: {body.get('detail')} (audit {body.get('audit_id')})")
        if body.get("report"):
            out.say(f"report: {body['report']}")
    if result.ok:
        return Exit.OK
    out.say(_error_line(result, with_location=True), err=True)
    return Exit.FAILED


def add_parsers(sub: argparse._SubParsersAction) -> None:
    trigger = add_command(sub, "trigger", cmd_trigger,
                          help="ask for a retrain: a signed POST /api/retrain (the reference client)",
                          description="Sign and send POST {base_url}/api/retrain for the running local stack, or "
                                      "for RETRAIN_BASE_URL with RETRAIN_FUNCTION_KEY and RETRAIN_WEBHOOK_SECRET. "
                                      "Network errors, timeouts and 5xx are retried with the same Idempotency-Key "
                                      "and body; 429 waits for Retry-After (up to 60 s).")
    trigger.add_argument("--dataset", required=True,
                         help="`latest`, a registered version (3 or v3) or the URI of a blob holding a CSV")
    trigger.add_argument("--param", action="append", metavar="NAME=VALUE",
                         help="a training pipeline parameter, typed as the pipeline declares it (repeatable; "
                              "wins over --parameters)")
    trigger.add_argument("--parameters", metavar="JSON", help="pipeline parameters as a JSON object")
    trigger.add_argument("--reason", metavar="TEXT", help="why (recorded with the run)")
    trigger.add_argument("--requested-by", metavar="WHO", help="who asks (recorded in the audit)")
    trigger.add_argument("--idempotency-key", metavar="KEY",
                         help="reuse the key a previous attempt printed to retry it safely (default: a new uuid4)")
    trigger.add_argument("--json", action="store_true", help="print the response body as JSON")

    drift_check = add_command(sub, "drift-check", cmd_drift_check,
                              help="run the drift check now: a signed POST /api/drift-check",
                              description="Sign and send POST {base_url}/api/drift-check (empty body) with the "
                                          "same credentials as `retrain trigger`. Sent once: a 409 names the check "
                                          "that is running.")
    drift_check.add_argument("--json", action="store_true", help="print the response body as JSON")
