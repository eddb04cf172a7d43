"""Simulated ESPA 4.4.4 paging base station (a DECT gateway or pager transmitter) on a pty.

It links the far end of a pty pair at ``[paging].serial_port``, so the daemon opens a real serial
line. It answers the control station as the paging system: ACK to a select, ACK/NAK to a block,
EOT or status blocks (header 2: records 1, 7, 8) to a poll. It keeps what each handset would
show. Faults on demand (``fault`` action):

- ``nak``: NAK the next N call blocks (-1: all)
- ``busy``: answer the next N selects with NAK (-1: all)
- ``silent``: answer nothing at all (a dead base station; the line itself is still there)
- ``bad_bcc``: send the next N status blocks with a wrong BCC (the daemon must NAK them)
- ``not_delivered``: report call status "not delivered" for every page (true) or these addresses

``unplug``/``plug`` remove and restore the line itself.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

import structlog

from suitemon.drivers.espa444 import ACK, ENQ, EOT, NAK, BadBlock, Block, Control, Decoder, encode_block
from suitemon.simulators.base import SimError, Simulator
from suitemon.simulators.pty_link import open_pty_link

log = structlog.get_logger("suitemon.sim.paging")

FAULTS = ("nak", "busy", "silent", "bad_bcc", "not_delivered")


class EspaPagerSimulator(Simulator):
    def __init__(self, name: str, cfg: Any):
        super().__init__(name, cfg)
        self.path = Path(cfg.serial_port)
        self.own = cfg.paging_system_address
        self.master = cfg.control_station_address
        self.status_returned = cfg.status_returned
        self.delivered_code = cfg.accepted_call_status[0]
        self.not_delivered_code = cfg.sim_not_delivered_status
        self.decoder = Decoder()
        self.faults: dict[str, Any] = {}
        self.clear()
        self.handsets: dict[str, list[dict[str, Any]]] = {}
        self.blocks: list[dict[str, Any]] = []  # every call block received, in order (with time)
        self.stats_: dict[str, int] = {
            "selects": 0,
            "polls": 0,
            "blocks": 0,
            "naks_sent": 0,
            "statuses_sent": 0,
        }
        self._pending_status: list[bytes] = []
        self._sending: bytes | None = None
        self._bid = False
        self._selected = False
        self._fd: int | None = None
        self._slave: int | None = None
        self.actions.update(
            {
                "fault": self.set_fault,
                "clear": self.clear,
                "shown": self.shown,
                "blocks_received": self.received,
                "stats": self.stats,
                "unplug": self.unplug,
                "plug": self.plug,
            }
        )

    # -- line -----------------------------------------------------------------------
    def _open(self) -> None:
        self._fd, self._slave = open_pty_link(self.path)
        asyncio.get_running_loop().add_reader(self._fd, self._readable)
        self.decoder.reset()
        self._bid = self._selected = False
        self._sending = None

    def _close(self) -> None:
        if self._fd is not None:
            try:
                asyncio.get_running_loop().remove_reader(self._fd)
            except (ValueError, OSError, RuntimeError):
                pass
        for fd in (self._fd, self._slave):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._fd = self._slave = None
        try:
            if self.path.is_symlink():
                self.path.unlink()
        except OSError:
            pass

    async def start(self) -> None:
        self._open()
        log.info("paging base station up", port=str(self.path))

    async def stop(self) -> None:
        self._close()

    def _write(self, data: bytes) -> None:
        if self._fd is None:
            return
        try:
            os.write(self._fd, data)
        except OSError:
            pass

    def _readable(self) -> None:
        try:
            data = os.read(self._fd, 4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            return  # nobody has the port open: EIO until they do
        for item in self.decoder.feed(data):
            self._on(item)

    # -- protocol (the paging system's side) ----------------------------------------------
    def _take(self, fault: str) -> bool:
        n = self.faults[fault]
        if n == 0:
            return False
        if n > 0:
            self.faults[fault] = n - 1
        return True

    def _on(self, item) -> None:
        if self.faults["silent"]:
            return
        if isinstance(item, Control):
            self._on_control(item)
        elif isinstance(item, BadBlock):
            if self._selected:
                self.stats_["naks_sent"] += 1
                self._write(bytes([NAK]))
        elif isinstance(item, Block):
            self._on_block(item)

    def _on_control(self, c: Control) -> None:
        if c.char == EOT:
            self._bid = self._selected = False
            self._sending = None
            return
        if c.char == ENQ and c.address == self.master:
            self._bid = True
            return
        if c.char == ENQ and c.address == self.own:
            if self._bid:  # selected: a call block follows
                self._bid = False
                self.stats_["selects"] += 1
                if self._take("busy"):
                    self._write(bytes([NAK]))
                    return
                self._selected = True
                self._write(bytes([ACK]))
            else:  # polled: status we hold, or EOT
                self.stats_["polls"] += 1
                self._send_next_status()
            return
        if self._sending is not None and c.char == ACK:
            self._pending_status.pop(0)
            self._sending = None
            self._send_next_status()
        elif self._sending is not None and c.char == NAK:
            self._sending = self._pending_status[0]
            self._write(self._sending)  # retransmit, with its right BCC this time

    def _send_next_status(self) -> None:
        if not self._pending_status:
            self._sending = None
            self._write(bytes([EOT]))
            return
        block = self._pending_status[0]
        self._sending = block
        self.stats_["statuses_sent"] += 1
        if self._take("bad_bcc"):
            block = block[:-1] + bytes([block[-1] ^ 0x5A])
        self._write(block)

    def _on_block(self, b: Block) -> None:
        if not self._selected or b.header != "1":
            self._write(bytes([NAK]))
            return
        self.stats_["blocks"] += 1
        rec = {"at": time.time(), "mono": time.monotonic(), **b.as_dict()}
        if self._take("nak"):
            rec["answer"] = "NAK"
            self.blocks.append(rec)
            self.stats_["naks_sent"] += 1
            self._write(bytes([NAK]))
            return
        rec["answer"] = "ACK"
        self.blocks.append(rec)
        address = b.get("1") or ""
        nd = self.faults["not_delivered"]
        delivered = not (nd is True or (isinstance(nd, list) and address in nd))
        if delivered:
            self.handsets.setdefault(address, []).append(
                {"at": rec["at"], "text": b.get("2"), "priority": b.get("6"), "beep": b.get("3")}
            )
        if self.status_returned:
            code = self.delivered_code if delivered else self.not_delivered_code
            self._pending_status.append(encode_block("2", [("1", address), ("7", code), ("8", "1")]))
        self._write(bytes([ACK]))

    # -- actions ------------------------------------------------------------------------
    def set_fault(self, **faults: Any) -> dict[str, Any]:
        for k, v in faults.items():
            if k not in FAULTS:
                raise SimError(f"{self.device_id}: unknown fault '{k}'; known: {', '.join(FAULTS)}")
            if k == "silent" and not isinstance(v, bool):
                raise SimError("silent is true or false")
            if k == "not_delivered" and not (isinstance(v, bool) or isinstance(v, list)):
                raise SimError("not_delivered is true/false or a list of call addresses")
            if k in ("nak", "busy", "bad_bcc") and (isinstance(v, bool) or not isinstance(v, int) or v < -1):
                raise SimError(f"{k} is a count (-1: always)")
            self.faults[k] = v
        return dict(self.faults)

    def clear(self) -> dict[str, Any]:
        self.faults = {"nak": 0, "busy": 0, "silent": False, "bad_bcc": 0, "not_delivered": False}
        return dict(self.faults)

    def shown(self, address: str | None = None) -> Any:
        """What each handset shows (newest last)."""
        if address is not None:
            return self.handsets.get(address, [])
        return self.handsets

    def received(self) -> list[dict[str, Any]]:
        return self.blocks

    def stats(self) -> dict[str, Any]:
        return {
            **self.stats_,
            "decoder": dict(self.decoder.counts),
            "faults": dict(self.faults),
            "pending_status": len(self._pending_status),
            "plugged": self._fd is not None,
        }

    async def unplug(self) -> str:
        self._close()
        return "unplugged"

    async def plug(self) -> str:
        if self._fd is None:
            self._open()
        return "plugged"


def from_config(cfg) -> EspaPagerSimulator | None:
    """``suitemon sim`` runs the base station when the config has a [paging] section."""
    paging = getattr(cfg, "paging", None)
    if paging is None or not paging.simulate:
        return None
    return EspaPagerSimulator("paging_base", paging)
