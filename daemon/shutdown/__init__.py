"""Safe shutdown of the suite on a UPS: debounced triggers, staged steps over MQTT,
abort while mains returns, resume after a restart. See docs/shutdown.md.

Modules: config (the [shutdown] section), triggers (debounce, runtime, mains),
state (the snapshot every event carries), messages (topics, payloads, the route),
sequencer (the service), runner (one sequence's walk), rehearsal and cli (dry run).
"""
