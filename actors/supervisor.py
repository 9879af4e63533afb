"""Supervision on top of pykka (which has none): notice, restart one-for-one, or escalate.

Notice, three ways: an actor's ``on_failure`` puts a notice on the supervisor's queue (the fast
path); the supervisor polls ``is_alive()`` (a crash in ``on_start`` skips ``on_failure``); and it
pings every actor, counting a ping unanswered for ``ping_timeout_s`` as a hang, unless the actor
handled mail meanwhile (a deep mailbox is busy, not hung).

Restart: one-for-one, with an intensity limit (``max_restarts`` within ``within_s``) and a
backoff that grows with each restart inside the window. A restart calls the role's factory,
waits for the new actor to answer a ping (the readiness barrier: ``on_start`` has rebuilt its
state), then registers it on the bus, which delivers the mail held meanwhile.

Escalation: past the intensity limit, when an actor cannot be started, or when a state owner
hangs (a hung thread cannot be killed, and two owners of the same state must never run), the
supervisor calls ``on_escalate(reason)``: the engine halts trading and stops in order. The
reason names the role's last failure (``...; last failure: crashed: OperationalError(...)``), and
``store_error()`` tells the engine when recent failures said a store can no longer be written
(disk full, lost permissions, I/O error: ``state.store.is_store_unwritable``), so the process can
say "store unwritable" instead of a generic halt. A state owner whose writes fail crashes on each
write, and its restarts fail or crash again, so a full disk reaches the intensity limit within
seconds while writes are being attempted.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pykka
from loguru import logger

from actors.bus import Bus, RoleState
from adapters.ports import Clock
from state.config import SupervisorConfig
from state.messages import ActorRestarted, Request
from state.store import unwritable_cause

_PING = Request(name="ping")


@dataclass(frozen=True, slots=True)
class ChildSpec:
    role: str
    factory: Callable[[], "pykka.ActorRef[Any]"]
    owns_state: bool  # a hang escalates instead of restarting


@dataclass(frozen=True, slots=True)
class _Notice:
    role: str
    ref: "pykka.ActorRef[Any] | None"
    reason: str


class Supervisor:
    def __init__(
        self,
        *,
        bus: Bus,
        clock: Clock,
        config: SupervisorConfig,
        on_escalate: Callable[[str], None],
        ready_timeout: float = 10.0,
    ) -> None:
        self._bus = bus
        self._clock = clock
        self._config = config
        self._on_escalate = on_escalate
        self._ready_timeout = ready_timeout
        self._specs: dict[str, ChildSpec] = {}
        self._refs: dict[str, pykka.ActorRef[Any]] = {}
        self._notices: queue.Queue[_Notice] = queue.Queue()
        self._history: dict[str, deque[float]] = {}
        self._pings: dict[str, tuple[float, int, Any]] = {}  # role -> (sent at, progress, future)
        self._last_pinged: dict[str, float] = {}
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.restarts: dict[str, int] = {}
        self.escalated: str | None = None
        self.last_crash: dict[str, str] = {}  # role -> its latest crash (with the error)
        self._store_error: tuple[float, str] | None = None  # (monotonic time, error text)
        self._restarted = threading.Condition()
        self.log = logger.bind(actor="supervisor")

    # --- wiring -------------------------------------------------------------------------------

    def start_child(self, spec: ChildSpec) -> pykka.ActorRef[Any]:
        """Start a role for the first time (in the caller's thread) and register it."""
        ref = self._start_ready(spec)
        with self._lock:
            self._specs[spec.role] = spec
            self._refs[spec.role] = ref
            self.restarts.setdefault(spec.role, 0)
        self._bus.register(spec.role, ref)
        return ref

    def current_ref(self, role: str) -> pykka.ActorRef[Any] | None:
        with self._lock:
            return self._refs.get(role)

    def release(self, role: str) -> None:
        """Stop supervising ``role`` (it is being stopped on purpose: a graceful shutdown
        stops the Feed and the Strategist first, while the others still work)."""
        with self._lock:
            self._specs.pop(role, None)
            self._refs.pop(role, None)
            self._pings.pop(role, None)

    def notify_failure(self, role: str, ref: pykka.ActorRef[Any], error: BaseException | None) -> None:
        """Called from a dying actor's thread (``on_failure``)."""
        self._note_failure(role, f"crashed: {error!r}", error)
        self._notices.put(_Notice(role, ref, f"crashed: {error!r}"))

    def _note_failure(self, role: str, reason: str, error: BaseException | None) -> None:
        if reason.startswith("crashed"):
            self.last_crash[role] = reason
        cause = unwritable_cause(error)
        if cause is not None:
            self._store_error = (time.monotonic(), f"{role}: {cause}")

    def store_error(self) -> str | None:
        """``"<role>: <error>"`` of the latest failure that said a store can no longer be written,
        if it happened within the intensity window (``within_s``), else ``None``."""
        noted = self._store_error
        if noted is None or time.monotonic() - noted[0] > self._config.within_s:
            return None
        return noted[1]

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="supervisor", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)

    def wait_for_restart(self, role: str, count: int, timeout: float) -> bool:
        """Block until ``role`` has been restarted at least ``count`` times in total."""
        deadline = time.monotonic() + timeout
        with self._restarted:
            while self.restarts.get(role, 0) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._restarted.wait(remaining)
            return True

    # --- the loop -----------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._loop()
        except Exception as error:  # noqa: BLE001 - supervision must never vanish silently
            self.log.exception("SUPERVISOR_FAILED: {!r}", error)
            self._escalate(f"the supervisor itself failed: {error!r}")

    def _loop(self) -> None:
        poll = self._config.poll_interval_s
        while not self._stopping.is_set():
            try:
                notice = self._notices.get(timeout=poll)
            except queue.Empty:
                notice = None
            if self._stopping.is_set():
                return
            if notice is not None:
                self._handle(notice)
                continue
            self._poll()

    def _poll(self) -> None:
        now = time.monotonic()
        with self._lock:
            refs = dict(self._refs)
        for role, ref in refs.items():
            if self._stopping.is_set():
                return
            if not ref.is_alive():
                self._handle(_Notice(role, ref, "found dead (crash in on_start or lost notice)"))
                continue
            sent = self._pings.get(role)
            if sent is None:
                if now - self._last_pinged.get(role, 0.0) >= self._config.ping_interval_s:
                    self._pings[role] = (now, self._bus.handled(role), ref.ask(_PING, block=False))
                continue
            sent_at, progress, future = sent
            try:
                future.get(timeout=0)
                self._pings.pop(role, None)
                self._last_pinged[role] = now
            except pykka.Timeout:
                handled = self._bus.handled(role)
                if handled != progress:
                    # Busy, not hung: it handled mail since the ping was sent (a deep mailbox).
                    self._pings[role] = (now, handled, future)
                elif now - sent_at > self._config.ping_timeout_s:
                    self._pings.pop(role, None)
                    self._handle(_Notice(role, ref, f"hung: no answer to ping in {self._config.ping_timeout_s}s"))
            except pykka.ActorDeadError:
                self._pings.pop(role, None)
                self._handle(_Notice(role, ref, "died while pinged"))

    def _handle(self, notice: _Notice) -> None:
        with self._lock:
            spec = self._specs.get(notice.role)
            current = self._refs.get(notice.role)
        if spec is None or (notice.ref is not None and notice.ref is not current):
            return  # an old incarnation, already replaced
        hung = notice.reason.startswith("hung")
        self._bus.mark_down(notice.role, current)
        if hung and spec.owns_state:
            self._escalate(f"{notice.role} {notice.reason}; a state owner cannot be replaced while its thread may still run")
            return
        if hung and current is not None:
            current.stop(block=False)
        self.log.warning("ACTOR_DOWN: {} {}", notice.role, notice.reason)
        self._restart(spec, notice.reason)

    def _restart(self, spec: ChildSpec, reason: str) -> None:
        history = self._history.setdefault(spec.role, deque())
        while not self._stopping.is_set():
            now = time.monotonic()
            history.append(now)
            while history and now - history[0] > self._config.within_s:
                history.popleft()
            if len(history) > self._config.max_restarts:
                crash = self.last_crash.get(spec.role)
                self._escalate(
                    f"restart intensity exceeded for {spec.role}: {len(history)} failures in "
                    f"{self._config.within_s:g}s (limit {self._config.max_restarts}); last failure: "
                    f"{reason}" + (f"; last crash: {crash}" if crash is not None and crash != reason else "")
                )
                return
            backoff = self._config.backoff_s[min(len(history), len(self._config.backoff_s)) - 1]
            if backoff and self._stopping.wait(backoff):
                return
            try:
                ref = self._start_ready(spec)
            except Exception as error:  # noqa: BLE001 - count it and try again (bounded)
                self.log.error("ACTOR_RESTART_FAILED: {}: {!r}", spec.role, error)
                reason = f"restart failed: {error!r}"
                self._note_failure(spec.role, reason, error)
                continue
            with self._lock:
                self._refs[spec.role] = ref
            self._pings.pop(spec.role, None)
            delivered = self._bus.register(spec.role, ref)
            with self._restarted:
                self.restarts[spec.role] = self.restarts.get(spec.role, 0) + 1
                count = self.restarts[spec.role]
                self._restarted.notify_all()
            self.log.warning(
                "ACTOR_RESTARTED: {} (restart {}, {} held message(s) delivered) after {}",
                spec.role, count, delivered, reason,
            )
            self._bus.publish(
                ActorRestarted(ts_init_ns=self._clock.now_ns(), role=spec.role, restarts=count, reason=reason)
            )
            return

    def _start_ready(self, spec: ChildSpec) -> pykka.ActorRef[Any]:
        ref = spec.factory()
        try:
            answer = ref.ask(_PING, timeout=self._ready_timeout)
        except pykka.ActorDeadError:
            raise RuntimeError(f"{spec.role} died while starting (see the error above)") from None
        except pykka.Timeout:
            ref.stop(block=False)
            raise RuntimeError(f"{spec.role} did not become ready in {self._ready_timeout}s") from None
        if answer != spec.role:
            raise RuntimeError(f"{spec.role} answered ping with {answer!r}")
        return ref

    def _escalate(self, reason: str) -> None:
        if self.escalated is not None:
            return
        self.escalated = reason
        self._stopping.set()
        self.log.critical("ENGINE_HALT: {}", reason)
        self._on_escalate(reason)

    def roles_up(self) -> dict[str, bool]:
        with self._lock:
            return {role: self._bus.state(role) is RoleState.UP for role in self._refs}
