"""Limits on generic Modbus points, with hysteresis so a value on the line does not chatter."""

from __future__ import annotations

from suitemon.daemon.rules import Condition, Output, Rules


class PointRules(Rules):
    def __init__(self, device_id, cfg, ctx):
        super().__init__(device_id, cfg, ctx)
        self._high: dict[str, bool] = {}
        self._low: dict[str, bool] = {}

    def on_reading(self, reading) -> Output:
        out = []
        for name, lim in self.cfg.limits.items():
            value = reading.values.get(name)
            if not isinstance(value, (int, float)):
                continue
            for side, table in (("high", self._high), ("low", self._low)):
                threshold = getattr(lim, side)
                if threshold is None:
                    continue
                was = table.get(name, False)
                if side == "high":
                    now = value > threshold if not was else value > threshold - lim.hysteresis
                else:
                    now = value < threshold if not was else value < threshold + lim.hysteresis
                table[name] = now
                out.append(
                    Condition(
                        alarm_id=f"{self.device_id}.{name}.{side}",
                        type=f"point.{side}",
                        present=now,
                        priority=lim.priority,
                        kind="technical",
                        source=self.device_id,
                        location=self.cfg.location,
                        message=lim.message
                        or f"{self.cfg.name or self.device_id}: {name} {value} "
                        f"{'above' if side == 'high' else 'below'} {threshold}",
                        details={"point": name, "value": value, "threshold": threshold},
                    )
                )
        return out
