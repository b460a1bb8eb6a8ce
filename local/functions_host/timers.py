"""Timer triggers: schedule status kept in storage like the real host's ScheduleMonitor, past-due detection on
start, no overlapping runs, and a blob-lease singleton so only one host process runs each timer."""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import UTC, datetime

from azure.core.exceptions import ResourceNotFoundError
from azure.functions import meta
from azure.functions.timer import TimerRequestConverter
from azure.storage.blob import ContainerClient

from local.functions_host.invoker import Invoker
from local.functions_host.lifecycle import stop_tasks
from local.functions_host.loader import IndexedFunction
from local.functions_host.log import short_error
from local.functions_host.ncrontab import Schedule
from local.functions_host.storage import LeaseLock, ensure_container

log = logging.getLogger("functions_host")

NEVER = datetime.min.replace(tzinfo=UTC)  # .NET default(DateTime): "has not run yet"
MANUAL_REASON = "This function was programmatically called via the host APIs."


def utcnow() -> datetime:
    return datetime.now(UTC)


def iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat() if value != NEVER else NEVER.isoformat()


def parse_iso(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def timer_request(past_due: bool, status: dict | None):
    """The `func.TimerRequest` the worker builds from the host's TimerInfo JSON."""
    info = {"Schedule": {"AdjustForDST": True}, "ScheduleStatus": status or {}, "IsPastDue": past_due}
    return TimerRequestConverter.decode(meta.Datum(json.dumps(info), "json"), trigger_metadata={})


class ScheduleMonitor:
    """`azure-webjobs-hosts/timers/{hostId}/{functionFullName}/status` holding `{"Last","Next","LastUpdated"}`."""

    def __init__(self, hosts: ContainerClient, host_id: str):
        self.hosts = hosts
        self.host_id = host_id

    def blob_name(self, full_name: str) -> str:
        return f"timers/{self.host_id}/{full_name}/status"

    def get(self, full_name: str) -> dict | None:
        try:
            raw = self.hosts.get_blob_client(self.blob_name(full_name)).download_blob().readall()
        except ResourceNotFoundError:
            return None
        try:
            doc = json.loads(raw)
        except ValueError:
            return None
        return doc if isinstance(doc, dict) else None

    def put(self, full_name: str, status: dict) -> None:
        blob = self.hosts.get_blob_client(self.blob_name(full_name))
        try:
            blob.upload_blob(json.dumps(status).encode(), overwrite=True)
        except ResourceNotFoundError:
            ensure_container(self.hosts)
            blob.upload_blob(json.dumps(status).encode(), overwrite=True)


class TimerListener:
    def __init__(self, fn: IndexedFunction, schedule: Schedule, *, invoker: Invoker, run_on_startup: bool,
                 monitor: ScheduleMonitor | None, lock: LeaseLock | None, lock_renew_s: float = 5.0,
                 lock_retry_s: float = 5.0):
        self.fn = fn
        self.schedule = schedule
        self.invoker = invoker
        self.run_on_startup = run_on_startup
        self.monitor = monitor
        self.lock = lock
        self.lock_renew_s = lock_renew_s
        self.lock_retry_s = lock_retry_s
        self.status: dict | None = None
        self._stopping = False
        self._wake = asyncio.Event()
        self._lost = False
        self._run_lock = asyncio.Lock()
        self._task: asyncio.Task | None = None
        self._manual: set[asyncio.Task] = set()

    # lifecycle -----------------------------------------------------------------------------------------------
    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"timer:{self.fn.name}")

    async def stop(self, timeout: float) -> None:
        self._stopping = True
        self._wake.set()
        await stop_tasks((self._task, *self._manual), timeout)

    def fire_now(self) -> None:
        """Run once now (the admin API); waits for a running occurrence, never overlaps it."""
        task = asyncio.create_task(self._occurrence(utcnow(), past_due=False, manual=True))
        self._manual.add(task)
        task.add_done_callback(self._manual.discard)

    # main loop -----------------------------------------------------------------------------------------------
    async def _run(self) -> None:
        while not self._stopping:
            self._wake.clear()
            self._lost = False
            renewer = None
            if self.lock is not None:
                if not await self._acquire():
                    return
                renewer = asyncio.create_task(self._renew_loop())
            try:
                await self._listen()
            except Exception:
                log.exception("timer listener for 'Functions.%s' failed; restarting it", self.fn.name)
                await self._pause(self.lock_retry_s)
            finally:
                if renewer is not None:
                    renewer.cancel()
                if self.lock is not None:
                    await asyncio.to_thread(self.lock.release)
            if self.lock is None and not self._stopping:
                await self._pause(self.lock_retry_s)

    async def _listen(self) -> None:
        now = utcnow()
        status = await self._read_status()
        due: datetime | None = None
        if status:
            due = parse_iso(status.get("Next"))
            last = parse_iso(status.get("Last"))
            if last is not None and last > NEVER:
                expected = self.schedule.next_after(last)
                if due is None or expected != due:
                    log.info("The schedule of 'Functions.%s' changed; next occurrence %s", self.fn.name, iso(expected))
                    due = expected
        if due is None:
            due = self.schedule.next_after(now)
            self.status = {"Last": iso(NEVER), "Next": iso(due), "LastUpdated": iso(now)}
            await self._write_status()
        else:
            self.status = {"Last": status.get("Last", iso(NEVER)), "Next": iso(due),
                           "LastUpdated": status.get("LastUpdated", iso(now))}
        self._log_occurrences(now)
        pending_past_due = False
        if due < now:
            log.info("Function 'Functions.%s' is past due (its next occurrence was %s)", self.fn.name, iso(due))
            await self._occurrence(now, past_due=True)
            due = self.schedule.next_after(now)
        elif self.run_on_startup:
            await self._occurrence(now, past_due=False)
        while not self._stopping and not self._lost:
            if not await self._sleep_until(due):
                return
            waited = self._run_lock.locked()
            await self._occurrence(due, past_due=pending_past_due or waited)
            following = self.schedule.next_after(due)
            now = utcnow()
            if following <= now:  # an occurrence came while this run was still going: fire it now, past due
                pending_past_due = True
                due = now
            else:
                pending_past_due = False
                due = following

    async def _occurrence(self, occurrence: datetime, *, past_due: bool, manual: bool = False) -> None:
        async with self._run_lock:
            reason = MANUAL_REASON if manual else f"Timer fired at {iso(utcnow())}"
            await self.invoker.invoke(self.fn, timer_request(past_due, self.status), reason=reason)
            if manual:
                return
            self.status = {"Last": iso(occurrence), "Next": iso(self.schedule.next_after(occurrence)),
                           "LastUpdated": iso(utcnow())}
            await self._write_status()

    # helpers -------------------------------------------------------------------------------------------------
    def _log_occurrences(self, now: datetime) -> None:
        upcoming, at = [], now
        for _ in range(5):
            at = self.schedule.next_after(at)
            upcoming.append(iso(at))
        log.info("The next 5 occurrences of the 'Functions.%s' schedule (%s) will be:\n  %s", self.fn.name,
                 self.schedule, "\n  ".join(upcoming))

    async def _read_status(self) -> dict | None:
        if self.monitor is None:
            return None
        try:
            return await asyncio.to_thread(self.monitor.get, self.fn.full_name)
        except Exception as exc:
            log.warning("could not read the schedule status of 'Functions.%s': %s", self.fn.name, short_error(exc))
            return None

    async def _write_status(self) -> None:
        if self.monitor is None or self.status is None:
            return
        try:
            await asyncio.to_thread(self.monitor.put, self.fn.full_name, dict(self.status))
        except Exception as exc:
            log.warning("could not write the schedule status of 'Functions.%s': %s", self.fn.name, short_error(exc))

    async def _sleep_until(self, due: datetime) -> bool:
        while not (self._stopping or self._lost):
            delay = (due - utcnow()).total_seconds()
            if delay <= 0:
                return True
            try:
                await asyncio.wait_for(self._wake.wait(), min(delay, 60.0))
            except TimeoutError:
                continue
        return False

    async def _pause(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self._wake.wait(), seconds)
        except TimeoutError:
            pass

    async def _acquire(self) -> bool:
        assert self.lock is not None
        said_waiting = said_error = False
        while not self._stopping:
            try:
                if await asyncio.to_thread(self.lock.try_acquire):
                    log.info("Acquired the listener lock for 'Functions.%s'", self.fn.name)
                    return True
                if not said_waiting:
                    log.info("Another host holds the listener lock for 'Functions.%s'; waiting", self.fn.name)
                    said_waiting = True
            except Exception as exc:
                if not said_error:
                    log.warning("could not take the listener lock for 'Functions.%s' (%s); retrying", self.fn.name,
                                short_error(exc))
                    said_error = True
            await self._pause(self.lock_retry_s)
        return False

    async def _renew_loop(self) -> None:
        assert self.lock is not None
        last_ok = asyncio.get_running_loop().time()
        while True:
            await asyncio.sleep(self.lock_renew_s)
            try:
                if await asyncio.to_thread(self.lock.renew):
                    last_ok = asyncio.get_running_loop().time()
                    continue
                reason = "taken by another host"
            except Exception as exc:
                if asyncio.get_running_loop().time() - last_ok < self.lock.duration_s - self.lock_renew_s:
                    continue
                reason = short_error(exc)
            log.warning("Lost the listener lock for 'Functions.%s' (%s)", self.fn.name, reason)
            self._lost = True
            self._wake.set()
            return

