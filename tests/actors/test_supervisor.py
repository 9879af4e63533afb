"""The bus and the supervisor with small test actors: routing, holding, causal order, restarts,
intensity, hangs."""

from __future__ import annotations

import queue
import threading
from typing import Any, ClassVar

import pykka
import pytest

from actors.base import EngineActor
from actors.bus import Bus, NoRoute, RoleState, RoleUnavailable
from actors.supervisor import ChildSpec, Supervisor
from adapters.clock import FakeClock
from state.config import SupervisorConfig
from state.messages import InjectCrash, Request, Tick
from tests.conftest import WAIT


class Recorder(EngineActor):
    """Records (incarnation, message); blocks on ``gate`` for a message named 'block'."""

    role: ClassVar[str] = "a"
    crash_on_error = True

    def __init__(self, *, out: queue.Queue[Any], incarnation: int, gate: threading.Event | None = None,
                 forward_to: str | None = None, **base: Any) -> None:
        super().__init__(**base)
        self.out = out
        self.incarnation = incarnation
        self.gate = gate
        self.forward_to = forward_to

    def _on_str(self, message: str) -> None:
        if message == "block" and self.gate is not None:
            self.gate.wait(WAIT)
        self.out.put((self.role, self.incarnation, message))
        if self.forward_to is not None:
            self.bus.tell(self.forward_to, f"caused-by-{message}")


class RoleB(Recorder):
    role = "b"


def tick() -> Tick:
    from decimal import Decimal

    return Tick(ts_init_ns=0, coin="BTC", price=Decimal(1), ts_ms=1)


@pytest.fixture
def rig():
    bus = Bus(("a", "b"))
    out: queue.Queue[Any] = queue.Queue()
    escalations: list[str] = []
    escalated = threading.Event()

    def on_escalate(reason: str) -> None:
        escalations.append(reason)
        escalated.set()

    sup = Supervisor(
        bus=bus, clock=FakeClock(), on_escalate=on_escalate,
        config=SupervisorConfig(max_restarts=2, within_s=60, backoff_s=(0.0,), poll_interval_s=0.02,
                                ping_interval_s=0.05, ping_timeout_s=0.3),
    )
    incarnations = {"a": 0, "b": 0}
    gate = threading.Event()

    def factory(cls: type[Recorder], **kwargs: Any):
        def make():
            incarnations[cls.role] += 1
            return cls.start(bus=bus, clock=FakeClock(), out=out, incarnation=incarnations[cls.role],
                             gate=gate, on_failure_notice=sup.notify_failure, **kwargs)
        return make

    class Rig:
        pass

    r = Rig()
    r.bus, r.out, r.sup, r.escalations, r.gate, r.factory = bus, out, sup, escalations, gate, factory
    r.escalated = escalated
    yield r
    gate.set()
    sup.stop()
    pykka.ActorRegistry.stop_all(block=True, timeout=WAIT)


def collect(out: queue.Queue[Any], n: int) -> list[Any]:
    return [out.get(timeout=WAIT) for _ in range(n)]


def test_mail_for_a_role_that_has_not_started_is_held_and_delivered_in_order(rig):
    for n in range(3):
        rig.bus.tell("a", f"m{n}")
    assert rig.bus.state("a") is RoleState.STARTING
    rig.sup.start_child(ChildSpec("a", rig.factory(Recorder), owns_state=False))
    assert [m for _, _, m in collect(rig.out, 3)] == ["m0", "m1", "m2"]
    assert rig.bus.wait_idle(WAIT)


def test_send_of_an_unrouted_command_raises(rig):
    with pytest.raises(NoRoute):
        rig.bus.send(object())  # type: ignore[arg-type]


def test_delivery_is_causal_across_roles(rig):
    # a forwards every message to b; the test also tells b directly after each a-message is
    # published. b must always see a's effect after its cause was delivered.
    rig.sup.start_child(ChildSpec("b", rig.factory(RoleB), owns_state=False))
    rig.sup.start_child(ChildSpec("a", rig.factory(Recorder, forward_to="b"), owns_state=False))
    for n in range(50):
        rig.bus.tell("a", f"x{n}")
    assert rig.bus.wait_idle(WAIT)
    seen_by_b = [m for role, _, m in collect(rig.out, 100) if role == "b"]
    assert seen_by_b == [f"caused-by-x{n}" for n in range(50)]


def test_crash_then_restart_keeps_the_mail_queued_behind_the_crash(rig):
    rig.sup.start_child(ChildSpec("a", rig.factory(Recorder), owns_state=False))
    rig.sup.start()
    rig.bus.tell("a", "block")  # holds the actor so the crash and later mail queue up
    rig.bus.tell("a", InjectCrash(ts_init_ns=0))
    rig.bus.tell("a", "after-1")
    rig.bus.tell("a", "after-2")
    rig.gate.set()
    assert rig.sup.wait_for_restart("a", 1, WAIT)
    got = collect(rig.out, 3)
    assert got[0] == ("a", 1, "block")
    assert got[1:] == [("a", 2, "after-1"), ("a", 2, "after-2")]
    assert rig.bus.wait_idle(WAIT)


def test_intensity_limit_escalates_instead_of_restarting_forever(rig):
    rig.sup.start_child(ChildSpec("a", rig.factory(Recorder), owns_state=False))
    rig.sup.start()
    for count in (1, 2):
        rig.bus.tell("a", InjectCrash(ts_init_ns=0))
        assert rig.sup.wait_for_restart("a", count, WAIT)
    rig.bus.tell("a", InjectCrash(ts_init_ns=0))
    assert rig.escalated.wait(WAIT)
    assert rig.escalations and "restart intensity exceeded for a" in rig.escalations[0]
    assert rig.sup.restarts["a"] == 2


def test_a_hung_derived_actor_is_replaced(rig):
    rig.sup.start_child(ChildSpec("a", rig.factory(Recorder), owns_state=False))
    rig.sup.start()
    rig.bus.tell("a", "block")  # never released until teardown: a hang
    assert rig.sup.wait_for_restart("a", 1, WAIT)
    rig.bus.tell("a", "hello")
    assert rig.out.get(timeout=WAIT) == ("a", 2, "hello")


def test_a_hung_state_owner_escalates(rig):
    rig.sup.start_child(ChildSpec("a", rig.factory(Recorder), owns_state=True))
    rig.sup.start()
    rig.bus.tell("a", "block")
    assert rig.escalated.wait(WAIT)
    assert rig.escalations and "hung" in rig.escalations[0]


def test_ask_waits_through_a_restart_and_reaches_the_new_actor(rig):
    rig.sup.start_child(ChildSpec("a", rig.factory(Recorder), owns_state=False))
    rig.sup.start()
    rig.bus.tell("a", InjectCrash(ts_init_ns=0))
    assert rig.bus.ask("a", Request(name="ping"), timeout=WAIT) == "a"


def test_ask_to_a_stopped_role_fails_clearly(rig):
    rig.bus.mark_stopped("a")
    with pytest.raises(RoleUnavailable, match="stopped"):
        rig.bus.ask("a", Request(name="ping"), timeout=0.1)
