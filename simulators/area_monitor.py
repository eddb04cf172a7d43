"""Simulated Modbus area monitor: the physical model (radiation_model.py) behind a register profile.

Registers are refreshed from the model before every answer, in the device's word order
(the profile's, or the device's override), so the driver's decoding is tested against an
encoder that honours the same settings. Actions: the model's (arrive, leave, spill, clean,
fail, repair, fix, flap, background, counting_noise, model) plus the Modbus faults.
"""

from __future__ import annotations

from suitemon.drivers.area_monitor_modbus import monitor_profile
from suitemon.drivers.radiation import DOSE_UNIT_FACTORS, UNIT_FACTORS
from suitemon.simulators.base import ModbusSimulator
from suitemon.simulators.radiation_model import AreaModel


class AreaMonitorSimulator(ModbusSimulator):
    default_profile = "area_monitor_reference"

    def __init__(self, device_id, cfg):
        super().__init__(device_id, cfg)
        self.profile = monitor_profile(cfg.profile, cfg.word_order)
        self.model = AreaModel(self.options)
        self.actions.update(self.model.actions())
        self._names = {p.name for p in self.profile.points}
        self.update()

    def update(self) -> None:
        s = self.model.sample()
        rate_unit = self.profile.point("dose_rate").unit
        values: dict = {"dose_rate": s.rate_usv_h / UNIT_FACTORS[rate_unit]}
        flags = {
            "over_range": s.over_range,
            "detector_fault": s.fault,
            "hv_fault": False,
            "alarm_high": s.high_alarm,
            "alarm_low": s.low_alarm,
        }
        for p in self.profile.points:
            if p.bits:
                values[p.name] = {k: v for k, v in flags.items() if k in p.bits}
            elif p.type == "bool" and p.name in flags:
                values[p.name] = flags[p.name]
        if "integrated_dose" in self._names:
            values["integrated_dose"] = (
                self.model.dose_usv / DOSE_UNIT_FACTORS[self.profile.point("integrated_dose").unit]
            )
        self.set_point(**values)
