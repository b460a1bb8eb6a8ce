"""Run one function invocation the way the worker does: arguments by binding name, an optional `context`
parameter, sync functions in a thread pool, async ones awaited on the host loop. Failures are logged with their
traceback and reported, never raised into the host."""

from __future__ import annotations

import asyncio
import contextvars
import ctypes
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


class FunctionTimeoutError(Exception):
    """Raised into (or reported for) an invocation that ran past `functionTimeout`."""


class _Running:
    """The thread a sync invocation runs on, so a timeout can interrupt it (and only while it still runs it)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.thread_id: int | None = None
        self.done = False

    def run(self, call, *args, **kwargs):
        self.thread_id = threading.get_ident()
        try:
            return call(*args, **kwargs)
        finally:
            with self.lock:
                self.done = True

    @property
    def busy(self) -> bool:
        """A thread runs it now (a call cancelled before it started never had one)."""
        return self.thread_id is not None and not self.done

    def interrupt(self) -> None:
        """Raise FunctionTimeoutError in the invocation's thread at its next Python instruction (a blocking call
        in C, e.g. a socket read, finishes first): the nearest this in-process host gets to the Azure host
        restarting the worker process."""
        with self.lock:
            if not self.done and self.thread_id is not None:
                ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(self.thread_id),
                                                           ctypes.py_object(FunctionTimeoutError))


def timespan_text(seconds: float) -> str:
    whole = int(seconds)
    return f"{whole // 3600:02d}:{whole % 3600 // 60:02d}:{whole % 60:02d}"


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
    """Runs invocations; `timeout_s` is host.json `functionTimeout` (None: unbounded), enforced on every one.

    In Azure a timed-out invocation fails with FunctionTimeoutException and, for an out-of-process worker such as
    Python's, the host restarts the worker process (azure-functions-host src/WebJobs.Script.WebHost/
    WebScriptHostExceptionHandler.cs, OnTimeoutExceptionAsync). Here the invocation fails at the deadline the same
    way and its thread is interrupted (see _Running.interrupt); other invocations are left running."""

    def __init__(self, function_directory: Path, max_workers: int | None = None, timeout_s: float | None = None):
        self.function_directory = str(function_directory)
        self.timeout_s = timeout_s
        self._pool = ThreadPoolExecutor(max_workers=max_workers or default_thread_count(),
                                        thread_name_prefix="function")
        self._running: set[str] = set()
        self._threads: set[_Running] = set()
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def running(self) -> int:
        return len(self._running)

    @property
    def busy_threads(self) -> int:
        """Threads still inside a sync invocation, timed-out ones included. A timed-out invocation no longer counts
        as running, but its thread may still sit in a blocking call (an Azure SDK retry back-off: the storage SDK's
        default ExponentialRetry waits 15 s, then 18 s, 24 s; learn.microsoft.com/azure/storage/blobs/
        storage-retry-policy-python), and the interpreter joins pool threads at exit: the host must not wait
        for them beyond its shutdown timeout (Azure kills the worker process)."""
        self._threads = {t for t in self._threads if not t.done}
        return sum(t.busy for t in self._threads)

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
            value = await self._call(fn, kwargs, invocation_id)
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

    async def _call(self, fn: IndexedFunction, kwargs: dict[str, Any], invocation_id: str) -> Any:
        if fn.is_async:
            try:
                return await asyncio.wait_for(fn.func(**kwargs), self.timeout_s)
            except TimeoutError:
                raise self._timed_out(fn, invocation_id) from None
        running = _Running()
        self._threads.add(running)
        context = contextvars.copy_context()
        future = asyncio.get_running_loop().run_in_executor(
            self._pool, lambda: running.run(context.run, fn.func, **kwargs))
        try:
            return await asyncio.wait_for(asyncio.shield(future), self.timeout_s)
        except TimeoutError:
            running.interrupt()
            future.add_done_callback(lambda f: f.cancelled() or f.exception())  # its end is nobody's business now
            raise self._timed_out(fn, invocation_id) from None

    def _timed_out(self, fn: IndexedFunction, invocation_id: str) -> FunctionTimeoutError:
        limit = timespan_text(self.timeout_s or 0)
        log.error("Timeout value of %s exceeded by function 'Functions.%s' (Id: '%s'). Initiating cancellation.",
                  limit, fn.name, invocation_id)
        return FunctionTimeoutError(f"Timeout value of {limit} was exceeded by function: Functions.{fn.name}")

    async def drain(self, timeout: float) -> bool:
        """Wait (bounded) until no invocation is running; True when idle."""
        if self._idle.is_set():  # wait_for with no time left fails even an event that is already set
            return True
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
            return True
        except TimeoutError:
            return False

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
