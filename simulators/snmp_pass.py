"""net-snmp ``pass_persist`` helper: serves OIDs from a JSON file the UPS simulator rewrites.

snmpd (a real agent, Debian's net-snmp) owns SNMP v2c/v3, USM and the wire; this script only
answers its line protocol on stdin/stdout (snmpd.conf(5), "pass_persist"): PING -> PONG,
``get``/``getnext`` + OID -> OID, type, value (or NONE), ``set`` + OID + "type value" ->
DONE / not-writable / the error the state file names for the OID (e.g. wrong-value); a DONE SET
is appended as one JSON line to the commands file for the simulator.

Run by snmpd as: ``python -m suitemon.simulators.snmp_pass STATE.json COMMANDS.jsonl``.
"""

from __future__ import annotations

import json
import os
import sys
import time


def key(oid: str) -> tuple[int, ...]:
    return tuple(int(x) for x in oid.strip(".").split(".") if x)


class Table:
    def __init__(self, path: str):
        self.path = path
        self.mtime = -1.0
        self.values: dict[str, list] = {}
        self.order: list[tuple[tuple[int, ...], str]] = []
        self.writable: set[str] = set()
        self.refused: dict[str, str] = {}  # OID -> pass_persist error ("wrong-value": the UPS says no)
        self.stall_prefix: str | None = None  # a getnext under it hangs: a walk that times out

    def load(self) -> None:
        try:
            m = os.stat(self.path).st_mtime_ns
        except OSError:
            return
        if m == self.mtime:
            return
        with open(self.path) as f:
            doc = json.load(f)
        self.values = doc["values"]
        self.writable = set(doc.get("writable", ()))
        self.refused = dict(doc.get("refused", {}))
        self.stall_prefix = doc.get("stall_prefix")
        self.order = sorted((key(o), o) for o in self.values)
        self.mtime = m

    def get(self, oid: str):
        return self.values.get("." + oid.strip("."))

    def next(self, oid: str):
        k = key(oid)
        for ok, o in self.order:
            if ok > k:
                return o, self.values[o]
        return None


def main() -> None:
    state, commands = sys.argv[1], sys.argv[2]
    table = Table(state)
    out = sys.stdout
    for line in sys.stdin:
        cmd = line.strip()
        if cmd == "PING":
            out.write("PONG\n")
        elif cmd in ("get", "getnext"):
            oid = sys.stdin.readline().strip()
            table.load()
            while (
                cmd == "getnext"
                and table.stall_prefix
                and oid.strip(".").startswith(table.stall_prefix.strip("."))
            ):
                time.sleep(0.1)
                table.load()
            if cmd == "get":
                v = table.get(oid)
                found = ("." + oid.strip("."), v) if v is not None else None
            else:
                found = table.next(oid)
            if found is None:
                out.write("NONE\n")
            else:
                o, (typ, value) = found
                out.write(f"{o}\n{typ}\n{value}\n")
        elif cmd == "set":
            oid = "." + sys.stdin.readline().strip().strip(".")
            typ_value = sys.stdin.readline().strip()
            table.load()
            if oid not in table.writable:
                out.write("not-writable\n")
            elif oid in table.refused:
                out.write(table.refused[oid] + "\n")
            else:
                typ, _, value = typ_value.partition(" ")
                with open(commands, "a") as f:
                    f.write(json.dumps({"oid": oid, "type": typ, "value": value}) + "\n")
                out.write("DONE\n")
        elif cmd == "":
            continue  # snmpd may send a blank line; only EOF ends the helper
        out.flush()


if __name__ == "__main__":
    main()
