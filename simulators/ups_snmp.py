"""A UPS behind a real SNMP agent: Debian's net-snmp snmpd, fed by the project's battery model.

snmpd runs unprivileged from a private directory on the device's host:port (v2c community
and a v3 authPriv user from the device config) and hands the UPS-MIB subtree to
``simulators/snmp_pass.py`` (pass_persist), which serves the JSON file this simulator rewrites
from the battery model (simulators/ups_apc.py's). SETs to upsShutdownAfterDelay come back
through a commands file and start the model's outlet countdown.

Faults: ``unplug``/``plug`` freeze snmpd (no answer: timeouts), ``drop_oids`` makes values
disappear (noSuchInstance), ``mistype_oids`` serves numbers as OBJECT IDENTIFIERs (a broken
agent or a MIB mix-up), ``stall_walk`` freezes the agent only once a walk of the alarm
table starts (a walk that times out).

With ``vendor = "apc"`` the agent also serves APC PowerNet's upsBasicOutputStatus and
upsBasicControlConserveBattery (docs/decisions.md, "PowerNet shutdown-with-return"): a SET of 2 on
battery puts the main group to sleep after ``apc_shutoff_delay_s`` (sim option, the UPS's own
delay), back on when mains returns; off battery the SET is refused (wrongValue, as the MIB says).
Fault ``apc_never_sleeps`` takes the SET and does nothing. Sim option ``read_only`` gives the
community / v3 user read access only (a SET is refused by snmpd itself).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from suitemon.drivers.ups_snmp import (
    ALARM_DESCR,
    APC_CONSERVE_BATTERY,
    APC_OUTPUT_STATUS,
    AUTO_RESTART,
    OID,
    UPS,
)
from suitemon.simulators.base import SimError, Simulator
from suitemon.simulators.child import die_with_parent
from suitemon.simulators.ups_apc import MODEL_ACTIONS, ApcUpsSimulator

SNMPD = Path(os.environ.get("SUITEMON_SNMPD", "/usr/sbin/snmpd"))
WRITE_EVERY_S = 0.2
APC_ROOT = "1.3.6.1.4.1.318.1.1.1"  # PowerNet-MIB ups subtree
# PowerNet upsBasicOutputStatus: 2 onLine, 3 onBattery, 7 off, 11 sleepingUntilPowerReturn
APC_ONLINE, APC_ON_BATTERY, APC_OFF, APC_SLEEPING_UNTIL_POWER_RETURN = 2, 3, 7, 11
ALARM_IDS = {
    "battery_bad": 1,
    "on_battery": 2,
    "low_battery": 3,
    "input_bad": 6,
    "overload": 8,
    "test_in_progress": 24,
}


def snmp_values(state: dict[str, Any], low_runtime_s: float, input_v: bool = True) -> dict[str, list]:
    flags = state["flags"]
    on_batt, testing = state["on_battery"], state["self_test"] or state["calibrating"]
    low = flags["low_battery"] or (on_batt and state["runtime_s"] <= low_runtime_s)
    source = 2 if not state["output_on"] else (5 if on_batt else 3)
    alarms = [
        a
        for a, on in (
            ("battery_bad", flags["battery_needs_replacement"]),
            ("on_battery", on_batt),
            ("low_battery", low),
            ("input_bad", not state["mains"]),
            ("overload", flags["overload"] or state["load_pct"] > 100),
            ("test_in_progress", testing),
        )
        if on
    ]
    v = {
        OID["battery_status"]: ["integer", 3 if low else 2],
        OID["seconds_on_battery"]: ["integer", 1 if on_batt else 0],
        OID["minutes_remaining"]: ["integer", int(state["runtime_s"] // 60)],
        OID["charge_pct"]: ["integer", round(state["charge_pct"])],
        OID["output_source"]: ["integer", source],
        OID["output_v"]: ["integer", 230 if state["output_on"] else 0],
        OID["load_pct"]: ["integer", int(state["load_pct"]) if state["output_on"] else 0],
        OID["alarms_present"]: ["gauge", len(alarms)],
        OID["test_summary"]: ["integer", 5 if testing else 1],
        # upsWellKnownTests: 1 none, 4 quick battery test, 5 deep battery calibration
        OID["test_id"]: [
            "objectid",
            f"{UPS}7.7.{5 if state['calibrating'] else 4 if state['self_test'] else 1}",
        ],
        OID["shutdown_after_delay"]: [
            "integer",
            -1 if state["countdown_s"] is None else state["countdown_s"],
        ],
        AUTO_RESTART: ["integer", 1],
    }
    if input_v:
        v[OID["input_v"]] = ["integer", 230 if state["mains"] else 0]
    for i, a in enumerate(alarms, start=1):
        v[f"{ALARM_DESCR}.{i}"] = ["objectid", f"{UPS}6.3.{ALARM_IDS[a]}"]
    return {"." + k: val for k, val in v.items()}


def powernet_values(state: dict[str, Any]) -> dict[str, list]:
    if not state["output_on"]:
        status = APC_SLEEPING_UNTIL_POWER_RETURN if state["return_on_mains"] else APC_OFF
    else:
        status = APC_ON_BATTERY if state["on_battery"] else APC_ONLINE
    # upsBasicControlConserveBattery always reads noTurnOffUps(1)
    return {"." + APC_OUTPUT_STATUS: ["integer", status], "." + APC_CONSERVE_BATTERY: ["integer", 1]}


class SnmpUpsSimulator(Simulator):
    def __init__(self, device_id: str, cfg: Any):
        super().__init__(device_id, cfg)
        self.model = ApcUpsSimulator(device_id, SimpleNamespace(sim=self.options, profile=None))
        self.host, self.port = getattr(cfg, "host", "127.0.0.1"), int(getattr(cfg, "port", 161))
        self.input_v_available = bool(self.options.get("input_v_available", True))
        self.dropped: set[str] = set()
        self.mistyped: set[str] = set()
        self.stall_on_walk = False
        self.vendor = str(getattr(cfg, "vendor", "none"))
        self.apc_shutoff_delay_s = float(self.options.get("apc_shutoff_delay_s", 1.0))
        self.apc_sleeps = True
        self.read_only = bool(self.options.get("read_only", False))
        self.dir: Path | None = None
        self.proc: asyncio.subprocess.Process | None = None
        self._task: asyncio.Task | None = None
        self._cmd_pos = 0
        self._last = ""
        self.actions.update({verb: self.model.actions[verb] for verb in MODEL_ACTIONS})
        self.actions.update(
            {
                "set": self.model.set_model,
                "unplug": self.unplug,
                "plug": self.plug,
                "drop_oids": self.drop_oids,
                "mistype_oids": self.mistype_oids,
                "stall_walk": self.stall_walk,
                "apc_never_sleeps": self.apc_never_sleeps,
            }
        )

    def values(self) -> dict[str, list]:
        state = self.model.state()
        v = snmp_values(state, self.model.low_runtime_s, self.input_v_available)
        if self.vendor == "apc":
            v.update(powernet_values(state))
        for oid in self.mistyped:
            v["." + oid] = ["objectid", f"{UPS}7.7.1"]  # upsTestNoTestsInitiated: a valid OID, wrong type
        return {k: x for k, x in v.items() if k.strip(".") not in self.dropped}

    def drop_oids(self, names: list[str]) -> list[str]:
        """The agent stops reporting these values (names of drivers/ups_snmp.OID)."""
        self.dropped = {OID[n] for n in names}
        return sorted(names)

    def mistype_oids(self, names: list[str]) -> list[str]:
        """The agent answers these values (names of drivers/ups_snmp.OID) with an OBJECT IDENTIFIER."""
        self.mistyped = {OID[n] for n in names}
        return sorted(names)

    def stall_walk(self, on: bool = True) -> bool:
        self.stall_on_walk = bool(on)
        return self.stall_on_walk

    def apc_never_sleeps(self, on: bool = True) -> bool:
        """The agent takes upsBasicControlConserveBattery but the UPS never goes to sleep."""
        self.apc_sleeps = not on
        return not self.apc_sleeps

    def _write(self) -> None:
        assert self.dir is not None
        values = self.values()
        writable = ["." + OID["shutdown_after_delay"], "." + AUTO_RESTART]
        refused = {}
        if self.vendor == "apc":
            writable.append("." + APC_CONSERVE_BATTERY)
            if not self.model.on_battery:
                # PowerNet-MIB: "Attempting to turn off a UPS that is not on battery will result in a
                # badValue error" (wrongValue in SNMPv2 terms).
                refused["." + APC_CONSERVE_BATTERY] = "wrong-value"
        text = json.dumps(
            {
                "values": values,
                "writable": writable,
                "refused": refused,
                "stall_prefix": ALARM_DESCR if self.stall_on_walk else None,
            }
        )
        if text != self._last:
            tmp = self.dir / "state.tmp"
            tmp.write_text(text)
            tmp.replace(self.dir / "state.json")
            self._last = text

    def _commands(self) -> None:
        assert self.dir is not None
        path = self.dir / "commands.jsonl"
        if not path.exists():
            return
        data = path.read_bytes()
        new, self._cmd_pos = data[self._cmd_pos :], len(data)
        for line in new.decode().splitlines():
            c = json.loads(line)
            if c["oid"] == "." + OID["shutdown_after_delay"]:
                delay = int(c["value"])
                now = self.model._advance()
                self.model.main.pending = None if delay < 0 else ("shutdown", now + delay)
                self.model.outlet_commands.append(
                    {"at": time.time(), "snmp": "upsShutdownAfterDelay", "value": delay}
                )
            elif c["oid"] == "." + APC_CONSERVE_BATTERY:
                self._conserve_battery(int(c["value"]))

    def _conserve_battery(self, value: int) -> None:
        self.model.outlet_commands.append(
            {"at": time.time(), "snmp": "upsBasicControlConserveBattery", "value": value}
        )
        now = self.model._advance()
        main = self.model.main
        # A repeated SET keeps the countdown already running: the UPS's delay is not restarted.
        if value == 2 and self.apc_sleeps and main.on and main.pending is None and self.model.on_battery:
            main.pending = ("shutdown", now + self.apc_shutoff_delay_s)

    async def _run(self) -> None:
        while True:
            try:
                self._commands()
                self._write()
            except OSError as err:
                print(f"{self.device_id}: cannot write the agent's data: {err}", flush=True)
            await asyncio.sleep(WRITE_EVERY_S)

    def _config(self) -> str:
        lines = [f"agentaddress udp:{self.host}:{self.port}"]
        community = getattr(self.cfg, "community", None)
        access = "ro" if self.read_only else "rw"
        if community:
            lines.append(f"{access}community {community} {self.host}")
        user = getattr(self.cfg, "user", None)
        auth_f, priv_f = (
            getattr(self.cfg, "auth_password_file", None),
            getattr(self.cfg, "priv_password_file", None),
        )
        if user and auth_f and priv_f:
            auth = getattr(self.cfg, "auth_protocol", "SHA")
            priv = getattr(self.cfg, "priv_protocol", "AES")
            lines.append(
                f'createUser {user} {auth} "{Path(auth_f).read_text().strip()}" {priv} '
                f'"{Path(priv_f).read_text().strip()}"'
            )
            lines.append(f"{access}user {user} priv")
        helper = f"{sys.executable} -m suitemon.simulators.snmp_pass {self.dir}/state.json {self.dir}/commands.jsonl"
        lines.append(f"pass_persist .{UPS.rstrip('.')} {helper}")
        if self.vendor == "apc":
            lines.append(f"pass_persist .{APC_ROOT} {helper}")
        return "\n".join(lines) + "\n"

    async def start(self) -> None:
        if not SNMPD.exists():  # noqa: ASYNC240 (one stat at start, before snmpd is launched)
            raise SimError(
                f"{self.device_id}: net-snmp's snmpd is not installed ({SNMPD}); apt-get install snmpd"
            )
        self.dir = Path(tempfile.mkdtemp(prefix=f"suitemon-snmp-{self.device_id}-"))
        (self.dir / "persist").mkdir()
        conf = self.dir / "snmpd.conf"
        conf.write_text(self._config())
        conf.chmod(0o600)
        self._write()
        env = {**os.environ, "SNMP_PERSISTENT_DIR": str(self.dir / "persist"), "MIBS": ""}
        self.proc = await asyncio.create_subprocess_exec(
            str(SNMPD),
            "-f",
            "-Lf",
            str(self.dir / "snmpd.log"),
            "-C",
            "-c",
            str(conf),
            "-r",
            "-p",
            str(self.dir / "snmpd.pid"),
            env=env,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
            preexec_fn=die_with_parent,
        )
        await self._wait_ready()
        self._task = asyncio.create_task(self._run())

    async def _wait_ready(self, timeout: float = 10.0) -> None:
        assert self.dir is not None
        deadline = time.monotonic() + timeout
        while "NET-SNMP version" not in (
            (self.dir / "snmpd.log").read_text() if (self.dir / "snmpd.log").exists() else ""
        ):
            if self.proc is not None and self.proc.returncode is not None:
                raise SimError(
                    f"{self.device_id}: snmpd exited: {(self.dir / 'snmpd.log').read_text()[-500:]}"
                )
            if time.monotonic() > deadline:
                raise SimError(f"{self.device_id}: snmpd did not start on {self.host}:{self.port}")
            await asyncio.sleep(0.05)

    def unplug(self) -> str:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGSTOP)
        return "snmpd frozen: no answers"

    def plug(self) -> str:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGCONT)
        return "snmpd answering"

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), 5)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
