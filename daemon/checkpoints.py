"""Signed checkpoints of the journal head: the witness that makes truncation and rewriting visible.

A keyed chain stops anyone without the chain key from recomputing edited rows, but deleting
the newest rows leaves a chain that is still valid. So the daemon signs the committed head
(``seq`` + ``hash`` + ``keyed_from``) with an Ed25519 key at least every minute, appends it
to a checkpoint file and publishes it retained on ``<root>/journal/checkpoint``; the bridge
carries it to the central broker, which the suite PC cannot rewrite. ``suitemon journal
verify --witness FILE|mqtt`` checks the journal against the newest valid checkpoint.

Payload (JSON, public contract, docs/mqtt.md)::

    {"v": 1, "site": "...", "seq": 1234, "hash": "<64 hex>", "keyed_from": 1,
     "ts": "2026-...Z", "key_id": "<16 hex>", "sig": "<base64 Ed25519 over the rest>"}

The signature covers the canonical JSON (sorted keys, no spaces) of every field but ``sig``.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from suitemon.daemon.journal import Journal, VerifyResult, utc_now_iso
from suitemon.daemon.secret_files import write_new_secret

log = structlog.get_logger("suitemon.checkpoints")

VERSION = 1
TOPIC_PARTS = ("journal", "checkpoint")


def _canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _public_bytes(pub: Ed25519PublicKey) -> bytes:
    return pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(pub: Ed25519PublicKey) -> str:
    return hashlib.sha256(_public_bytes(pub)).hexdigest()[:16]


def public_key_path(private_path: Path) -> Path:
    return private_path.with_name(private_path.name + ".pub")


def load_or_create_signing_key(path: Path, *, announce: bool = True) -> Ed25519PrivateKey:
    """The checkpoint signing key (PEM, PKCS#8); created 0600 with its public half (``.pub``) if absent.

    A new key is a warning on a real site (its public half must reach the central witness);
    the demo, whose state is thrown away, creates its key with ``announce=False``."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        write_new_secret(path, pem)
        public_key_path(path).write_bytes(
            key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        if announce:
            log.warning(
                "checkpoint signing key created; give its public half to the central site",
                key=str(path),
                public=str(public_key_path(path)),
            )
        return key
    loaded = serialization.load_pem_private_key(data, password=None)
    if not isinstance(loaded, Ed25519PrivateKey):
        raise ValueError(f"{path}: not an Ed25519 private key")
    return loaded


def load_public_key(path: Path) -> Ed25519PublicKey:
    """A public key PEM, or the private key PEM (its public half is used)."""
    data = path.read_bytes()
    if b"PRIVATE KEY" in data:
        key = serialization.load_pem_private_key(data, password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError(f"{path}: not an Ed25519 key")
        return key.public_key()
    pub = serialization.load_pem_public_key(data)
    if not isinstance(pub, Ed25519PublicKey):
        raise ValueError(f"{path}: not an Ed25519 public key")
    return pub


def sign(
    key: Ed25519PrivateKey, site: str, seq: int, head_hash: str, keyed_from: int | None, ts: str | None = None
) -> dict[str, Any]:
    body = {
        "v": VERSION,
        "site": site,
        "seq": seq,
        "hash": head_hash,
        "keyed_from": keyed_from,
        "ts": ts or utc_now_iso(),
        "key_id": key_id(key.public_key()),
    }
    return {**body, "sig": base64.b64encode(key.sign(_canonical(body))).decode("ascii")}


def signature_ok(pub: Ed25519PublicKey, cp: dict[str, Any]) -> bool:
    try:
        body = {k: v for k, v in cp.items() if k != "sig"}
        pub.verify(base64.b64decode(cp["sig"], validate=True), _canonical(body))
        return True
    except (InvalidSignature, KeyError, TypeError, ValueError):
        return False


@dataclass(frozen=True)
class Witness:
    newest: dict[str, Any] | None
    valid: int
    invalid: int


def choose(candidates: list[Any], pub: Ed25519PublicKey, site: str | None = None) -> Witness:
    """The newest (highest seq) checkpoint with a good signature; bad ones are counted, never used."""
    newest, valid, invalid = None, 0, 0
    for cp in candidates:
        if not isinstance(cp, dict) or not signature_ok(pub, cp) or (site and cp.get("site") != site):
            invalid += 1
            continue
        valid += 1
        if newest is None or cp["seq"] >= newest["seq"]:
            newest = cp
    return Witness(newest, valid, invalid)


def read_file(path: Path) -> list[Any]:
    """Every line of a checkpoint file, parsed; a line that is not JSON becomes None (counted invalid)."""
    out: list[Any] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            out.append(None)
    return out


def compare(result: VerifyResult, cp: dict[str, Any], journal: Journal) -> str | None:
    """Why the journal does not match the checkpoint, or None when it does."""
    seq = cp["seq"]
    if cp.get("keyed_from") != result.keyed_from:
        return (
            f"the checkpoint of seq {seq} says the chain is keyed from {cp.get('keyed_from')}, "
            f"the journal says {result.keyed_from}"
        )
    if result.head_seq < seq:
        return (
            f"TRUNCATED: the checkpoint of {cp['ts']} vouches for seq {seq}, "
            f"the journal ends at seq {result.head_seq}"
        )
    _, h = journal.head(seq)
    if h != cp["hash"]:
        return f"REWRITTEN: row {seq} has another hash than the checkpoint of {cp['ts']} vouches for"
    return None


class Checkpointer:
    """Signs the committed head when it moved, keeps it in a file, publishes it retained."""

    def __init__(
        self,
        journal: Journal,
        key: Ed25519PrivateKey,
        path: Path,
        site: str,
        committed: Callable[[], int],
        publish: Callable[[dict[str, Any]], None],
    ):
        self.journal, self.key, self.path, self.site = journal, key, path, site
        self.committed = committed
        self.publish = publish
        self.last: dict[str, Any] | None = None
        self.write_failures = 0

    def take(self, *, force: bool = False) -> dict[str, Any] | None:
        seq = self.committed()
        if not force and self.last is not None and self.last["seq"] == seq:
            self.publish(self.last)  # the head did not move: say so again (liveness), no new line
            return None
        seq, head_hash = self.journal.head(seq)
        cp = sign(self.key, self.site, seq, head_hash, self.journal.keyed_from)
        self.last = cp
        self.publish(cp)  # first: a full disk must not keep the checkpoint from the broker
        self._append(cp)
        return cp

    def record_old_head(self, seq: int, head_hash: str) -> dict[str, Any]:
        """Migration: a signed checkpoint of the plain chain's head, before the keyed segment began."""
        cp = sign(self.key, self.site, seq, head_hash, None)
        self._append(cp)
        return cp

    def _append(self, cp: dict[str, Any]) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(json.dumps(cp, separators=(",", ":")) + "\n")
                f.flush()
                os.fsync(f.fileno())
        except OSError as err:  # a full disk must not stop the daemon: the broker copy still went out
            self.write_failures += 1
            log.error("cannot write a journal checkpoint", error=str(err), file=str(self.path), seq=cp["seq"])

    def republish(self) -> None:
        if self.last is not None:
            self.publish(self.last)

    async def run(self, period_s: float) -> None:
        while True:
            await asyncio.sleep(period_s)
            self.take()
