"""The Executor: places orders on the venue it was given, exactly once per client order id.

**Owns** the order records (``orders`` table): client order id, state machine, venue ids, fills.

**Accepts** ``ExecuteOrder`` (only ever built by the RiskGate) and ``TimerFired("reconcile")``.

**Emits** ``OrderFilled`` and ``OrderRejected``.

Write-ahead: the intent is recorded (SUBMITTING) *before* the venue sees the order, so after any
crash the client order id is known. A second ``ExecuteOrder`` for a known id never reaches the
venue again once the outcome is final: the recorded outcome is published again (the Sniper
ignores what it already applied). An outcome that is unknown (timeout, dropped connection) is
resolved by asking the venue for that client order id, never by placing it blindly.

Paper and live differ only in the venue adapter run.py injects; there is no paper branch here.

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
        self._known_ids: set[str] = set()
        self.submitted = 0

    def on_start(self) -> None:
        self._known_ids = self._store.order_ids()
        pending = self._store.load_orders([OrderStatus.SUBMITTING, OrderStatus.ACCEPTED])
        if pending:
            self.log.info("RECONCILE: {} order(s) without a final outcome", len(pending))
        for record in pending:
            self._resolve_with_venue(record, resubmit=False)

    def _on_execute_order(self, command: ExecuteOrder) -> None:
        order = command.order
        known = order.client_order_id in self._known_ids
        record = self._store.get_order(order.client_order_id) if known else None
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
        self._known_ids.add(record.client_order_id)
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
        self._apply_report(record, report, order, correlation_id)

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
        if report.status is OrderStatus.FILLED:
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
        if record.status is OrderStatus.FILLED:
            assert record.fill_price is not None and record.fill_quantity is not None
            self.publish(OrderFilled(
                ts_init_ns=now, correlation_id=correlation_id, order=order,
                venue_order_id=record.venue_order_id or "", trade_id=record.trade_id or "",
                fill_price=record.fill_price, fill_quantity=record.fill_quantity,
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
