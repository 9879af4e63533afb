"""actors/bus.py flow control: ``when_idle`` (the Feed's bar barrier) and ``wait_for_room`` (the
source's back-pressure), on a small bus whose roles are real pykka actors the test holds busy.

Each worker handles a ``Job`` by waiting (bounded) for its release event, then calls
``message_done`` and only after that reports the job as handled: once the test has seen a job
handled, whatever that ``message_done`` triggered has already run.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pykka
import pytest

from actors.bus import Bus, RoleState
from tests.conftest import WAIT

ROLES = ("a", "b", "c")


@dataclass(eq=False)
class Job:
    release: threading.Event | None = None
    name: str = ""


class Worker(pykka.ThreadingActor):
    def __init__(self, role: str, bus: Bus, handled: queue.Queue[tuple[str, Job]]) -> None:
        super().__init__()
        self.role = role
        self.bus = bus
        self.handled = handled

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, Job) and message.release is not None:
            message.release.wait(WAIT)
        self.bus.message_done(self.role)
        self.handled.put((self.role, message))
        return None


@dataclass
class FlowBus:
    bus: Bus
    handled: queue.Queue[tuple[str, Job]]
    releases: list[threading.Event] = field(default_factory=list)

    def busy(self, role: str, name: str = "") -> threading.Event:
        """Give ``role`` a job that waits until the returned event is set."""
        release = threading.Event()
        self.releases.append(release)
        self.bus.tell(role, Job(release, name))
        return release

    def quick(self, role: str, name: str = "") -> None:
        self.bus.tell(role, Job(None, name))

    def wait_handled(self, count: int = 1) -> list[tuple[str, str]]:
        done = []
        for _ in range(count):
            role, job = self.handled.get(timeout=WAIT)
            done.append((role, job.name))
        return done


class Calls:
    """An action for ``when_idle`` that records the thread it ran on."""

    def __init__(self) -> None:
        self.threads: list[threading.Thread] = []
        self.ran = threading.Event()

    def __call__(self) -> None:
        self.threads.append(threading.current_thread())
        self.ran.set()

    @property
    def count(self) -> int:
        return len(self.threads)


@pytest.fixture
def flow() -> Iterator[FlowBus]:
    bus = Bus(ROLES)
    handled: queue.Queue[tuple[str, Job]] = queue.Queue()
    refs = {role: Worker.start(role, bus, handled) for role in ROLES}
    for role, ref in refs.items():
        bus.register(role, ref)
    flow = FlowBus(bus=bus, handled=handled)
    yield flow
    for release in flow.releases:
        release.set()
    for ref in refs.values():
        ref.stop(block=True, timeout=WAIT)


# --- when_idle ----------------------------------------------------------------------------------


def test_when_idle_when_the_roles_are_idle_then_the_action_runs_now_on_the_calling_thread(flow):
    calls = Calls()

    flow.bus.when_idle(("a", "b"), calls)

    assert calls.threads == [threading.current_thread()]


def test_when_idle_runs_once_when_the_last_watched_role_finishes(flow):
    release_a = flow.busy("a", "a1")
    release_b = flow.busy("b", "b1")
    flow.quick("b", "b2")
    calls = Calls()

    flow.bus.when_idle(("a", "b"), calls)
    assert calls.count == 0

    release_a.set()
    assert flow.wait_handled() == [("a", "a1")]
    assert calls.count == 0, "b still has two messages"

    release_b.set()
    assert flow.wait_handled(2) == [("b", "b1"), ("b", "b2")]
    assert calls.count == 1
    assert calls.threads[0] is not threading.current_thread(), "run by the thread whose message_done made it idle"

    flow.quick("a", "a2")
    flow.quick("b", "b3")
    flow.wait_handled(2)
    assert calls.count == 1, "a watcher runs once, not at every later idle moment"


def test_when_idle_ignores_roles_it_does_not_watch(flow):
    flow.busy("c", "c1")
    calls = Calls()

    flow.bus.when_idle(("a", "b"), calls)

    assert calls.count == 1


def test_when_idle_ignores_role_names_the_bus_does_not_have(flow):
    calls = Calls()

    flow.bus.when_idle(("a", "no_such_role"), calls)

    assert calls.count == 1


def test_when_idle_action_may_deliver_from_inside_message_done(flow):
    release = flow.busy("a", "a1")
    flow.bus.when_idle(("a",), lambda: flow.bus.tell("c", Job(None, "sent by the action")))

    release.set()

    assert sorted(flow.wait_handled(2)) == [("a", "a1"), ("c", "sent by the action")]
    assert flow.bus.wait_idle(WAIT)


def test_when_idle_watchers_on_different_roles_fire_independently(flow):
    release_a = flow.busy("a", "a1")
    release_b = flow.busy("b", "b1")
    on_a, on_ab = Calls(), Calls()
    flow.bus.when_idle(("a",), on_a)
    flow.bus.when_idle(("a", "b"), on_ab)

    release_a.set()
    flow.wait_handled()
    assert (on_a.count, on_ab.count) == (1, 0)

    release_b.set()
    flow.wait_handled()
    assert (on_a.count, on_ab.count) == (1, 1)


def test_when_idle_a_stopped_role_counts_as_idle(flow):
    release = flow.busy("a", "a1")
    calls = Calls()
    flow.bus.when_idle(("a",), calls)
    assert calls.count == 0

    flow.bus.mark_stopped("a")

    assert calls.count == 1
    assert flow.bus.state("a") is RoleState.STOPPED
    release.set()
    flow.wait_handled()
    assert calls.count == 1


# --- wait_for_room ---------------------------------------------------------------------------------


def test_wait_for_room_when_below_the_limit_then_true_at_once(flow):
    flow.busy("a", "a1")

    started = time.monotonic()
    assert flow.bus.wait_for_room(("a",), 2, timeout=0) is True
    assert time.monotonic() - started < 1


def test_wait_for_room_when_at_the_limit_then_false_after_the_timeout(flow):
    flow.busy("a", "a1")
    flow.quick("a", "a2")  # waits in the mailbox behind a1

    started = time.monotonic()
    assert flow.bus.wait_for_room(("a",), 2, timeout=0.2) is False
    elapsed = time.monotonic() - started

    assert 0.19 <= elapsed < WAIT


def test_wait_for_room_with_no_timeout_left_then_false_at_once(flow):
    flow.busy("a", "a1")

    assert flow.bus.wait_for_room(("a",), 1, timeout=0) is False


def test_wait_for_room_sums_the_watched_roles(flow):
    flow.busy("a", "a1")
    flow.busy("b", "b1")
    flow.busy("c", "c1")

    assert flow.bus.wait_for_room(("a", "b"), 2, timeout=0) is False
    assert flow.bus.wait_for_room(("a", "b"), 3, timeout=0) is True
    assert flow.bus.wait_for_room(("a", "no_such_role"), 2, timeout=0) is True


def test_wait_for_room_returns_true_once_the_roles_drop_below_the_limit(flow):
    release = flow.busy("a", "a1")
    flow.quick("a", "a2")
    result: list[bool] = []
    source = threading.Thread(target=lambda: result.append(flow.bus.wait_for_room(("a",), 2, timeout=WAIT)))
    source.start()

    release.set()
    source.join(WAIT)

    assert not source.is_alive()
    assert result == [True]


def test_wait_for_room_counts_what_a_role_keeps_and_wakes_when_it_passes_it_on(flow):
    flow.bus.add_backlog("a", 3)  # e.g. ticks the Feed holds behind a bar

    assert flow.bus.wait_for_room(("a",), 3, timeout=0) is False

    result: list[bool] = []
    source = threading.Thread(target=lambda: result.append(flow.bus.wait_for_room(("a",), 3, timeout=WAIT)))
    source.start()
    flow.bus.add_backlog("a", -1)  # passed on: no bus message, the waiter must still notice
    source.join(WAIT)

    assert not source.is_alive()
    assert result == [True]


def test_backlog_never_goes_below_zero(flow):
    flow.bus.add_backlog("a", -5)

    assert flow.bus.wait_for_room(("a",), 1, timeout=0) is True
