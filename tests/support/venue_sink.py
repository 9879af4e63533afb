"""A venue sink for tests: every event a venue pushes (``Fill``, ``OrderUpdate``, ``VenueNotice``),
kept in order, with bounded waits on a condition (never a sleep)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from state.order import Fill, NoticeKind, OrderUpdate, VenueEvent, VenueNotice
from state.types import OrderStatus
from tests.conftest import WAIT


class EventSink:
    def __init__(self) -> None:
        self.events: list[VenueEvent] = []
        self.changed = threading.Condition()

    def __call__(self, event: VenueEvent) -> None:
        with self.changed:
            self.events.append(event)
            self.changed.notify_all()

    def wait(self, predicate: Callable[[], bool], timeout: float = WAIT) -> bool:
        """True once ``predicate()`` holds (checked at every event and at least every 50 ms);
        False after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while not predicate():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self.changed.wait(min(remaining, 0.05))
            return True

    def fills(self, coid: str) -> list[Fill]:
        with self.changed:
            return [e for e in self.events if isinstance(e, Fill) and e.client_order_id == coid]

    def updates(self, coid: str) -> list[OrderStatus]:
        with self.changed:
            return [e.status for e in self.events if isinstance(e, OrderUpdate) and e.client_order_id == coid]

    def notices(self) -> list[NoticeKind]:
        with self.changed:
            return [e.kind for e in self.events if isinstance(e, VenueNotice)]
