"""``suitemon demo --speed N``: the site's timers N times shorter, so a scenario can be played N times faster.

Only the timers a story waits for are scaled: escalation ladders, the shutdown's triggers,
hold-off and step deadlines, the simulated targets' and UPS's delays, radiation alarm
delays, uptake times, the DICOM study quiet time, and the dispenser simulator's clock.
Poll periods, I/O timeouts and comm-loss counts are not: they are the devices' and the
lines' real figures, and shrinking them would show faults that a site never has.
"""

from __future__ import annotations

import copy
from typing import Any

# Dotted paths; "*" matches any key of a table or any index of a list.
DIVIDE = (
    "ladders.*.steps.*.timeout_s",
    "shutdown.hold_off_s",
    "shutdown.triggers.on_battery_s",
    "shutdown.triggers.debounce_s",
    "shutdown.steps.*.timeout_s",
    "shutdown.steps.*.outlet_delay_s",
    "shutdown.targets.*.sim.ack_delay_s",
    "devices.*.sim.shutdown_delay_s",
    "devices.*.sim.return_delay_s",
    "radiation.areas.*.alarm_delay_s",
    "radiation.areas.*.rise.window_s",
    "radiation.areas.*.rise.confirm_s",
    "uptake.uptake_s",
    "uptake.overdue_s",
    "dispensing.exams.*.uptake_s",
    "dicom.study_idle_s",
)
MULTIPLY = ("devices.*.sim.time_scale",)
INTEGER = ("outlet_delay_s",)  # the UPS takes whole seconds (and at least 1)


def speed_up(data: dict[str, Any], factor: float) -> dict[str, Any]:
    """A copy of a config dict with its story timers divided (clocks multiplied) by ``factor``."""
    if not factor > 0:
        raise ValueError("speed must be a positive number")
    out = copy.deepcopy(data)
    if factor == 1:
        return out
    for path in DIVIDE:
        _apply(out, path.split("."), lambda k, v: _divide(k, v, factor))
    for path in MULTIPLY:
        _apply(out, path.split("."), lambda k, v: v * factor)
    return out


def _divide(key: str, value: Any, factor: float) -> Any:
    if key in INTEGER:
        return max(1, round(value / factor))
    return value / factor


def _apply(node: Any, parts: list[str], fn) -> None:
    head, rest = parts[0], parts[1:]
    if isinstance(node, dict):
        keys = list(node) if head == "*" else [head] if head in node else []
    elif isinstance(node, list) and head == "*":
        keys = list(range(len(node)))
    else:
        return
    for k in keys:
        if rest:
            _apply(node[k], rest, fn)
        elif isinstance(node[k], (int, float)) and not isinstance(node[k], bool):
            node[k] = fn(head if head != "*" else str(k), node[k])
