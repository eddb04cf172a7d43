"""A UPS behind a real upsd: Debian's nut-server, fed by the project's battery model.

The model is the APC simulator's (simulators/ups_apc.py: charge, runtime, outlet
countdown, flicker, self-test), run without its Modbus server. Its state is written as
a dummy-ups ``.dev`` file (``dummy-once`` mode re-reads it when its timestamp moves),
and a private upsd serves it on the device's host:port. Everything runs unprivileged
in a private directory (NUT_CONFPATH / NUT_STATEPATH); nothing under /etc/nut is used.

Faults: ``stop_answering`` freezes the UPS driver (upsd then answers ERR DATA-STALE,
like a UPS whose cable is out), ``unplug`` freezes upsd itself (the network goes silent),
``driver_down`` ends the driver (ERR DRIVER-NOT-CONNECTED).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from suitemon.drivers.nut_protocol import quote
from suitemon.simulators.base import SimError, Simulator
from suitemon.simulators.child import die_with_parent
from suitemon.simulators.ups_apc import MODEL_ACTIONS, ApcUpsSimulator

NUT_BIN = Path(os.environ.get("SUITEMON_NUT_BIN", "/lib/nut"))
UPS_NAME_DEFAULT = "ups"
WRITE_EVERY_S = 0.2


def nut_available() -> bool:
    return (NUT_BIN / "upsd").exists() and (NUT_BIN / "dummy-ups").exists()


def nut_vars(
    state: dict[str, Any], *, low_runtime_s: float, input_v_available: bool = True
) -> dict[str, str]:
    """The battery model's state as the variables a NUT driver would publish."""
    flags = state["flags"]
    on_batt = state["on_battery"]
    testing, calibrating = state["self_test"], state["calibrating"]
    status = []
    if state["output_on"] and state["mains"] and not testing and not calibrating:
        status.append("OL")
    if on_batt:
        status.append("OB")
    if not state["output_on"]:
        status.append("OFF")
    if flags["low_battery"] or (on_batt and state["runtime_s"] <= low_runtime_s):
        status.append("LB")
    if flags["battery_needs_replacement"]:
        status.append("RB")
    if flags["overload"] or state["load_pct"] > 100:
        status.append("OVER")
    if calibrating:
        status.append("CAL")
    out = {
        "ups.status": " ".join(status) or "OFF",
        "battery.charge": f"{state['charge_pct']:.0f}",
        "battery.runtime": str(state["runtime_s"]),
        "ups.load": f"{state['load_pct'] if state['output_on'] else 0:.0f}",
        "output.voltage": "230.0" if state["output_on"] else "0.0",
        "ups.delay.shutdown": "20",
        "ups.timer.shutdown": str(-1 if state["countdown_s"] is None else state["countdown_s"]),
        "ups.test.result": "In progress" if testing else "Done and passed",
    }
    if input_v_available:
        out["input.voltage"] = "230.0" if state["mains"] else "0.0"
    return out


class NutUpsSimulator(Simulator):
    def __init__(self, device_id: str, cfg: Any):
        super().__init__(device_id, cfg)
        self.model = ApcUpsSimulator(device_id, SimpleNamespace(sim=self.options, profile=None))
        self.ups = getattr(cfg, "ups", UPS_NAME_DEFAULT)
        self.host, self.port = getattr(cfg, "host", "127.0.0.1"), int(getattr(cfg, "port", 3493))
        # dummy-ups keeps a variable once read, so a UPS without input voltage is chosen at start.
        self.input_v_available = bool(self.options.get("input_v_available", True))
        self.dir: Path | None = None
        self.upsd: asyncio.subprocess.Process | None = None
        self.driver: asyncio.subprocess.Process | None = None
        self._writer: asyncio.Task | None = None
        self._last_text = ""
        self._stamp = int(time.time())
        self.actions.update({verb: self.model.actions[verb] for verb in MODEL_ACTIONS})
        self.actions.update(
            {
                "set": self.model.set_model,
                "stop_answering": self.stop_answering,
                "answer": self.answer,
                "unplug": self.unplug,
                "plug": self.plug,
                "driver_down": self.driver_down,
                "vars": self.vars,
            }
        )

    # -- the model as NUT variables ---------------------------------------------------
    def vars(self) -> dict[str, str]:
        return nut_vars(
            self.model.state(),
            low_runtime_s=self.model.low_runtime_s,
            input_v_available=self.input_v_available,
        )

    def _write_dev(self, force: bool = False) -> None:
        assert self.dir is not None
        text = "".join(f"{k}: {v}\n" for k, v in self.vars().items())
        if text == self._last_text and not force:
            return
        path = self.dir / "ups.dev"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(text)
        # dummy-ups re-reads when the timestamp changes; whole seconds are what it compares.
        self._stamp += 1
        os.utime(tmp, (self._stamp, self._stamp))
        tmp.replace(path)
        self._last_text = text

    async def _keep_writing(self) -> None:
        while True:
            try:
                self._write_dev()
            except OSError as err:  # a full disk must not end the simulator silently
                print(f"{self.device_id}: cannot write the dummy-ups file: {err}", flush=True)
            await asyncio.sleep(WRITE_EVERY_S)

    # -- processes ---------------------------------------------------------------------
    def _configure(self) -> dict[str, str]:
        assert self.dir is not None
        conf, state = self.dir / "conf", self.dir / "state"
        conf.mkdir(mode=0o700)
        state.mkdir(mode=0o700)
        (conf / "ups.conf").write_text(
            f"pollinterval = 1\n[{self.ups}]\n  driver = dummy-ups\n  port = {self.dir / 'ups.dev'}\n"
            "  mode = dummy-once\n  desc = \"suitemon simulated UPS\"\n"
        )
        upsd_conf = f"LISTEN {self.host} {self.port}\nMAXAGE 3\n"
        if self.options.get("tls"):
            upsd_conf += f'CERTPATH {self._make_certificates()}\nCERTIDENT "upsd" ""\n'
        (conf / "upsd.conf").write_text(upsd_conf)
        users = ""
        user = getattr(self.cfg, "username", None)
        pw_file = getattr(self.cfg, "password_file", None)
        if user and pw_file:
            password = Path(pw_file).read_text().strip()
            users = f"[{user}]\n  password = {quote(password)}\n  instcmds = ALL\n  actions = SET\n"
        (conf / "upsd.users").write_text(users)
        for f in conf.iterdir():
            f.chmod(0o600)
        return {**os.environ, "NUT_CONFPATH": str(conf), "NUT_STATEPATH": str(state)}

    def _make_certificates(self) -> Path:
        """A test CA (ca.pem, for the client) and upsd's certificate for the listen address, in the
        NSS database Debian's upsd reads (it is built with NSS, not OpenSSL)."""
        assert self.dir is not None
        d = self.dir / "tls"
        d.mkdir(mode=0o700)
        san = f"IP:{self.host}" if self.host.replace(".", "").isdigit() else f"DNS:{self.host}"
        (d / "ext").write_text(f"subjectAltName={san}\n")
        steps = [
            [
                "openssl",
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "2",
                "-subj",
                "/CN=suitemon test CA",
            ],
            [
                "openssl",
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                "srv.key",
                "-out",
                "srv.csr",
                "-subj",
                f"/CN={self.host}",
            ],
            [
                "openssl",
                "x509",
                "-req",
                "-in",
                "srv.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                "srv.pem",
                "-days",
                "2",
                "-extfile",
                "ext",
            ],
            [
                "openssl",
                "pkcs12",
                "-export",
                "-in",
                "srv.pem",
                "-inkey",
                "srv.key",
                "-name",
                "upsd",
                "-out",
                "srv.p12",
                "-passout",
                "pass:",
            ],
            ["certutil", "-N", "-d", "sql:db", "--empty-password"],
            ["pk12util", "-i", "srv.p12", "-d", "sql:db", "-W", ""],
        ]
        (d / "db").mkdir()
        for cmd in steps:
            r = subprocess.run(cmd, cwd=d, capture_output=True, text=True)
            if r.returncode != 0:
                raise SimError(
                    f"{self.device_id}: {cmd[0]} failed making upsd's certificate: {r.stderr[-300:]}"
                )
        return d / "db"

    @property
    def ca_file(self) -> Path | None:
        return None if self.dir is None else self.dir / "tls" / "ca.pem"

    async def start(self) -> None:
        if not nut_available():
            raise SimError(
                f"{self.device_id}: Network UPS Tools is not installed ({NUT_BIN}/upsd); "
                "apt-get install nut-server"
            )
        self.dir = Path(tempfile.mkdtemp(prefix=f"suitemon-nut-{self.device_id}-"))
        env = self._configure()
        self._write_dev(force=True)
        # -F: stay in the foreground, so the process is ours to stop; -u: run as the current user.
        user = ["-u", "root"] if os.geteuid() == 0 else []
        self.driver = await asyncio.create_subprocess_exec(
            str(NUT_BIN / "dummy-ups"),
            "-F",
            "-a",
            self.ups,
            *user,
            env=env,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
            preexec_fn=die_with_parent,
        )
        await self._wait_for(
            lambda: (self.dir / "state" / f"dummy-ups-{self.ups}").exists(), "dummy-ups socket"
        )
        self.upsd = await asyncio.create_subprocess_exec(
            str(NUT_BIN / "upsd"),
            "-F",
            *user,
            env=env,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
            preexec_fn=die_with_parent,
        )
        await self._wait_for_port()
        await self._wait_for_status()
        self._writer = asyncio.create_task(self._keep_writing())

    async def _wait_for(self, pred, what: str, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not pred():
            if time.monotonic() > deadline:
                raise SimError(f"{self.device_id}: {what} did not appear within {timeout:g} s")
            await asyncio.sleep(0.05)

    async def _wait_for_port(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                _, w = await asyncio.open_connection(self.host, self.port)
                w.close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise SimError(
                        f"{self.device_id}: upsd did not listen on {self.host}:{self.port}"
                    ) from None
                await asyncio.sleep(0.05)

    async def _wait_for_status(self, timeout: float = 10.0) -> None:
        """upsd listens before the driver's first dump has reached it: wait for a real status."""
        deadline = time.monotonic() + timeout
        while True:
            r, w = await asyncio.open_connection(self.host, self.port)
            w.write(f"GET VAR {self.ups} ups.status\n".encode())
            line = await r.readline()
            w.close()
            if line.startswith(b"VAR") and b"WAIT" not in line:
                return
            if time.monotonic() > deadline:
                raise SimError(f"{self.device_id}: upsd reports no UPS status: {line!r}")
            await asyncio.sleep(0.1)

    def _signal(self, proc: asyncio.subprocess.Process | None, sig: int) -> None:
        if proc is not None and proc.returncode is None:
            proc.send_signal(sig)

    def stop_answering(self) -> str:
        self._signal(self.driver, signal.SIGSTOP)
        return "UPS driver frozen: upsd reports stale data"

    def answer(self) -> str:
        self._signal(self.driver, signal.SIGCONT)
        return "UPS driver answering"

    def unplug(self) -> str:
        self._signal(self.upsd, signal.SIGSTOP)
        return "upsd frozen: the network is silent"

    def plug(self) -> str:
        self._signal(self.upsd, signal.SIGCONT)
        return "upsd answering"

    def driver_down(self) -> str:
        self._signal(self.driver, signal.SIGTERM)
        return "UPS driver ended"

    async def stop(self) -> None:
        if self._writer is not None:
            self._writer.cancel()
        for proc in (self.upsd, self.driver):
            if proc is None or proc.returncode is not None:
                continue
            proc.send_signal(signal.SIGCONT)
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 5)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
