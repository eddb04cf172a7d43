"""Mosquitto as shipped in deploy/mosquitto/: TLS with a CA made at test time, passwords, ACL, bridge.

The shipped files are rendered with exact string replacements (each one must match, so a
change to the shipped file that the tests no longer cover fails loudly) and only test
plumbing is added around them: loopback listener, a work directory, the running user.
"""

from __future__ import annotations

import getpass
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import threading
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from helpers import REPO, Watcher, free_port, wait_until
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

DEPLOY = REPO / "deploy" / "mosquitto"
MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
MOSQUITTO_PASSWD = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"


def render(text: str, replacements: dict[str, str]) -> str:
    for old, new in replacements.items():
        assert old in text, f"shipped file no longer contains {old!r}"
        text = text.replace(old, new)
    return text


# -- PKI ------------------------------------------------------------------------------------
class Pki:
    """A throw-away CA and a server certificate for 127.0.0.1 / localhost (openssl CLI)."""

    def __init__(self, d: Path):
        self.dir = d
        d.mkdir(parents=True, exist_ok=True)
        self.ca_key, self.ca = d / "ca.key", d / "ca.crt"
        self.key, self.csr, self.cert = d / "broker.key", d / "broker.csr", d / "broker.crt"
        ext = d / "san.ext"
        ext.write_text(
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n"
            "keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n"
        )
        run = lambda *a: subprocess.run(["openssl", *a], check=True, capture_output=True)  # noqa: E731
        run(
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(self.ca_key),
            "-out",
            str(self.ca),
            "-days",
            "2",
            "-subj",
            "/CN=suitemon test CA",
        )
        run(
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(self.key),
            "-out",
            str(self.csr),
            "-subj",
            "/CN=localhost",
        )
        run(
            "x509",
            "-req",
            "-in",
            str(self.csr),
            "-CA",
            str(self.ca),
            "-CAkey",
            str(self.ca_key),
            "-CAcreateserial",
            "-out",
            str(self.cert),
            "-days",
            "2",
            "-extfile",
            str(ext),
        )
        os.chmod(self.key, 0o600)


def password_file(path: Path, users: dict[str, str]) -> Path:
    path.unlink(missing_ok=True)
    for i, (user, pw) in enumerate(users.items()):
        args = [MOSQUITTO_PASSWD, *(["-c"] if i == 0 else []), "-b", str(path), user, pw]
        subprocess.run(args, check=True, capture_output=True)
    os.chmod(path, 0o600)
    return path


# -- brokers ----------------------------------------------------------------------------------
class Broker:
    """One Mosquitto with a full config text; can be stopped gracefully and started again."""

    def __init__(self, workdir: Path, conf: str, port: int):
        self.workdir = workdir
        self.port = port
        workdir.mkdir(parents=True, exist_ok=True)
        self.conf = workdir / "mosquitto.conf"
        # Test plumbing only: where to keep state, and not to drop to the 'mosquitto' user
        # (which could not read the test's 0600 files) when the tests run as root.
        head = (
            f"user {getpass.getuser()}\npersistence true\npersistence_location {workdir}/\n"
            f"log_dest file {workdir}/mosquitto.log\nlog_type all\n"
        )
        self.conf.write_text(head + conf)
        self.proc: subprocess.Popen | None = None

    def start(self) -> Broker:
        self.proc = subprocess.Popen(
            [MOSQUITTO, "-c", str(self.conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_until(self._accepting, 10, what=f"mosquitto on {self.port}")
        return self

    def _accepting(self) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError(f"mosquitto exited: {self.log_text()[-2000:]}")
        try:
            socket.create_connection(("127.0.0.1", self.port), 0.2).close()
            return True
        except OSError:
            return False

    def stop(self, graceful: bool = True) -> None:
        """SIGTERM lets Mosquitto write its persistence file (queued messages, sessions)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM if graceful else signal.SIGKILL)
            self.proc.wait(10)
        self.proc = None

    def log_text(self) -> str:
        p = self.workdir / "mosquitto.log"
        return p.read_text(errors="replace") if p.exists() else ""


def site_broker_conf(pki: Pki, secrets: Path, port: int) -> str:
    return render(
        (DEPLOY / "suitemon.conf").read_text(),
        {
            "password_file /etc/mosquitto/suitemon/passwd": f"password_file {secrets / 'passwd'}",
            "acl_file /etc/mosquitto/suitemon/acl": f"acl_file {secrets / 'acl'}",
            "listener 8883\n": f"listener {port} 127.0.0.1\n",
            "/etc/mosquitto/certs/suitemon-ca.crt": str(pki.ca),
            "/etc/mosquitto/certs/broker.crt": str(pki.cert),
            "/etc/mosquitto/certs/broker.key": str(pki.key),
        },
    )


def bridge_conf(pki: Pki, site: str, central_port: int, password: str) -> str:
    return render(
        (DEPLOY / "bridge-central.conf").read_text(),
        {
            "@SITE@": site,
            "@CENTRAL_1@": f"127.0.0.1:{central_port}",
            # One central node here: the other two addresses are left unused ports (failover: test_fleet.py).
            "@CENTRAL_2@": f"127.0.0.1:{free_port()}",
            "@CENTRAL_3@": f"127.0.0.1:{free_port()}",
            "@BRIDGE_PASSWORD@": password,
            "/etc/mosquitto/certs/central-ca.crt": str(pki.ca),
            # A quick retry after a cut, so the test does not wait out the production back-off.
            "restart_timeout 2 60": "restart_timeout 1 2",
        },
    )


def central_broker_conf(pki: Pki, secrets: Path, port: int) -> str:
    return render(
        (DEPLOY / "central.conf").read_text(),
        {
            "password_file /etc/mosquitto/suitemon/passwd": f"password_file {secrets / 'passwd'}",
            "acl_file /etc/mosquitto/suitemon/central-acl": f"acl_file {secrets / 'central-acl'}",
            "listener 8883\n": f"listener {port} 127.0.0.1\n",
            "/etc/mosquitto/certs/suitemon-ca.crt": str(pki.ca),
            "/etc/mosquitto/certs/broker.crt": str(pki.cert),
            "/etc/mosquitto/certs/broker.key": str(pki.key),
        },
    )


# -- clients ------------------------------------------------------------------------------------
class TlsWatcher(Watcher):
    """The test Watcher over TLS with a user name; MQTT 5; optionally a persistent session."""

    def __init__(
        self,
        port: int,
        ca: Path,
        username: str | None,
        password: str | None,
        topic: str = "suitemon/#",
        client_id: str | None = None,
        persistent: bool = False,
    ):
        self.messages = []
        self.retained = {}
        self.cond = threading.Condition()
        self.topic = topic
        self.port = port
        self.connects: list[str] = []
        self.acks: dict[int, Any] = {}
        cid = client_id or f"watch-{os.getpid()}-{id(self)}"
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=cid, protocol=paho.MQTTv5)
        self.client.tls_set(ca_certs=str(ca), tls_version=ssl.PROTOCOL_TLS_CLIENT)
        if username:
            self.client.username_pw_set(username, password)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_publish = self._on_publish
        props = None
        if persistent:
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = 600
        self.client.reconnect_delay_set(0.2, 1)
        self.client.connect("127.0.0.1", port, keepalive=10, clean_start=not persistent, properties=props)
        self.client.loop_start()

    def _on_connect(self, client, userdata, flags, rc, props=None):
        with self.cond:
            self.connects.append(str(rc))
            self.cond.notify_all()
        if not rc.is_failure and self.topic:
            client.subscribe(self.topic, qos=1)

    def _on_publish(self, client, userdata, mid, rc=None, props=None):
        with self.cond:
            self.acks[mid] = rc
            self.cond.notify_all()

    def publish_acked(self, topic: str, obj: Any, timeout: float = 5.0):
        """Publish QoS 1 and return the broker's PUBACK reason (MQTT 5 says "Not authorized")."""
        info = self.client.publish(topic, json.dumps(obj), qos=1)
        return self.wait_for(lambda w: w.acks.get(info.mid), timeout, what=f"PUBACK for {topic}")


def connect_result(port: int, ca: Path, username: str | None, password: str | None) -> str:
    """The CONNACK reason for a bare connection attempt."""
    w = TlsWatcher(port, ca, username, password, topic="")
    try:
        return w.wait_for(lambda x: x.connects and x.connects[0], 10, what="CONNACK")
    finally:
        w.close()


class TcpProxy:
    """A WAN link we can cut: forwards 127.0.0.1:port to an upstream port, byte for byte."""

    def __init__(self, upstream: int, port: int | None = None):
        self.upstream = upstream
        self.port = port or free_port()
        self._socks: list[socket.socket] = []
        self._lock = threading.Lock()
        self._srv: socket.socket | None = None
        self.connections = 0

    def start(self) -> TcpProxy:
        srv = socket.socket()
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind(("127.0.0.1", self.port))
        srv.listen()
        self._srv = srv
        threading.Thread(target=self._accept, args=(srv,), daemon=True).start()
        return self

    def _accept(self, srv: socket.socket) -> None:
        while True:
            try:
                down, _ = srv.accept()
            except OSError:
                return
            try:
                up = socket.create_connection(("127.0.0.1", self.upstream), 2)
            except OSError:
                down.close()
                continue
            with self._lock:
                self._socks += [down, up]
                self.connections += 1
            for a, b in ((down, up), (up, down)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def cut(self) -> None:
        """The link goes down: live connections are reset and new ones refused."""
        if self._srv is not None:
            try:  # wakes the thread blocked in accept(), which otherwise keeps the port listening
                self._srv.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self._srv.close()
            self._srv = None
        with self._lock:
            socks, self._socks = self._socks, []
        for s in socks:
            try:  # shutdown wakes the pump blocked in recv(); close alone would not
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def resume(self) -> None:
        self.start()
