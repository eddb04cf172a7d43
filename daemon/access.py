"""Who may send which command: roles grant verbs, optionally only in some areas.

The broker proves *who* (the actor is the topic segment its ACL ties to the login);
this decides *whether*. A user holds the roles that name them (``recipients`` or
``members``). Default deny: a verb is refused unless one of the user's roles grants
it, with two exceptions for people who hold any role at all:

- ``read`` verbs change nothing (``status``, ``dose_summary``);
- ``raise`` verbs only ever raise an alarm (``deteriorate``): refusing a member of staff
  who reports a deteriorating patient is the unsafe way to fail.

A user who holds no role (a display, the board's own account, a gateway) may send
nothing. A role limited to ``areas`` grants its verbs only for commands that name one
of those areas; a command whose area cannot be told is refused under such a role.
Every decision names the rule that made it, for the ``command.rejected`` event.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

# Verbs that need no grant (for holders of any role). Every other verb, including ones a
# feature registers later and this table does not know, needs a grant: deny is the default.
READ = "read"
RAISE = "raise"
GRANTED = "granted"
VERB_CLASS: dict[str, str] = {
    "status": READ,
    "dose_summary": READ,
    "deteriorate": RAISE,
}
# The verbs of this version, so that a typo in a grant is a config error, not a silent deny.
KNOWN_VERBS = (
    "ack",
    "reset",
    "accept",
    "reject",
    "correct",
    "status",
    "occupancy",
    "dose-record",
    "dose_summary",
    "deteriorate",
    "bell_test",
    "force_close",
    "shutdown",
)
ALL = "*"


def verb_class(verb: str) -> str:
    return VERB_CLASS.get(verb, GRANTED)


@dataclass(frozen=True)
class Decision:
    ok: bool
    rule: str
    reason: str = ""


class Role(Protocol):
    """What this module reads of a role (config.RoleConfig; config imports this module, not the reverse)."""

    @property
    def recipients(self) -> Sequence[str]: ...
    @property
    def members(self) -> Sequence[str]: ...
    @property
    def commands(self) -> Sequence[str]: ...
    @property
    def areas(self) -> Sequence[str]: ...


class Grants(Protocol):
    """What this module reads of a suite configuration (config.SuiteConfig)."""

    @property
    def roles(self) -> Mapping[str, Role]: ...
    @property
    def areas(self) -> Mapping[str, object]: ...


def role_users(role: Role) -> set[str]:
    return set(role.recipients) | set(role.members)


def roles_of(cfg: Grants, actor: str) -> list[tuple[str, Role]]:
    return [(rid, r) for rid, r in cfg.roles.items() if actor in role_users(r)]


def decide(cfg: Grants, actor: str, verb: str, area: Callable[[], str | None] = lambda: None) -> Decision:
    """May ``actor`` send ``verb``? ``area()`` is asked only if an area-limited role could grant it."""
    held = roles_of(cfg, actor)
    if not held:
        return Decision(
            False, "no-role", f"'{actor}' holds no role in [roles]: this account may send no commands"
        )
    cls = verb_class(verb)
    if cls in (READ, RAISE):
        return Decision(True, f"any-role:{cls}")
    granting = [(rid, r) for rid, r in held if verb in r.commands or ALL in r.commands]
    if not granting:
        names = ", ".join(rid for rid, _ in held)
        return Decision(
            False, "default-deny", f"no role of '{actor}' ({names}) grants '{verb}' (roles.<role>.commands)"
        )
    for rid, r in granting:
        if not r.areas:
            return Decision(True, f"roles.{rid}")
    where = area()
    for rid, r in granting:
        if where is not None and where in r.areas:
            return Decision(True, f"roles.{rid}.areas")
    rid = granting[0][0]
    if where is None:
        return Decision(
            False,
            f"roles.{rid}.areas",
            f"'{verb}' is granted to '{actor}' only in areas {', '.join(granting[0][1].areas)}, "
            "and this command names no area",
        )
    return Decision(
        False,
        f"roles.{rid}.areas",
        f"'{verb}' is granted to '{actor}' only in areas "
        f"{', '.join(sorted({a for _, r in granting for a in r.areas}))}, not in '{where}'",
    )


def table(cfg: Grants) -> list[tuple[str, str, str]]:
    """(user, verbs, areas) rows for ``check-config``: what each broker user may send."""
    users = sorted({u for r in cfg.roles.values() for u in role_users(r)})
    rows = []
    for user in users:
        held = roles_of(cfg, user)
        verbs: dict[str, set[str]] = {}
        for _, r in held:
            granted = KNOWN_VERBS if ALL in r.commands else r.commands
            for v in granted:
                verbs.setdefault(v, set()).update(r.areas or {"*"})
        for v in VERB_CLASS:
            verbs.setdefault(v, {"*"})
        parts = []
        for v in sorted(verbs):
            areas = verbs[v]
            parts.append(v if "*" in areas else f"{v}[{','.join(sorted(areas))}]")
        rows.append((user, ", ".join(rid for rid, _ in held), " ".join(parts)))
    return rows


def check(cfg: Grants) -> Iterable[tuple[str, str]]:
    """Config cross-references: grants name known verbs and areas."""
    for rid, r in cfg.roles.items():
        for i, v in enumerate(r.commands):
            if v != ALL and v not in KNOWN_VERBS:
                yield f"roles.{rid}.commands.{i}", f"unknown command '{v}'; known: {', '.join(KNOWN_VERBS)}"
        for i, a in enumerate(r.areas):
            if a not in cfg.areas:
                yield f"roles.{rid}.areas.{i}", f"unknown area '{a}'"
