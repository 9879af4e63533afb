"""The actor base: typed dispatch, ping, a role-bound logger and failure notice.

A message of type ``OrderFilled`` is handled by ``_on_order_filled``; a ``Request`` named
``snapshot`` (an ask from outside the actors) by ``_ask_snapshot``. Every actor answers
``ping``. ``InjectCrash`` makes any actor fail inside its own thread.

Failure policy (DESIGN.md 5.3): state owners (``crash_on_error = True``: Sniper, RiskGate,
Executor, Journal) let an unexpected exception crash them, so the restart rebuilds from durable
state; derived actors (Feed, Strategist, ExitMonitor, Invariants) log, count and skip a
message that fails, except when the error says a store cannot be written (disk full, lost
permissions: ``state.store.is_store_unwritable``): that is no bad message but the end of
durability, so they crash too, and the supervisor's restart limit halts the engine instead of
a Feed that silently stops saving bars and its resume point. ``on_failure`` hands the mailbox
back to the bus and notices the supervisor; ``on_stop`` and ``on_failure`` both call ``_close``.
A crash in ``on_start`` skips ``on_failure`` (pykka only logs it): each actor's own ``on_start``
is wrapped so that its error still reaches the supervisor's notice (which then knows why a start
or restart failed, e.g. a store that cannot be written); the supervisor also polls for it.

Durability: a state owner's (``crash_on_error``) ``on_start``, message handlers and asks run
inside ``bus.deferring()``, so a decision it writes in a store transaction commits together
with the messages it then sends, and those are delivered only after that commit
(``actors/bus.py``). Derived actors write no decisions and skip it.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from types import TracebackType
from typing import Any, ClassVar

import pykka
from loguru import logger

from adapters.ports import Clock
from actors.bus import Bus
from state.messages import InjectCrash, Request
from state.store import is_store_unwritable

FailureListener = Callable[[str, "pykka.ActorRef[Any]", BaseException | None], None]


class InjectedCrash(RuntimeError):
    """The failure raised on purpose by ``InjectCrash``."""


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


class EngineActor(pykka.ThreadingActor):
    role: ClassVar[str] = "actor"
    crash_on_error: ClassVar[bool] = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Every actor's own ``on_start`` runs inside ``bus.deferring()``, as its message
        handlers do: a restart's reconciliation (a fill applied, an order sent again) commits
        with what it announces (see ``actors/bus.py``); its error also reaches the supervisor's
        notice (pykka skips ``on_failure`` for a crash in ``on_start``)."""
        super().__init_subclass__(**kwargs)
        start = cls.__dict__.get("on_start")
        if start is None or getattr(start, "_deferring", False):
            return

        @functools.wraps(start)
        def on_start(self: EngineActor) -> None:
            try:
                with self._deferring:
                    start(self)
            except Exception as error:
                if self._failure_notice is not None:
                    self._failure_notice(self.role, self.actor_ref, error)  # the supervisor learns why
                raise

        on_start._deferring = True  # type: ignore[attr-defined]
        cls.on_start = on_start  # type: ignore[method-assign]

    def __init__(
        self,
        *,
        bus: Bus,
        clock: Clock,
        on_failure_notice: FailureListener | None = None,
    ) -> None:
        super().__init__()
        self.bus = bus
        self.clock = clock
        self._failure_notice = on_failure_notice
        self.log = logger.bind(actor=self.role)
        self._handlers: dict[type, Callable[[Any], Any]] = {}
        self.handler_errors = 0
        self._handling_ns: int | None = None  # causal time of the message being handled
        # State owners decide in the store: their commits wait for what they send (bus.py).
        # Derived actors write no decisions, so they skip it (it wraps every tick).
        self._deferring: AbstractContextManager[Any] = bus.deferring() if self.crash_on_error else nullcontext()

    # --- dispatch --------------------------------------------------------------------------

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, Request):
            return self._answer(message)
        self._handling_ns = getattr(message, "ts_init_ns", None)
        self.clock.handling(self._handling_ns)  # causal time (replay)
        try:
            with self._deferring:  # a decision commits with what it sends (actors/bus.py)
                self._dispatch(message)
        finally:
            self._handling_ns = None
            self.clock.handling(None)
            self.bus.message_done(self.role)
        return None

    @contextmanager
    def handling_later(self, message: Any) -> Iterator[None]:
        """Handle ``message`` now, inside another message's handler, at ``message``'s own time.

        For a message that waited (a tick deferred behind an order in flight): what it causes
        must carry its time, not the time of the message that released it, or a replay's
        stamps would depend on how far the Feed had read ahead.
        """
        outer = self._handling_ns
        self.clock.handling(getattr(message, "ts_init_ns", None))
        try:
            yield
        finally:
            self.clock.handling(outer)

    def _dispatch(self, message: Any) -> None:
        handler = self._handlers.get(type(message))
        if handler is None:
            handler = getattr(self, f"_on_{_snake(type(message).__name__)}", None)
            if handler is None:
                self.log.warning("UNHANDLED_MESSAGE: {} ignored", type(message).__name__)
                return
            self._handlers[type(message)] = handler
        if self.crash_on_error or isinstance(message, InjectCrash):
            handler(message)
            return
        try:
            handler(message)
        except Exception as error:  # noqa: BLE001 - derived actors skip a bad message (logged, counted)
            if is_store_unwritable(error):
                raise  # not a bad message: the store is gone (see the module docstring)
            self.handler_errors += 1
            self.log.exception("HANDLER_ERROR: {} skipped", type(message).__name__)

    def _answer(self, request: Request) -> Any:
        handler = getattr(self, f"_ask_{request.name}", None)
        if handler is None:
            raise ValueError(f"{self.role} has no request named {request.name!r}")
        try:
            with self._deferring:
                return handler(*request.args, **dict(request.kwargs))
        except (ValueError, LookupError):
            raise  # the caller's mistake: answered, state untouched
        except Exception as error:
            # A bug while answering: fail the caller, then crash so the restart rebuilds.
            self.log.exception("REQUEST_FAILED: {} crashed {}", request.name, self.role)
            if self.crash_on_error:
                self.bus.tell(self.role, InjectCrash(ts_init_ns=self.clock.now_ns(), reason=repr(error)))
            raise

    def _ask_ping(self) -> str:
        return self.role

    def _on_inject_crash(self, message: InjectCrash) -> None:
        raise InjectedCrash(f"{self.role}: {message.reason}")

    # --- lifecycle ---------------------------------------------------------------------------

    def on_failure(
        self,
        exception_type: type[BaseException] | None,
        exception_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        rescued = self.bus.role_failed(self.role, self.actor_ref)
        self.log.error(
            "ACTOR_CRASHED: {}: {} ({} queued message(s) kept for the restart)",
            self.role, exception_value, rescued,
        )
        try:
            self._on_crash()
        finally:
            if self._failure_notice is not None:
                self._failure_notice(self.role, self.actor_ref, exception_value)

    def on_stop(self) -> None:
        self._close()

    def _close(self) -> None:
        """Release what ``on_start`` acquired. Called on stop and (through ``_on_crash``) on
        failure."""

    def _on_crash(self) -> None:
        """Called on failure, after the mailbox went back to the bus: by default ``_close``."""
        self._close()

    def publish(self, event: Any) -> None:
        self.bus.publish(event)

    def send(self, command: Any) -> None:
        self.bus.send(command)

    def now_ns(self) -> int:
        return self.clock.now_ns()
