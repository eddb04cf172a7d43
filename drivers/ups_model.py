"""The normalised UPS reading: the names every UPS kind produces, whatever its wire.

The UPS rules and the shutdown sequencer read only these names, so they cannot tell
an APC Modbus UPS from one watched through NUT or SNMP. A driver fills what its UPS
can tell; a number the UPS does not report is ``None`` (``docs/ups.md`` lists the gaps
per kind), never a guess.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from suitemon.drivers.base import DriverError

# Power path and mode
ON_BATTERY = "on_battery"  # the load runs from the battery (mains failed, or a test)
ONLINE = "online"  # the load runs from mains through the UPS
BYPASS = "bypass"  # the load runs from mains around the UPS: no protection
INPUT_BAD = "input_bad"  # the UPS judges mains bad (the real power-cut signal)
CALIBRATING = "calibrating"  # runtime calibration: on battery with mains present
SELF_TEST = "self_test"  # battery self-test: on battery with mains present
OUTPUT_OFF = "output_off"  # the UPS has switched its output off
# Battery and load
SHUTDOWN_IMMINENT = "shutdown_imminent"  # the UPS's own low-battery / forced-shutdown signal
BATTERY_NEEDS_REPLACEMENT = "battery_needs_replacement"
OVERLOAD = "overload"
FAULT = "fault"
CHARGE_PCT = "charge_pct"
RUNTIME_S = "runtime_s"
LOAD_PCT = "load_pct"
INPUT_V = "input_v"
OUTPUT_V = "output_v"
OUTLET_COUNTDOWN_S = "outlet_countdown_s"  # the UPS's own turn-off countdown; -1: none running

FLAGS = (
    ON_BATTERY,
    ONLINE,
    BYPASS,
    INPUT_BAD,
    CALIBRATING,
    SELF_TEST,
    OUTPUT_OFF,
    SHUTDOWN_IMMINENT,
    BATTERY_NEEDS_REPLACEMENT,
    OVERLOAD,
    FAULT,
)
NUMBERS = (CHARGE_PCT, RUNTIME_S, LOAD_PCT, INPUT_V, OUTPUT_V, OUTLET_COUNTDOWN_S)
FIELDS = FLAGS + NUMBERS
# Without these no rule can decide anything: a reading lacking one is not a reading.
# (Runtime and charge are not here: many NUT and SNMP UPSs report only one of them,
# and every UPS signals low battery itself.)
REQUIRED = (ON_BATTERY, SHUTDOWN_IMMINENT)


class IncompleteReading(DriverError):
    """A UPS answer lacks a value the rules cannot do without."""


def check(values: Mapping[str, Any]) -> None:
    """Raise IncompleteReading naming what is missing; every UPS driver calls it before committing."""
    missing = [n for n in REQUIRED if values.get(n) is None]
    if missing:
        raise IncompleteReading(f"UPS reading lacks {', '.join(missing)}")


def testing_on_mains(values: Mapping[str, Any]) -> bool:
    """On battery by the UPS's own choice (calibration or self-test) while mains is good."""
    return bool((values.get(SELF_TEST) or values.get(CALIBRATING)) and not values.get(INPUT_BAD))
