"""A private MQTT broker for the demo: Mosquitto when installed, else embedded amqtt (MQTT 3.1.1 only)."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import tempfile
import warnings
from pathlib import Path
from typing import Any


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _mosquitto() -> str | None:
    if os.environ.get("SUITEMON_NO_SYSTEM_MOSQUITTO"):
        return None  # lets the tests show the embedded fallback on a machine that has Mosquitto
    return shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if Path(p).exists()), None
    )


class DemoBroker:
    def __init__(self, port: int | None = None):
        self.port = port or free_port()
        self._mosquitto = _mosquitto()
        self.kind = "mosquitto" if self._mosquitto else "amqtt"
        self.protocol = "5" if self.kind == "mosquitto" else "3.1.1"
        self._proc: subprocess.Popen[bytes] | None = None
        self._amqtt: Any = None  # amqtt.broker.Broker: an optional extra without type information
        self._dir: tempfile.TemporaryDirectory[str] | None = None

    async def start(self) -> None:
        if self._mosquitto is not None:
            self._dir = tempfile.TemporaryDirectory(prefix="suitemon-broker-")
            conf = Path(self._dir.name) / "mosquitto.conf"
            conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
            # Popen returns once the child is forked; the broker outlives this call (stop() ends it).
            self._proc = subprocess.Popen(  # noqa: ASYNC220
                [self._mosquitto, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
        else:
            try:
                from amqtt.broker import Broker
            except ImportError:
                raise RuntimeError(
                    "no MQTT broker: install mosquitto, or the demo extra "
                    "(pip install -e '.[demo]') for the embedded one"
                ) from None
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                # Only the plugins the demo needs, configured the current (0.12) way: the defaults
                # load a password-file and a $SYS plugin that warn at start about settings we do
                # not use, and a user would take those warnings for a fault.
                self._amqtt = Broker(
                    {
                        "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{self.port}"}},
                        "plugins": {
                            "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}
                        },
                    }
                )
                await self._amqtt.start()
            return  # start() returns once it listens; a bare TCP probe would only log a decode error
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return
            except OSError:
                if self._proc is not None and self._proc.poll() is not None:
                    raise RuntimeError(f"mosquitto could not start on port {self.port}") from None
                await asyncio.sleep(0.05)
        raise RuntimeError(f"broker did not start on port {self.port}")

    async def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
        if self._amqtt is not None:
            await self._amqtt.shutdown()
        if self._dir is not None:
            self._dir.cleanup()
