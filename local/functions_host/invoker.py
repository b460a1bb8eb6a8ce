"""Run one function invocation the way the worker does: arguments by binding name, an optional `context`
parameter, sync functions in a thread pool, async ones awaited on the host loop. Failures are logged with their
traceback and reported, never raised into the host."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import logging
import os
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import azure.functions as func

from local.functions_host.loader import IndexedFunction
from local.functions_host.log import current_function

log = logging.getLogger("functions_host")


class Context(func.Context):
    """What a `context` parameter receives: the attributes of the worker's Context."""

    def __init__(self, invocation_id: str, function_name: str, function_directory: str):
        self._invocation_id = invocation_id
        self._function_name = function_name
        self._function_directory = function_directory
        self._thread_local_storage = threading.local()

    @property
    def invocation_id(self) -> str:
        return self._invocation_id

    @property
    def function_name(self) -> str:
        return self._function_name

    @property
    def function_directory(self) -> str:
        return self._function_directory

    @property
    def thread_local_storage(self) -> threading.local:
        return self._thread_local_storage

    @property
    def trace_context(self) -> None:
        return None

    @property
    def retry_context(self) -> None:
        return None

    def __repr__(self) -> str:
        return f"<Context invocation_id={self.invocation_id} function_name={self.function_name}>"


class DiscardedOut:
    """Stands in for an output binding this host does not implement: what is set is dropped with a warning."""

    def __init__(self, binding: dict):
        self._binding = binding
        self._value = None

    def set(self, value: Any) -> None:
        self._value = value
        log.warning("output binding '%s' (%s) is not supported by the local host; value discarded",
                    self._binding.get("name"), self._binding.get("type"))

    def get(self) -> Any:
        return self._value


@dataclass
class InvocationResult:
    invocation_id: str
    ok: bool
    value: Any = None
    error: BaseException | None = None
    duration_ms: float = 0.0


def default_thread_count() -> int:
    raw = os.environ.get("PYTHON_THREADPOOL_THREAD_COUNT")
    if raw and raw.isdigit() and int(raw) > 0:
        return int(raw)
    return min(32, (os.cpu_count() or 1) + 4)


class Invoker:
    def __init__(self, function_directory: Path, max_workers: int | None = None):
        self.function_directory = str(function_directory)
        self._pool = ThreadPoolExecutor(max_workers=max_workers or default_thread_count(),
                                        thread_name_prefix="function")
        self._running: set[str] = set()
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def running(self) -> int:
        return len(self._running)

    @staticmethod
    def check_signature(fn: IndexedFunction) -> None:
        """What the worker checks when it loads a function: parameters and bindings must line up."""
        params = inspect.signature(fn.func).parameters
        bound = {b.get("name") for b in fn.bindings if b.get("name") != "$return"}
        missing = sorted(n for n in bound if n not in params)
        if missing:
            raise ValueError(f"the following parameters are declared in the bindings but not in Python: {missing}")
        extra = sorted(n for n, p in params.items() if n not in bound and n != "context"
                       and p.default is inspect.Parameter.empty
                       and p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD))
        if extra:
            raise ValueError(f"the following parameters are declared in Python but not in the bindings: {extra}")

    def _arguments(self, fn: IndexedFunction, trigger_value: Any, context: Context) -> dict[str, Any]:
        params = inspect.signature(fn.func).parameters
        outputs = {b.get("name"): b for b in fn.output_bindings if b.get("name") != "$return"}
        kwargs: dict[str, Any] = {}
        for name, param in params.items():
            if name == fn.trigger_param:
                kwargs[name] = trigger_value
            elif name == "context":
                kwargs[name] = context
            elif name in outputs:
                kwargs[name] = DiscardedOut(outputs[name])
            elif param.default is inspect.Parameter.empty and param.kind not in (
                    inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
                raise TypeError(f"parameter '{name}' of function '{fn.name}' has no binding this host can supply")
        return kwargs

    async def invoke(self, fn: IndexedFunction, trigger_value: Any, *, reason: str,
                     invocation_id: str | None = None) -> InvocationResult:
        invocation_id = invocation_id or str(uuid.uuid4())
        context = Context(invocation_id, fn.name, self.function_directory)
        self._running.add(invocation_id)
        self._idle.clear()
        log.info("Executing 'Functions.%s' (Reason='%s', Id=%s)", fn.name, reason, invocation_id)
        started = time.perf_counter()
        token = current_function.set(fn.name)  # tags the function's own log lines
        error: BaseException | None = None
        value = None
        try:
            kwargs = self._arguments(fn, trigger_value, context)
            if fn.is_async:
                value = await fn.func(**kwargs)
            else:
                call = functools.partial(contextvars.copy_context().run, fn.func, **kwargs)
                value = await asyncio.get_running_loop().run_in_executor(self._pool, call)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # a function must never take the host down
            error = exc
        finally:
            current_function.reset(token)
            self._running.discard(invocation_id)
            if not self._running:
                self._idle.set()
        ms = (time.perf_counter() - started) * 1000
        if error is not None:
            log.error("Executed 'Functions.%s' (Failed, Id=%s, Duration=%dms)", fn.name, invocation_id, ms,
                      exc_info=error)
            return InvocationResult(invocation_id, False, error=error, duration_ms=ms)
        log.info("Executed 'Functions.%s' (Succeeded, Id=%s, Duration=%dms)", fn.name, invocation_id, ms)
        return InvocationResult(invocation_id, True, value=value, duration_ms=ms)

    async def drain(self, timeout: float) -> bool:
        """Wait (bounded) until no invocation is running; True when idle."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
            return True
        except TimeoutError:
            return False

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
