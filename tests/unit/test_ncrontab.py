"""Timer schedules: six-field NCRONTAB, TimeSpan, %SETTING% references, and what the real host rejects."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from local.functions_host.ncrontab import (
    CronSchedule,
    ScheduleError,
    TimeSpanSchedule,
    parse_schedule,
    resolve_schedule,
    shortest_interval,
    time_zone,
)

T0 = datetime(2024, 1, 1, 0, 0, 0, tzinfo=UTC)  # a Monday


def occurrences(schedule, start=T0, n=3):
    out, at = [], start
    for _ in range(n):
        at = schedule.next_after(at)
        out.append(at)
    return out


def test_six_fields_start_with_seconds():
    s = parse_schedule("*/15 * * * * *")
    assert isinstance(s, CronSchedule)
    assert occurrences(s) == [T0 + timedelta(seconds=15), T0 + timedelta(seconds=30), T0 + timedelta(seconds=45)]


def test_every_five_minutes_and_hourly():
    assert occurrences(parse_schedule("0 */5 * * * *"), n=2) == [T0 + timedelta(minutes=5), T0 + timedelta(minutes=10)]
    assert parse_schedule("0 0 * * * *").next_after(T0 + timedelta(seconds=1)) == T0 + timedelta(hours=1)


def test_next_is_strictly_after_and_ignores_sub_second_offsets():
    s = parse_schedule("* * * * * *")
    assert s.next_after(T0) == T0 + timedelta(seconds=1)
    assert s.next_after(T0 + timedelta(milliseconds=400)) == T0 + timedelta(seconds=1)


def test_weekday_names_and_ranges():
    s = parse_schedule("0 30 9 * * MON-FRI")
    friday = datetime(2024, 1, 5, 10, 0, tzinfo=UTC)
    assert s.next_after(friday) == datetime(2024, 1, 8, 9, 30, tzinfo=UTC)  # skips the weekend


def test_day_and_day_of_week_must_both_match():
    # NCRONTAB: "0 0 0 13 * FRI" is Friday the 13th, not "every 13th and every Friday" as in classic cron
    assert parse_schedule("0 0 0 13 * FRI").next_after(T0) == datetime(2024, 9, 13, tzinfo=UTC)


def test_five_field_cron_is_rejected_with_a_hint():
    with pytest.raises(ScheduleError, match=r"has 5 fields; an NCRONTAB expression needs 6.*prefix it with '0 '"):
        parse_schedule("*/5 * * * *")


@pytest.mark.parametrize("expression", ["0 0 0 * * * 2025", "0 0 0 L * *", "0 0 0 * * 1#2", "0 0 0 ? * *",
                                        "61 * * * * *", "0 0 25 * * *", "0 0 0 30 2 *", "x * * * * *", ""])
def test_invalid_expressions(expression):
    with pytest.raises(ScheduleError):
        parse_schedule(expression)


def test_timespan():
    s = parse_schedule("00:05:00")
    assert isinstance(s, TimeSpanSchedule) and s.interval == timedelta(minutes=5)
    assert s.next_after(T0) == T0 + timedelta(minutes=5)
    assert parse_schedule("1.02:00:30").interval == timedelta(days=1, hours=2, seconds=30)


@pytest.mark.parametrize("expression", ["00:00:00", "24:00:00", "00:60:00", "1:2"])
def test_invalid_timespans(expression):
    with pytest.raises(ScheduleError):
        parse_schedule(expression)


def test_schedule_from_an_app_setting():
    s = resolve_schedule("%DRIFT_SCHEDULE%", {"DRIFT_SCHEDULE": "0 0 * * * *"})
    assert s == CronSchedule("0 0 * * * *")


def test_missing_app_setting_names_it():
    with pytest.raises(ScheduleError, match="needs app setting 'DRIFT_SCHEDULE', which is not set"):
        resolve_schedule("%DRIFT_SCHEDULE%", {})


def test_setting_holding_a_five_field_expression_is_rejected():
    with pytest.raises(ScheduleError, match="5 fields"):
        resolve_schedule("%S%", {"S": "0 * * * *"})


def test_website_time_zone():
    s = resolve_schedule("0 0 9 * * *", {"WEBSITE_TIME_ZONE": "Europe/Berlin"})
    assert s.next_after(T0) == datetime(2024, 1, 1, 8, 0, tzinfo=UTC)  # 09:00 CET
    assert time_zone({}) is UTC
    with pytest.raises(ScheduleError, match="not a known IANA time zone"):
        time_zone({"WEBSITE_TIME_ZONE": "Not/AZone"})


def test_shortest_interval_decides_the_default_monitoring():
    assert shortest_interval(parse_schedule("* * * * * *"), T0) == timedelta(seconds=1)
    assert shortest_interval(parse_schedule("0 0 * * * *"), T0) == timedelta(hours=1)
    assert shortest_interval(parse_schedule("00:00:30"), T0) == timedelta(seconds=30)
