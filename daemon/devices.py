"""Device runners: poll on schedule, turn failures into staleness and comm-lost alarms.

A poll either commits a complete reading or counts as a failure (no half-fresh
data). ``comm_loss_after`` consecutive failures raise the technical alarm; the
first good poll clears it. A separate watch (``check_ages``) runs even when a
driver is stuck inside a call: a value past its age is published as stale, and
silence longer than the comm-loss bound raises the alarm anyway.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import structlog

from suitemon.daemon.alarms import Condition, iso
from suitemon.daemon.context import Context
from suitemon.daemon.rules import Rules
from suitemon.drivers.base import Driver, DriverError, Reading
from suitemon.drivers.config import DeviceConfig

log = structlog.get_logger("suitemon.devices")

STATE_HEARTBEAT_S = 5.0


class DeviceRunner:
    def __init__(self, device_id: str, cfg: DeviceConfig, driver: Driver, rules: Rules, ctx: Context):
        self.device_id = device_id
        self.cfg = cfg
        self.driver = driver
        self.rules = rules
        self.ctx = ctx
        self.started = time.monotonic()
        self.last_ok: float | None = None
        self.last_progress = time.monotonic()
        self.reading: Reading | None = None
        self.failures = 0
        # A comm-lost alarm restored from the journal (open at a crash) belongs to this runner:
        # start "lost" so the first good poll clears it instead of leaving it open for ever.
        self.comm_lost = f"{device_id}.comm_lost" in ctx.engine.alarms
        self.last_error: str | None = None
        self.polls = 0
        self.late_polls = 0
        self.poll_cpu_s = 0.0
        self._published: tuple[object, ...] | None = None
        self._published_at = 0.0
        self.task: asyncio.Task[None] | None = None
        rules.bind(driver)

    # -- the loop --------------------------------------------------------
    def poll_period(self) -> float:
        # A driver may be any object with the Driver methods the runner calls (tests use small fakes).
        interval: Callable[[], float] | None = getattr(self.driver, "poll_interval", None)
        return interval() if interval is not None else self.cfg.poll_s

    async def run(self) -> None:
        next_due = time.monotonic()
        while True:
            # A poll that starts more than a period late means the loop or a shared line held it up:
            # counted, so a starved device is visible in status (and in the fault-matrix tests).
            lateness = time.monotonic() - next_due
            if lateness > self.poll_period():
                self.late_polls += 1
                self.ctx.metrics.inc(f"device.{self.device_id}.late_polls")
            await self.poll_once()
            self.last_progress = time.monotonic()
            # Asked after every poll: the reading just taken may change the pace (on battery).
            next_due += self.poll_period()
            now = time.monotonic()
            if next_due < now:  # overran: start again from now rather than bursting
                next_due = now
            await asyncio.sleep(next_due - now)

    @property
    def poll_deadline(self) -> float:
        return self.driver.poll_deadline

    async def poll_once(self) -> None:
        cpu0 = time.thread_time()
        try:
            # asyncio.timeout, not wait_for: wait_for wraps the poll in a new Task every
            # cycle, about 0.1 ms of CPU a poll that a 50 ms poller cannot afford.
            if not self.driver.is_open:
                async with asyncio.timeout(self.poll_deadline):
                    await self.driver.open()
            async with asyncio.timeout(self.poll_deadline):
                reading = await self.driver.poll()
        except asyncio.CancelledError:
            raise
        except (TimeoutError, DriverError, OSError) as err:
            self._failed(err)
            if isinstance(err, (asyncio.TimeoutError, OSError)) and self.driver.is_open:
                # A stuck or broken link is reopened from scratch on the next poll. Closed here, not
                # in a task of its own: a late close would shut the link the next open (or a
                # command) just made, and would outlive the runner at stop.
                await self._reset_driver()
        except Exception as err:  # a driver bug is a failed poll, loudly, not a dead runner
            log.exception("driver raised an unexpected error", device=self.device_id)
            self._failed(err)
        else:
            self._succeeded(reading)
        self.polls += 1
        self.poll_cpu_s += time.thread_time() - cpu0

    def _failed(self, err: BaseException) -> None:
        self.failures += 1
        self.ctx.metrics.inc(f"device.{self.device_id}.poll_failures")
        text = f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
        if self.failures == 1:
            log.error("device poll failed", device=self.device_id, error=text)
        else:
            log.debug("device poll failed again", device=self.device_id, error=text, failures=self.failures)
        self.last_error = text
        if self.failures >= self.cfg.comm_loss_after:
            self._set_comm_lost(True, f"{self.failures} polls failed in a row ({text})")
        self.publish_state()

    async def _reset_driver(self) -> None:
        try:
            async with asyncio.timeout(self.poll_deadline):
                await self.driver.close()
        except Exception as err:  # TimeoutError included: the next open starts from scratch anyway
            log.warning("driver close failed", device=self.device_id, error=repr(err))

    def _succeeded(self, reading: Reading) -> None:
        if self.failures:
            log.info("device answering again", device=self.device_id, after_failures=self.failures)
        self.failures = 0
        self.last_ok = reading.mono
        self.reading = reading
        self.last_error = None
        if self.comm_lost:
            self._set_comm_lost(False, "answering again")
        try:
            self.ctx.engine.apply_all(self.rules.on_reading(reading))
            # Outputs follow the alarms (lamps): rules derive them, the driver writes them next poll.
            desired = self.rules.outputs()
            if desired is not None:
                self.driver.set_outputs(desired)
        except Exception:
            log.exception("rules failed on a reading", device=self.device_id)
            self.ctx.metrics.inc(f"device.{self.device_id}.rule_errors")
        self.publish_state()

    # -- comm loss -------------------------------------------------------
    def _set_comm_lost(self, present: bool, why: str) -> None:
        if present == self.comm_lost:
            return
        self.comm_lost = present
        name = self.cfg.name or self.device_id
        default = Condition(
            alarm_id=f"{self.device_id}.comm_lost",
            type="device.comm_lost",
            present=present,
            priority=self.cfg.comm_loss_priority,
            kind="technical",
            source=self.device_id,
            location=self.cfg.location,
            message=f"{name}: communication lost; its values are not being monitored",
            details={
                "why": why,
                "last_ok": iso(time.time() - (time.monotonic() - self.last_ok)) if self.last_ok else None,
            },
        )
        self.ctx.engine.apply_all(self.rules.comm_lost(present, default))

    # -- state -----------------------------------------------------------
    def age(self, now: float | None = None) -> float | None:
        if self.last_ok is None:
            return None
        return (now or time.monotonic()) - self.last_ok

    def stale(self, now: float | None = None) -> bool:
        a = self.age(now)
        return a is None or a > self.cfg.stale_after or self.comm_lost

    def check_ages(self, now: float) -> None:
        """Called by the watch: stale flips and silent-but-stuck devices."""
        since = self.last_ok if self.last_ok is not None else self.started
        bound = self.cfg.comm_loss_after * self.cfg.poll_s + self.poll_deadline
        if not self.comm_lost and now - since > bound:
            self._set_comm_lost(True, f"no good poll for {now - since:.1f} s")
        self.publish_state(now)

    def state_payload(self, now: float | None = None) -> dict[str, Any]:
        now = now or time.monotonic()
        r = self.reading
        stale = self.stale(now)
        age = self.age(now)
        payload = {
            "device_id": self.device_id,
            "kind": self.cfg.kind,
            "name": self.cfg.name,
            "location": self.cfg.location,
            "ts": iso(r.at) if r else None,
            "published_at": iso(time.time()),
            "age_s": round(age, 3) if r and age is not None else None,
            "stale": stale,
            "comm": "lost" if self.comm_lost else ("ok" if r else "connecting"),
            "values": dict(r.values) if r else {},
            "last_error": self.last_error,
        }
        try:
            payload.update(self.rules.state(r))
        except Exception:
            log.exception("rules failed to describe state", device=self.device_id)
        return payload

    def publish_state(self, now: float | None = None) -> None:
        now = now or time.monotonic()
        r = self.reading
        key = (r.mono if r else None, self.stale(now), self.comm_lost, self.last_error is None)
        if key == self._published and now - self._published_at < STATE_HEARTBEAT_S:
            return
        # Only a real change or the heartbeat publishes: a 50 ms poll must not flood displays.
        if (
            self._published is not None
            and key[1:] == self._published[1:]
            and now - self._published_at < min(STATE_HEARTBEAT_S, max(1.0, self.cfg.poll_s))
            and r is not None
            and self._same_values(r)
        ):
            return
        self._published, self._published_at = key, now
        self._last_values = dict(r.values) if r else None
        self.ctx.publish_json(
            self.ctx.topics.device_state(self.device_id), self.state_payload(now), retain=True
        )

    def _same_values(self, r: Reading) -> bool:
        return getattr(self, "_last_values", None) == dict(r.values)


async def watch_ages(runners: dict[str, DeviceRunner], period: float = 0.25) -> None:
    while True:
        await asyncio.sleep(period)
        now = time.monotonic()
        for runner in runners.values():
            try:
                runner.check_ages(now)
            except Exception:
                log.exception("age check failed", device=runner.device_id)
