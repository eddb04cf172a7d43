"""The sequence state: what the retained ``shutdown/state`` topic shows and the journal keeps.

Every ``shutdown.*`` journal event carries a full snapshot of this state (as alarm
events carry their record), so the newest snapshot is enough to resume after a
restart, and the retained topic is a pure function of the event.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from suitemon.daemon.shutdown.config import ShutdownConfig

# Phases. Triggers are armed in idle and aborted; completed re-arms once mains is stable.
IDLE, RUNNING, ABORTING, ABORTED, COMPLETED = "idle", "running", "aborting", "aborted", "completed"
ARMED_PHASES = (IDLE, ABORTED)
ACTIVE_PHASES = (RUNNING, ABORTING)

# Step statuses. "open" ones are still to run or waiting for their target.
PENDING, STARTED, HELD = "pending", "running", "held"
OPEN_STATUSES = (PENDING, STARTED, HELD)
# "done": the target acknowledged (replied "done"); the UPS confirmed its countdown.
DONE, FAILED, TIMEOUT, SKIPPED, RELEASED, INTERRUPTED = (
    "done",
    "failed",
    "timeout",
    "skipped",
    "released",
    "interrupted",
)


@dataclass
class StepState:
    id: str
    kind: str
    target: str | None
    critical: bool
    status: str = PENDING
    correlation_id: str | None = None
    started_at: str | None = None
    deadline: str | None = None
    finished_at: str | None = None
    detail: str | None = None
    commanded: bool = False  # a command went out: on abort this step gets its resume command
    resume_status: str | None = None  # None | "sent" | "done" | "failed" | "timeout" | "none"
    resume_correlation_id: str | None = None


@dataclass
class SequenceState:
    phase: str = IDLE
    sequence_id: str | None = None
    trigger: dict[str, Any] | None = None
    started_at: str | None = None
    finished_at: str | None = None
    updated_at: str | None = None
    point_of_no_return: str | None = None
    past_point_of_no_return: bool = False
    budget_mode: bool = False
    current_step: str | None = None
    outcome: str | None = None
    abort_reason: str | None = None
    message: str | None = None  # one line for people (boards, pagers)
    ups_result: dict[str, Any] | None = None
    steps: list[StepState] = field(default_factory=list)

    @classmethod
    def idle(cls, cfg: ShutdownConfig) -> SequenceState:
        return cls(
            point_of_no_return=cfg.steps[cfg.pnr_index].id,
            message=f"armed: watching UPS '{cfg.ups}'",
            steps=[StepState(s.id, s.kind, s.target, s.is_critical) for s in cfg.steps],
        )

    @classmethod
    def begin(cls, cfg: ShutdownConfig, trigger: dict[str, Any], now_iso: str) -> SequenceState:
        st = cls.idle(cfg)
        st.phase, st.sequence_id, st.trigger, st.started_at = RUNNING, str(uuid.uuid4()), trigger, now_iso
        st.message = f"safe shutdown in progress: {trigger.get('detail')}"
        return st

    @property
    def armed(self) -> bool:
        return self.phase in ARMED_PHASES

    def step(self, step_id: str) -> StepState:
        for s in self.steps:
            if s.id == step_id:
                return s
        raise KeyError(step_id)

    def next_open(self) -> StepState | None:
        return next((s for s in self.steps if s.status in OPEN_STATUSES), None)

    def by_correlation(self, cid: str) -> tuple[StepState, bool] | None:
        """The step a correlation id belongs to, and whether it was its resume command."""
        for s in self.steps:
            if s.correlation_id == cid:
                return s, False
            if s.resume_correlation_id == cid:
                return s, True
        return None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["armed"] = self.armed
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SequenceState:
        d = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        steps = [
            StepState(**{k: v for k, v in s.items() if k in StepState.__dataclass_fields__})
            for s in d.pop("steps", [])
        ]
        return cls(**d, steps=steps)


def restore(events: Iterable[Any], cfg: ShutdownConfig) -> tuple[SequenceState | None, list[str]]:
    """The newest state snapshot in the journal, fitted to the present config.

    Returns the state (None if the journal has none) and a list of problems: steps of
    the journaled sequence that the config no longer has are marked skipped, since
    nobody can say what they would command now.
    """
    last = None
    for ev in events:
        if isinstance(ev.data, dict) and isinstance(ev.data.get("state"), dict):
            last = ev.data["state"]
    if last is None:
        return None, []
    state = SequenceState.from_dict(last)
    problems = []
    for s in state.steps:
        if cfg.step(s.id) is None and s.status in OPEN_STATUSES:
            s.status, s.detail = SKIPPED, "no longer in the configuration"
            problems.append(s.id)
    return state, problems
