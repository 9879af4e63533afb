"""The bus: routing by role, resolved at send time, with causal delivery and held mail.

Routing is data (``COMMAND_ROUTES``, ``EVENT_ROUTES``): a command has exactly one receiving
role, an event zero or more. Peers never hold actor refs; they name a role and the bus finds
the current actor when the message is sent, so a restart is invisible to them.

Guarantees:

- **Causal order.** Every delivery (all recipients of one message) happens under one lock, and
  mailboxes are FIFO. An actor can only react to a message after the delivery that brought it
  has finished, so whatever it sends is enqueued after every copy of its cause: no actor sees
  an order before the fill that caused it.
- **Nothing is lost in a restart.** A role that is starting or restarting has its mail held and
  delivered, in order, when it comes up. When an actor dies, the messages still in its mailbox
  are taken back (``role_failed``) and delivered to its successor first. Only the message that
  crashed it is not re-delivered (it would crash the successor too); it is logged.
- **Idle accounting.** Each role counts messages delivered and not yet handled, so
  ``wait_idle`` can tell when every mailbox is drained.
- **The Journal's copies go to a durable outbox** when one is attached (``set_outbox``, the
  engine's store): every event routed to ``JOURNAL`` and every ``JOURNAL_TAP`` audit copy is
  appended by the *sender's* thread, before any other recipient gets the message, instead of
  being put in the Journal's mailbox. State owners (``actors/base.py``) handle each message
  inside ``deferring()``: once the handler has opened a decision (a store transaction, whose
  commit the store then defers to the end of the handling), the Journal's copies of what it
  sends are appended in that transaction and its other deliveries are held; at the end the
  decision commits with all of them and the held deliveries go out, in order. So a decision and what it announces are
  durable together (``kill -9`` keeps both or neither), and since a row is committed before
  anyone can react to its message, every consequence is appended after its cause (``seq``
  order is causal). The append runs outside the bus lock: a sender may hold SQLite's write
  lock while it waits for the bus lock, so writing under the bus lock could deadlock; a
  message published while the sending thread itself holds the bus lock (a ``when_idle``
  action) is appended as soon as that thread releases it. Taps still see the Journal's copy,
  when the other recipients get theirs. Messages told to the Journal by role (timers,
  ``InjectCrash``) and asks still go to its mailbox.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

import pykka
from loguru import logger

from state.messages import (
    AccountMarked,
    ActorRestarted,
    AdjustStop,
    BlockCoins,
    ArmCondition,
    ArmConditions,
    BarClosed,
    CancelCondition,
    ClosePosition,
    ConditionArmed,
    ConditionBlocked,
    ConditionCanceled,
    ConditionExpired,
    ConditionRejected,
    ConditionTriggered,
    ConditionsReplaced,
    EndOfData,
    EquityChecked,
    EquityMarked,
    ExecuteOrder,
    FeedFinished,
    FeedGaveUp,
    FeedRecovered,
    FeedStale,
    InvariantViolated,
    VenueAlert,
    KillSwitchTriggered,
    Message,
    CancelOrder,
    MatchTick,
    OrderAccepted,
    OrderCanceled,
    OrderDenied,
    OrderExpired,
    OrderFilled,
    OrderRejected,
    PositionChanged,
    PositionClosed,
    PositionOpened,
    ProposeCondition,
    ProposeConditions,
    ProposeSignal,
    PushQuote,
    PushTick,
    ReleaseHeld,
    Request,
    SetTradingState,
    SubmitOrder,
    Tick,
    TickMatched,
    TradingStateChanged,
    VenueEventReceived,
    VenueReconciled,
    VenueSnapshotTaken,
)

FEED = "feed"
STRATEGIST = "strategist"
RISK_GATE = "risk_gate"
SNIPER = "sniper"
EXECUTOR = "executor"
EXIT_MONITOR = "exit_monitor"
INVARIANTS = "invariants"
JOURNAL = "journal"

ROLES: tuple[str, ...] = (
    FEED, STRATEGIST, RISK_GATE, SNIPER, EXECUTOR, EXIT_MONITOR, INVARIANTS, JOURNAL,
)

COMMAND_ROUTES: dict[type[Message], str] = {
    PushTick: FEED,
    PushQuote: FEED,
    ReleaseHeld: FEED,
    EndOfData: FEED,
    ProposeSignal: STRATEGIST,
    ProposeCondition: RISK_GATE,
    ProposeConditions: RISK_GATE,
    SubmitOrder: RISK_GATE,
    SetTradingState: RISK_GATE,
    ExecuteOrder: EXECUTOR,  # built only by the RiskGate
    CancelOrder: EXECUTOR,  # not vetted: a cancel only reduces what is at risk
    MatchTick: EXECUTOR,
    VenueEventReceived: EXECUTOR,  # a venue's outcome from its own thread
    ArmCondition: SNIPER,
    ArmConditions: SNIPER,
    CancelCondition: SNIPER,
    ClosePosition: SNIPER,
    AdjustStop: SNIPER,
    BlockCoins: RISK_GATE,  # reconciliation with a live venue: no new entries on these coins
    VenueSnapshotTaken: INVARIANTS,  # the periodic check against a live venue's account
}

_POSITION_LISTENERS = (EXIT_MONITOR, INVARIANTS, RISK_GATE, JOURNAL)

EVENT_ROUTES: dict[type[Message], tuple[str, ...]] = {
    Tick: (SNIPER,),
    BarClosed: (STRATEGIST, EXIT_MONITOR, SNIPER),
    FeedFinished: (JOURNAL,),
    FeedGaveUp: (JOURNAL,),
    FeedStale: (SNIPER, JOURNAL),
    FeedRecovered: (SNIPER, JOURNAL),
    ConditionArmed: (JOURNAL,),
    ConditionRejected: (STRATEGIST, JOURNAL),
    ConditionCanceled: (STRATEGIST, JOURNAL),
    ConditionsReplaced: (STRATEGIST, JOURNAL),  # where ConditionArmed and ConditionCanceled go
    ConditionExpired: (STRATEGIST, JOURNAL),
    ConditionTriggered: (STRATEGIST, JOURNAL),
    ConditionBlocked: (JOURNAL,),
    OrderDenied: (SNIPER, INVARIANTS, JOURNAL),
    OrderAccepted: (SNIPER, JOURNAL),
    OrderFilled: (SNIPER, INVARIANTS, JOURNAL),
    OrderRejected: (SNIPER, INVARIANTS, JOURNAL),
    OrderCanceled: (SNIPER, INVARIANTS, JOURNAL),
    OrderExpired: (SNIPER, INVARIANTS, JOURNAL),
    TickMatched: (SNIPER,),
    PositionOpened: _POSITION_LISTENERS,
    PositionChanged: _POSITION_LISTENERS,
    PositionClosed: _POSITION_LISTENERS,
    TradingStateChanged: (SNIPER, STRATEGIST, JOURNAL),
    AccountMarked: (RISK_GATE, JOURNAL),
    EquityMarked: (RISK_GATE,),  # the kill switch's feed between bar closes: never journaled
    EquityChecked: (SNIPER,),  # the RiskGate acted on an EquityMarked (a tick clock's Sniper waits for it)
    KillSwitchTriggered: (JOURNAL,),
    ActorRestarted: (FEED, SNIPER, INVARIANTS, JOURNAL),
    InvariantViolated: (JOURNAL,),
    VenueAlert: (RISK_GATE, JOURNAL),
    VenueReconciled: (JOURNAL,),
}

# Commands the Journal also receives as an audit copy (a copy, not a second handler).
JOURNAL_TAP: frozenset[type[Message]] = frozenset(
    {SubmitOrder, ExecuteOrder, CancelOrder, ClosePosition, AdjustStop, SetTradingState, CancelCondition,
     BlockCoins}
)


class RoleState(StrEnum):
    STARTING = "STARTING"  # not started yet: mail is held
    UP = "UP"
    RESTARTING = "RESTARTING"  # crashed: mail is held for the successor
    STOPPED = "STOPPED"  # engine stopping: mail is refused and logged


class NoRoute(LookupError):
    pass


class RoleUnavailable(RuntimeError):
    """An ask to a role that did not come up within the timeout, or is stopped."""


@dataclass
class _Slot:
    ref: pykka.ActorRef[Any] | None = None
    state: RoleState = RoleState.STARTING
    held: deque[Any] = field(default_factory=deque)
    outstanding: int = 0  # delivered or held, not yet handled
    handled: int = 0  # messages handled by the role's actors, ever (progress, for hang checks)
    notify_at: int = -1  # wake flow-control waiters when outstanding falls to this
    backlog: int = 0  # messages the role handled but still keeps to pass on (the Feed's held ticks)


Tap = Callable[[str, Any], None]


class OutboxPort(Protocol):
    """Where the Journal's copies go (``state.store.StoreOutbox`` on the engine's store)."""

    def append(self, message: Any) -> None:
        """Append durably, on the caller's thread (inside its open transaction, if any)."""

    def holding(self) -> bool:
        """Whether the caller has a decision open whose commit is deferred."""

    def begin_deferring(self) -> None:
        """An actor starts handling a message: its first transaction will stay open."""

    def end_deferring(self, error: BaseException | None) -> None:
        """It is done: commit what it decided (roll back if ``error``)."""


class _ThreadState(threading.local):
    depth = 0  # nested deferring() on this thread
    held: list[tuple[Any, tuple[str, ...], bool]] | None = None  # deliveries waiting for the commit
    waiting: list[Any] | None = None  # Journal copies waiting for this thread to release the bus lock

    def __init__(self) -> None:
        self.spare: list[tuple[Any, tuple[str, ...], bool]] = []  # ``held``'s list, reused


class _Deferring:
    """``Bus.deferring()``'s context manager (see there)."""

    __slots__ = ("_bus",)

    def __init__(self, bus: Bus) -> None:
        self._bus = bus

    def __enter__(self) -> None:
        self._bus._begin_deferring()  # noqa: SLF001 - the bus's own helper

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: Any) -> bool:
        self._bus._end_deferring(error)  # noqa: SLF001
        return False


class Bus:
    def __init__(self, roles: Iterable[str] = ROLES) -> None:
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._slots: dict[str, _Slot] = {role: _Slot() for role in roles}
        self._taps: list[Tap] = []
        self._idle_watchers: list[tuple[frozenset[str], Callable[[], None]]] = []
        self.undeliverable = 0
        self._outbox: OutboxPort | None = None
        self._holding: Callable[[], bool] = _never
        self._routes: dict[type, tuple[str, ...]] = {}  # EVENT_ROUTES as this bus's roles
        self._local = _ThreadState()
        self._deferring = _Deferring(self)

    # --- lifecycle, used by the engine and the supervisor -----------------------------------

    def register(self, role: str, ref: pykka.ActorRef[Any]) -> int:
        """Make ``ref`` the current actor of ``role`` and deliver its held mail in order.
        Returns how many held messages were delivered."""
        with self._lock:
            slot = self._slots[role]
            slot.ref = ref
            slot.state = RoleState.UP
            delivered = 0
            while slot.held:
                message = slot.held.popleft()
                try:
                    ref.tell(message)
                except pykka.ActorDeadError:
                    slot.held.appendleft(message)
                    slot.state = RoleState.RESTARTING
                    break
                delivered += 1
            slot.outstanding = delivered + len(slot.held)
            self._changed.notify_all()
            return delivered

    def role_failed(self, role: str, ref: pykka.ActorRef[Any]) -> int:
        """Called in the dying actor's own thread (``on_failure``): hold new mail for the role
        and take back what is still in the dead actor's mailbox. Returns how many messages
        were taken back."""
        with self._lock:
            slot = self._slots[role]
            if slot.ref is not ref:
                return 0
            slot.state = RoleState.RESTARTING
            rescued: list[Any] = []
            inbox = ref.actor_inbox
            while True:
                try:
                    envelope = inbox.get_nowait()
                except Exception:  # noqa: BLE001 - queue.Empty
                    break
                if envelope.reply_to is not None:
                    # An ask from outside: fail it now; the caller retries on the successor.
                    envelope.reply_to.set_exception(
                        exc_info=(
                            pykka.ActorDeadError,
                            pykka.ActorDeadError(f"{role} restarting"),
                            None,
                        )
                    )
                    continue
                if isinstance(envelope.message, pykka.messages._ActorStop):  # noqa: SLF001
                    continue
                rescued.append(envelope.message)
            slot.held.extendleft(reversed(rescued))
            slot.outstanding = len(slot.held)
            self._changed.notify_all()
            return len(rescued)

    def hand_back(self, role: str, messages: Iterable[Any]) -> int:
        """A dying actor returns mail it had taken but not finished (the Feed's held ticks):
        it goes to the successor first, before what ``role_failed`` rescued. Returns how many."""
        returned = list(messages)
        with self._lock:
            slot = self._slots[role]
            if slot.state is not RoleState.RESTARTING or not returned:
                return 0
            slot.held.extendleft(reversed(returned))
            slot.outstanding += len(returned)
            slot.backlog = 0  # what the dead actor kept is mail again
            return len(returned)

    def mark_down(self, role: str, ref: pykka.ActorRef[Any] | None = None) -> None:
        """The supervisor noticed a dead actor without ``on_failure`` (a crash in ``on_start``
        or a hang): hold new mail for the role."""
        with self._lock:
            slot = self._slots[role]
            if ref is not None and slot.ref is not ref:
                return
            if slot.state is RoleState.UP:
                slot.state = RoleState.RESTARTING
                slot.outstanding = len(slot.held)
                self._changed.notify_all()

    def mark_stopped(self, role: str) -> None:
        with self._lock:
            slot = self._slots[role]
            slot.state = RoleState.STOPPED
            if slot.held:
                logger.bind(actor="bus").warning(
                    "MESSAGE_UNDELIVERABLE: {} held message(s) for {} dropped at stop: {}",
                    len(slot.held), role, ", ".join(type(m).__name__ for m in slot.held),
                )
                self.undeliverable += len(slot.held)
                slot.held.clear()
            slot.outstanding = 0
            slot.ref = None
            self._changed.notify_all()
            if self._idle_watchers:
                self._run_idle_watchers()
        self._after_release()

    def state(self, role: str) -> RoleState:
        with self._lock:
            return self._slots[role].state

    def ref(self, role: str) -> pykka.ActorRef[Any] | None:
        with self._lock:
            slot = self._slots[role]
            return slot.ref if slot.state is RoleState.UP else None

    def add_tap(self, tap: Tap) -> None:
        """Observe every delivery as ``tap(role, message)``, called under the bus lock: it
        must be quick and must not send."""
        with self._lock:
            self._taps.append(tap)

    def remove_tap(self, tap: Tap) -> None:
        with self._lock:
            if tap in self._taps:
                self._taps.remove(tap)

    def set_outbox(self, outbox: OutboxPort | None) -> None:
        """Send the Journal's copies to ``outbox`` (appended on the sender's thread, outside the
        bus lock) instead of its mailbox; ``None`` goes back to the mailbox."""
        with self._lock:
            self._outbox = outbox
            self._holding = outbox.holding if outbox is not None else _never

    def deferring(self) -> AbstractContextManager[Any]:
        """Entered by an actor around the handling of each message (and each ask, and
        ``on_start``): once the handler has opened a decision (a store transaction), what it
        sends is held (the Journal's copies appended in that transaction, the other deliveries
        queued) until the handler ends; then the decision commits with all of it, and the
        queued deliveries go out in order. A handler that raises delivers none of what it held
        (its transaction is rolled back). Re-entrant; nothing without an outbox. (A plain
        class, not a generator: it wraps every tick.)"""
        return self._deferring

    def _begin_deferring(self) -> None:
        local = self._local
        local.depth += 1
        if local.depth == 1 and self._outbox is not None:
            local.held = local.spare
            self._outbox.begin_deferring()

    def _end_deferring(self, error: BaseException | None) -> None:
        local = self._local
        local.depth -= 1
        held = local.held
        if local.depth or held is None:
            return
        local.held = None
        assert self._outbox is not None
        self._outbox.end_deferring(error)  # commit (or roll back) the handler's decision
        if held:
            if error is None:
                with self._lock:
                    for message, roles, durable in held:
                        for role in roles:
                            self._deliver(role, message)
                        if durable:
                            self._tap(JOURNAL, message)
            held.clear()
            self._after_release()

    # --- sending ------------------------------------------------------------------------------

    def send(self, command: Message) -> None:
        """Deliver a command to its one receiving role (and an audit copy to the Journal)."""
        role = COMMAND_ROUTES.get(type(command))
        if role is None:
            raise NoRoute(f"no route for command {type(command).__name__}")
        roles = (role, JOURNAL) if type(command) in JOURNAL_TAP else (role,)
        self._send(command, roles)

    def publish(self, event: Message) -> None:
        """Deliver an event to every role that listens to it (possibly none)."""
        kind = type(event)
        roles = self._routes.get(kind)
        if roles is None:  # a partial bus (tests) listens with fewer roles
            roles = self._routes[kind] = tuple(r for r in EVENT_ROUTES.get(kind, ()) if r in self._slots)
        if roles:
            self._send(event, roles)

    def _send(self, message: Message, roles: tuple[str, ...]) -> None:
        durable = JOURNAL in roles and self._to_outbox(message)
        if durable:
            roles = tuple(r for r in roles if r != JOURNAL)
        held = self._local.held
        if held is not None and self._holding():
            held.append((message, roles, durable))  # delivered once the handler's decision committed
            return
        with self._lock:
            for role in roles:
                self._deliver(role, message)
            if durable:
                self._tap(JOURNAL, message)
        self._after_release()

    def _to_outbox(self, message: Message) -> bool:
        """Append the Journal's copy of ``message`` to the outbox, if one is attached (and the
        bus has a Journal role): now, or, when this thread holds the bus lock, right after it
        releases it. True when the copy went (or will go) to the outbox."""
        sink = self._outbox
        if sink is None or JOURNAL not in self._slots:
            return False
        if self._lock._is_owned():  # type: ignore[attr-defined]  # noqa: SLF001 - see the module docstring
            if self._local.waiting is None:
                self._local.waiting = []
            self._local.waiting.append(message)
            return True
        sink.append(message)
        return True

    def _after_release(self) -> None:
        """Append the Journal copies this thread published while it held the bus lock."""
        waiting = self._local.waiting
        if not waiting or self._lock._is_owned():  # type: ignore[attr-defined]  # noqa: SLF001
            return
        sink = self._outbox
        self._local.waiting = None
        if sink is None:
            return
        for message in waiting:
            sink.append(message)

    def _tap(self, role: str, message: Any) -> None:
        for tap in self._taps:
            tap(role, message)

    def tell(self, role: str, message: Any) -> None:
        """Deliver to a named role (timers, chaos injection): always to its mailbox."""
        with self._lock:
            self._deliver(role, message)
        self._after_release()

    def _deliver(self, role: str, message: Any) -> None:
        slot = self._slots.get(role)
        if slot is None:
            raise NoRoute(f"unknown role {role!r}")
        self._tap(role, message)
        if slot.state is RoleState.UP:
            assert slot.ref is not None
            try:
                slot.ref.tell(message)
                slot.outstanding += 1
                return
            except pykka.ActorDeadError:
                slot.state = RoleState.RESTARTING
                slot.outstanding = len(slot.held)
        if slot.state is RoleState.STOPPED:
            self.undeliverable += 1
            logger.bind(actor="bus").warning(
                "MESSAGE_UNDELIVERABLE: {} for {} after stop", type(message).__name__, role
            )
            return
        slot.held.append(message)
        slot.outstanding += 1

    def message_done(self, role: str) -> None:
        """Called by an actor after it handled a message the bus delivered."""
        with self._lock:
            slot = self._slots[role]
            slot.handled += 1
            if slot.outstanding > 0:
                slot.outstanding -= 1
            if slot.outstanding == 0:
                self._changed.notify_all()
                if self._idle_watchers:
                    self._run_idle_watchers()
            elif slot.outstanding == slot.notify_at:
                slot.notify_at = -1
                self._changed.notify_all()
        self._after_release()

    # --- flow control and barriers (replay) -----------------------------------------------------

    def when_idle(self, roles: Iterable[str], action: Callable[[], None]) -> None:
        """Run ``action`` once every role in ``roles`` has handled all its mail: now if they
        already have, else in the thread whose ``message_done`` made them idle. It runs under
        the bus lock, so it may deliver (``tell``/``send``/``publish``) but must be quick.

        This is how the Feed holds a replay until everything a bar caused has been handled."""
        watched = frozenset(r for r in roles if r in self._slots)
        with self._lock:
            if self._idle(watched):
                action()
            else:
                self._idle_watchers.append((watched, action))
        self._after_release()

    def _idle(self, roles: frozenset[str]) -> bool:
        return all(
            self._slots[r].outstanding == 0 or self._slots[r].state is RoleState.STOPPED for r in roles
        )

    def _run_idle_watchers(self) -> None:
        ready = [w for w in self._idle_watchers if self._idle(w[0])]
        if not ready:
            return
        self._idle_watchers = [w for w in self._idle_watchers if w not in ready]
        for _, action in ready:
            action()

    def add_backlog(self, role: str, delta: int) -> None:
        """A role keeps (``+n``) or passes on (``-n``) messages it has handled: they count
        for flow control until passed on (see ``wait_for_room``)."""
        with self._lock:
            slot = self._slots[role]
            slot.backlog = max(0, slot.backlog + delta)
            if delta < 0:
                self._changed.notify_all()  # a source waiting for room may go on

    def wait_for_room(self, roles: Iterable[str], limit: int, timeout: float) -> bool:
        """Block the calling (source) thread while ``roles`` have ``limit`` or more messages
        not yet handled or kept (``add_backlog``). The waiter is woken when a watched role's backlog
        has fallen to half the limit (and re-checks at least every 50 ms), so a fast source
        and the actors do not trade places on every message. True when there is room, False
        on timeout. Never called by an actor."""
        watched = [r for r in roles if r in self._slots]
        deadline = _monotonic() + timeout
        with self._lock:
            while True:
                total = sum(self._slots[r].outstanding + self._slots[r].backlog for r in watched)
                if total < limit:
                    return True
                remaining = deadline - _monotonic()
                if remaining <= 0:
                    return False
                low = limit // 2
                for role in watched:
                    slot = self._slots[role]
                    slot.notify_at = low if slot.outstanding > low else -1
                self._changed.wait(min(remaining, 0.05))

    # --- asking from outside the actors ---------------------------------------------------

    def ask(self, role: str, request: Request, timeout: float) -> Any:
        """Ask the current actor of ``role``; waits (bounded) through a restart."""
        deadline = _monotonic() + timeout
        while True:
            with self._lock:
                while True:
                    slot = self._slots[role]
                    if slot.state is RoleState.UP:
                        ref = slot.ref
                        break
                    if slot.state is RoleState.STOPPED:
                        raise RoleUnavailable(f"{role} is stopped")
                    remaining = deadline - _monotonic()
                    if remaining <= 0:
                        raise RoleUnavailable(f"{role} did not come up within {timeout}s")
                    self._changed.wait(remaining)
            remaining = max(0.001, deadline - _monotonic())
            try:
                assert ref is not None
                return ref.ask(request, timeout=remaining)
            except pykka.ActorDeadError:
                self.mark_down(role, ref)
                if _monotonic() >= deadline:
                    raise RoleUnavailable(f"{role} died while asked {request.name}") from None
            except pykka.Timeout:
                raise TimeoutError(f"{role} did not answer {request.name} within {timeout}s") from None

    def wait_idle(self, timeout: float) -> bool:
        """True once every role has handled all mail delivered to it (none held)."""
        deadline = _monotonic() + timeout
        with self._lock:
            while True:
                busy = [r for r, s in self._slots.items() if s.outstanding and s.state is not RoleState.STOPPED]
                if not busy:
                    return True
                remaining = deadline - _monotonic()
                if remaining <= 0:
                    return False
                self._changed.wait(min(remaining, 0.5))

    def handled(self, role: str) -> int:
        with self._lock:
            return self._slots[role].handled

    def outstanding(self) -> dict[str, int]:
        with self._lock:
            return {role: slot.outstanding for role, slot in self._slots.items()}


_monotonic = time.monotonic


def _never() -> bool:
    return False
