"""The Executor: places orders on the venue it was given, exactly once per client order id.

**Owns** the order records (``orders`` table): client order id, state machine, venue ids, fills.

**Accepts** ``ExecuteOrder`` (only ever built by the RiskGate) and ``TimerFired("reconcile")``.

**Emits** ``OrderFilled`` and ``OrderRejected``.

**Bad outcomes.** A fill whose price or quantity fails ``state/fill_guard.py`` (zero, negative,
not finite, far from the reference price, more than ordered) is recorded and published as a
rejection (``FILL_REJECTED``), never as a fill; a stored fill of that kind (an older version's)
is published as a rejection too. A venue adapter that raises anything but its declared errors
(``VENUE_ERROR``) is asked once for the id; if it knows nothing the order is rejected with the
error as the reason: the Executor never crashes on an order, and no position waits on it.

Write-ahead: the intent is recorded (SUBMITTING) *before* the venue sees the order, so after any
crash the client order id is known. A second ``ExecuteOrder`` for a known id never reaches the
venue again once the outcome is final: the recorded outcome is published again (the Sniper
ignores what it already applied). An outcome that is unknown (timeout, dropped connection) is
resolved by asking the venue for that client order id, never by placing it blindly.

Paper and live differ only in the venue adapter run.py injects; there is no paper branch here.

Memory: nothing per order. Whether a client order id is known is asked of the store (one
primary-key read per ``ExecuteOrder``), so a session of any length holds no growing set of ids.

**On crash** the restart loads every non-final record and resolves it with the venue.
"""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal
from typing import Any

from actors.base import EngineActor
from actors.bus import EXECUTOR
from adapters.errors import AmbiguousOutcome, InvalidOrder, TemporaryError
from adapters.ports import ExchangePort
from state.fill_guard import fill_problem
from state.messages import ExecuteOrder, OrderFilled, OrderRejected, OrderRequest, TimerFired
from state.order import OrderRecord, OrderTrigger, VenueReport
from state.store import Store
from state.types import OrderStatus


class Executor(EngineActor):
    role = EXECUTOR
    crash_on_error = True

    def __init__(self, *, store: Store, venue: ExchangePort, **base: Any) -> None:
        super().__init__(**base)
        self._store = store
        self._venue = venue
        self.submitted = 0

    def on_start(self) -> None:
        pending = self._store.load_orders([OrderStatus.SUBMITTING, OrderStatus.ACCEPTED])
        if pending:
            self.log.info("RECONCILE: {} order(s) without a final outcome", len(pending))
        for record in pending:
            self._resolve_with_venue(record, resubmit=False)

    def _on_execute_order(self, command: ExecuteOrder) -> None:
        order = command.order
        record = self._store.get_order(order.client_order_id)
        if record is not None and record.is_final:
            self.log.info("DUPLICATE_ORDER: {} already {}; publishing the recorded outcome",
                          order.client_order_id, record.status.value)
            self._publish_outcome(record, order, command.correlation_id or record.correlation_id)
            return
        if record is not None:
            self._resolve_with_venue(record, resubmit=True, correlation_id=command.correlation_id)
            return
        now = self.now_ns()
        record = OrderRecord(
            client_order_id=order.client_order_id,
            position_id=order.position_id,
            coin=order.coin,
            side=order.side,
            quantity=order.quantity,
            intent=order.intent,
            reference_price=order.reference_price,
            reference_ts_ms=order.reference_ts_ms,
            venue=self._venue.name,
            created_ns=now,
            updated_ns=now,
            correlation_id=command.correlation_id,
        )
        self._store.save_order(record)  # write-ahead: before the venue sees it
        self._submit(record, order, command.correlation_id)

    def _submit(self, record: OrderRecord, order: OrderRequest, correlation_id: str | None) -> None:
        record = replace(record, submissions=record.submissions + 1)
        self.submitted += 1
        try:
            report = self._venue.submit_order(order)
        except InvalidOrder as error:
            record = record.apply(OrderTrigger.REJECT, reason=str(error), updated_ns=self.now_ns())
            with self._store.transaction():  # commits with the outcome it publishes (the outbox)
                self._store.save_order(record)
            self.log.warning("ORDER_REJECTED: {} {}", order.client_order_id, error)
            self._publish_outcome(record, order, correlation_id)
            return
        except (AmbiguousOutcome, TemporaryError) as error:
            self._store.save_order(record)
            self.log.error("ORDER_OUTCOME_UNKNOWN: {} {!r}; will ask the venue", order.client_order_id, error)
            return
        except Exception as error:  # noqa: BLE001 - a venue's bug must not crash the Executor on every retry
            self._venue_failed(record, order, correlation_id, error)
            return
        self._apply_report(record, report, order, correlation_id)

    def _venue_failed(self, record: OrderRecord, order: OrderRequest, correlation_id: str | None,
                      error: Exception) -> None:
        """The venue adapter raised something it should not (a bug, an arithmetic error on an
        absurd price): ask it once what it knows of the id; if it knows nothing the order is
        REJECTED with the error as the reason, so the Sniper's position never waits on it."""
        self.log.error("VENUE_ERROR: {} {}: {!r}", order.client_order_id, type(error).__name__, error)
        try:
            report = self._venue.fetch_order(order.client_order_id)
        except Exception as fetch_error:  # noqa: BLE001 - same: answered with a rejection below
            self.log.error("VENUE_ERROR: {} cannot be looked up either: {!r}", order.client_order_id, fetch_error)
            report = None
        if report is not None:
            self._apply_report(record, report, order, correlation_id)
            return
        record = record.apply(OrderTrigger.REJECT, reason=f"VENUE_ERROR: {type(error).__name__}: {error}"[:500],
                              updated_ns=self.now_ns())
        self._store.save_order(record)
        self._publish_outcome(record, order, correlation_id)

    def _resolve_with_venue(self, record: OrderRecord, *, resubmit: bool,
                            correlation_id: str | None = None) -> None:
        order = _request_of(record)
        correlation_id = correlation_id or record.correlation_id
        try:
            report = self._venue.fetch_order(record.client_order_id)
        except (AmbiguousOutcome, TemporaryError) as error:
            self.log.error("RECONCILE_FAILED: {} {!r}; will retry", record.client_order_id, error)
            return
        if report is not None:
            self._apply_report(record, report, order, correlation_id)
        elif resubmit:
            self.log.info("RECONCILE: venue never saw {}; submitting it (same id)", record.client_order_id)
            self._submit(record, order, correlation_id)
        else:
            self.log.info("RECONCILE: venue never saw {}; it goes out when the Sniper asks again",
                          record.client_order_id)

    def _apply_report(self, record: OrderRecord, report: VenueReport, order: OrderRequest,
                      correlation_id: str | None) -> None:
        now = self.now_ns()
        bad_fill = _bad_fill(record, report) if report.status is OrderStatus.FILLED else None
        if bad_fill is not None:
            self.log.error("FILL_REJECTED: {} {} ({}); the order counts as rejected", record.client_order_id,
                           bad_fill, report.venue_order_id)
            record = record.apply(OrderTrigger.REJECT, venue_order_id=report.venue_order_id,
                                  reason=f"FILL_REJECTED: {bad_fill}", updated_ns=now)
        elif report.status is OrderStatus.FILLED:
            record = record.apply(
                OrderTrigger.FILL,
                venue_order_id=report.venue_order_id,
                trade_id=report.trade_id,
                fill_price=report.fill_price,
                fill_quantity=report.fill_quantity,
                fee=report.fee,
                ts_event_ms=report.ts_ms,
                updated_ns=now,
            )
        elif report.status is OrderStatus.REJECTED:
            record = record.apply(OrderTrigger.REJECT, venue_order_id=report.venue_order_id,
                                  reason=report.reason, updated_ns=now)
        else:
            record = replace(record, venue_order_id=report.venue_order_id, updated_ns=now)
            self._store.save_order(record)
            return
        with self._store.transaction():  # commits with the outcome it publishes (the outbox)
            self._store.save_order(record)
        self._publish_outcome(record, order, correlation_id)

    def _publish_outcome(self, record: OrderRecord, order: OrderRequest, correlation_id: str | None) -> None:
        now = self.now_ns()
        bad_fill = _bad_fill(record) if record.status is OrderStatus.FILLED else None
        if bad_fill is not None:  # a record an older version stored: never handed on as a fill
            self.log.error("FILL_REJECTED: stored fill of {} {}; published as a rejection",
                           record.client_order_id, bad_fill)
            self.publish(OrderRejected(ts_init_ns=now, correlation_id=correlation_id, order=order,
                                       reason=f"FILL_REJECTED: {bad_fill}"))
        elif record.status is OrderStatus.FILLED:
            assert record.fill_price is not None and record.fill_quantity is not None
            self.publish(OrderFilled(
                ts_init_ns=now, correlation_id=correlation_id, order=order,
                venue_order_id=record.venue_order_id or "", trade_id=record.trade_id or "",
                fill_price=record.fill_price, fill_quantity=record.fill_quantity, cumulative_quantity=record.fill_quantity,
                fee=record.fee if record.fee is not None else Decimal(0), ts_event_ms=record.ts_event_ms or 0,
                venue=record.venue,
            ))
        elif record.status in (OrderStatus.REJECTED, OrderStatus.CANCELED):
            self.publish(OrderRejected(ts_init_ns=now, correlation_id=correlation_id, order=order,
                                       reason=record.reason or record.status.value))

    def _on_timer_fired(self, timer: TimerFired) -> None:
        if timer.name != "reconcile":
            return
        for record in self._store.load_orders([OrderStatus.SUBMITTING, OrderStatus.ACCEPTED]):
            self._resolve_with_venue(record, resubmit=False)

    def _ask_stats(self) -> dict[str, Any]:
        return {"submitted": self.submitted, "venue": self._venue.name}


def _bad_fill(record: OrderRecord, report: VenueReport | None = None) -> str | None:
    """Why the fill (of ``report``, else the one ``record`` holds) must not be applied."""
    source: Any = report if report is not None else record
    return fill_problem(reference_price=record.reference_price, ordered_quantity=record.quantity,
                        fill_price=source.fill_price, fill_quantity=source.fill_quantity, fee=source.fee)


def _request_of(record: OrderRecord) -> OrderRequest:
    return OrderRequest(
        client_order_id=record.client_order_id,
        position_id=record.position_id,
        coin=record.coin,
        side=record.side,
        quantity=record.quantity,
        intent=record.intent,
        reference_price=record.reference_price,
        reference_ts_ms=record.reference_ts_ms,
    )
