"""The host process: settings -> keys -> index the app -> HTTP server, timers and blob pollers; graceful stop.

Programmatic use: `run_host(script_root, port=7071)` blocks until SIGTERM/SIGINT and returns the exit code;
`FunctionsHost(HostConfig(...))` with `prepare()` then `await serve()` for finer control.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import signal
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvicorn

from local.functions_host import appsettings, storage
from local.functions_host.blob_trigger import BlobPathError, BlobPathPattern, BlobTriggerListener
from local.functions_host.blob_webhook import BLOB_TRIGGER_QUEUE_PREFIX, BlobEventTrigger, BlobTriggerQueue
from local.functions_host.dispatch import TryLimit
from local.functions_host.host_json import function_timeout_s, queue_options
from local.functions_host.http_server import BODY_LIMIT, HostApp, HttpFunction, http_function
from local.functions_host.invoker import Invoker
from local.functions_host.keys import HostKeys, load_or_create_keys, local_dir_for
from local.functions_host.lifecycle import cancel_remaining, threads_finished
from local.functions_host.loader import IndexedFunction, index_app, script_file_name
from local.functions_host.log import add_secrets, configure_logging
from local.functions_host.ncrontab import ScheduleError, resolve_schedule, shortest_interval
from local.functions_host.queue_trigger import (
    POISON_SUFFIX,
    QueueNameError,
    QueuePoller,
    QueueTriggerListener,
    queue_name,
)
from local.functions_host.routes import RouteError, compile_route
from local.functions_host.timers import ScheduleMonitor, TimerListener, utcnow

log = logging.getLogger("functions_host")

SUPPORTED_TRIGGERS = ("httpTrigger", "timerTrigger", "blobTrigger", "eventGridTrigger", "queueTrigger")
TIMER_LOCK_LEASE_S = 15
EXECUTOR_GRACE_S = 3.0  # after the shutdown timeout, for storage calls still running in threads


@dataclass
class HostConfig:
    script_root: Path
    host: str = "127.0.0.1"
    port: int = 7071
    settings_file: Path | None = None  # default: {script_root}/local.settings.json
    script_file: str | None = None  # default: app setting PYTHON_SCRIPT_FILE_NAME, else function_app.py
    shutdown_timeout_s: float | None = None  # default: FUNCTIONS_HOST_SHUTDOWN_TIMEOUT_S or 8


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: the host owns SIGTERM/SIGINT (and exits 0 on them)."""

    @contextlib.contextmanager
    def capture_signals(self):
        yield


@dataclass
class FunctionsHost:
    config: HostConfig
    functions: dict[str, IndexedFunction] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    http: list[HttpFunction] = field(default_factory=list)
    timers: dict[str, TimerListener] = field(default_factory=dict)
    blobs: list[BlobTriggerListener | BlobEventTrigger] = field(default_factory=list)
    blob_events: dict[str, BlobEventTrigger] = field(default_factory=dict)  # by Host.Functions.NAME
    queues: list[QueuePoller] = field(default_factory=list)
    eventgrid: dict[str, IndexedFunction] = field(default_factory=dict)
    keys: HostKeys | None = None
    exit_code: int = 0

    def __post_init__(self) -> None:
        self.script_root = Path(self.config.script_root).resolve()
        self._stop: asyncio.Event | None = None
        self._state = "Default"
        self._signals = 0
        self.invoker: Invoker | None = None
        self.host_id = appsettings.DEFAULT_HOST_ID

    # setup ---------------------------------------------------------------------------------------------------
    def prepare(self) -> None:
        settings_file = self.config.settings_file or self.script_root / "local.settings.json"
        applied = appsettings.load_local_settings(Path(settings_file))
        if applied:
            log.info("Read %d app settings from %s", len(applied), settings_file)
        connection_values = " ".join(v for k, v in os.environ.items()
                                     if "storage" in k.lower() or "connection" in k.lower())
        add_secrets(re.findall(r"AccountKey=([^;]+)", connection_values))
        self.keys = load_or_create_keys(local_dir_for(self.script_root))
        add_secrets(self.keys.all_values())
        host_json = appsettings.read_host_json(self.script_root)
        self.prefix = appsettings.route_prefix(host_json)
        self.host_id = appsettings.host_id()
        self.queue_options = queue_options(host_json)  # a value Azure refuses stops the host, as in Azure
        timeout = function_timeout_s(host_json)
        self.invoker = Invoker(self.script_root, timeout_s=timeout)
        log.info("functionTimeout: %s", f"{timeout:.0f}s" if timeout is not None else "unbounded")
        script = script_file_name(self.config.script_file)
        log.info("Indexing %s in %s (PYTHON_SCRIPT_FILE_NAME)", script, self.script_root)
        for fn in index_app(self.script_root, script):
            self.functions[fn.name] = fn
        hosts_conn = os.environ.get("AzureWebJobsStorage") or None
        self._hosts = storage.blob_service(hosts_conn).get_container_client(storage.HOSTS_CONTAINER) \
            if hosts_conn else None
        self._hosts_conn = hosts_conn
        self._sources: dict[str, Any] = {}
        self._trigger_queue: BlobTriggerQueue | None = None
        for fn in self.functions.values():
            try:
                self._register(fn, host_json)
            except Exception as exc:  # one bad function never stops the others
                self.errors[fn.name] = str(exc)
                log.error("Function 'Functions.%s' is disabled: %s", fn.name, exc)

    def _register(self, fn: IndexedFunction, host_json: dict) -> None:
        if fn.trigger_type not in SUPPORTED_TRIGGERS:
            raise ValueError(f"trigger type '{fn.trigger_type}' is not supported by the local host "
                             f"(supported: {', '.join(SUPPORTED_TRIGGERS)})")
        unsupported = [b for b in fn.output_bindings if not (b.get("type") == "http" and b.get("name") == "$return")]
        unsupported += fn.input_bindings
        if unsupported:
            log.warning("Function 'Functions.%s': bindings %s are not supported by the local host and get no data",
                        fn.name, ", ".join(f"{b.get('name')} ({b.get('type')})" for b in unsupported))
        Invoker.check_signature(fn)
        trigger = fn.trigger or {}
        if fn.trigger_type == "httpTrigger":
            try:
                self.http.append(http_function(fn, compile_route(str(trigger.get("route") or fn.name))))
            except RouteError as exc:
                raise ValueError(f"bad route: {exc}") from None
        elif fn.trigger_type == "timerTrigger":
            self.timers[fn.name] = self._timer(fn, trigger)
        elif fn.trigger_type == "blobTrigger":
            self.blobs.append(self._blob(fn, trigger, host_json))
        elif fn.trigger_type == "queueTrigger":
            self.queues.append(self._queue(fn, trigger))
        else:
            self.eventgrid[fn.name] = fn

    def _timer(self, fn: IndexedFunction, trigger: dict) -> TimerListener:
        try:
            schedule = resolve_schedule(str(trigger.get("schedule") or ""))
        except ScheduleError as exc:
            raise ValueError(f"bad timer schedule: {exc}") from None
        use_monitor = trigger.get("useMonitor")
        if use_monitor is None:  # the real host's default: monitor schedules of a minute or more
            use_monitor = shortest_interval(schedule, utcnow()).total_seconds() >= 60
        monitor = lock = None
        if self._hosts is None:
            log.warning("AzureWebJobsStorage is not set: timer 'Functions.%s' runs without schedule status or "
                        "singleton lock", fn.name)
        else:
            monitor = ScheduleMonitor(self._hosts, self.host_id) if use_monitor else None
            lock = storage.LeaseLock(self._hosts, f"locks/{self.host_id}/{fn.full_name}.Listener",
                                     TIMER_LOCK_LEASE_S)
        return TimerListener(fn, schedule, invoker=self.invoker, run_on_startup=bool(trigger.get("runOnStartup")),
                             monitor=monitor, lock=lock)

    @staticmethod
    def _connection(trigger: dict) -> str:
        connection = trigger.get("connection") or "AzureWebJobsStorage"
        conn = appsettings.connection_string(connection)
        if not conn:
            raise ValueError(f"the connection setting '{connection}' is not set")
        return conn

    def _blob(self, fn: IndexedFunction, trigger: dict, host_json: dict) -> BlobTriggerListener | BlobEventTrigger:
        try:
            pattern = BlobPathPattern.parse(appsettings.resolve(str(trigger.get("path") or "")))
        except (BlobPathError, appsettings.MissingSettingError) as exc:
            raise ValueError(f"bad blob path '{trigger.get('path')}': {exc}") from None
        conn = self._connection(trigger)
        if self._hosts_conn is None:
            raise ValueError("blob triggers need AzureWebJobsStorage for their blob receipts")
        if conn not in self._sources:
            self._sources[conn] = storage.blob_service(conn)
        # Tries come from host.json `extensions.queues.maxDequeueCount` (default 5), the setting Azure uses for
        # poison blobs too; the poison queue lives in the triggering blob's account (SharedBlobQueueListenerFactory.cs
        # in azure-sdk-for-net, GetPoisonQueue). There is no `extensions.blobs.maxDequeueCount` (BlobsOptions.cs).
        if str(trigger.get("source") or "").lower() == "eventgrid":  # BlobTriggerSource.EventGrid: the webhook
            events = BlobEventTrigger(
                fn, pattern, source=self._sources[conn], poison=storage.poison_queue(conn), invoker=self.invoker,
                queue=self._blob_trigger_queue(), parallelism=appsettings.blob_parallelism(host_json))
            self.blob_events[fn.full_name] = events
            events.queue.triggers[fn.full_name] = events
            return events
        return BlobTriggerListener(
            fn, pattern, source=self._sources[conn], hosts=self._hosts,
            poison=storage.poison_queue(conn), invoker=self.invoker, host_id=self.host_id,
            poll_s=appsettings.float_setting("BLOB_TRIGGER_POLL_S", 1.0),
            tries=TryLimit(self.queue_options.max_dequeue_count),
            parallelism=appsettings.blob_parallelism(host_json))

    def _blob_trigger_queue(self) -> BlobTriggerQueue:
        """The host's one blob trigger queue, in AzureWebJobsStorage, started and stopped with the queue triggers."""
        if self._trigger_queue is None:
            queue = storage.encoded_queue(self._hosts_conn, BLOB_TRIGGER_QUEUE_PREFIX + self.host_id)
            self._trigger_queue = BlobTriggerQueue(queue, options=self.queue_options)
            self.queues.append(self._trigger_queue)
        return self._trigger_queue

    def _queue(self, fn: IndexedFunction, trigger: dict) -> QueueTriggerListener:
        try:
            name = queue_name(appsettings.resolve(str(trigger.get("queueName") or "")))
        except (QueueNameError, appsettings.MissingSettingError) as exc:
            raise ValueError(f"bad queue name '{trigger.get('queueName')}': {exc}") from None
        conn = self._connection(trigger)
        return QueueTriggerListener(fn, queue=storage.plain_queue(conn, name),
                                    poison=storage.plain_queue(conn, name + POISON_SUFFIX), invoker=self.invoker,
                                    options=self.queue_options)

    # admin ---------------------------------------------------------------------------------------------------
    def status(self) -> dict:
        enabled = [name for name in self.functions if name not in self.errors]
        return {"id": self.host_id, "state": self._state, "functions": sorted(enabled), "errors": dict(self.errors)}

    async def fire(self, name: str, _input: Any) -> tuple[int, str]:
        # case-insensitive, as the Azure host's GetFunctionOrNull (src/WebJobs.Script/Host/ScriptJobHostExtensions.cs)
        actual = next((n for n in self.functions if n.lower() == name.lower()), None)
        if actual is None:
            return 404, ""
        if actual in self.errors:
            return 404, f"function '{actual}' is disabled: {self.errors[actual]}"
        if actual in self.timers:
            self.timers[actual].fire_now()
            return 202, ""
        trigger = self.functions[actual].trigger_type
        return 400, f"the local host invokes only timerTrigger functions through the admin API, not {trigger}"

    # run -----------------------------------------------------------------------------------------------------
    def request_stop(self) -> None:
        if self._stop is not None:
            self._stop.set()

    def _on_signal(self, signum: int) -> None:
        self._signals += 1
        if self._signals > 1:
            log.warning("Second %s: exiting without waiting", signal.Signals(signum).name)
            logging.shutdown()
            os._exit(1)
        log.info("%s received: stopping the host", signal.Signals(signum).name)
        self.request_stop()

    def _listing(self) -> str:
        base = f"http://{self.config.host}:{self.config.port}"
        lines = []
        for name in sorted(self.functions):
            if name in self.errors:
                continue
            fn = self.functions[name]
            h = next((h for h in self.http if h.fn is fn), None)
            if h is not None:
                methods = ",".join(sorted(h.methods)) if h.methods else "*"
                lines.append(f"  {name}: [{methods}] {h.url(base, self.prefix)}")
            else:
                lines.append(f"  {name}: {fn.trigger_type}")
        return "Functions:\n" + "\n".join(lines) if lines else "No job functions found."

    async def serve(self) -> None:
        if self.invoker is None:
            self.prepare()
        assert self.invoker is not None and self.keys is not None
        loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, self._on_signal, sig)
        timeout = self.config.shutdown_timeout_s
        if timeout is None:
            timeout = appsettings.float_setting("FUNCTIONS_HOST_SHUTDOWN_TIMEOUT_S", 8.0)
        app = HostApp(http_functions=self.http, eventgrid_functions=self.eventgrid, blob_events=self.blob_events,
                      keys=self.keys,
                      invoker=self.invoker, route_prefix=self.prefix, status=self.status, fire=self.fire,
                      body_limit=appsettings.int_setting("FUNCTIONS_REQUEST_BODY_SIZE_LIMIT", BODY_LIMIT))
        server = _Server(uvicorn.Config(app, host=self.config.host, port=self.config.port, log_config=None,
                                        access_log=False, lifespan="off", server_header=False,
                                        # the host is the front end: a caller's X-Forwarded-For is a claim to
                                        # pass on, not the peer address (uvicorn trusts it from 127.0.0.1)
                                        proxy_headers=False, timeout_graceful_shutdown=max(1, int(timeout))))
        self._state = "Running"
        for listener in (*self.timers.values(), *self.blobs, *self.queues):
            listener.start()
        server_task = asyncio.create_task(server.serve())
        while not server.started and not server_task.done():
            await asyncio.sleep(0.02)
        if server_task.done():
            log.error("The HTTP server did not start on %s:%d", self.config.host, self.config.port)
            self.exit_code = 1
            self._stop.set()
        else:
            log.info("Host started (Id=%s, script root %s)\n%s", self.host_id, self.script_root, self._listing())
            stop_task = asyncio.create_task(self._stop.wait())
            await asyncio.wait([server_task, stop_task], return_when=asyncio.FIRST_COMPLETED)
            stop_task.cancel()
        self._state = "Stopping"
        log.info("Stopping the host: no new timer, blob or queue invocations; waiting up to %.0fs for running ones",
                 timeout)
        # One deadline for the whole stop (listeners, HTTP server, running invocations), so a supervisor's
        # kill timeout that is a little longer than FUNCTIONS_HOST_SHUTDOWN_TIMEOUT_S is never reached.
        deadline = loop.time() + timeout
        server.should_exit = True
        listeners = [listener.stop(timeout) for listener in (*self.timers.values(), *self.blobs, *self.queues)]

        async def server_done() -> None:
            with contextlib.suppress(BaseException):
                await server_task

        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*listeners, server_done(), return_exceptions=True), timeout)
        if not await self.invoker.drain(max(0.0, deadline - loop.time())):
            log.warning("%d invocation(s) still running at shutdown", self.invoker.running)
        self.invoker.shutdown()
        self._state = "Stopped"
        log.info("Host stopped")


def run_host(script_root: Path | str, *, host: str = "127.0.0.1", port: int = 7071,
             settings_file: Path | str | None = None, script_file: str | None = None) -> int:
    """Run the host in this process until SIGTERM/SIGINT; returns the exit code (0 after a graceful stop)."""
    configure_logging()
    if host not in ("127.0.0.1", "localhost", "::1"):
        log.warning("Binding %s: the host is reachable beyond this machine", host)
    functions_host = FunctionsHost(HostConfig(Path(script_root), host, port,
                                              Path(settings_file) if settings_file else None, script_file))
    try:
        functions_host.prepare()
    except Exception as exc:
        log.error("Worker failed to index functions: %s", exc,
                  exc_info=not isinstance(exc, FileNotFoundError | ValueError | appsettings.SettingsFileError))
        return 1
    loop = asyncio.new_event_loop()
    storage_threads = ThreadPoolExecutor(thread_name_prefix="storage")  # the listeners' asyncio.to_thread calls
    loop.set_default_executor(storage_threads)
    try:
        loop.run_until_complete(functions_host.serve())
    finally:
        loop.run_until_complete(cancel_remaining(1.0))
        # storage calls still in worker threads get a short grace, not an unbounded join
        stuck = not threads_finished(storage_threads, EXECUTOR_GRACE_S)
        loop.close()
    invoker = functions_host.invoker
    if stuck or (invoker is not None and (invoker.running or invoker.busy_threads)):
        log.warning("Exiting without waiting for threads that are still busy")
        logging.shutdown()
        sys.stdout.flush()
        os._exit(functions_host.exit_code)
    return functions_host.exit_code
