"""Reconciliation with a live venue, driven by ``run.py`` from outside the actors (not an actor:
it asks them, as the REPL does, and tells them through the bus). The comparison itself is pure
(``state/reconcile.py``); this module gathers the two sides and acts on the result.

**At start** (``reconcile_at_start``; live mode, after the Executor, the RiskGate and the
Sniper started and before the Strategist and the Feed): those three are let settle (the Executor's
own start-up reconcile of its non-final orders with ``fetch_order`` and the fills it applied),
then the venue's account is read (``account(fills_since_ms)``: from the latest fill time the
store knows or the creation of the oldest order not final, whichever is older, less
``FILL_WINDOW_MARGIN_MS``; with neither, no fills are asked) and the engine's view is
built from the Sniper's positions and the Executor's records (and, given ``cash_asset``, the
Sniper's balance: the account's balance of that asset is compared with it, ``BALANCE``:
reported, never a block). Fills at the venue of orders the
Executor has not final and lacks are applied through the Executor (``VenueEventReceived``: its
normal path, once per trade id; ``RECONCILE_FILL_APPLIED``), and the view is built again. When
anything differs, the account is read a second time and only the differences both looks show
are kept (a fill or an acceptance on its way is no difference). Each one is logged
(``RECONCILE_<KIND>: ...``), the whole result is journaled (``VenueReconciled``), then:
``[venue] on_unknown = "halt"`` with an unknown order or position refuses the start
(``ReconcileRefused``, a ``ConfigError``: exit 2 with the differences listed); otherwise the
coins to block go to the RiskGate (``BlockCoins``, replacing the blocks of the last start: a
coin that reconciles clean is free again). A venue whose account cannot be read refuses the
start the same way (``venue: ...``).

**While running** (``VenueWatch``): a daemon thread of its own (never an actor's, never the
timer thread: ``account()`` is a network call) reads the account every ``[venue]
reconcile_every_s``, builds the engine's view right after, and tells the Invariants
``VenueSnapshotTaken``; they compare and report what two consecutive checks show
(``InvariantViolated(code="VENUE_<KIND>")``). A check that fails is logged
(``VENUE_CHECK_FAILED``) and the next one is tried; the thread ends with ``stop`` or when the
engine's roles are gone.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from enum import Enum
from typing import Any

from loguru import logger

from actors.bus import EXECUTOR, RISK_GATE, SNIPER, Bus, RoleState, RoleUnavailable
from adapters.ports import Clock, LiveVenuePort
from state.account import AccountSnapshot
from state.config import ConfigError
from state.messages import BlockCoins, Request, VenueEventReceived, VenueReconciled, VenueSnapshotTaken
from state.reconcile import (
    Decision,
    Difference,
    DifferenceKind,
    EngineView,
    client_ids_named,
    compare,
    decide,
    missing_fills,
)
from state.order import OrderRecord
from state.store import Store, jsonable

SETTLING = (EXECUTOR, RISK_GATE, SNIPER)  # what settles before a look at the venue
FILL_WINDOW_MARGIN_MS = 60_000  # fills asked from this long before the latest one stored (clock skew, ordering)
_LOUD = frozenset({DifferenceKind.UNKNOWN_ORDER, DifferenceKind.UNKNOWN_POSITION, DifferenceKind.SIZE_MISMATCH,
                   DifferenceKind.MISSING_FILL})


class ReconcileRefused(ConfigError):
    """The start is refused: ``[venue] on_unknown = "halt"`` and the venue has what the engine
    does not, or the venue's account could not be read. ``run.py`` exits with 2."""

    def __init__(self, problems: list[str], source: str = "reconciliation with the venue") -> None:
        super().__init__(problems, source)


@dataclass(frozen=True, slots=True, kw_only=True)
class StartReconciliation:
    """What the start-up reconciliation found and did."""

    differences: tuple[Difference, ...] = ()
    decision: Decision = field(default_factory=Decision)
    fills_applied: tuple[str, ...] = ()
    fills_since_ms: int | None = None
    taken_ms: int | None = None
    cash: dict[str, str] | None = None  # {asset, engine, venue}: the balances compared (given a cash asset)

    def as_report(self) -> dict[str, Any]:
        """The session report's ``reconciliation`` block."""
        return {
            "differences": [_plain(d) for d in self.differences],
            "blocked": dict(self.decision.blocked),
            "fills_applied": list(self.fills_applied),
            "fills_since_ms": self.fills_since_ms,
            "taken_ms": self.taken_ms,
            "cash": self.cash,
        }


def _plain(difference: Difference) -> dict[str, Any]:
    """A difference as JSON values, without its empty fields."""
    return {name: value.value if isinstance(value, Enum) else value
            for name, value in jsonable(difference).items() if value is not None}


def engine_view(bus: Bus, client_ids: Iterable[str], *, spot: bool, timeout: float,
                latest_fill_ms: int | None = None, cash_asset: str = "") -> EngineView:
    """The engine's side, asked of the Sniper (its active positions; its balance as the cash
    of ``cash_asset`` when one is given) and the Executor (its records not final, and those of
    ``client_ids`` it knows)."""
    snapshot = bus.ask(SNIPER, Request(name="snapshot"), timeout)
    records = bus.ask(EXECUTOR, Request(name="records", args=(tuple(sorted(client_ids)),)), timeout)
    return EngineView.of(snapshot.positions, records.values(), spot=spot, latest_fill_ms=latest_fill_ms,
                         cash=snapshot.balance if cash_asset else None, cash_asset=cash_asset)


def fills_window(latest_fill_ms: int | None, working: Iterable[OrderRecord]) -> int | None:
    """Where to ask the venue's fills from: the latest fill stored or the oldest order not final
    (one may have filled while the engine was down, also before any fill was stored), whichever
    is older, less ``FILL_WINDOW_MARGIN_MS``; ``None`` (no fills asked) when there is neither."""
    stamps = [ms for ms in (latest_fill_ms, *(r.created_ns // 1_000_000 for r in working if r.created_ns))
              if ms is not None]
    return max(0, min(stamps) - FILL_WINDOW_MARGIN_MS) if stamps else None


def settle(bus: Bus, timeout: float) -> bool:
    """Wait (bounded) until the Executor, the RiskGate and the Sniper have handled all their
    mail at once: what the Executor applied has reached the positions. (Not ``wait_idle``: the
    mail held for the roles not started yet never drains before they start.)"""
    settled = threading.Event()
    bus.when_idle(SETTLING, settled.set)
    if not settled.wait(timeout):
        logger.bind(actor="engine").warning("RECONCILE_NOT_SETTLED: the engine was still busy after {}s; "
                                            "comparing anyway", timeout)
        return False
    return True


def latest_fill_ms(store: Store) -> int | None:
    """The store's latest fill time, read on the calling thread (its connection, if it had
    none, is closed again)."""
    was_closed = store.db.is_closed()
    try:
        return store.latest_fill_ms()
    finally:
        if was_closed and not store.db.is_closed():
            store.db.close()


def reconcile_at_start(*, bus: Bus, venue: LiveVenuePort, store: Store, clock: Clock, on_unknown: str,
                       spot: bool, timeout: float = 10.0, cash_asset: str = "") -> StartReconciliation:
    """The start-up step of the module docstring. Raises ``ReconcileRefused``."""
    log = logger.bind(actor="engine")
    settle(bus, timeout)
    latest = latest_fill_ms(store)
    since = fills_window(latest, bus.ask(EXECUTOR, Request(name="records"), timeout).values())

    def view_of(account: AccountSnapshot) -> EngineView:
        return engine_view(bus, client_ids_named(account), spot=spot, timeout=timeout, latest_fill_ms=latest,
                           cash_asset=cash_asset)

    account = _account(venue, since)
    view = view_of(account)
    applied = []
    for fill in missing_fills(view, account):
        log.warning("RECONCILE_FILL_APPLIED: trade {} of {} ({} @ {}) was at the venue and not in the store; "
                    "applied through the Executor", fill.trade_id, fill.client_order_id, fill.quantity, fill.price)
        bus.send(VenueEventReceived(ts_init_ns=clock.now_ns(), event=fill))
        applied.append(fill.trade_id)
    if applied:
        settle(bus, timeout)
        view = view_of(account)
    differences = compare(view, account)
    if differences:  # a second look: a difference a race made up (a fill on its way) goes away
        settle(bus, timeout)
        again = _account(venue, since)
        view = view_of(again)
        first = {d.key for d in differences}
        differences = [d for d in compare(view, again) if d.key in first]
        account = again
    decision = decide(differences, on_unknown)
    for difference in differences:
        level = "ERROR" if difference.kind in _LOUD else "WARNING"
        log.log(level, "RECONCILE_{}: {}", difference.kind.value, difference.message)
    cash = None if view.cash is None else {
        "asset": cash_asset, "engine": str(view.cash),
        "venue": str(account.balances.get(cash_asset, Decimal(0)))}
    result = StartReconciliation(differences=tuple(differences), decision=decision, fills_applied=tuple(applied),
                                 fills_since_ms=since, taken_ms=account.taken_ms, cash=cash)
    bus.publish(VenueReconciled(ts_init_ns=clock.now_ns(), differences=result.differences,
                             blocked=dict(decision.blocked), fills_applied=result.fills_applied,
                             halted=decision.halt, fills_since_ms=since))
    if decision.halt:
        log.critical("RECONCILE_HALT: [venue] on_unknown = \"halt\" and the venue has what the engine does not")
        raise ReconcileRefused([f"venue.on_unknown = \"halt\": {line}" for line in decision.halt_because])
    bus.send(BlockCoins(ts_init_ns=clock.now_ns(), coins=dict(decision.blocked), replace=True))
    log.info("RECONCILED: {} difference(s), {} fill(s) applied, blocked: {}", len(differences), len(applied),
             ", ".join(f"{coin} ({why})" for coin, why in sorted(decision.blocked.items())) or "none")
    return result


def _account(venue: LiveVenuePort, since: int | None) -> AccountSnapshot:
    try:
        return venue.account(since)
    except Exception as error:  # noqa: BLE001 - any failure to read the account refuses the start
        raise ReconcileRefused([f"venue: the account could not be read to reconcile it with the store: "
                                f"{type(error).__name__}: {error}"]) from None


class VenueWatch:
    """The periodic check's thread (``venue-check``, a daemon): every ``every_s`` seconds, the
    venue's account and the engine's view to the Invariants (``VenueSnapshotTaken``)."""

    def __init__(self, *, bus: Bus, venue: LiveVenuePort, clock: Clock, every_s: float, spot: bool,
                 timeout: float = 10.0) -> None:
        if not every_s > 0:
            raise ValueError(f"every_s: must be a positive number of seconds, got {every_s!r}")
        self._bus, self._venue, self._clock = bus, venue, clock
        self.every_s, self._spot, self._timeout = every_s, spot, timeout
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="venue-check", daemon=True)
        self.checks = 0
        self.failures = 0

    def start(self) -> VenueWatch:
        self._thread.start()
        return self

    def stop(self, timeout: float | None = None) -> None:
        self._stop.set()
        if timeout is not None and self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def check_once(self) -> bool:
        """One check: True when the snapshot went to the Invariants. ``RoleUnavailable`` when
        the engine's roles are gone."""
        try:
            account = self._venue.account(None)
            view = engine_view(self._bus, client_ids_named(account), spot=self._spot, timeout=self._timeout)
        except RoleUnavailable:
            raise
        except Exception as error:  # noqa: BLE001 - one failed check must not end the checks
            self.failures += 1
            logger.bind(actor="engine").warning("VENUE_CHECK_FAILED: {}: {}; the next check in {:g}s",
                                                type(error).__name__, error, self.every_s)
            return False
        self._bus.send(VenueSnapshotTaken(ts_init_ns=self._clock.now_ns(), snapshot=account, view=view))
        self.checks += 1
        return True

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                self.check_once()
            except RoleUnavailable as error:
                if self._bus.state(SNIPER) is RoleState.STOPPED:
                    return  # the engine is stopping
                self.failures += 1
                logger.bind(actor="engine").warning("VENUE_CHECK_FAILED: {}; the next check in {:g}s", error,
                                                    self.every_s)


__all__ = ["FILL_WINDOW_MARGIN_MS", "ReconcileRefused", "StartReconciliation", "VenueWatch", "engine_view",
           "reconcile_at_start"]
