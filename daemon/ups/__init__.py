"""UPS rules: mains, battery and the triggers of the safe-shutdown sequence."""
