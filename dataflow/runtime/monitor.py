"""The Monitor: counters of what a worker did, readable as a dict (Faust's Monitor, trimmed).

>>> m = Monitor()
>>> m.on_received("orders", 3); m.on_sent("alerts", 1)
>>> d = m.as_dict(); d["messages_received"], d["messages_sent_by_topic"]
(3, {'alerts': 1})
"""
from __future__ import annotations

import time
from collections import defaultdict
from typing import Any


class Monitor:
    def __init__(self, clock: Any = time.monotonic) -> None:
        self._clock = clock
        self.started = clock()
        self.received_by_topic: dict[str, int] = defaultdict(int)
        self.sent_by_topic: dict[str, int] = defaultdict(int)
        self.events_by_agent: dict[str, int] = defaultdict(int)
        self.dead_letters_by_reason: dict[str, int] = defaultdict(int)
        self.send_errors = 0
        self.late_by_step: dict[str, int] = defaultdict(int)
        self.changelog_records = 0
        # control records carrying watermarks to partitions that got no other record
        self.heartbeats_sent = 0
        self.heartbeats_received = 0
        self.restored_records = 0
        self.commits = 0
        self.committed: dict[str, int] = {}
        self.read: dict[str, int] = {}
        self.end: dict[str, int] = {}
        self.batches = 0
        self.batch_seconds = 0.0
        self.commit_seconds = 0.0
        self.stopped_by: int | None = None  # the signal that stopped the run, if one did

    def on_received(self, topic: str, count: int) -> None:
        self.received_by_topic[topic] += count

    def on_sent(self, topic: str, count: int) -> None:
        self.sent_by_topic[topic] += count

    def on_events(self, agent: str, count: int) -> None:
        self.events_by_agent[agent] += count

    def on_dead_letter(self, stage: str) -> None:
        self.dead_letters_by_reason[stage] += 1

    def on_late(self, step: str, count: int) -> None:
        """Events a window or join dropped because they arrived after it closed."""
        self.late_by_step[step] += count

    def on_batch(self, seconds: float) -> None:
        self.batches += 1
        self.batch_seconds += seconds

    def on_commit(self, offsets: dict[str, int], seconds: float) -> None:
        self.commits += 1
        self.commit_seconds += seconds
        self.committed.update(offsets)

    @property
    def messages_received(self) -> int:
        return sum(self.received_by_topic.values())

    def events_per_second(self) -> float:
        elapsed = self._clock() - self.started
        return sum(self.events_by_agent.values()) / elapsed if elapsed > 0 else 0.0

    def lag(self) -> dict[str, int]:
        return {tp: max(0, end - self.read.get(tp, 0)) for tp, end in sorted(self.end.items())}

    def as_dict(self) -> dict[str, Any]:
        return {
            "messages_received": self.messages_received,
            "messages_received_by_topic": dict(sorted(self.received_by_topic.items())),
            "messages_sent": sum(self.sent_by_topic.values()),
            "messages_sent_by_topic": dict(sorted(self.sent_by_topic.items())),
            "events_by_agent": dict(sorted(self.events_by_agent.items())),
            "events_per_second": round(self.events_per_second(), 1),
            "dead_letters": sum(self.dead_letters_by_reason.values()),
            "dead_letters_by_stage": dict(sorted(self.dead_letters_by_reason.items())),
            "send_errors": self.send_errors,
            "late_events": sum(self.late_by_step.values()),
            "late_events_by_step": dict(sorted(self.late_by_step.items())),
            "changelog_records": self.changelog_records,
            "heartbeats_sent": self.heartbeats_sent,
            "heartbeats_received": self.heartbeats_received,
            "restored_records": self.restored_records,
            "commits": self.commits,
            "batches": self.batches,
            "batch_seconds_avg": round(self.batch_seconds / self.batches, 6) if self.batches else 0.0,
            "commit_seconds_avg": round(self.commit_seconds / self.commits, 6) if self.commits else 0.0,
            "committed_offsets": dict(sorted(self.committed.items())),
            "read_offsets": dict(sorted(self.read.items())),
            "end_offsets": dict(sorted(self.end.items())),
            "lag": self.lag(),
        }
