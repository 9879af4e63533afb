"""Invariants: a detector that watches the engine's facts and reports what must never happen.

**Owns** nothing but what it needs to check: the trade ids and filled quantity of the last
``FILLS_KEPT`` filled orders by client order id (older ones are looked up in the Executor's
records), and the last
``VIOLATIONS_KEPT`` violations (``violation_count`` counts them all): bounded, however long the
session.

**Accepts** ``OrderFilled``, ``OrderRejected``, ``OrderCanceled``, ``OrderExpired``,
``OrderDenied``, position events, ``ActorRestarted`` and ``VenueSnapshotTaken`` (a live venue's
account with the engine's view beside it, every ``[venue] reconcile_every_s``).

**Emits** ``InvariantViolated`` (logged at ERROR and journaled). It never trades and never
changes anyone's state.

Checks: an order filled again, with another trade id, after its fills had completed it (an
order may fill in parts, each part its own trade id; the same trade id again is the same fill
republished); an exit order denied (a stop
must always pass the gate); an opened position whose notional exceeds its size by more than
the slippage allowance; a negative cash balance; the engine and a live venue disagreeing
(``state/reconcile.py``: ``VENUE_UNKNOWN_ORDER``, ``VENUE_MISSING_ORDER``,
``VENUE_UNKNOWN_POSITION``, ``VENUE_SIZE_MISMATCH``, ``VENUE_UNKNOWN_FILL``,
``VENUE_MISSING_FILL``). A snapshot races the engine (an order placed a moment before the venue
was asked), so a venue difference is reported only when two consecutive snapshots show it, and
once while it lasts (``state.reconcile.recurring``); it keeps the keys of the last check's
differences for that (bounded by what one check finds).

**On crash** (a derived actor) it reloads the latest fills from the Executor's records; the
last venue check is forgotten (a difference then needs two more checks).
"""

from __future__ import annotations

from collections import OrderedDict, deque
from decimal import Decimal
from typing import Any

from actors.base import EngineActor
from actors.bus import INVARIANTS
from state.messages import (
    ActorRestarted,
    InvariantViolated,
    OrderCanceled,
    OrderDenied,
    OrderExpired,
    OrderFilled,
    OrderRejected,
    PositionChanged,
    PositionClosed,
    PositionOpened,
    VenueSnapshotTaken,
)
from state.reconcile import compare, recurring
from state.store import Store
from state.types import OrderIntent, OrderStatus

OVERSIZE_ALLOWANCE = Decimal("1.02")
FILLS_KEPT = 10_000
VIOLATIONS_KEPT = 1_000


class Invariants(EngineActor):
    role = INVARIANTS
    crash_on_error = False

    def __init__(self, *, store: Store, **base: Any) -> None:
        super().__init__(**base)
        self._store = store
        # client order id -> (trade ids, filled quantity), oldest first
        self._fills: OrderedDict[str, tuple[tuple[str, ...], Decimal]] = OrderedDict()
        self.violations: deque[InvariantViolated] = deque(maxlen=VIOLATIONS_KEPT)
        self.violation_count = 0
        self.restarts_seen = 0
        self._venue_seen: frozenset[tuple[str, str, str]] = frozenset()  # the last check's differences
        self._venue_reported: frozenset[tuple[str, str, str]] = frozenset()  # reported, still present
        self.venue_checks = 0

    def on_start(self) -> None:
        for record in self._store.load_orders([OrderStatus.FILLED], latest=FILLS_KEPT):
            self._remember_fills(record.client_order_id, tuple(f.trade_id for f in record.fills),
                                 record.filled_quantity)

    def _remember_fills(self, client_order_id: str, trade_ids: tuple[str, ...], filled: Decimal) -> None:
        self._fills[client_order_id] = (trade_ids, filled)
        self._fills.move_to_end(client_order_id)
        while len(self._fills) > FILLS_KEPT:
            self._fills.popitem(last=False)

    def _known_fills(self, client_order_id: str) -> tuple[tuple[str, ...], Decimal]:
        """The trade ids this order was filled with and their quantity: remembered, else the
        Executor's record."""
        known = self._fills.get(client_order_id)
        if known is None:
            record = self._store.get_order(client_order_id)
            if record is not None and record.fills:
                known = (tuple(f.trade_id for f in record.fills), record.filled_quantity)
        return known or ((), Decimal(0))

    def _violate(self, code: str, detail: str, correlation_id: str | None = None) -> None:
        event = InvariantViolated(ts_init_ns=self.now_ns(), correlation_id=correlation_id, code=code, detail=detail)
        self.violations.append(event)
        self.violation_count += 1
        self.log.error("INVARIANT_VIOLATED: {} {}", code, detail)
        self.publish(event)

    def _on_order_filled(self, event: OrderFilled) -> None:
        order_id = event.order.client_order_id
        trade_ids, filled = self._known_fills(order_id)
        if event.trade_id in trade_ids:  # the same fill, published again
            self._remember_fills(order_id, trade_ids, filled)
            return
        if trade_ids and filled >= event.order.quantity:
            self._violate("DUPLICATE_FILL", f"{order_id} filled as {', '.join(trade_ids)} and as {event.trade_id}",
                          event.correlation_id)
        self._remember_fills(order_id, (*trade_ids, event.trade_id), filled + event.fill_quantity)

    def _on_order_rejected(self, event: OrderRejected) -> None:
        return None

    def _on_order_canceled(self, event: OrderCanceled) -> None:
        return None

    def _on_order_expired(self, event: OrderExpired) -> None:
        return None

    def _on_order_denied(self, event: OrderDenied) -> None:
        if event.order.intent is OrderIntent.EXIT:
            self._violate("EXIT_DENIED", f"{event.order.client_order_id}: {event.reason}", event.correlation_id)

    def _on_position_opened(self, event: PositionOpened) -> None:
        position = event.position
        if position.exposure_usd > position.size_usd * OVERSIZE_ALLOWANCE:
            self._violate("OVERSIZED_POSITION",
                          f"{position.id} notional {position.exposure_usd} > size {position.size_usd}",
                          position.condition_id)

    def _on_position_changed(self, event: PositionChanged) -> None:
        return None

    def _on_position_closed(self, event: PositionClosed) -> None:
        if event.balance < 0:
            self._violate("NEGATIVE_BALANCE", f"balance {event.balance} after closing {event.position.id}",
                          event.position.condition_id)

    def _on_actor_restarted(self, event: ActorRestarted) -> None:
        self.restarts_seen += 1

    def _on_venue_snapshot_taken(self, message: VenueSnapshotTaken) -> None:
        self.venue_checks += 1
        differences = compare(message.view, message.snapshot)
        report, self._venue_seen, self._venue_reported = recurring(self._venue_seen, differences,
                                                                   self._venue_reported)
        if differences and not report:
            self.log.info("VENUE_CHECK: {} difference(s), reported when the next check sees them too: {}",
                          len(differences), "; ".join(d.line() for d in differences))
        for difference in report:
            self._violate(f"VENUE_{difference.kind.value}", difference.message)

    def _ask_violations(self) -> tuple[InvariantViolated, ...]:
        """The last ``VIOLATIONS_KEPT`` violations, oldest first."""
        return tuple(self.violations)

    def _ask_stats(self) -> dict[str, Any]:
        return {"violations": self.violation_count, "fills_kept": len(self._fills),
                "restarts_seen": self.restarts_seen, "venue_checks": self.venue_checks}
