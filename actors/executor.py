"""The Executor: places orders on the venue it was given, once per client order id, and turns
what the venue reports into the order lifecycle's events.

**Owns** the order records (``orders`` table: request, status through ``state/order.py``'s
transition table, venue id, totals) and their fills (``fills`` table, one row per trade id).

**Accepts** ``ExecuteOrder`` (only ever built by the RiskGate), ``CancelOrder`` (Sniper, engine),
``MatchTick`` (Sniper: a trade the venue may match resting orders against),
``VenueEventReceived`` (a venue's outcome from a thread of its own) and
``TimerFired("reconcile")``. Asks: ``open_orders(coin=None)`` (the venue's working orders, a
list of ``VenueOrder``), ``cancel_open_orders(keep=frozenset(), reason="SHUTDOWN", foreign=True)`` (asks
the venue to cancel every working order whose client id is not in ``keep``, and, with
``foreign``, those never recorded here; answers the client ids it asked to cancel, the outcomes
arrive as events), ``order(client_order_id)`` (the record
or ``None``), ``records(client_order_ids=())`` (every record not final, and the records of the
given ids the store knows: the engine's side of a reconciliation with the venue) and ``stats``.

**Emits**, per order and in this order: ``OrderAccepted`` for an order that can rest
(``OrderRequest.rests``: once, when the venue is first known to hold it, also when its first
fill is the first news of it; a market, IOC or FOK order is in flight until it is final, so its
acceptance is recorded, not announced: the default config's events and journal stay as they
were),
``OrderFilled`` per fill (never twice per trade id; ``cumulative_quantity`` is the order's
filled total after it, with the fill's liquidity and fee currency), then at most one final
``OrderCanceled`` / ``OrderExpired`` (with the quantity filled before) or ``OrderRejected``
(nothing filled); the last fill makes the order FILLED. ``TickMatched`` after every outcome of
a ``MatchTick``.

**The venue** (``VenuePort``) is bound to the Executor's sink at start. Outcomes the venue
reports during a call the Executor makes (a paper venue reports synchronously, inside
``submit`` / ``cancel`` / ``observe_trade``) are queued and handled right after that call, in
order; outcomes reported on another thread are posted to the Executor's own mailbox as
``VenueEventReceived`` and handled in turn. No venue call is made under a lock the venue could
wait for.

Write-ahead: the order is recorded (SUBMITTING) *before* the venue sees it, committed at once,
so after any crash its client order id is known. A second ``ExecuteOrder`` for a known id never
reaches the venue twice: the recorded outcome is published again (acceptance, fills, final
event: the Sniper ignores what it already applied) and a working order is looked up at the
venue; only a record still SUBMITTING that the venue has never seen (a crash before the venue
got it) goes out again, with the same client order id (a venue never creates a second order
for an id it has). A SUBMITTING record the venue does not know and nobody asks for again is
REJECTED (``NOT_FOUND``) after the grace period below, as an UNKNOWN one is.

**Unknown outcomes.** A submit that raises ``AmbiguousOutcome`` makes the order UNKNOWN; it is
looked up with ``fetch_order`` at once, on every reconcile timer and at start, and never
submitted again. What the venue answers is applied (acceptance, fills by trade id, final
status). A venue that still does not know the id ``unknown_grace_s`` of engine time after the
outcome was lost makes it REJECTED (``NOT_FOUND: the venue never received it``). A
``TemporaryError`` (the order surely did not reach the venue) and an ``InvalidOrder`` are
REJECTED with the reason.

**Bad outcomes.** Every fill passes ``state/fill_guard.py`` (price, quantity within what is
left of the order, fee); a bad one is never applied nor published (``FILL_REJECTED``, its trade
id remembered so it is refused again wherever it comes from): an order with nothing filled is
REJECTED (``OrderRejected``), one with fills is CANCELED with them (``OrderCanceled``), and the
venue is asked to cancel the rest. A fill that would overfill is refused the same way. A stored
fill of that kind (an older version's) is published as a rejection. A venue adapter that raises
anything but its declared errors (``VENUE_ERROR``) is asked once for the id; if it knows nothing
the order is rejected with the error as the reason: the Executor never crashes on a venue's
bug, and no position waits on it. A ``CancelOrder`` for an unknown id is logged
(``CANCEL_UNKNOWN_ORDER``); for a final one the recorded outcome is published again; for one
the venue does not know yet (UNKNOWN) it is remembered (``CANCEL_PENDING``) and sent as soon as
the venue reports the order. A cancel whose own outcome is unknown (it timed out, the venue was
unreachable or banned) is remembered too: each reconcile timer looks the order up and, while
the venue says it still works, sends the cancel again (``CANCEL_RETRY``), so an entry the
Sniper is waiting to see canceled never waits forever.

A fill after CANCELED or EXPIRED (it raced the cancel at the venue) is applied and published as
the fact it is (``FILL_AFTER_CANCEL``); the order stays CANCELED/EXPIRED, or becomes FILLED.

**The venue connection.** A ``VenueNotice`` the venue pushes (banned until a time, ban lifted,
private stream down or up, keys refused) is logged (``VENUE_<KIND>``) and published as
``VenueAlert``. A submit or cancel that raises ``FatalExchangeError`` (``AuthenticationFailed``,
``UnsupportedAccount``) rejects the order (``VENUE_HALTED: ...``) and publishes
``VenueAlert(AUTH_FAILED)``: the engine halts trading on it.

Paper and live differ only in the venue adapter run.py injects; there is no paper branch here.

Memory: the records of the orders not yet final (the working ones), nothing per final order:
whether a client order id is known is asked of the store (one primary-key read per
``ExecuteOrder``), so a session of any length holds no growing set of ids.

**On crash** the restart binds the venue again, loads every non-final record and reconciles it
with ``fetch_order`` (missed fills applied once, by trade id; a final status applied).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import replace
from decimal import Decimal
from typing import Any

from actors.base import EngineActor
from actors.bus import EXECUTOR
from adapters.errors import AmbiguousOutcome, AuthenticationFailed, FatalExchangeError, InvalidOrder, TemporaryError
from adapters.ports import VenuePort
from state.fill_guard import fill_problem
from state.fsm import InvalidTransition
from state.messages import (
    CancelOrder,
    ExecuteOrder,
    MatchTick,
    OrderAccepted,
    OrderCanceled,
    OrderExpired,
    OrderFilled,
    OrderRejected,
    TickMatched,
    TimerFired,
    VenueAlert,
    VenueEventReceived,
)
from state.order import (
    OPEN_STATUSES,
    Fill,
    NoticeKind,
    OrderRecord,
    OrderTrigger,
    OrderUpdate,
    Overfill,
    VenueEvent,
    VenueNotice,
    VenueOrder,
)
from state.store import Store
from state.types import OrderStatus

UNKNOWN_GRACE_S = 60.0  # engine time an UNKNOWN order may stay unknown to the venue before it is REJECTED
NOT_FOUND = "NOT_FOUND: the venue never received it"


class Executor(EngineActor):
    role = EXECUTOR
    crash_on_error = True

    def __init__(self, *, store: Store, venue: VenuePort, unknown_grace_s: float = UNKNOWN_GRACE_S,
                 **base: Any) -> None:
        super().__init__(**base)
        self._store = store
        self._venue = venue
        self._grace_ns = int(unknown_grace_s * 1_000_000_000)
        self._events: deque[VenueEvent] = deque()  # reported during a venue call: handled right after it
        self._thread: int | None = None
        self._open: dict[str, OrderRecord] = {}  # the records not yet final
        self.submitted = 0
        self.fills = 0
        self.duplicate_fills = 0
        self.refused_fills = 0
        self.cancels = 0

    def on_start(self) -> None:
        self._thread = threading.get_ident()
        self._venue.bind(self._sink)
        pending = self._store.load_orders(OPEN_STATUSES)
        for record in pending:
            self._open[record.client_order_id] = record
        self._drain()  # what the venue reported while being bound
        if pending:
            self.log.info("RECONCILE: {} order(s) without a final outcome", len(pending))
        for record in pending:
            current = self._record(record.client_order_id)
            if current is not None and not current.is_final:
                self._reconcile(current)

    # --- the venue's events ------------------------------------------------------------------

    def _sink(self, event: VenueEvent) -> None:
        """The venue's sink: queued when reported during a call on this actor's thread, else
        posted to the mailbox (whichever Executor is current then)."""
        if threading.get_ident() == self._thread:
            self._events.append(event)
            return
        self.bus.send(VenueEventReceived(ts_init_ns=self.clock.now_ns(), event=event))

    def _call_venue(self, call: Callable[..., Any], *args: Any) -> tuple[Any, Exception | None]:
        """``call(*args)``, then every event it reported, in order; its result or its error."""
        result: Any = None
        error: Exception | None = None
        try:
            result = call(*args)
        except Exception as raised:  # noqa: BLE001 - every caller decides what the error means
            error = raised
        self._drain()
        return result, error

    def _drain(self) -> None:
        while self._events:
            self._on_event(self._events.popleft())

    def _on_venue_event_received(self, message: VenueEventReceived) -> None:
        self._on_event(message.event)
        self._drain()

    def _on_event(self, event: VenueEvent) -> None:
        if isinstance(event, VenueNotice):
            self._on_notice(event)
            return
        record = self._record(event.client_order_id)
        if record is None:
            self.log.error("VENUE_EVENT_UNKNOWN_ORDER: {} for {}, which was never recorded here",
                           type(event).__name__, event.client_order_id)
            return
        if isinstance(event, Fill):
            self._apply_fill(record, event)
        else:
            self._apply_update(record, event)

    def _on_notice(self, notice: VenueNotice) -> None:
        """The venue connection's news, published as ``VenueAlert`` (the RiskGate stops new
        orders while banned and halts on ``AUTH_FAILED``; the engine stops on it)."""
        level = {NoticeKind.AUTH_FAILED: "CRITICAL", NoticeKind.BANNED: "ERROR",
                 NoticeKind.STREAM_DOWN: "WARNING"}.get(notice.kind, "INFO")
        self.log.log(level, "VENUE_{}: {}", notice.kind.value, notice.message)
        self.publish(VenueAlert(ts_init_ns=self.now_ns(), kind=notice.kind.value, message=notice.message,
                                until_ms=notice.until_ms))

    def _fatal(self, error: FatalExchangeError) -> None:
        """A call answered that the keys or the account cannot trade: trading must halt."""
        kind = NoticeKind.AUTH_FAILED
        what = "keys refused" if isinstance(error, AuthenticationFailed) else "account refused"
        self._on_notice(VenueNotice(kind=kind, message=f"{what}: {error}"[:500], ts_ms=self.now_ns() // 1_000_000))

    # --- orders ---------------------------------------------------------------------------------

    def _on_execute_order(self, command: ExecuteOrder) -> None:
        order = command.order
        record = self._record(order.client_order_id)
        if record is not None:
            self.log.info("DUPLICATE_ORDER: {} already {}; publishing the recorded outcome",
                          order.client_order_id, record.status.value)
            self._publish_recorded(record, command.correlation_id or record.correlation_id)
            if not record.is_final:
                self._reconcile(record, resubmit=True)
            return
        record = OrderRecord.of(order, venue=self._venue.name, now_ns=self.now_ns(),
                                correlation_id=command.correlation_id)
        self._submit(record)

    def _submit(self, record: OrderRecord) -> None:
        record = self._keep(replace(record, submissions=record.submissions + 1))
        self._store.save_order(record)  # write-ahead: committed before the venue sees it
        self.submitted += 1
        _, error = self._call_venue(self._venue.submit, record.request())
        if error is None:
            return
        current = self._record(record.client_order_id) or record
        if current.status is not OrderStatus.SUBMITTING:
            self.log.error("VENUE_INCONSISTENT: {} raised {!r} after reporting {}", record.client_order_id,
                           error, current.status.value)
            return
        if isinstance(error, InvalidOrder):
            self.log.warning("ORDER_REJECTED: {} {}", record.client_order_id, error)
            self._reject(current, str(error))
        elif isinstance(error, AmbiguousOutcome):
            self.log.error("ORDER_OUTCOME_UNKNOWN: {} {!r}; asking the venue", record.client_order_id, error)
            self._save(current.lose(self.now_ns(), reason=f"UNKNOWN: {error}"[:500]))
            self._reconcile(self._record(record.client_order_id) or current)
        elif isinstance(error, TemporaryError):
            self.log.warning("ORDER_REJECTED: {} did not reach the venue: {!r}", record.client_order_id, error)
            self._reject(current, f"VENUE_UNAVAILABLE: {error}"[:500])
        elif isinstance(error, FatalExchangeError):
            self._reject(current, f"VENUE_HALTED: {error}"[:500])
            self._fatal(error)
        else:
            self._venue_failed(current, error)

    def _venue_failed(self, record: OrderRecord, error: Exception) -> None:
        """The venue adapter raised something it should not (a bug, an arithmetic error on an
        absurd price): ask it once what it knows of the id; if it knows nothing the order is
        REJECTED with the error as the reason, so the Sniper's position never waits on it."""
        self.log.error("VENUE_ERROR: {} {}: {!r}", record.client_order_id, type(error).__name__, error)
        found, fetch_error = self._call_venue(self._venue.fetch_order, record.client_order_id)
        if fetch_error is not None:
            self.log.error("VENUE_ERROR: {} cannot be looked up either: {!r}", record.client_order_id, fetch_error)
        record = self._record(record.client_order_id) or record
        if isinstance(found, VenueOrder):
            self._apply_venue_order(record, found)
        elif not record.is_final:
            self._reject(record, f"VENUE_ERROR: {type(error).__name__}: {error}"[:500])

    def _reject(self, record: OrderRecord, reason: str) -> None:
        now = self.now_ns()
        record = record.reject(reason, now)
        self._save(record, self._ending(record, now))

    # --- applying what the venue says --------------------------------------------------------------

    def _apply_fill(self, record: OrderRecord, fill: Fill) -> None:
        if record.knows_trade(fill.trade_id):
            self.duplicate_fills += 1
            self.log.debug("DUPLICATE_FILL ignored: {} trade {}", record.client_order_id, fill.trade_id)
            return
        if record.status is OrderStatus.REJECTED:
            self.log.critical("FILL_AFTER_REJECTED: the venue reports trade {} of {} for {}, recorded as rejected "
                              "({}); it is not applied: compare the venue's account with the engine's",
                              fill.trade_id, fill.quantity, record.client_order_id, record.reason)
        problem = fill_problem(reference_price=record.reference_price, ordered_quantity=record.remaining,
                               fill_price=fill.price, fill_quantity=fill.quantity, fee=fill.fee)
        after: OrderRecord | None = None
        if problem is None:
            try:
                after = record.apply_fill(fill, self.now_ns())
            except (Overfill, InvalidTransition, ValueError) as error:
                problem = str(error)
        if after is None:
            self._refuse_fill(record, fill, problem or "refused")
            return
        now = self.now_ns()
        order = after.request()
        events: list[Any] = []
        if record.status in (OrderStatus.SUBMITTING, OrderStatus.UNKNOWN) and order.rests:
            events.append(OrderAccepted(ts_init_ns=now, correlation_id=after.correlation_id, order=order,
                                        venue_order_id=after.venue_order_id or fill.venue_order_id))
        if record.status in (OrderStatus.CANCELED, OrderStatus.EXPIRED):
            self.log.warning("FILL_AFTER_CANCEL: {} was {}; trade {} of {} is applied (it won the race)",
                             record.client_order_id, record.status.value, fill.trade_id, fill.quantity)
        events.append(self._filled(after, fill, after.filled_quantity, now))
        self.fills += 1
        self._save(after, *events)

    def _refuse_fill(self, record: OrderRecord, fill: Fill, problem: str) -> None:
        """A fill that must not be applied: never published, its trade id remembered. The order
        ends here: REJECTED when nothing of it filled, else CANCELED with its good fills; the
        venue is asked to cancel what it may still be working."""
        self.refused_fills += 1
        self.log.error("FILL_REJECTED: {} trade {} ({}): {}", record.client_order_id, fill.trade_id,
                       fill.venue_order_id, problem)
        now = self.now_ns()
        after = record.refuse_fill(fill)
        reason = f"FILL_REJECTED: {problem}"[:500]
        if after.is_final:
            self._save(after)
            return
        if after.filled_quantity == 0:
            after = after.reject(reason, now, venue_order_id=fill.venue_order_id or None)
        else:
            after = after.apply(OrderTrigger.CANCEL, reason=reason, updated_ns=now)
        self._save(after, self._ending(after, now))
        if isinstance(fill.quantity, Decimal) and fill.quantity.is_finite() and fill.quantity < record.remaining:
            _, error = self._call_venue(self._venue.cancel, record.client_order_id)
            if error is not None:
                self.log.info("CANCEL_REFUSED: {} after a rejected fill: {!r}", record.client_order_id, error)

    def _apply_update(self, record: OrderRecord, update: OrderUpdate) -> None:
        now = self.now_ns()
        try:
            after = record.apply_update(update, now)
        except InvalidTransition:  # refused after fills: what filled stays, the rest is over
            self.log.error("VENUE_INCONSISTENT: {} is {} with {} filled and the venue says {} ({})",
                           record.client_order_id, record.status.value, record.filled_quantity,
                           update.status.value, update.reason)
            after = record.apply(OrderTrigger.CANCEL, reason=update.reason or update.status.value, updated_ns=now)
        except ValueError as error:
            self.log.error("VENUE_EVENT_REFUSED: {}", error)
            return
        if after is record:
            self.log.debug("STALE_UPDATE ignored: {} is {}, the venue says {}", record.client_order_id,
                           record.status.value, update.status.value)
            return
        order = after.request()
        venue_order_id = after.venue_order_id or update.venue_order_id
        reason = after.reason or after.status.value
        if after.status is OrderStatus.ACCEPTED:
            if not order.rests:  # a market, IOC or FOK order: its fills or its end follow
                self._save(after)
                return
            self._save(after, OrderAccepted(ts_init_ns=now, correlation_id=after.correlation_id, order=order,
                                            venue_order_id=venue_order_id))
            return
        if after.status is OrderStatus.REJECTED:
            self.log.warning("ORDER_REJECTED: {} {}", after.client_order_id, reason)
        else:
            code = "ORDER_CANCELED" if after.status is OrderStatus.CANCELED else "ORDER_EXPIRED"
            self.log.info("{}: {} with {} of {} filled ({})", code, after.client_order_id, after.filled_quantity,
                          after.quantity, reason)
        self._save(after, self._ending(after, now, venue_order_id=venue_order_id))

    def _apply_venue_order(self, record: OrderRecord, found: VenueOrder) -> None:
        """What ``fetch_order`` answered: acceptance, every fill not yet applied (by trade id),
        then a final status."""
        coid = record.client_order_id
        ts_ms = found.ts_ms or 0
        if found.status is OrderStatus.REJECTED and not found.fills:
            self._apply_update(record, OrderUpdate(client_order_id=coid, venue_order_id=found.venue_order_id,
                                                   status=OrderStatus.REJECTED, ts_ms=ts_ms, reason=found.reason))
            return
        if record.status in (OrderStatus.SUBMITTING, OrderStatus.UNKNOWN):
            self._apply_update(record, OrderUpdate(client_order_id=coid, venue_order_id=found.venue_order_id,
                                                   status=OrderStatus.ACCEPTED, ts_ms=ts_ms))
        for fill in found.fills:
            current = self._record(coid)
            if current is not None:
                self._apply_fill(current, fill)
        current = self._record(coid)
        if current is None:
            return
        if found.status in (OrderStatus.CANCELED, OrderStatus.EXPIRED, OrderStatus.REJECTED):
            self._apply_update(current, OrderUpdate(client_order_id=coid, venue_order_id=found.venue_order_id,
                                                    status=found.status, ts_ms=ts_ms, reason=found.reason))
            current = self._record(coid) or current
        if found.filled_quantity > current.filled_quantity:
            self.log.error("VENUE_FILLS_MISSING: {} filled {} at the venue, {} in its fills", coid,
                           found.filled_quantity, current.filled_quantity)

    def _reconcile(self, record: OrderRecord, *, resubmit: bool = False) -> None:
        """Ask the venue for a non-final order and apply its answer. ``resubmit``: a record still
        SUBMITTING that the venue never saw goes out again (same client order id)."""
        coid = record.client_order_id
        found, error = self._call_venue(self._venue.fetch_order, coid)
        if error is not None:
            code = "RECONCILE_FAILED" if isinstance(error, (AmbiguousOutcome, TemporaryError)) else "VENUE_ERROR"
            self.log.error("{}: {} {!r}; will retry", code, coid, error)
            return
        record = self._record(coid) or record
        if record.is_final:
            return
        if isinstance(found, VenueOrder):
            self._apply_venue_order(record, found)
            return
        if record.status is OrderStatus.SUBMITTING and resubmit:
            self.log.info("RECONCILE: venue never saw {}; submitting it (same id)", coid)
            self._submit(record)
        elif record.status in (OrderStatus.SUBMITTING, OrderStatus.UNKNOWN):
            since = record.unknown_since_ns if record.unknown_since_ns is not None else record.updated_ns
            if self.now_ns() - since >= self._grace_ns:
                self.log.warning("ORDER_NOT_FOUND: {} still unknown to the venue after {:g}s; rejected", coid,
                                 self._grace_ns / 1e9)
                self._reject(record, NOT_FOUND)
            else:
                self.log.info("RECONCILE: {} not (yet) known to the venue; asking again later", coid)
        else:
            self.log.error("VENUE_INCONSISTENT: {} is {} here and unknown to the venue", coid, record.status.value)

    # --- cancels and matching -------------------------------------------------------------------

    def _on_cancel_order(self, command: CancelOrder) -> None:
        self._cancel(command.client_order_id, command.reason, command.correlation_id)

    def _cancel(self, client_order_id: str, reason: str, correlation_id: str | None = None) -> bool:
        """Ask the venue to cancel; True when it was asked. The outcome arrives as events."""
        record = self._record(client_order_id)
        if record is None:
            self.log.warning("CANCEL_UNKNOWN_ORDER: {} was never recorded here ({})", client_order_id, reason)
            return False
        if record.is_final:
            self.log.info("CANCEL_FINAL_ORDER: {} is already {}; publishing the recorded outcome",
                          client_order_id, record.status.value)
            self._publish_recorded(record, correlation_id or record.correlation_id)
            return False
        self.log.info("CANCEL_REQUESTED: {} ({})", client_order_id, reason)
        if record.cancel_requested is not None:
            self._save(replace(record, cancel_requested=None))  # asked now: never twice for it
        _, error = self._call_venue(self._venue.cancel, client_order_id)
        self.cancels += 1
        if error is None:
            return True
        if isinstance(error, InvalidOrder):
            self.log.info("CANCEL_REFUSED: {} {}; asking the venue", client_order_id, error)
            current = self._record(client_order_id)
            if current is not None and not current.is_final:
                self._reconcile(current)
            current = self._record(client_order_id)
            if current is not None and current.status in (OrderStatus.SUBMITTING, OrderStatus.UNKNOWN):
                self.log.warning("CANCEL_PENDING: {} is not known to the venue yet; canceled as soon as it is",
                                 client_order_id)
                self._save(replace(current, cancel_requested=reason))
        elif isinstance(error, (AmbiguousOutcome, TemporaryError)):
            self.log.error("CANCEL_OUTCOME_UNKNOWN: {} {!r}; the reconcile timer asks the venue and cancels "
                           "again while the order works", client_order_id, error)
            current = self._record(client_order_id)
            if current is not None and not current.is_final:
                self._remember_cancel(current, reason)
        elif isinstance(error, FatalExchangeError):
            self.log.error("CANCEL_FAILED: {} {}", client_order_id, error)
            self._fatal(error)
        else:
            self.log.error("VENUE_ERROR: cancel of {} {}: {!r}", client_order_id, type(error).__name__, error)
        return True

    def _on_match_tick(self, command: MatchTick) -> None:
        tick = command.tick
        _, error = self._call_venue(self._venue.observe_trade, tick.coin, tick.price, tick.qty, tick.ts_ms)
        if error is not None:
            self.log.error("VENUE_ERROR: matching {} at {} {}: {!r}", tick.coin, tick.price, type(error).__name__,
                           error)
        self.publish(TickMatched(ts_init_ns=self.now_ns(), correlation_id=command.correlation_id, coin=tick.coin,
                                 ts_ms=tick.ts_ms, seq=tick.seq))

    def _remember_cancel(self, record: OrderRecord, reason: str) -> None:
        """A cancel whose outcome is unknown (it timed out, the venue was banned or unreachable):
        kept on the record, so the reconcile timer sends it again while the venue says the order
        still works. Saved without ``_save``'s re-send: never twice in one handler."""
        record = replace(record, cancel_requested=reason)
        with self._store.transaction():
            self._store.save_order(record)
        self._keep(record)

    def _on_timer_fired(self, timer: TimerFired) -> None:
        if timer.name != "reconcile":
            return
        for record in list(self._open.values()):
            current = self._record(record.client_order_id)
            if current is not None and not current.is_final:
                self._reconcile(current)
            current = self._record(record.client_order_id)
            if current is not None and not current.is_final and current.accepted \
                    and current.cancel_requested is not None:
                self.log.warning("CANCEL_RETRY: {} still works at the venue; canceling again ({})",
                                 current.client_order_id, current.cancel_requested)
                self._cancel(current.client_order_id, current.cancel_requested)

    # --- records and what they announce -------------------------------------------------------------

    def _record(self, client_order_id: str) -> OrderRecord | None:
        return self._open.get(client_order_id) or self._store.get_order(client_order_id)

    def _keep(self, record: OrderRecord) -> OrderRecord:
        if record.is_final:
            self._open.pop(record.client_order_id, None)
        else:
            self._open[record.client_order_id] = record
        return record

    def _save(self, record: OrderRecord, *events: Any) -> None:
        """Record ``record`` (with its fills) and publish ``events``: committed together with
        them (the outbox, ``actors/bus.py``)."""
        with self._store.transaction():
            self._store.save_order(record)
        self._keep(record)
        for event in events:
            self.publish(event)
        if record.cancel_requested is not None and record.accepted and not record.is_final:
            self._cancel(record.client_order_id, record.cancel_requested)  # the venue knows it now

    def _filled(self, record: OrderRecord, fill: Fill, cumulative: Decimal, now: int,
                correlation_id: str | None = None) -> OrderFilled:
        return OrderFilled(
            ts_init_ns=now, correlation_id=correlation_id or record.correlation_id, order=record.request(),
            venue_order_id=fill.venue_order_id or record.venue_order_id or "", trade_id=fill.trade_id,
            fill_price=fill.price, fill_quantity=fill.quantity, fee=fill.fee, ts_event_ms=fill.ts_ms,
            cumulative_quantity=cumulative, liquidity=fill.liquidity, fee_currency=fill.fee_currency,
            venue=record.venue or self._venue.name,
        )

    def _publish_recorded(self, record: OrderRecord, correlation_id: str | None) -> None:
        """The recorded outcome again (a duplicate ``ExecuteOrder``, a cancel of a final order):
        the acceptance of a working order, every fill, the final event. A stored fill that
        fails the fill guard (an older version's) is published as a rejection instead."""
        now = self.now_ns()
        order = record.request()
        if record.accepted and not record.is_final and order.rests:
            self.publish(OrderAccepted(ts_init_ns=now, correlation_id=correlation_id, order=order,
                                       venue_order_id=record.venue_order_id or ""))
        cumulative = Decimal(0)
        for fill in record.fills:
            problem = fill_problem(reference_price=record.reference_price,
                                   ordered_quantity=record.quantity - cumulative, fill_price=fill.price,
                                   fill_quantity=fill.quantity, fee=fill.fee)
            if problem is not None:
                self.log.error("FILL_REJECTED: stored fill {} of {} {}; published as a rejection", fill.trade_id,
                               record.client_order_id, problem)
                self.publish(OrderRejected(ts_init_ns=now, correlation_id=correlation_id, order=order,
                                           reason=f"FILL_REJECTED: {problem}"))
                return
            cumulative += fill.quantity
            self.publish(self._filled(record, fill, cumulative, now, correlation_id))
        ending = self._ending(record, now, correlation_id=correlation_id)
        if ending is not None:
            self.publish(ending)

    def _ending(self, record: OrderRecord, now: int, *, correlation_id: str | None = None,
                venue_order_id: str | None = None) -> OrderRejected | OrderCanceled | OrderExpired | None:
        """The final event of ``record`` (REJECTED, CANCELED or EXPIRED, with the quantity filled
        before and the recorded reason); ``None`` for a FILLED or a working order."""
        order = record.request()
        reason = record.reason or record.status.value
        correlation_id = correlation_id or record.correlation_id
        venue_order_id = venue_order_id or record.venue_order_id or ""
        if record.status is OrderStatus.REJECTED:
            return OrderRejected(ts_init_ns=now, correlation_id=correlation_id, order=order, reason=reason)
        if record.status is OrderStatus.CANCELED:
            return OrderCanceled(ts_init_ns=now, correlation_id=correlation_id, order=order,
                                 venue_order_id=venue_order_id, filled_quantity=record.filled_quantity, reason=reason)
        if record.status is OrderStatus.EXPIRED:
            return OrderExpired(ts_init_ns=now, correlation_id=correlation_id, order=order,
                                venue_order_id=venue_order_id, filled_quantity=record.filled_quantity, reason=reason)
        return None

    # --- asks ---------------------------------------------------------------------------------

    def _ask_open_orders(self, coin: str | None = None) -> list[VenueOrder]:
        """The venue's working orders (``ValueError`` naming the venue's error when it cannot say)."""
        working, error = self._call_venue(self._venue.open_orders, coin)
        if error is not None:
            raise ValueError(f"VENUE_ERROR: open_orders: {type(error).__name__}: {error}")
        return list(working)

    def _ask_cancel_open_orders(self, keep: frozenset[str] = frozenset(), reason: str = "SHUTDOWN",
                                foreign: bool = True) -> tuple[str, ...]:
        """Ask the venue to cancel every working order whose client id is not in ``keep``;
        the client ids asked, in the venue's order. ``foreign=False``: an order never recorded
        here (on a live account: placed by hand, reported by the reconciliation) is left alone."""
        asked: list[str] = []
        for working in self._ask_open_orders():
            coid = working.client_order_id
            if coid in keep:
                continue
            if not foreign and self._record(coid) is None:
                self.log.warning("FOREIGN_ORDER_KEPT: {} works at the venue and was never recorded here; left "
                                 "alone", coid)
                continue
            asked.append(coid)
            if self._record(coid) is None:  # not ours to know, but nothing must stay working
                self.log.warning("ORPHAN_ORDER: {} works at the venue and was never recorded here; canceling", coid)
                _, error = self._call_venue(self._venue.cancel, coid)
                if error is not None:
                    self.log.error("CANCEL_REFUSED: {} {!r}", coid, error)
            else:
                self._cancel(coid, reason)
        return tuple(asked)

    def _ask_order(self, client_order_id: str) -> OrderRecord | None:
        return self._record(client_order_id)

    def _ask_records(self, client_order_ids: Iterable[str] = ()) -> dict[str, OrderRecord]:
        """Every record not final, and the records of ``client_order_ids`` the store knows."""
        found = dict(self._open)
        for coid in client_order_ids:
            if coid not in found and (record := self._record(coid)) is not None:
                found[coid] = record
        return found

    def _ask_stats(self) -> dict[str, Any]:
        return {"submitted": self.submitted, "venue": self._venue.name, "open_orders": len(self._open),
                "fills": self.fills, "duplicate_fills": self.duplicate_fills, "refused_fills": self.refused_fills,
                "cancels": self.cancels}

