"""The reporting period: whole local days of the site, held as UTC instants."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import cached_property
from zoneinfo import ZoneInfo


class PeriodError(ValueError):
    pass


@dataclass(frozen=True)
class Period:
    first_day: date  # local, inclusive
    last_day: date  # local, inclusive
    tz: ZoneInfo

    @cached_property
    def start(self) -> datetime:
        return datetime.combine(self.first_day, time(0), self.tz).astimezone(UTC)

    @cached_property
    def end(self) -> datetime:
        return datetime.combine(self.last_day + timedelta(days=1), time(0), self.tz).astimezone(UTC)

    @cached_property
    def start_ts(self) -> float:
        return self.start.timestamp()

    @cached_property
    def end_ts(self) -> float:
        return self.end.timestamp()

    @property
    def seconds(self) -> float:
        return self.end_ts - self.start_ts

    def days(self) -> list[date]:
        n = (self.last_day - self.first_day).days + 1
        return [self.first_day + timedelta(days=i) for i in range(n)]

    def local_day(self, t: float) -> date:
        return datetime.fromtimestamp(t, self.tz).date()

    def iso_week(self, t: float) -> tuple[int, int]:
        y, w, _ = datetime.fromtimestamp(t, self.tz).isocalendar()
        return y, w

    def weeks(self) -> list[tuple[int, int]]:
        """The ISO weeks the period touches, in order (a partial week counts: a test is due in it)."""
        out: list[tuple[int, int]] = []
        for d in self.days():
            y, w, _ = d.isocalendar()
            if (y, w) not in out:
                out.append((y, w))
        return out

    def label(self) -> str:
        return f"{self.first_day.isoformat()} to {self.last_day.isoformat()} ({self.tz.key})"


def parse_period(first: str, last: str, tz_name: str) -> Period:
    """``--from``/``--to`` as local dates (YYYY-MM-DD), both days included."""
    try:
        tz = ZoneInfo(tz_name)
    except Exception as err:
        raise PeriodError(f"unknown site timezone {tz_name!r}: {err}") from err
    try:
        a, b = date.fromisoformat(first), date.fromisoformat(last)
    except ValueError as err:
        raise PeriodError(f"dates are YYYY-MM-DD: {err}") from err
    if b < a:
        raise PeriodError(f"--to {b} is before --from {a}")
    return Period(a, b, tz)


def previous_month(tz_name: str, today: date | None = None) -> Period:
    """The last whole calendar month before today's (site time): what a monthly timer reports."""
    try:
        tz = ZoneInfo(tz_name)
    except Exception as err:
        raise PeriodError(f"unknown site timezone {tz_name!r}: {err}") from err
    today = today or datetime.now(tz).date()
    last = today.replace(day=1) - timedelta(days=1)
    return Period(last.replace(day=1), last, tz)
