"""Dose records from the dispensing unit, their checks, daily summary and uptake timers."""
