"""Rules: readings in, alarm conditions out. One module per device kind.

A rule object is made per device with the device's config and the shared
:class:`suitemon.daemon.context.Context`. It never talks to the broker or the journal
directly: it returns :class:`Condition` / :class:`Reset` items, and the core
applies them through the alarm engine (driver -> reading -> rules -> alarm event).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from suitemon.daemon.alarms import Condition, Reset
from suitemon.drivers.base import Reading

Output = Iterable[Condition | Reset]


class Rules:
    def __init__(self, device_id: str, cfg: Any, ctx: Any):
        self.device_id = device_id
        self.cfg = cfg
        self.ctx = ctx

    def bind(self, driver: Any) -> None:
        """Called once with the device's driver before the first poll (e.g. to resume a
        position the journal remembers, such as the last dose record read from a unit)."""

    def on_reading(self, reading: Reading) -> Output:
        return ()

    def state(self, reading: Reading | None) -> dict[str, Any]:
        """Extra fields for the retained device state topic."""
        return {}

    def comm_lost(self, present: bool, default: Condition) -> Output:
        """The communication-lost condition; kinds may sharpen the message or the priority."""
        return (default,)

    def outputs(self) -> Mapping[str, Any] | None:
        """Outputs the device should show now (lamps), derived from the alarm engine.

        Called after each reading's conditions are applied; the runner hands a non-None
        result to ``Driver.set_outputs``, and the driver writes it and reads it back.
        """
        return None


__all__ = ["Condition", "Output", "Reset", "Rules"]
