"""A fixed gamma area monitor on Modbus RTU or TCP, described by a register profile.

The profile (``drivers/profiles/area_monitor_reference.toml`` is the template) names the
points this driver understands: ``dose_rate`` (required), ``integrated_dose`` (optional)
and the flags ``over_range``, ``detector_fault``, ``hv_fault``, ``alarm_high``,
``alarm_low`` as status-word bits or single coils. The float32 word order is the
profile's, and a device may override it (vendors disagree; one site may mix vendors).
A value that is not a finite, non-negative dose rate is reported as a detector fault,
never passed on as a number.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Literal

from pydantic import Field

from suitemon.drivers.base import ProfileError, Reading
from suitemon.drivers.config import ModbusDeviceConfig
from suitemon.drivers.modbus_link import ProfileDriver
from suitemon.drivers.profile import Profile, WordOrder, load_profile
from suitemon.drivers.radiation import DOSE_UNIT_FACTORS, UNIT_FACTORS, AreaRadiation, check_devices, to_usv_h

# Flag name in a profile -> the value key it sets (detector_fault collects every fault).
FLAG_KEYS: dict[str, str] = {
    "over_range": "over_range",
    "detector_fault": "detector_fault",
    "hv_fault": "detector_fault",
    "alarm_high": "instrument_high_alarm",
    "alarm_low": "instrument_low_alarm",
}


class Config(ModbusDeviceConfig):
    kind: Literal["area_monitor_modbus"]
    profile: str = "area_monitor_reference"
    word_order: Literal["big", "little"] | None = Field(
        None, description="float32/32-bit word order of this device; default: the profile's"
    )
    radiation: AreaRadiation | None = None


def check(cfg: Any) -> list[tuple[str, str]]:  # the root config model is built at run time
    issues = list(check_devices("area_monitor_modbus", cfg))
    for did, dev in cfg.devices.items():
        if dev.kind != "area_monitor_modbus":
            continue
        try:
            monitor_profile(dev.profile, dev.word_order)
        except ProfileError as err:
            issues.append((f"devices.{did}.profile", str(err)))
    return issues


def monitor_profile(ref: str, word_order: WordOrder | None = None) -> Profile:
    """Load a monitor profile, check it has what the driver needs, apply a device's word order."""
    profile = load_profile(ref)
    try:
        rate = profile.point("dose_rate")
    except KeyError as err:
        raise ProfileError(f"profile {ref}: an area monitor profile needs a 'dose_rate' point") from err
    if rate.type == "bool" or rate.bits:
        raise ProfileError(f"profile {ref}: dose_rate must be a number (f32, or an integer with a scale)")
    if rate.unit not in UNIT_FACTORS:
        raise ProfileError(
            f"profile {ref}: dose_rate unit {rate.unit!r} is not one of {', '.join(UNIT_FACTORS)}"
        )
    dose = next((p for p in profile.points if p.name == "integrated_dose"), None)
    if dose is not None and dose.unit not in DOSE_UNIT_FACTORS:
        raise ProfileError(
            f"profile {ref}: integrated_dose unit {dose.unit!r} is not one of {', '.join(DOSE_UNIT_FACTORS)}"
        )
    if word_order is None:
        return profile
    points = tuple(
        dataclasses.replace(p, word_order=word_order) if p.count == 2 else p for p in profile.points
    )
    return dataclasses.replace(profile, points=points, word_order=word_order)


def interpret(profile: Profile, raw: dict[str, Any]) -> dict[str, Any]:
    """Decoded points -> the area-monitor value keys (pure; table-tested)."""
    flags = {key: False for key in set(FLAG_KEYS.values())}
    seen: dict[str, bool] = {}
    for p in profile.points:
        value = raw.get(p.name)
        if isinstance(value, dict):
            items = [(bit, on) for bit, on in value.items() if bit != "raw"]
        elif p.type == "bool":
            items = [(p.name, value)]
        else:
            continue
        for name, on in items:
            if name in FLAG_KEYS:
                seen[name] = bool(on)
                flags[FLAG_KEYS[name]] = flags[FLAG_KEYS[name]] or bool(on)
    reasons = [name for name in ("detector_fault", "hv_fault") if seen.get(name)]
    rate = raw.get("dose_rate")
    rate_unit = profile.point("dose_rate").unit or ""  # monitor_profile() refuses a rate without one
    if rate is None or not isinstance(rate, (int, float)) or not math.isfinite(rate) or rate < 0:
        flags["detector_fault"] = True
        reasons.append(f"invalid dose-rate value {rate!r}")
        rate_usv_h = None
    else:
        rate_usv_h = _sig(to_usv_h(float(rate), rate_unit))
    values: dict[str, Any] = {
        "dose_rate_usv_h": rate_usv_h,
        "over_range": flags["over_range"],
        "detector_fault": flags["detector_fault"],
        "fault_reason": "; ".join(reasons) or None,
        "instrument_high_alarm": flags["instrument_high_alarm"],
        "instrument_low_alarm": flags["instrument_low_alarm"],
    }
    if "integrated_dose" in raw:
        dose = raw["integrated_dose"]
        unit = profile.point("integrated_dose").unit or ""  # monitor_profile() refuses a dose without one
        ok = isinstance(dose, (int, float)) and math.isfinite(dose) and dose >= 0
        values["device_dose_usv"] = _sig(dose * DOSE_UNIT_FACTORS[unit]) if ok else None
    for name, value in raw.items():  # everything else the profile reads, as read
        if name not in ("dose_rate", "integrated_dose"):
            values.setdefault(name, value)
    return values


def _sig(x: float) -> float:
    # A float32 carries about 7 significant digits; printing more shows decoding noise (32.509998).
    return float(f"{x:.7g}")


class AreaMonitorDriver(ProfileDriver):
    config: Config

    def __init__(self, device_id: str, config: Config):
        super().__init__(device_id, config, monitor_profile(config.profile, config.word_order))

    async def poll(self) -> Reading:
        assert self.dev is not None, "open() first"
        raw = await self.dev.read_points()
        return Reading(self.device_id, interpret(self.profile, raw))
