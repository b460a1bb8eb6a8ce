"""The admin routes' request bodies and error answers: parse and check them before anything is loaded."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from fastapi import Request
from fastapi.responses import JSONResponse

from local.scoring_server.formats import json_type_name


def error(status: int, message: str, **extra: Any) -> JSONResponse:
    """An admin route's error answer: {"error": message, ...}; a 401 names the Bearer scheme."""
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse({"error": message, **extra}, status_code=status, headers=headers)


async def json_body(request: Request) -> tuple[Any, JSONResponse | None]:
    """The admin body as JSON, or the 400 answer saying why it is not (the admin routes are local only)."""
    raw = await request.body()
    if not raw.strip():
        return None, error(400, "request body is empty; expected a JSON object")
    try:
        return json.loads(raw), None
    except UnicodeDecodeError:
        return None, error(400, "request body is not valid JSON: not UTF-8 text")
    except json.JSONDecodeError as exc:
        return None, error(400, f"request body is not valid JSON: {exc.msg} at line {exc.lineno} column "
                                f"{exc.colno} (char {exc.pos})")


def _model_path(value: Any) -> Path | None:
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    if text.startswith("file:"):
        text = unquote(urlsplit(text).path)
    path = Path(text)
    return path if path.is_absolute() else None


@dataclass(frozen=True)
class DeployRequest:
    model_dir: Path
    version: str
    smoke_records: list | None
    digest: str = ""


def deploy_request(body: Any) -> DeployRequest | JSONResponse:
    """The body of POST /admin/deploy, or the 400 answer that says what is wrong with it."""
    if not isinstance(body, dict):
        return error(400, f"request body must be a JSON object, got {json_type_name(body)}")
    model_dir = _model_path(body.get("model_dir"))
    if model_dir is None:
        return error(400, "`model_dir` must be an absolute path (or file: URI) of an MLflow model directory")
    version = body.get("version")
    if isinstance(version, bool) or not isinstance(version, str | int) or not str(version).strip():
        return error(400, "`version` must be a non-empty string or integer")
    smoke_records = body.get("smoke_records")
    if smoke_records is not None and not isinstance(smoke_records, list):
        return error(400, f"`smoke_records` must be a list of records, got {json_type_name(smoke_records)}")
    digest = body.get("digest")
    if digest is not None and not isinstance(digest, str):
        return error(400, f"`digest` must be a string 'sha256:<hex>', got {json_type_name(digest)}")
    return DeployRequest(model_dir, str(version).strip(), smoke_records or None, (digest or "").strip())


async def rollback_guard(request: Request) -> str | None | JSONResponse:
    """The optional body {"from_version": "N"}: roll back only while model vN is live."""
    if not (await request.body()).strip():
        return None
    body, problem = await json_body(request)
    if problem is not None:
        return problem
    version = body.get("from_version") if isinstance(body, dict) else None
    if not isinstance(body, dict) or isinstance(version, bool) or not isinstance(version, str | int | None):
        return error(400, 'the body is optional; if sent it must be {"from_version": "N"}')
    return None if version is None else str(version).strip()
