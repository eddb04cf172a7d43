"""A UPS watched over SNMP: RFC 1628 UPS-MIB, v2c through the project's own small codec
(drivers/snmp_v2c.py, for CPU: issue 16), v3 authPriv through pysnmp's asyncio API.

A poll is one GET of the scalars the shared UPS model needs, plus a walk of the alarm
table when the UPS says alarms are present. A missing value (noSuchObject/Instance) is
``None``; a missing output source or battery status is no reading at all. The last
shutdown step is the standard MIB's shutdown-with-return (upsAutoRestart on, then
upsShutdownAfterDelay), or APC PowerNet's upsBasicControlConserveBattery where the
site asks for it (``vendor = "apc"``), confirmed by reading the countdown back.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from suitemon.drivers import ups_model as m
from suitemon.drivers.base import (
    CommError,
    DeviceException,
    DeviceTimeout,
    Driver,
    DriverError,
    FrameError,
    Reading,
)
from suitemon.drivers.config import DeviceConfig
from suitemon.drivers.snmp_v2c import V2cClient

UPS = "1.3.6.1.2.1.33.1."
OID = {
    "battery_status": UPS + "2.1.0",  # 1 unknown 2 normal 3 low 4 depleted
    "seconds_on_battery": UPS + "2.2.0",
    "minutes_remaining": UPS + "2.3.0",
    "charge_pct": UPS + "2.4.0",
    "input_v": UPS + "3.3.1.3.1",  # upsInputVoltage, line 1
    "output_source": UPS + "4.1.0",  # 1 other 2 none 3 normal 4 bypass 5 battery 6 booster 7 reducer
    "output_v": UPS + "4.4.1.2.1",  # upsOutputVoltage, line 1
    "load_pct": UPS + "4.4.1.5.1",  # upsOutputPercentLoad, line 1
    "alarms_present": UPS + "6.1.0",
    "test_summary": UPS + "7.3.0",  # 5 inProgress
    "test_id": UPS + "7.1.0",  # OID of the test run: upsTestDeepBatteryCalibration = calibration
    "shutdown_after_delay": UPS + "8.2.0",  # -1: no countdown
}
AUTO_RESTART = UPS + "8.5.0"  # 1 on, 2 off
ALARM_DESCR = UPS + "6.2.1.2"  # upsAlarmDescr column: values are well-known alarm OIDs
ALARMS = {
    1: "battery_bad",
    2: "on_battery",
    3: "low_battery",
    4: "depleted_battery",
    6: "input_bad",
    8: "overload",
    9: "on_bypass",
    14: "output_off",
    15: "system_off",
    18: "general_fault",
    22: "shutdown_pending",
    23: "shutdown_imminent",
    24: "test_in_progress",
}
APC_CONSERVE_BATTERY = (
    "1.3.6.1.4.1.318.1.1.1.6.1.1.0"  # PowerNet upsBasicControlConserveBattery: 2 = off, return on mains
)
APC_OUTPUT_STATUS = "1.3.6.1.4.1.318.1.1.1.4.1.1.0"  # PowerNet upsBasicOutputStatus
APC_SLEEPING = {5, 11}  # timedSleeping, sleepingUntilPowerReturn
REQUIRED = ("battery_status", "output_source")
CALIBRATION_TEST = UPS + "7.7.5"  # upsTestDeepBatteryCalibration (RFC 1628 upsWellKnownTests)
MAX_ALARM_ROWS = 64  # a UPS has a couple of dozen well-known alarms; more is a looping agent
COUNTDOWN_CONFIRM_S = 2.0  # an agent relays the UPS's countdown on its next update
# PowerNet sleeps after the UPS's own shutoff delay (upsAdvConfigShutoffDelay), not at once: the
# status is read until it says sleeping, this long at most (docs/decisions.md).
APC_SLEEP_CONFIRM_S = 5.0


class CommandNotConfirmed(DriverError):
    """The agent took the SET but the UPS shows no countdown."""


class Config(DeviceConfig):
    kind: Literal["ups_snmp"]
    host: str = "127.0.0.1"
    port: int = Field(161, ge=1, le=65535)
    version: Literal["2c", "3"] = "3"
    community: str | None = Field(
        None, min_length=1, max_length=64, description="v2c only (read-only community)"
    )
    user: str | None = Field(None, min_length=1, max_length=32, description="v3 USM user (authPriv)")
    auth_protocol: Literal["SHA", "SHA256", "SHA512"] = "SHA"
    auth_password_file: Path | None = None
    priv_protocol: Literal["AES", "AES256"] = "AES"
    priv_password_file: Path | None = None
    vendor: Literal["none", "apc"] = Field("none", description="vendor MIB used for shutdown-with-return")
    poll_s: float = Field(2.0, ge=0.05, le=3600)
    on_battery_poll_s: float | None = Field(None, ge=0.05, le=3600)
    timeout_s: float = Field(1.0, gt=0, le=60)
    low_runtime_s: float = Field(300, ge=0, description="on battery with this runtime or less: low battery")
    low_charge_pct: float = Field(
        25, ge=0, le=100, description="on battery with this charge or less: low battery"
    )
    mains_min_v: float = Field(
        180, ge=0, le=500, description="during a test, input at or below this is a mains loss"
    )

    @model_validator(mode="after")
    def _credentials(self) -> Config:
        if self.version == "2c":
            if not self.community or self.user:
                raise ValueError("version '2c' needs community (and no user)")
        elif not (self.user and self.auth_password_file and self.priv_password_file) or self.community:
            raise ValueError(
                "version '3' needs user, auth_password_file and priv_password_file "
                "(authPriv only), and no community"
            )
        if self.on_battery_poll_s is not None and self.on_battery_poll_s > self.poll_s:
            raise ValueError("on_battery_poll_s must not be longer than poll_s (poll faster on battery)")
        return self

    @property
    def battery_poll_s(self) -> float:
        return self.on_battery_poll_s if self.on_battery_poll_s is not None else min(1.0, self.poll_s)


def number(raw: Mapping[str, int | str | None], key: str) -> int | None:
    """An integer-valued object of ``raw`` (None: not reported). An OBJECT IDENTIFIER where the MIB
    has a number is a malformed answer: refused, never compared as if it were one."""
    value = raw.get(key)
    if isinstance(value, str):
        raise FrameError(f"UPS-MIB {key} is an OBJECT IDENTIFIER ({value}), not a number")
    return value


def normalise(
    raw: Mapping[str, int | str | None], alarms: set[str], mains_min_v: float = 180.0
) -> dict[str, Any]:
    """UPS-MIB values (None: the agent has no such object) -> the shared UPS model."""
    missing = [k for k in REQUIRED if raw.get(k) is None]
    if missing:
        raise m.IncompleteReading(f"UPS-MIB agent does not report {', '.join(missing)}")
    source, battery = number(raw, "output_source"), number(raw, "battery_status")
    on_battery = source == 5
    testing = number(raw, "test_summary") == 5 or "test_in_progress" in alarms
    calibrating = testing and str(raw.get("test_id") or "").strip(".") == CALIBRATION_TEST
    input_v = number(raw, "input_v")
    if "input_bad" in alarms:
        input_bad = True
    elif on_battery and testing:
        input_bad = input_v is None or input_v <= mains_min_v
    else:
        input_bad = on_battery
    minutes = number(raw, "minutes_remaining")
    countdown = number(raw, "shutdown_after_delay")
    charge, load, output_v = number(raw, "charge_pct"), number(raw, "load_pct"), number(raw, "output_v")
    return {
        m.ON_BATTERY: on_battery,
        m.ONLINE: source == 3,
        m.BYPASS: source == 4 or "on_bypass" in alarms,
        m.INPUT_BAD: input_bad,
        m.CALIBRATING: calibrating,
        m.SELF_TEST: testing and not calibrating,
        m.OUTPUT_OFF: source == 2 or "output_off" in alarms or "system_off" in alarms,
        m.SHUTDOWN_IMMINENT: battery in (3, 4)
        or bool(alarms & {"low_battery", "depleted_battery", "shutdown_imminent"}),
        m.BATTERY_NEEDS_REPLACEMENT: "battery_bad" in alarms,
        m.OVERLOAD: "overload" in alarms,
        m.FAULT: "general_fault" in alarms,
        m.CHARGE_PCT: None if charge is None else float(charge),
        m.RUNTIME_S: None if minutes is None else float(minutes * 60),
        m.LOAD_PCT: None if load is None else float(load),
        m.INPUT_V: None if input_v is None else float(input_v),
        m.OUTPUT_V: None if output_v is None else float(output_v),
        m.OUTLET_COUNTDOWN_S: countdown,
        "snmp_alarms": sorted(alarms),
    }


class SnmpUpsDriver(Driver):
    config: Config

    def __init__(self, device_id: str, config: Config):
        super().__init__(device_id, config)
        self.engine: Any = None
        self.auth: Any = None
        self.target: Any = None
        self.v2c: V2cClient | None = None
        self.on_battery = False
        self._requests: dict[tuple[str, ...], tuple[Any, ...]] = {}

    @property
    def poll_deadline(self) -> float:
        return 3 * self.config.timeout_s + 1.0

    def poll_interval(self) -> float:
        return self.config.battery_poll_s if self.on_battery else self.config.poll_s

    async def _open(self) -> None:
        c = self.config
        if c.version == "2c":
            assert c.community
            self.v2c = V2cClient(c.host, c.port, c.community, c.timeout_s, self.counters)
            await self.v2c.open()
            return
        from pysnmp.hlapi.v3arch import asyncio as snmp

        assert c.auth_password_file and c.priv_password_file
        auth = snmp.UsmUserData(
            c.user,
            c.auth_password_file.read_text().strip(),
            c.priv_password_file.read_text().strip(),
            authProtocol={
                "SHA": snmp.usmHMACSHAAuthProtocol,
                "SHA256": snmp.usmHMAC192SHA256AuthProtocol,
                "SHA512": snmp.usmHMAC384SHA512AuthProtocol,
            }[c.auth_protocol],
            privProtocol={"AES": snmp.usmAesCfb128Protocol, "AES256": snmp.usmAesCfb256Protocol}[
                c.priv_protocol
            ],
        )
        self.engine = snmp.SnmpEngine()
        self.auth = auth
        try:
            # Retries are the device runner's business (comm_loss_after): one try per poll.
            self.target = await snmp.UdpTransportTarget.create(
                (c.host, c.port), timeout=c.timeout_s, retries=0
            )
        except Exception as err:  # pysnmp raises its own errors for an unresolvable host
            raise CommError(f"SNMP agent {c.host}:{c.port}: {err}") from err

    async def _get(self, oids: list[str]) -> dict[str, int | str | None]:
        if self.v2c is not None:
            out: dict[str, int | str | None] = {}
            for oid, value in (await self.v2c.get(oids)).items():
                if isinstance(value, bytes):
                    raise FrameError(f"{oid} is not an integer: {value!r}")
                out[oid] = value
            return out
        return await self._get_v3(oids)

    async def _get_v3(self, oids: list[str]) -> dict[str, int | str | None]:
        from pyasn1.type.univ import ObjectIdentifier
        from pysnmp.hlapi.v3arch import asyncio as snmp
        from pysnmp.proto.rfc1905 import EndOfMibView, NoSuchInstance, NoSuchObject

        if self.engine is None:
            raise DriverError("poll() before open()")
        key = tuple(oids)
        request = self._requests.get(key)
        if request is None:
            # pysnmp resolves a var-bind against its MIB view once and marks it clean: reusing the
            # same objects skips that on every later poll (about 60 % of a poll's CPU).
            request = self._requests[key] = tuple(snmp.ObjectType(snmp.ObjectIdentity(o)) for o in oids)
        err_ind, err_stat, _err_idx, binds = await snmp.get_cmd(
            self.engine, self.auth, self.target, snmp.ContextData(), *request, lookupMib=False
        )
        self._raise(err_ind, err_stat, "GET")
        if len(binds) != len(oids):
            raise FrameError(f"SNMP GET of {len(oids)} objects answered {len(binds)}")
        out: dict[str, int | str | None] = {}
        for oid, (_name, value) in zip(oids, binds, strict=True):
            if isinstance(value, (NoSuchObject, NoSuchInstance, EndOfMibView)):
                out[oid] = None
                continue
            if isinstance(value, ObjectIdentifier):
                out[oid] = str(value)
                continue
            try:
                out[oid] = int(value)
            except (TypeError, ValueError):
                raise FrameError(f"{oid} is not an integer: {value.prettyPrint()!r}") from None
        return out

    def _raise(self, err_ind: Any, err_stat: Any, what: str) -> None:
        if err_ind:
            text = str(err_ind)
            if "timeout" in text.lower() or "no snmp response" in text.lower():
                raise DeviceTimeout(
                    f"SNMP agent {self.config.host}:{self.config.port}: no answer to {what} "
                    f"within {self.config.timeout_s:g} s"
                )
            raise CommError(f"SNMP {what}: {text}")
        if err_stat:
            raise DeviceException(f"SNMP agent refused {what}: {err_stat.prettyPrint()}", int(err_stat))

    async def _alarms(self) -> set[str]:
        """Walk upsAlarmDescr: each row's value is a well-known alarm OID."""
        found: set[str] = set()
        if self.v2c is not None:
            for _, value in await self.v2c.walk(ALARM_DESCR, MAX_ALARM_ROWS):
                self._alarm(value if isinstance(value, str) else repr(value), found)
            return found

        from pysnmp.hlapi.v3arch import asyncio as snmp

        async for err_ind, err_stat, _, binds in snmp.walk_cmd(
            self.engine,
            self.auth,
            self.target,
            snmp.ContextData(),
            snmp.ObjectType(snmp.ObjectIdentity(ALARM_DESCR)),
            lexicographicMode=False,
            lookupMib=False,
        ):
            self._raise(err_ind, err_stat, "walk of upsAlarmTable")
            for _, value in binds:
                self._alarm(str(value), found)
        return found

    @staticmethod
    def _alarm(value: str, found: set[str]) -> None:
        parts = value.rsplit(".", 1)
        if value.startswith(UPS + "6.3.") and len(parts) == 2 and parts[1].isdigit():
            found.add(ALARMS.get(int(parts[1]), f"alarm_{parts[1]}"))
        if len(found) > MAX_ALARM_ROWS:
            raise FrameError(f"upsAlarmTable walk returned more than {MAX_ALARM_ROWS} alarms")

    async def poll(self) -> Reading:
        got = await self._get(list(OID.values()))
        raw = {k: got[o] for k, o in OID.items()}
        alarms = await self._alarms() if number(raw, "alarms_present") else set()
        values = normalise(raw, alarms, self.config.mains_min_v)
        for k in (m.CHARGE_PCT, m.RUNTIME_S, m.LOAD_PCT, m.INPUT_V, m.OUTPUT_V):
            if values[k] is not None and not math.isfinite(values[k]):
                raise FrameError(f"{k} is not finite")
        self.on_battery = bool(values[m.ON_BATTERY])
        return Reading(self.device_id, values)

    async def _set(self, oid: str, value: int) -> None:
        from pysnmp.hlapi.v3arch import asyncio as snmp
        from pysnmp.proto.rfc1902 import Integer

        if not self.is_open:
            await self.open()
        if self.v2c is not None:
            await self.v2c.set_int(oid, value)
            return
        err_ind, err_stat, _, _ = await snmp.set_cmd(
            self.engine,
            self.auth,
            self.target,
            snmp.ContextData(),
            snmp.ObjectType(snmp.ObjectIdentity(oid), Integer(value)),
            lookupMib=False,
        )
        self._raise(err_ind, err_stat, f"SET {oid}")

    async def command(self, name: str, **args: Any) -> Any:
        if name == "shutdown_return":
            return await self._shutdown_return(**args)
        if name == "cancel":
            await self._set(OID["shutdown_after_delay"], -1)
            return {"countdown_s": -1}
        return await super().command(name, **args)

    async def _shutdown_return(
        self, delay_s: int | None = None, groups: dict[str, int] | None = None
    ) -> dict[str, Any]:
        if groups is not None:
            if delay_s is not None or set(groups) != {"main_group"}:
                raise DriverError(
                    f"{self.device_id}: an SNMP UPS is commanded as a whole (main_group); "
                    f"outlet groups {sorted(groups)} are not supported"
                )
            delay_s = groups["main_group"]
        if not isinstance(delay_s, int) or isinstance(delay_s, bool) or not 1 <= delay_s <= 32767:
            raise DriverError(f"shutdown delay must be 1..32767 s, not {delay_s!r}")
        if self.config.vendor == "apc":
            # PowerNet: off now to conserve the battery, back on when mains returns; the UPS's own delay.
            await self._set(APC_CONSERVE_BATTERY, 2)
            status = await self._await_apc_sleeping()
            return {
                "command": "upsBasicControlConserveBattery",
                "delay_s": delay_s,
                "countdown_s": None,
                "output_status": status,
            }
        await self._set(AUTO_RESTART, 1)
        await self._set(OID["shutdown_after_delay"], delay_s)
        deadline = time.monotonic() + COUNTDOWN_CONFIRM_S
        while True:
            got = number(await self._get([OID["shutdown_after_delay"]]), OID["shutdown_after_delay"])
            if got is not None and 0 <= got <= delay_s:
                return {"command": "upsShutdownAfterDelay", "delay_s": delay_s, "countdown_s": got}
            if time.monotonic() > deadline:
                raise CommandNotConfirmed(
                    f"upsShutdownAfterDelay reads {got} after setting {delay_s}: not confirmed"
                )
            await asyncio.sleep(0.1)

    async def _await_apc_sleeping(self) -> int:
        deadline = time.monotonic() + APC_SLEEP_CONFIRM_S
        while True:
            status = number(await self._get([APC_OUTPUT_STATUS]), APC_OUTPUT_STATUS)
            if status in APC_SLEEPING:
                assert status is not None
                return status
            if time.monotonic() > deadline:
                raise CommandNotConfirmed(
                    f"upsBasicOutputStatus reads {status} {APC_SLEEP_CONFIRM_S:g} s after "
                    "conserve-battery: the UPS is not sleeping until power returns"
                )
            await asyncio.sleep(0.1)

    async def _close(self) -> None:
        v2c, self.v2c = self.v2c, None
        if v2c is not None:
            v2c.close()
        engine, self.engine = self.engine, None
        if engine is not None:
            try:
                engine.close_dispatcher()
            except Exception:
                pass
