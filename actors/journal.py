"""The Journal: the durable record of a session, and the numbers of its report.

**Owns** the journal database (``state/journal_store.py``, its own file or a database URL):

- ``trades``: one row per position, OPEN when it opens, CLOSED with its net pnl, fees, order
  ids and venue when it closes, REJECTED when its entry never filled;
- ``orders``: one row per client order id: REQUESTED, then FILLED (with its slippage in basis
  points against the order's reference price), REJECTED (the venue) or DENIED (the RiskGate);
- ``daily_pnl``: one row per UTC day of *engine* time (the messages' ``ts_init_ns``, so a
  replay files the replayed day): starting/ending equity, realized and unrealized PnL, fees,
  trades, wins, losses, intraday drawdown, kill switch;
- ``equity``: the equity curve (every ``AccountMarked``, and the equity right after each close);
- ``events``: every message it receives, with its run id (``msg_id`` in its own column, out of
  the JSON ``data``, so two replays of the same file give identical ``data``).

The rows are derived from the events by the pure functions of ``state/report.py``.

**Accepts** every event the bus routes to it and the audit copies of commands
(``JOURNAL_TAP``). Each becomes an ``events`` row; these also derive rows:
``PositionOpened`` / ``PositionChanged`` / ``PositionClosed`` (trades; a close also counts in
its day and adds an equity sample), ``SubmitOrder`` / ``OrderAccepted`` / ``OrderFilled`` /
``OrderRejected`` / ``OrderDenied`` (orders; a fill also gives the trade its venue and exit
order id), ``AccountMarked`` (equity sample, daily equity and drawdown),
``KillSwitchTriggered`` (the day's flag). A message of any other type, also one added later,
is recorded as an ``events`` row only and never crashes the Journal. ``TimerFired`` flushes
(and is not recorded); ``InjectCrash`` crashes it (chaos tests).

Requests from outside (``engine.journal``), each answered after a flush, as JSON-ready dicts
(decimals as exact text, ``str``): ``events(kind)``, ``trades(coin, days, run_id, status)``,
``daily(days)``, ``orders(run_id)``, ``run_totals(run_id, start_equity)``,
``totals(start_equity, run_ids)``, ``run_ids()``, ``stats()``.

**Emits** nothing.

**Thread notes.** Writes are batched off the hot path: rows are buffered and written in ONE
transaction on ``TimerFired`` (the engine's flush timer, every 0.25 s), when ``FLUSH_ROWS``
rows are buffered, before answering any request, and on stop and failure (``_close``). A
batch whose write fails stays buffered. The same timer runs the optional ``checkpoint`` (the
engine store's WAL checkpoint, which that store does not run by itself).

**On crash** ``on_failure`` writes what is buffered; the mail still queued is handed to the
successor by the bus. The successor's ``on_start`` rebuilds the little it keeps in memory
from the database (the open positions' share of equity, the last mark a new day starts from;
days are read back as they are touched), so a restart loses nothing that was written. Rows
are keyed (trades by position, orders by client order id, days by date) and a final status
is never overwritten, so a message seen twice changes nothing. A ``kill -9`` of the process
loses at most the events buffered since the last flush (0.25 s); the trade rows are recovered
on the next start from the engine's store (``positions``), which the Sniper writes before
anything takes effect: an open position without an open row gets one, an open row whose
position closed is closed.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field, fields, is_dataclass, replace
from decimal import Decimal
from typing import Any

from actors.base import EngineActor
from actors.bus import JOURNAL
from state.journal_store import EventRow, JournalBatch, JournalStore
from state.messages import (
    AccountMarked,
    InjectCrash,
    KillSwitchTriggered,
    OrderAccepted,
    OrderDenied,
    OrderFilled,
    OrderRejected,
    PositionChanged,
    PositionClosed,
    PositionOpened,
    SubmitOrder,
    TimerFired,
)
from state.models import entry_order_id, exit_order_id
from state.report import (
    DailyRow,
    EquitySample,
    JournalOrderStatus,
    Mark,
    OrderRow,
    SampleKind,
    TradeRow,
    TradeStatus,
    day_after_close,
    day_after_kill_switch,
    day_after_mark,
    is_rejected_entry,
    new_day,
    order_row,
    trade_row,
    utc_day,
)
from state.store import Store, jsonable
from state.types import OrderIntent, PositionStatus, to_decimal

FLUSH_ROWS = 500

# The messages that derive rows beyond their ``events`` row, and the method that does it. Any
# other message (also a type added later) is recorded as an ``events`` row only.
_DERIVES: dict[type, str] = {
    PositionOpened: "_on_position_opened",
    PositionChanged: "_on_position_changed",
    PositionClosed: "_on_position_closed",
    SubmitOrder: "_on_submit_order",
    OrderAccepted: "_on_order_accepted",
    OrderFilled: "_on_order_filled",
    OrderRejected: "_on_order_rejected",
    OrderDenied: "_on_order_denied",
    AccountMarked: "_on_account_marked",
    KillSwitchTriggered: "_on_kill_switch_triggered",
}


@dataclass
class _Pending:
    """Rows not yet written: the latest version of each keyed row, appended rows in order."""

    events: list[EventRow] = field(default_factory=list)
    trades: dict[str, TradeRow] = field(default_factory=dict)
    orders: dict[str, OrderRow] = field(default_factory=dict)
    equity: list[EquitySample] = field(default_factory=list)
    days: dict[str, DailyRow] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.events) + len(self.trades) + len(self.orders) + len(self.equity) + len(self.days)

    def batch(self) -> JournalBatch:
        return JournalBatch(
            events=tuple(self.events),
            trades=tuple(self.trades.values()),
            orders=tuple(self.orders.values()),
            equity=tuple(self.equity),
            days=tuple(self.days.values()),
        )


class Journal(EngineActor):
    role = JOURNAL
    crash_on_error = True

    def __init__(
        self,
        *,
        journal_store: JournalStore,
        run_id: str,
        checkpoint: Callable[[], None] | None = None,
        positions: Store | None = None,
        **base: Any,
    ) -> None:
        """``journal_store``: where the journal lives. ``run_id``: the run whose rows this
        Journal writes. ``checkpoint``: optional, run on every flush timer (the engine passes
        its store's WAL checkpoint). ``positions``: the engine's store, read (never written)
        on start to recover trade rows a ``kill -9`` kept from being flushed."""
        super().__init__(**base)
        self._positions = positions
        if not isinstance(run_id, str) or not run_id:
            raise ValueError(f"run_id: expected a run id, got {run_id!r}")
        self._store = journal_store
        self.run_id = run_id
        self._checkpoint = checkpoint
        self._pending = _Pending()
        self._days: dict[str, DailyRow] = {}  # every day read or written since start
        self._open_share: dict[str, Decimal] = {}  # OPEN position id -> its share of equity
        self._last_mark: Mark | None = None
        self.written = 0

    # --- lifecycle ---------------------------------------------------------------------------------

    def on_start(self) -> None:
        """Cold start and restart alike: rebuild the in-memory state from the database."""
        self._open_share = {row.position_id: row.equity_share for row in self._store.load_open_trades()}
        self._last_mark = self._store.last_mark()
        if self._positions is not None:
            self._recover_trades(self._positions)
        self.log.info("JOURNAL_READY: {} run {} ({} open position(s))", self._store.name, self.run_id,
                      len(self._open_share))

    def _recover_trades(self, positions: Store) -> None:
        """The Sniper's positions are the truth: a position it holds that the journal has no
        open row for (its open was buffered when the process died) gets one, and an open row
        whose position has closed meanwhile is closed from the stored position."""
        now = self.now_ns()
        recovered = 0
        for position in positions.load_positions():
            if position.status is PositionStatus.PENDING or position.id in self._open_share:
                continue
            previous = self._trade(position.id)
            if previous is None or not previous.is_final:
                self._on_position_opened(PositionOpened(ts_init_ns=now, position=position))
                recovered += 1
        balance = Decimal(positions.load_account().get("balance", "0"))
        for position_id in list(self._open_share):
            stored = positions.get_position(position_id)
            if stored is not None and stored.status is PositionStatus.CLOSED:
                self._on_position_closed(PositionClosed(ts_init_ns=now, position=stored, balance=balance))
                recovered += 1
        if recovered:
            self._flush()
            self.log.warning("JOURNAL_RECOVERED: {} trade row(s) rebuilt from the engine store", recovered)

    def _close(self) -> None:
        try:
            self._flush()
        except Exception as error:  # noqa: BLE001 - closing: report, never raise from cleanup
            self.log.error("JOURNAL_FLUSH_FAILED: {} row(s) not written: {!r}", len(self._pending), error)
        finally:
            try:
                self._store.release_thread()
            except Exception as error:  # noqa: BLE001 - closing
                self.log.warning("JOURNAL_CLOSE_FAILED: {!r}", error)

    # --- dispatch -----------------------------------------------------------------------------------

    def _dispatch(self, message: Any) -> None:
        if isinstance(message, InjectCrash):
            super()._dispatch(message)  # raises: chaos tests
            return
        if isinstance(message, TimerFired):
            self._flush()
            self._run_checkpoint()
            return
        self._pending.events.append(self._event_row(message))
        derive = _DERIVES.get(type(message))
        if derive is not None:
            getattr(self, derive)(message)
        if len(self._pending) >= FLUSH_ROWS:
            self._flush()

    def _event_row(self, message: Any) -> EventRow:
        ts_ns = getattr(message, "ts_init_ns", None)
        msg_id = getattr(message, "msg_id", None)
        correlation_id = getattr(message, "correlation_id", None)
        if is_dataclass(message) and not isinstance(message, type):
            data = {f.name: jsonable(getattr(message, f.name)) for f in fields(message) if f.name != "msg_id"}
        else:
            data = {"repr": repr(message)}
        return EventRow(
            ts_ns=ts_ns if isinstance(ts_ns, int) and not isinstance(ts_ns, bool) else self.now_ns(),
            kind=type(message).__name__,
            correlation_id=None if correlation_id is None else str(correlation_id),
            msg_id=None if msg_id is None else str(msg_id),
            run_id=self.run_id,
            data=json.dumps(data, separators=(",", ":"), sort_keys=True),
        )

    # --- writing -----------------------------------------------------------------------------------------

    def _flush(self) -> None:
        """Write everything buffered in one transaction; on error it stays buffered."""
        if not len(self._pending):
            return
        batch = self._pending.batch()
        self._store.write(batch)
        self._pending = _Pending()
        self.written += len(batch)

    def _run_checkpoint(self) -> None:
        if self._checkpoint is None:
            return
        try:
            self._checkpoint()
        except Exception as error:  # noqa: BLE001 - another store's housekeeping: never our crash
            self.log.warning("CHECKPOINT_FAILED: {!r}", error)

    # --- read-through: buffered rows first, then the database -------------------------------------

    def _trade(self, position_id: str) -> TradeRow | None:
        row = self._pending.trades.get(position_id)
        return row if row is not None else self._store.load_trade(position_id)

    def _order(self, client_order_id: str) -> OrderRow | None:
        row = self._pending.orders.get(client_order_id)
        return row if row is not None else self._store.load_order(client_order_id)

    def _day(self, ts_ns: int) -> DailyRow:
        day = utc_day(ts_ns)
        row = self._days.get(day)
        if row is None:
            row = self._store.load_day(day) or new_day(day, self._last_mark)
        return row

    def _put_trade(self, row: TradeRow) -> None:
        self._pending.trades[row.position_id] = row
        if row.status == TradeStatus.OPEN.value:
            self._open_share[row.position_id] = row.equity_share
        else:
            self._open_share.pop(row.position_id, None)

    def _put_order(self, row: OrderRow) -> None:
        self._pending.orders[row.client_order_id] = row

    def _put_day(self, row: DailyRow) -> None:
        self._days[row.date] = row
        self._pending.days[row.date] = row

    # --- positions -> trades -------------------------------------------------------------------------

    def _venue_of(self, client_order_id: str | None) -> str | None:
        order = self._order(client_order_id) if client_order_id else None
        return order.venue if order is not None else None

    def _on_position_opened(self, event: PositionOpened) -> None:
        position = event.position
        previous = self._trade(position.id)
        if previous is not None and previous.is_final:
            self.log.debug("STALE_POSITION_EVENT: {} already {}", position.id, previous.status)
            return
        venue = self._venue_of(entry_order_id(position.id))
        self._put_trade(trade_row(position, status=TradeStatus.OPEN, run_id=self.run_id,
                                  ts_ns=event.ts_init_ns, previous=previous, venue=venue))

    def _on_position_changed(self, event: PositionChanged) -> None:
        position = event.position
        previous = self._trade(position.id)
        if previous is not None and previous.is_final:
            self.log.debug("STALE_POSITION_EVENT: {} already {}", position.id, previous.status)
            return
        self._put_trade(trade_row(position, status=TradeStatus.OPEN, run_id=self.run_id,
                                  ts_ns=event.ts_init_ns, previous=previous))

    def _on_position_closed(self, event: PositionClosed) -> None:
        position = event.position
        previous = self._trade(position.id)
        if previous is not None and previous.is_final:
            self.log.debug("DUPLICATE_CLOSE ignored: {} already {}", position.id, previous.status)
            return
        if is_rejected_entry(position):
            self._put_trade(trade_row(position, status=TradeStatus.REJECTED, run_id=self.run_id,
                                      ts_ns=event.ts_init_ns, previous=previous))
            return
        exit_id = exit_order_id(position.id, position.exit_attempts) if position.exit_attempts else None
        row = trade_row(position, status=TradeStatus.CLOSED, run_id=self.run_id, ts_ns=event.ts_init_ns,
                        previous=previous, venue=self._venue_of(exit_id))
        self._put_trade(row)
        assert row.pnl is not None
        self._put_day(day_after_close(self._day(event.ts_init_ns), row.pnl, row.fees))
        others = sum(self._open_share.values(), Decimal(0))
        self._pending.equity.append(EquitySample(
            ts_ns=event.ts_init_ns, run_id=self.run_id, kind=SampleKind.CLOSE.value,
            position_id=position.id, balance=event.balance, unrealized_pnl=others,
            equity=event.balance + others,
        ))

    # --- orders ------------------------------------------------------------------------------------------

    def _order_update(self, message: Any, status: JournalOrderStatus, **outcome: Any) -> OrderRow | None:
        """The order's next row, or ``None`` when its row already has a final status."""
        order = message.order
        previous = self._order(order.client_order_id)
        if previous is not None and previous.is_final:
            if status is not JournalOrderStatus.REQUESTED:
                self.log.debug("ORDER_ALREADY_FINAL: {} {} ({} ignored)", order.client_order_id,
                               previous.status, status.value)
            return None
        row = order_row(order, status=status, run_id=self.run_id, ts_ns=message.ts_init_ns,
                        correlation_id=message.correlation_id, previous=previous, **outcome)
        self._put_order(row)
        return row

    def _on_submit_order(self, command: SubmitOrder) -> None:
        self._order_update(command, JournalOrderStatus.REQUESTED)

    def _on_order_accepted(self, event: OrderAccepted) -> None:
        self._order_update(event, JournalOrderStatus.REQUESTED, venue_order_id=event.venue_order_id)

    def _on_order_filled(self, event: OrderFilled) -> None:
        row = self._order_update(
            event, JournalOrderStatus.FILLED, fill_price=event.fill_price,
            fill_quantity=event.fill_quantity, fee=event.fee, venue=event.venue,
            venue_order_id=event.venue_order_id, trade_id=event.trade_id,
        )
        if row is None:
            return
        trade = self._trade(event.order.position_id)
        if trade is not None and not trade.is_final:
            changes: dict[str, Any] = {"venue": event.venue}
            if row.intent == OrderIntent.EXIT.value:
                changes["exit_order_id"] = row.client_order_id
            self._put_trade(replace(trade, **changes))

    def _on_order_rejected(self, event: OrderRejected) -> None:
        self._order_update(event, JournalOrderStatus.REJECTED, reason=event.reason)

    def _on_order_denied(self, event: OrderDenied) -> None:
        self._order_update(event, JournalOrderStatus.DENIED, reason=event.reason)

    # --- account -----------------------------------------------------------------------------------------

    def _on_account_marked(self, event: AccountMarked) -> None:
        mark = Mark(event.equity, event.unrealized_pnl)
        self._put_day(day_after_mark(self._day(event.ts_init_ns), mark))
        self._last_mark = mark
        self._pending.equity.append(EquitySample(
            ts_ns=event.ts_init_ns, run_id=self.run_id, kind=SampleKind.MARK.value, position_id=None,
            balance=event.balance, unrealized_pnl=event.unrealized_pnl, equity=event.equity,
        ))

    def _on_kill_switch_triggered(self, event: KillSwitchTriggered) -> None:
        self._put_day(day_after_kill_switch(self._day(event.ts_init_ns)))

    # --- requests from outside (engine.journal); each flushes first ---------------------------------

    def _ask_events(self, kind: str | None = None) -> list[dict[str, Any]]:
        """``events`` rows (of one ``kind``): ts_ns, kind, correlation_id, msg_id, run_id, data."""
        self._flush()
        return self._store.events(kind)

    def _ask_trades(self, coin: str | None = None, days: float | None = None, run_id: str | None = None,
                    status: str | None = None) -> list[dict[str, Any]]:
        """``trades`` rows, oldest first; filters as ``JournalStore.trades``."""
        self._flush()
        return self._store.trades(coin=coin, days=days, run_id=run_id, status=status)

    def _ask_daily(self, days: float | None = None) -> list[dict[str, Any]]:
        """``daily_pnl`` rows, oldest first; ``days=N``: the last N engine days."""
        self._flush()
        return self._store.daily(days=days)

    def _ask_orders(self, run_id: str | None = None) -> list[dict[str, Any]]:
        """``orders`` rows in the order their status was last set."""
        self._flush()
        return self._store.orders(run_id=run_id)

    def _ask_run_totals(self, run_id: str, start_equity: Any) -> dict[str, Any]:
        """The session report's numbers for ``run_id``: ``total_trades``, ``wins``, ``losses``
        (int) and ``realized_pnl_usd``, ``fees_paid_usd``, ``slippage_avg_bps``,
        ``max_drawdown_pct`` (exact decimal text)."""
        start = to_decimal(start_equity, "start_equity")
        self._flush()
        return self._store.run_totals(run_id, start)

    def _ask_totals(self, start_equity: Any, run_ids: tuple[str, ...] | None = None) -> dict[str, Any]:
        """The session report's journal figures over ``run_ids`` (every run when ``None``):
        ``JournalStore.totals``."""
        start = to_decimal(start_equity, "start_equity")
        self._flush()
        return self._store.totals(start, run_ids)

    def _ask_run_ids(self) -> list[str]:
        """Every run the journal has recorded, in the order each first appeared."""
        self._flush()
        return self._store.run_ids()

    def _ask_stats(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "written": self.written, "buffered": len(self._pending),
                "store": self._store.name}


__all__ = ["FLUSH_ROWS", "Journal"]
