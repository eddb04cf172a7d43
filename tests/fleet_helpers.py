"""The central side on loopback: a three-node NATS cluster from deploy/central/ and a throw-away
PostgreSQL (initdb into a temp dir, its own port). Shipped files are rendered with exact
replacements (secure_broker.render), so a change to them that the tests no longer cover fails."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import ssl
import subprocess
import tempfile
import time
from pathlib import Path

import paho.mqtt.client as paho
from helpers import REPO, free_port, wait_until
from paho.mqtt.enums import CallbackAPIVersion
from secure_broker import Pki, render

CENTRAL = REPO / "deploy" / "central"
NATS = shutil.which("nats-server") or "/usr/sbin/nats-server"
PG_BIN = Path(
    (sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb")) or ["/usr/lib/postgresql/15/bin/initdb"])[-1]
).parent
NODES = ("central-1", "central-2", "central-3")


def node_cert(pki: Pki) -> tuple[Path, Path]:
    """A node certificate good for both ends of a route (serverAuth and clientAuth)."""
    d = pki.dir
    key, csr, crt, ext = d / "node.key", d / "node.csr", d / "node.crt", d / "node.ext"
    ext.write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n"
        "keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth,clientAuth\n"
    )
    run = lambda *a: subprocess.run(["openssl", *a], check=True, capture_output=True)  # noqa: E731
    run(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        str(key),
        "-out",
        str(csr),
        "-subj",
        "/CN=localhost",
    )
    run(
        "x509",
        "-req",
        "-in",
        str(csr),
        "-CA",
        str(pki.ca),
        "-CAkey",
        str(pki.ca_key),
        "-CAcreateserial",
        "-out",
        str(crt),
        "-days",
        "2",
        "-extfile",
        str(ext),
    )
    os.chmod(key, 0o600)
    return crt, key


class NatsCluster:
    """Three nats-server processes, each with its own store; a node can be killed and restarted."""

    def __init__(
        self, workdir: Path, pki: Pki, passwords: dict[str, str], extra_users: str = "", ack_wait: str = "3s"
    ):
        self.dir = workdir
        self.pki = pki
        crt, key = node_cert(pki)
        self.client_ports = [free_port() for _ in NODES]
        self.route_ports = [free_port() for _ in NODES]
        self.mqtt_ports = [free_port() for _ in NODES]
        self.procs: list[subprocess.Popen | None] = [None] * len(NODES)
        accounts = render((CENTRAL / "accounts.conf").read_text(), passwords)
        if extra_users:  # more sites, in the shipped accounts' own form (the load benchmark)
            accounts = render(accounts, {"    users: [\n": "    users: [\n" + extra_users})
        node_text = (CENTRAL / "nats-node.conf").read_text()
        self.confs = []
        for i, name in enumerate(NODES):
            d = workdir / name
            d.mkdir(parents=True)
            (d / "accounts.conf").write_text(accounts)
            reps = {
                "server_name: @NODE@": f"server_name: {name}",
                "listen: 0.0.0.0:4222": f"listen: 127.0.0.1:{self.client_ports[i]}",
                "store_dir: /var/lib/nats/jetstream": f"store_dir: {d / 'js'}",
                "max_memory_store: 1GB": "max_memory_store: 64MB",
                "max_file_store: 50GB": "max_file_store: 1GB",
                "listen: 0.0.0.0:6222": f"listen: 127.0.0.1:{self.route_ports[i]}",
                "listen: 0.0.0.0:8883": f"listen: 127.0.0.1:{self.mqtt_ports[i]}",
                "/etc/nats-server/certs/node.crt": str(crt),
                "/etc/nats-server/certs/node.key": str(key),
                "/etc/nats-server/certs/central-ca.crt": str(pki.ca),
                # Test plumbing: a redelivery after 3 s, not 30 s, keeps the scenario short.
                'ack_wait: "30s"': f'ack_wait: "{ack_wait}"',
            }
            for j, other in enumerate(("@NODE1@", "@NODE2@", "@NODE3@")):
                reps[f"nats-route://{other}:6222"] = f"nats-route://127.0.0.1:{self.route_ports[j]}"
            conf = d / "nats.conf"
            conf.write_text(render(node_text, reps))
            self.confs.append(conf)

    @property
    def servers(self) -> list[str]:
        return [f"127.0.0.1:{p}" for p in self.mqtt_ports]

    @property
    def nats_servers(self) -> list[str]:
        """Each node's native listener (TLS), where the collectors read the event stream."""
        return [f"tls://127.0.0.1:{p}" for p in self.client_ports]

    def start(self, i: int | None = None) -> NatsCluster:
        for k in [i] if i is not None else range(len(NODES)):
            log = open(self.dir / NODES[k] / "nats.log", "ab")
            self.procs[k] = subprocess.Popen([NATS, "-c", str(self.confs[k])], stdout=log, stderr=log)
            log.close()
        return self

    def kill(self, i: int) -> None:
        p = self.procs[i]
        if p is not None and p.poll() is None:
            p.send_signal(signal.SIGKILL)
            p.wait(10)
        self.procs[i] = None

    def stop(self) -> None:
        for i in range(len(NODES)):
            self.kill(i)

    def log_text(self, i: int) -> str:
        return (self.dir / NODES[i] / "nats.log").read_text(errors="replace")

    def wait_mqtt_ready(self, user: str, password: str, timeout: float = 30) -> None:
        """JetStream elects its leaders after the routes form: MQTT sessions work only then."""
        for i, port in enumerate(self.mqtt_ports):
            if self.procs[i] is None:
                continue
            wait_until(
                lambda port=port: mqtt_connects(port, self.pki.ca, user, password),
                timeout,
                interval=0.3,
                what=f"MQTT on {NODES[i]}",
            )


def mqtt_connects(port: int, ca: Path, user: str, password: str) -> bool:
    c = paho.Client(
        CallbackAPIVersion.VERSION2,
        client_id=f"probe-{port}-{time.monotonic_ns()}",
        protocol=paho.MQTTv311,
        clean_session=True,
    )
    c.tls_set(ca_certs=str(ca), tls_version=ssl.PROTOCOL_TLS_CLIENT)
    c.username_pw_set(user, password)
    result = []
    c.on_connect = lambda cl, u, f, rc, p=None: result.append(not rc.is_failure)
    try:
        c.connect("127.0.0.1", port, keepalive=5)
    except OSError:
        return False
    deadline = time.monotonic() + 5
    while not result and time.monotonic() < deadline:
        c.loop(0.1)
    c.disconnect()
    return bool(result and result[0])


class Postgres:
    """A private PostgreSQL cluster; as root it runs as 'nobody' (postgres refuses root)."""

    def __init__(self):
        self.dir = Path(tempfile.mkdtemp(prefix="suitemon-pg-"))
        self.data = self.dir / "data"
        self.port = free_port()
        self.user = "fleet"
        self._as = []
        if os.geteuid() == 0:
            nobody = pwd.getpwnam("nobody")
            os.chown(self.dir, nobody.pw_uid, nobody.pw_gid)
            self._as = ["runuser", "-u", "nobody", "--"]
        self._run(
            PG_BIN / "initdb",
            "-D",
            str(self.data),
            "-U",
            self.user,
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
        )

    def _run(self, *args) -> None:
        r = subprocess.run([*self._as, *map(str, args)], capture_output=True, text=True, cwd=self.dir)
        if r.returncode != 0:
            raise RuntimeError(f"{args[0]} failed: {r.stdout[-1500:]} {r.stderr[-1500:]}")

    @property
    def dsn(self) -> str:
        return f"host=127.0.0.1 port={self.port} dbname=postgres user={self.user}"

    def start(self) -> Postgres:
        opts = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(
            PG_BIN / "pg_ctl",
            "-D",
            self.data,
            "-l",
            self.dir / "pg.log",
            "-o",
            opts,
            "-w",
            "-t",
            "30",
            "start",
        )
        return self

    def stop(self) -> None:
        self._run(PG_BIN / "pg_ctl", "-D", self.data, "-m", "fast", "-w", "stop")

    def close(self) -> None:
        try:
            self.stop()
        except RuntimeError:
            pass
        shutil.rmtree(self.dir, ignore_errors=True)
