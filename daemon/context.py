"""What rules and features may use of the running daemon, and nothing more."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from suitemon.daemon.alarms import AlarmEngine
from suitemon.daemon.config import SuiteConfig
from suitemon.daemon.contract import Topics
from suitemon.daemon.events import Recorder
from suitemon.daemon.facts import Facts
from suitemon.daemon.metrics import Metrics


@dataclass
class Context:
    cfg: SuiteConfig  # feature sections are read with getattr (cfg.<name>, None when absent)
    recorder: Recorder
    engine: AlarmEngine
    topics: Topics
    metrics: Metrics
    facts: Facts
    publish_json: Callable[..., None]  # (topic, obj, retain=False): not journaled (state, replies)
    commands: Any = None
    # (topic filter, fn(topic, payload)): features that listen on their own topics
    # (shutdown replies). Messages not matching any filter go to the command dispatcher.
    subscribe: Callable[[str, Callable[[str, bytes], Any]], None] | None = None
    runners: dict[str, Any] = field(default_factory=dict)
    # Read-only for features: its backlog is a health figure (metrics endpoint, status).
    outbox: Any = None
    services: dict[str, Any] = field(default_factory=dict)

    @property
    def site(self) -> str:
        return self.cfg.site.id

    def reply(self, actor: str, obj: dict[str, Any]) -> None:
        self.publish_json(self.topics.reply(actor), obj)
