"""A UPS watched through Network UPS Tools: a small async client of upsd (TCP 3493).

One persistent connection; a poll is one ``LIST VAR <ups>`` mapped onto the shared
UPS model (``drivers/ups_model.py``). STARTTLS is used when configured and offered,
USERNAME/PASSWORD are sent only when set (only INSTCMD needs them). The last shutdown
step is an instant command through upsd, confirmed by the UPS's own countdown when
the UPS reports one. We write our own client rather than use aionut or nut2:
docs/decisions.md says why.
"""

from __future__ import annotations

import asyncio
import math
import ssl
import time
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from suitemon.drivers import nut_protocol
from suitemon.drivers import ups_model as m
from suitemon.drivers.base import CommError, DeviceTimeout, Driver, DriverError, Reading
from suitemon.drivers.config import DeviceConfig
from suitemon.drivers.nut_protocol import (
    NutError,
    NutFrameError,
    NutStale,
    parse_var,
    quote,
    raise_for_error,
    split_line,
)

COUNTDOWN_CONFIRM_S = 3.0  # upsd relays a driver's timer on its next update (pollinterval)
MAX_VARS = 2000  # a LIST VAR longer than this is not a UPS


class CommandNotConfirmed(DriverError):
    """upsd took the command but the UPS does not show a countdown."""


class Config(DeviceConfig):
    kind: Literal["ups_nut"]
    host: str = "127.0.0.1"
    port: int = Field(3493, ge=1, le=65535)
    ups: str = Field(..., pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$", description="UPS name in upsd")
    username: str | None = Field(None, pattern=r"^[^\s\"\\]{1,64}$")
    password_file: Path | None = Field(None, description="file holding the upsd password (INSTCMD)")
    tls: Literal["off", "when_offered", "required"] = "when_offered"
    ca_file: Path | None = Field(None, description="CA that signed upsd's certificate; default: system CAs")
    poll_s: float = Field(
        2.0, ge=0.05, le=3600
    )  # upsmon's default POLLFREQ is 5 s; NUT drivers update every 2 s
    on_battery_poll_s: float | None = Field(None, ge=0.05, le=3600)
    timeout_s: float = Field(2.0, gt=0, le=60)
    low_runtime_s: float = Field(300, ge=0, description="on battery with this runtime or less: low battery")
    low_charge_pct: float = Field(
        25, ge=0, le=100, description="on battery with this charge or less: low battery"
    )
    shutdown_command: Literal["shutdown.return", "load.off.delay"] = Field(
        "shutdown.return", description="instant command of the last shutdown step"
    )
    mains_min_v: float = Field(
        180,
        ge=0,
        le=500,
        description="during a calibration or self-test, input at or below this is a mains loss",
    )

    @model_validator(mode="after")
    def _checks(self) -> Config:
        if self.password_file is not None and not self.username:
            raise ValueError("password_file needs username")
        if self.on_battery_poll_s is not None and self.on_battery_poll_s > self.poll_s:
            raise ValueError("on_battery_poll_s must not be longer than poll_s (poll faster on battery)")
        return self

    @property
    def battery_poll_s(self) -> float:
        return self.on_battery_poll_s if self.on_battery_poll_s is not None else min(1.0, self.poll_s)


def _number(vars_: dict[str, str], key: str) -> float | None:
    raw = vars_.get(key)
    if raw is None or raw.strip() == "":
        return None
    try:
        value = float(raw)
    except ValueError:
        raise NutFrameError(f"{key} is not a number: {raw!r}") from None
    if not math.isfinite(value):
        raise NutFrameError(f"{key} is not a finite number: {raw!r}")
    return value


def normalise(vars_: dict[str, str], mains_min_v: float = 180.0) -> dict[str, Any]:
    """upsd's variables -> the shared UPS model. Raises CommError while the UPS status is unknown."""
    status = vars_.get("ups.status", "").split()
    if not status or status == ["WAIT"]:
        raise NutStale("upsd has no UPS status yet (ups.status missing or WAIT)")
    flags = set(status)
    test_result = vars_.get("ups.test.result", "").lower()
    self_test = "TEST" in flags or test_result.startswith("in progress")
    calibrating = "CAL" in flags
    on_battery = "OB" in flags
    input_v = _number(vars_, "input.voltage")
    if on_battery and (self_test or calibrating):
        # NUT has no mains-failed flag: during a test only the input voltage tells; unknown counts as lost.
        input_bad = input_v is None or input_v <= mains_min_v
    else:
        input_bad = on_battery
    countdown = _number(vars_, "ups.timer.shutdown")
    return {
        m.ON_BATTERY: on_battery,
        m.ONLINE: "OL" in flags,
        m.BYPASS: "BYPASS" in flags,
        m.INPUT_BAD: input_bad,
        m.CALIBRATING: calibrating,
        m.SELF_TEST: self_test,
        m.OUTPUT_OFF: "OFF" in flags,
        m.SHUTDOWN_IMMINENT: "LB" in flags or "FSD" in flags,
        m.BATTERY_NEEDS_REPLACEMENT: "RB" in flags,
        m.OVERLOAD: "OVER" in flags,
        m.CHARGE_PCT: _number(vars_, "battery.charge"),
        m.RUNTIME_S: _number(vars_, "battery.runtime"),
        m.LOAD_PCT: _number(vars_, "ups.load"),
        m.INPUT_V: input_v,
        m.OUTPUT_V: _number(vars_, "output.voltage"),
        m.OUTLET_COUNTDOWN_S: None if countdown is None else int(countdown),
        "nut_status": " ".join(status),
    }


class NutClient:
    """One upsd connection; requests are serialised (one answer per request, in order)."""

    def __init__(self, host: str, port: int, timeout: float):
        self.host, self.port, self.timeout = host, port, timeout
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.lock = asyncio.Lock()

    async def connect(self, tls: str, ca_file: Path | None) -> bool:
        """Connect; returns whether the link is TLS."""
        try:
            async with asyncio.timeout(self.timeout):
                self.reader, self.writer = await asyncio.open_connection(self.host, self.port, limit=8192)
        except TimeoutError:
            raise DeviceTimeout(
                f"upsd {self.host}:{self.port} did not accept within {self.timeout:g} s"
            ) from None
        except OSError as err:
            raise CommError(f"upsd {self.host}:{self.port}: {err.strerror or err}") from None
        if tls == "off":
            return False
        words = await self.request("STARTTLS", check=False)
        if words[:2] == ["OK", "STARTTLS"]:
            ctx = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
            assert self.writer is not None
            try:
                async with asyncio.timeout(self.timeout):
                    await self.writer.start_tls(ctx, server_hostname=self.host)
            except (ssl.SSLError, OSError, TimeoutError) as err:
                raise CommError(f"upsd {self.host}:{self.port}: TLS handshake failed: {err}") from None
            return True
        if tls == "required":
            raise NutError(" ".join(words[1:]) or "STARTTLS", "STARTTLS (tls = 'required')")
        return False

    async def request(self, line: str, *, check: bool = True) -> list[str]:
        async with self.lock:
            words = await self._send_read(line)
        if check:
            raise_for_error(words, line.split(" ")[0] if line.startswith("PASSWORD") else line)
        return words

    async def _send_read(self, line: str) -> list[str]:
        self._write(line)
        return split_line(await self._readline(line))

    def _write(self, line: str) -> None:
        if self.writer is None:
            raise CommError("upsd link is closed")
        self.writer.write(line.encode() + b"\n")

    async def _readline(self, what: str) -> bytes:
        if self.reader is None:
            raise CommError("upsd link is closed")
        try:
            async with asyncio.timeout(self.timeout):
                raw = await self.reader.readline()
        except TimeoutError:
            raise DeviceTimeout(
                f"upsd did not answer {what.split(' ')[0]} within {self.timeout:g} s"
            ) from None
        except ValueError:  # the stream's limit: a line without end
            raise NutFrameError("upsd answer line exceeds 8 KiB") from None
        except OSError as err:
            raise CommError(f"upsd link broke: {err}") from None
        if not raw.endswith(b"\n"):
            raise CommError("upsd closed the connection")
        return raw

    async def list_vars(self, ups: str) -> dict[str, str]:
        request = f"LIST VAR {ups}"
        async with self.lock:
            words = await self._send_read(request)
            raise_for_error(words, request)
            if words != ["BEGIN", "LIST", "VAR", ups]:
                raise NutFrameError(f"expected BEGIN LIST VAR {ups}, got {' '.join(words)!r}")
            out: dict[str, str] = {}
            while True:
                words = split_line(await self._readline(request))
                if words == ["END", "LIST", "VAR", ups]:
                    return out
                key, value = parse_var(words, ups)
                out[key] = value
                if len(out) > MAX_VARS:
                    raise NutFrameError(f"LIST VAR {ups} runs past {MAX_VARS} variables")

    async def close(self) -> None:
        writer, self.writer, self.reader = self.writer, None, None
        if writer is not None:
            writer.close()
            try:
                await asyncio.wait_for(writer.wait_closed(), 1.0)
            except (OSError, TimeoutError, ssl.SSLError):
                pass


class NutUpsDriver(Driver):
    config: Config

    def __init__(self, device_id: str, config: Config):
        super().__init__(device_id, config)
        self.client: NutClient | None = None
        self.on_battery = False
        self.tls = False

    @property
    def poll_deadline(self) -> float:
        return 2 * self.config.timeout_s + 1.0

    def poll_interval(self) -> float:
        return self.config.battery_poll_s if self.on_battery else self.config.poll_s

    async def _open(self) -> None:
        c = self.config
        client = NutClient(c.host, c.port, c.timeout_s)
        try:
            self.tls = await client.connect(c.tls, c.ca_file)
            if c.username:
                await client.request(f"USERNAME {c.username}")
            if c.password_file is not None:
                password = c.password_file.read_text().strip()
                await client.request(f"PASSWORD {quote(password)}")
        except BaseException:
            await client.close()
            raise
        self.client = client

    async def poll(self) -> Reading:
        client = self.client
        if client is None:
            raise DriverError("poll() before open()")
        try:
            vars_ = await client.list_vars(self.config.ups)
        except NutStale:
            raise  # upsd answered in step; only its UPS is silent
        except CommError:
            # A half-read LIST leaves the answer stream out of step: start over on the next poll.
            await self.close()
            raise
        values = normalise(vars_, self.config.mains_min_v)
        m.check(values)
        self.on_battery = bool(values[m.ON_BATTERY])
        return Reading(self.device_id, values, meta={"tls": self.tls})

    async def command(self, name: str, **args: Any) -> Any:
        if name == "shutdown_return":
            return await self._shutdown_return(**args)
        if name == "cancel":
            return await self._instcmd("shutdown.stop")
        return await super().command(name, **args)

    async def _ready(self) -> NutClient:
        if not self.config.username or self.config.password_file is None:
            raise DriverError(
                f"{self.device_id}: INSTCMD needs username and password_file (an upsd user "
                "with instcmds for this UPS)"
            )
        if not self.is_open or self.client is None:
            await self.open()
        assert self.client is not None
        return self.client

    async def _instcmd(self, cmd: str, value: str | None = None) -> dict[str, Any]:
        client = await self._ready()
        # upsd's plain OK only says it passed the command on; with TRACKING (NUT >= 2.8) it tells
        # whether the UPS driver carried it out.
        tracking = (await client.request("SET TRACKING ON", check=False))[0] == "OK"
        line = f"INSTCMD {self.config.ups} {nut_protocol.name(cmd, 'command')}" + (
            f" {quote(value)}" if value else ""
        )
        words = await client.request(line)
        if words[0] != "OK":
            raise NutFrameError(f"unexpected answer to INSTCMD {cmd}: {' '.join(words)!r}")
        result = "unknown"
        if tracking and words[1:2] == ["TRACKING"] and len(words) == 3:
            result = await self._tracking(client, words[2], cmd)
        return {"command": cmd, "answer": " ".join(words), "tracking": result}

    async def _tracking(self, client: NutClient, ident: str, cmd: str) -> str:
        deadline = time.monotonic() + COUNTDOWN_CONFIRM_S
        while True:
            words = await client.request(f"GET TRACKING {quote(ident)}")
            if words[0] == "SUCCESS":
                return "success"
            if words[0] == "FAILED":
                raise CommandNotConfirmed(f"the UPS driver reports INSTCMD {cmd} FAILED")
            if time.monotonic() > deadline:
                return "pending"
            await asyncio.sleep(0.2)

    async def _shutdown_return(
        self, delay_s: int | None = None, groups: dict[str, int] | None = None
    ) -> dict[str, Any]:
        if groups is not None:
            # NUT names outlets outlet.N; the sequencer's outlet groups are APC's. Only the whole UPS here.
            if delay_s is not None or set(groups) != {"main_group"}:
                raise DriverError(
                    f"{self.device_id}: a NUT UPS is commanded as a whole (main_group); "
                    f"outlet groups {sorted(groups)} are not supported"
                )
            delay_s = groups["main_group"]
        if not isinstance(delay_s, int) or isinstance(delay_s, bool) or not 1 <= delay_s <= 32767:
            raise DriverError(f"shutdown delay must be 1..32767 s, not {delay_s!r}")
        cmd = self.config.shutdown_command
        if cmd == "load.off.delay":
            done = await self._instcmd(cmd, str(delay_s))
        else:
            # shutdown.return takes its delay from ups.delay.shutdown where the UPS has one.
            await self._set_delay(delay_s)
            done = await self._instcmd(cmd)
        countdown = await self._await_countdown(delay_s)
        if countdown is None and done["tracking"] != "success":
            raise CommandNotConfirmed(
                f"upsd took {cmd} but neither a command tracking result nor ups.timer.shutdown confirms it"
            )
        return {**done, "delay_s": delay_s, "countdown_s": countdown}

    async def _set_delay(self, delay_s: int) -> None:
        client = await self._ready()
        vars_ = await client.list_vars(self.config.ups)
        if "ups.delay.shutdown" in vars_:
            await client.request(f"SET VAR {self.config.ups} ups.delay.shutdown {quote(str(delay_s))}")

    async def _await_countdown(self, delay_s: int) -> int | None:
        """The UPS's countdown once it shows; None when this UPS reports no timer at all."""
        assert self.client is not None
        deadline = time.monotonic() + COUNTDOWN_CONFIRM_S
        while True:
            vars_ = await self.client.list_vars(self.config.ups)
            if "ups.timer.shutdown" not in vars_:
                return None
            value = _number(vars_, "ups.timer.shutdown")
            if value is not None and 0 <= value <= delay_s:
                return int(value)
            if time.monotonic() > deadline:
                raise CommandNotConfirmed(
                    f"ups.timer.shutdown reads {value} after the command: not confirmed"
                )
            await asyncio.sleep(0.2)

    async def _close(self) -> None:
        client, self.client = self.client, None
        if client is not None:
            await client.close()
