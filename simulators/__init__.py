# Hardware simulators speaking the real protocols.
