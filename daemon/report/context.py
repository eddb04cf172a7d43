"""What every section builder gets: the config, the period and the alarm episodes."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from suitemon.daemon.report.period import Period
from suitemon.daemon.report.source import Episode, Episodes


@dataclass
class BuildContext:
    cfg: Any
    period: Period
    episodes: Episodes
    _raised: list[Episode] | None = field(default=None, init=False, repr=False)

    def raised_in_period(self) -> list[Episode]:
        # Several sections ask; a busy month has hundreds of thousands to sort: once.
        if self._raised is None:
            p = self.period
            self._raised = sorted(
                (e for e in self.episodes.all() if p.start_ts <= e.raised_at < p.end_ts),
                key=lambda e: e.raised_at,
            )
        return list(self._raised)

    def local(self, t: float | None) -> str:
        """A time as the site reads it (local, to the second)."""
        if t is None:
            return ""
        return datetime.fromtimestamp(t, self.period.tz).strftime("%Y-%m-%d %H:%M:%S")

    def area_name(self, area: str | None) -> str:
        if not area:
            return "-"
        a = self.cfg.areas.get(area) if self.cfg is not None else None
        return a.name if a is not None else area

    def devices_of_kind(self, *kinds: str) -> dict[str, Any]:
        return {did: d for did, d in self.cfg.devices.items() if d.kind in kinds}
