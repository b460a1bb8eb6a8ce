"""Timer schedules as the Functions host reads them: six-field NCRONTAB
(`{second} {minute} {hour} {day} {month} {day-of-week}`) or a TimeSpan (`hh:mm:ss`, `d.hh:mm:ss`).

NCRONTAB differs from classic cron in two ways that matter here: it has a seconds field, and when both day and
day-of-week are restricted an occurrence must match both (croniter's `day_or=False`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from local.functions_host.appsettings import MissingSettingError, resolve

FIELDS = "{second} {minute} {hour} {day} {month} {day-of-week}"
_NUMERIC_FIELD = re.compile(r"^[\d*,/-]+$")
_NAMED_FIELD = re.compile(r"^(?:[\d*,/-]|[A-Za-z]{3})+$")
_TIMESPAN = re.compile(r"^(?:(\d+)\.)?(\d{1,2}):(\d{1,2}):(\d{1,2})$")


class ScheduleError(ValueError):
    pass


@dataclass(frozen=True)
class CronSchedule:
    expression: str
    tz: tzinfo = UTC

    def next_after(self, after: datetime) -> datetime:
        """The first occurrence strictly after `after` (aware), in UTC."""
        start = after.astimezone(self.tz)
        nxt = croniter(self.expression, start, second_at_beginning=True, day_or=False).get_next(datetime)
        return nxt.astimezone(UTC)

    def __str__(self) -> str:
        return f"Cron: '{self.expression}'"


@dataclass(frozen=True)
class TimeSpanSchedule:
    interval: timedelta

    def next_after(self, after: datetime) -> datetime:
        return after.astimezone(UTC) + self.interval

    def __str__(self) -> str:
        return f"Constant: {self.interval}"


Schedule = CronSchedule | TimeSpanSchedule


def time_zone(environ: Mapping[str, str] | None = None) -> tzinfo:
    """`WEBSITE_TIME_ZONE` (an IANA name, as on Linux plans) or UTC."""
    env = os.environ if environ is None else environ
    name = (env.get("WEBSITE_TIME_ZONE") or "").strip()
    if not name or name.upper() == "UTC":
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ScheduleError(f"WEBSITE_TIME_ZONE '{name}' is not a known IANA time zone") from None


def parse_schedule(expression: str, tz: tzinfo = UTC) -> Schedule:
    text = expression.strip()
    if not text:
        raise ScheduleError("the schedule is empty")
    m = _TIMESPAN.match(text)
    if m:
        days, hours, minutes, seconds = (int(g) if g else 0 for g in m.groups())
        if hours > 23 or minutes > 59 or seconds > 59:
            raise ScheduleError(f"'{text}' is not a valid TimeSpan (hh:mm:ss)")
        interval = timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)
        if interval <= timedelta(0):
            raise ScheduleError(f"the TimeSpan schedule '{text}' must be longer than zero")
        return TimeSpanSchedule(interval)
    fields = text.split()
    if len(fields) != 6:
        hint = " (a 5-field cron expression has no seconds field; prefix it with '0 ')" if len(fields) == 5 else ""
        raise ScheduleError(f"'{text}' has {len(fields)} fields; an NCRONTAB expression needs 6: {FIELDS}{hint}")
    for index, value in enumerate(fields):
        allowed = _NAMED_FIELD if index >= 4 else _NUMERIC_FIELD
        if not allowed.match(value):
            raise ScheduleError(f"'{value}' is not a valid value for {FIELDS.split()[index]} in '{text}'")
    try:
        croniter(text, datetime(2000, 1, 1, tzinfo=UTC), second_at_beginning=True, day_or=False).get_next(datetime)
    except Exception as exc:  # croniter raises several types (bad range, no match within years, ...)
        raise ScheduleError(f"'{text}' is not a valid NCRONTAB expression: {exc}") from None
    return CronSchedule(text, tz)


def resolve_schedule(raw: str, environ: Mapping[str, str] | None = None) -> Schedule:
    """A binding's `schedule`, with `%NAME%` read from app settings, parsed."""
    try:
        text = resolve(raw, environ)
    except MissingSettingError as exc:
        raise ScheduleError(f"the schedule '{raw}' needs app setting '{exc.name}', which is not set") from None
    return parse_schedule(text, time_zone(environ))


def shortest_interval(schedule: Schedule, now: datetime) -> timedelta:
    """The gap between the next two occurrences (the real host monitors schedules of a minute or more)."""
    if isinstance(schedule, TimeSpanSchedule):
        return schedule.interval
    first = schedule.next_after(now)
    return schedule.next_after(first) - first
