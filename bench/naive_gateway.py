"""The yardstick: a generic Modbus-to-MQTT gateway loop, as commonly written.

pymodbus (synchronous client) reads the discrete inputs every ``--poll`` seconds and paho
publishes the raw list on ``<topic>`` each time; no journal, no edge detection, no
latch handling, sleep-after-poll timing. bench/press_latency.py runs it side by side with
suitemon against the same simulated module. It prints its poll count and CPU time on exit.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from pymodbus.client import ModbusTcpClient


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--modbus-port", type=int, required=True)
    ap.add_argument("--mqtt-port", type=int, required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--poll", type=float, default=5.0)
    ap.add_argument("--inputs", type=int, default=18)
    ap.add_argument("--unit", type=int, default=1)
    a = ap.parse_args()
    stop = False

    def on_term(*_):
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)

    mqtt = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"naive-gw-{a.modbus_port}")
    mqtt.connect("127.0.0.1", a.mqtt_port)
    mqtt.loop_start()
    mb = ModbusTcpClient("127.0.0.1", port=a.modbus_port, timeout=1.0)
    mb.connect()
    polls = errors = 0
    cpu0, wall0 = time.process_time(), time.monotonic()
    while not stop:
        try:
            rr = mb.read_discrete_inputs(0, count=a.inputs, device_id=a.unit)
            if rr.isError():
                errors += 1
            else:
                mqtt.publish(
                    a.topic,
                    json.dumps({"inputs": [int(b) for b in rr.bits[: a.inputs]], "ts": time.time()}),
                    qos=0,
                )
                polls += 1
        except Exception:  # the typical gateway: log and carry on
            errors += 1
        time.sleep(a.poll)
    cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
    mb.close()
    mqtt.loop_stop()
    print(json.dumps({"polls": polls, "errors": errors, "cpu_s": cpu, "wall_s": round(wall, 3)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
