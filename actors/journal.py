"""The Journal: the durable record of a session, and the numbers of its report.

**Owns** the journal database (``state/journal_store.py``, its own file or a database URL):

- ``trades``: one row per position, OPEN when it opens, CLOSED with its net pnl, fees, order
  ids and venue when it closes, REJECTED when its entry never filled;
- ``orders``: one row per client order id: the order as sent (type, time in force, limit and
  stop price, post-only, reduce-only) and where it is: REQUESTED (SubmitOrder), SUBMITTED
  (ExecuteOrder), ACCEPTED, PARTIALLY_FILLED, then FILLED, CANCELED, EXPIRED, REJECTED (the
  venue) or DENIED (the RiskGate), with its filled quantity, average price, fees and slippage
  in basis points (against the order's reference price, or the fills' mids when they carry
  one); a status only moves forward and a final one is never overwritten;
- ``order_events``: every order's state history, one row per change (requested, submitted,
  denied, accepted, each fill, cancel requested, canceled, expired, rejected) with its engine
  time, run and reason;
- ``fills``: one row per venue trade id (order, price, quantity, fee, fee currency,
  liquidity, time): a fill re-sent with a trade id already journaled writes nothing at all
  (no fill, no history row, no change to its order; counted as ``duplicate_fills``). The
  report's fees and realized PnL are sums of these (``state/report.py``);
- ``daily_pnl``: one row per UTC day of *engine* time (the messages' ``ts_init_ns``, so a
  replay files the replayed day): starting/ending equity, realized and unrealized PnL, fees,
  trades, wins, losses, intraday drawdown, kill switch;
- ``equity``: the equity curve (every ``AccountMarked``, and the equity right after each close);
- ``events``: every message it receives (a restart's repeats once, see below), with the run id
  of the process that sent it (``msg_id`` in its own column, out of the JSON ``data``, so two
  replays of the same file give identical ``data``).

The rows are derived from the events by the pure functions of ``state/report.py``.

**Accepts** every event the bus routes to it and the audit copies of commands
(``JOURNAL_TAP``): in the engine they come from the engine store's **outbox** (see below);
told directly (no outbox attached: tests) they are recorded the same way. Each becomes an
``events`` row; these also derive rows: ``PositionOpened`` / ``PositionChanged`` /
``PositionClosed`` (trades; a close also counts in its day and adds an equity sample),
``SubmitOrder`` / ``ExecuteOrder`` / ``CancelOrder`` (audit copies) / ``OrderAccepted`` /
``OrderFilled`` / ``OrderCanceled`` / ``OrderExpired`` / ``OrderRejected`` / ``OrderDenied``
(orders, their history and fills; a fill also gives the trade its venue and exit order id; a
fill or an end whose quantities disagree with the fills journaled is logged as
``JOURNAL_FILL_GAP``), ``AccountMarked`` (equity
sample, daily equity and drawdown), ``KillSwitchTriggered`` (the day's flag). A message of any
other type, also one added later, is recorded as an ``events`` row only and never crashes the
Journal. Every row carries the time of the message (the decision's engine time) and the run id
of the process that sent it. ``TimerFired`` consumes the outbox (and is not recorded);
``InjectCrash`` crashes it (chaos tests).

Requests from outside (``engine.journal``), each answered after consuming the outbox, as
JSON-ready dicts (decimals as exact text, ``str``): ``events(kind)``, ``trades(coin, days,
run_id, status)``, ``daily(days)``, ``orders(run_id)``, ``fills(run_id, client_order_id)``,
``order_events(client_order_id, run_id)``, ``run_totals(run_id, start_equity)``,
``totals(start_equity, run_ids)``, ``run_ids()``, ``stats()``.

**Emits** nothing.

**The outbox** (DESIGN.md 6: the journal is as durable as the engine). Nothing the Journal
must record lives only in its memory: the bus appends every Journal-bound message to the
engine store's ``outbox`` table on the sender's thread, in the same commit as the decision
that caused it (``state/store.py``, deferred commits), before anyone else receives it, so
``seq`` order is causal. The Journal reads rows after its cursor in seq order (on start, on
the engine's flush timer every 0.25 s, before answering any request, on stop), derives its
rows exactly as from a told message, and writes them **with the new cursor in ONE transaction
of the journal database**: a row is journaled exactly once whatever moment the process dies
at, on SQLite and PostgreSQL alike. Consumed rows are then deleted from the engine store in
batches of ``OUTBOX_DELETE_EVERY`` (and on start and stop): a delete takes the store's write
lock, which the hot path needs too, and deleting late is safe because the cursor skips them.
A row that cannot be decoded (written by another version) is logged
(``JOURNAL_OUTBOX_UNDECODABLE`` with its seq) and recorded as an ``OutboxUndecodable`` event
with its bytes; a row whose rows cannot be derived (a bug) likewise as ``JournalRowFailed``;
neither stops the Journal. The same timer runs the optional ``checkpoint`` (the engine
store's WAL checkpoint, which that store does not run by itself).

**A restart repeats some messages**, and a journal that must equal an uninterrupted run's
records them once (``_is_repeat``): the restarted process re-does the unfinished end of
what the killed one was doing, re-sending some messages exactly (same kind, engine time and
data: an order sent again under its client order id, a condition armed again), and its
actors re-announce state they kept in memory only (the Sniper's account mark and its
position-limit blocks, the RiskGate's trading state). An exact copy of a recorded event at or
before the latest time recorded when the Journal started, and an announcement equal to the
last recorded one of its subject, are not recorded again (counted in ``stats()``).

**On crash** (a failed write crashes it: a state owner) the successor's ``on_start``
rebuilds the little it keeps in memory from the database (the open positions' share of
equity, the last mark a new day starts from, the last announcements; days are read back as
they are touched) and reads the outbox again from the committed cursor, so nothing is lost
or written twice. Rows are keyed (trades by position, orders by client order id, fills by
trade id, days by date) and a final status is never overwritten. On start the Journal also checks its OPEN
trades against the engine store's active positions and reports a difference
(``JOURNAL_MISMATCH``); it never invents rows.
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
    CancelOrder,
    ConditionBlocked,
    ExecuteOrder,
    FeedRecovered,
    InjectCrash,
    KillSwitchTriggered,
    OrderAccepted,
    OrderCanceled,
    OrderDenied,
    OrderExpired,
    OrderFilled,
    OrderRejected,
    PositionChanged,
    PositionClosed,
    PositionOpened,
    SubmitOrder,
    TimerFired,
    TradingStateChanged,
)
from state.models import entry_order_id, exit_order_id
from state.report import (
    DailyRow,
    EquitySample,
    FillRow,
    JournalOrderStatus,
    Mark,
    OrderEventKind,
    OrderEventRow,
    OrderRow,
    SampleKind,
    TradeRow,
    TradeStatus,
    average_price,
    day_after_close,
    day_after_kill_switch,
    day_after_mark,
    is_rejected_entry,
    new_day,
    order_row,
    slippage_reference,
    status_after_fill,
    trade_row,
    utc_day,
)
from state.store import OutboxDecodeError, OutboxRow, Store, jsonable
from state.types import OrderIntent, PositionStatus, to_decimal

FLUSH_ROWS = 500
OUTBOX_CHUNK = 500  # outbox rows consumed per journal transaction
OUTBOX_DELETE_EVERY = 1_000  # consumed rows deleted from the engine store in one statement
# State announcements: one equal to the previous of its kind repeats the current state (a
# restarted Sniper re-announces its mark, a restarted RiskGate its trading state) and is not
# recorded again; the fields that make them equal.
_ANNOUNCEMENTS: dict[type, tuple[str, ...]] = {
    AccountMarked: ("balance", "unrealized_pnl", "equity", "open_positions"),
    TradingStateChanged: ("state", "reason"),
}

# The messages that derive rows beyond their ``events`` row, and the method that does it. Any
# other message (also a type added later) is recorded as an ``events`` row only.
_DERIVES: dict[type, str] = {
    PositionOpened: "_on_position_opened",
    PositionChanged: "_on_position_changed",
    PositionClosed: "_on_position_closed",
    SubmitOrder: "_on_submit_order",
    ExecuteOrder: "_on_execute_order",
    CancelOrder: "_on_cancel_order",
    OrderAccepted: "_on_order_accepted",
    OrderFilled: "_on_order_filled",
    OrderCanceled: "_on_order_canceled",
    OrderExpired: "_on_order_expired",
    OrderRejected: "_on_order_rejected",
    OrderDenied: "_on_order_denied",
    AccountMarked: "_on_account_marked",
    KillSwitchTriggered: "_on_kill_switch_triggered",
}


def _announced_state(kind: type, data: str | None) -> str | None:
    """What makes two announcements of ``kind`` (an ``events.data`` text) equal."""
    if data is None:
        return None
    values = json.loads(data)
    return json.dumps([values.get(name) for name in _ANNOUNCEMENTS[kind]])


@dataclass
class _Pending:
    """Rows not yet written: the latest version of each keyed row, appended rows in order."""

    events: list[EventRow] = field(default_factory=list)
    trades: dict[str, TradeRow] = field(default_factory=dict)
    orders: dict[str, OrderRow] = field(default_factory=dict)
    equity: list[EquitySample] = field(default_factory=list)
    days: dict[str, DailyRow] = field(default_factory=dict)
    order_events: list[OrderEventRow] = field(default_factory=list)
    fills: dict[str, FillRow] = field(default_factory=dict)  # by trade id, in the order received

    def __len__(self) -> int:
        return (len(self.events) + len(self.trades) + len(self.orders) + len(self.equity) + len(self.days)
                + len(self.order_events) + len(self.fills))

    def batch(self) -> JournalBatch:
        return JournalBatch(
            events=tuple(self.events),
            trades=tuple(self.trades.values()),
            orders=tuple(self.orders.values()),
            equity=tuple(self.equity),
            days=tuple(self.days.values()),
            order_events=tuple(self.order_events),
            fills=tuple(self.fills.values()),
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
        outbox: Store | None = None,
        **base: Any,
    ) -> None:
        """``journal_store``: where the journal lives. ``run_id``: this process's run (of the
        rows made from messages told to the Journal directly). ``checkpoint``: optional, run on
        every flush timer (the engine passes its store's WAL checkpoint). ``outbox``: the
        engine's store, whose outbox the Journal consumes (and whose positions it checks its
        open trades against on start)."""
        super().__init__(**base)
        if not isinstance(run_id, str) or not run_id:
            raise ValueError(f"run_id: expected a run id, got {run_id!r}")
        self._store = journal_store
        self.run_id = run_id
        self._run = run_id  # the run of the message being recorded (an outbox row's sender)
        self._checkpoint = checkpoint
        self._outbox = outbox
        self._cursor = 0  # last outbox seq whose rows are written
        self._deleted_through = 0  # outbox rows up to here are deleted from the engine store
        self._pending = _Pending()
        self._days: dict[str, DailyRow] = {}  # every day read or written since start
        self._open_share: dict[str, Decimal] = {}  # OPEN position id -> its share of equity
        self._last_mark: Mark | None = None
        self._announced: dict[str, str | None] = {}  # announcement kind -> its last recorded data
        self._blocked: dict[str, str] = {}  # condition id -> reason of its last recorded ConditionBlocked
        self._replayed_until: int | None = None  # events up to this time may be re-sent by a restart
        self._recent: set[tuple[int, str, str]] = set()  # such events buffered, not yet written
        self._broken: BaseException | None = None  # a failed outbox write: nothing more is written
        self.written = 0
        self.consumed = 0
        self.duplicates = 0
        self.duplicate_fills = 0  # fills whose trade id was already journaled: nothing written
        self.undecodable = 0

    # --- lifecycle ---------------------------------------------------------------------------------

    def on_start(self) -> None:
        """Cold start and restart alike: rebuild the in-memory state from the database, then
        consume whatever the outbox holds (also what a killed process left in it)."""
        self._open_share = {row.position_id: row.equity_share for row in self._store.load_open_trades()}
        self._last_mark = self._store.last_mark()
        self._announced = {kind.__name__: _announced_state(kind, self._store.last_event_data(kind.__name__))
                           for kind in _ANNOUNCEMENTS}
        self._blocked = self._blocked_since_cleared()
        # What this run's actors may re-send is at or before the latest time recorded or left in
        # the outbox by an earlier run. Known before the outbox is consumed: the other actors do
        # not wait for this start, so a re-send can be in the outbox behind what the killed
        # process left, and is consumed in the same flush.
        latest = [self._store.latest_ts_ns()]
        if self._outbox is not None:
            self._cursor = self._store.load_cursor(self._outbox.outbox_id)
            latest.append(self._outbox.outbox_latest_ts_ns(self._cursor, other_than_run=self.run_id))
        known = [ts for ts in latest if ts is not None]
        self._replayed_until = max(known) if known else None
        if self._outbox is not None:
            self._deleted_through = 0  # rows a killed process consumed but did not delete go now
            self._flush()  # what the previous process (or actor) left, and any re-send behind it
            self._delete_consumed(force=True)
            self._check_open_trades(self._outbox)
        self.log.info("JOURNAL_READY: {} run {} ({} open position(s), outbox at seq {})", self._store.name,
                      self.run_id, len(self._open_share), self._cursor)

    def _blocked_since_cleared(self) -> dict[str, str]:
        blocked: dict[str, str] = {}
        for data in self._store.events_after_last("ConditionBlocked", ("TradingStateChanged", "FeedRecovered")):
            values = json.loads(data)
            blocked[values["condition_id"]] = values["reason"]
        return blocked

    def _check_open_trades(self, positions: Store) -> None:
        """Detector only: the Sniper's active positions and the journal's OPEN trades should
        name the same positions once the outbox is consumed; a difference is reported
        (``JOURNAL_MISMATCH``), never patched over."""
        held = {p.id for p in positions.load_positions() if p.status is not PositionStatus.PENDING}
        journaled = set(self._open_share)
        for position_id in sorted(held - journaled):
            self.log.error("JOURNAL_MISMATCH: position {} is active in the engine store but not OPEN in the "
                           "journal", position_id)
        for position_id in sorted(journaled - held):
            self.log.error("JOURNAL_MISMATCH: trade {} is OPEN in the journal but not active in the engine "
                           "store", position_id)

    def _on_crash(self) -> None:
        """After a crash only what was told directly is written: outbox rows are the
        successor's to read (this actor's memory of them may be what failed)."""
        if self._outbox is None:
            self._close()
            return
        try:
            self._write()
        except Exception as error:  # noqa: BLE001 - crashing: report, never raise from cleanup
            self.log.error("JOURNAL_FLUSH_FAILED: {} row(s) not written: {!r}", len(self._pending), error)
        finally:
            self._release()

    def _close(self) -> None:
        try:
            self._flush()
            self._delete_consumed(force=True)
        except Exception as error:  # noqa: BLE001 - closing: report, never raise from cleanup
            self.log.error("JOURNAL_FLUSH_FAILED: {} row(s) not written: {!r}", len(self._pending), error)
        finally:
            self._release()

    def _release(self) -> None:
        try:
            self._store.release_thread()
            if self._outbox is not None and not self._outbox.db.is_closed():
                self._outbox.db.close()  # this thread's connection only
        except Exception as error:  # noqa: BLE001 - closing
            self.log.warning("JOURNAL_CLOSE_FAILED: {!r}", error)

    # --- dispatch -----------------------------------------------------------------------------------

    def _dispatch(self, message: Any) -> None:
        if isinstance(message, InjectCrash):
            super()._dispatch(message)  # raises: chaos tests
            return
        if isinstance(message, TimerFired):
            self._flush()
            self._delete_consumed()
            self._run_checkpoint()
            return
        # Told directly (no outbox attached, or tests): recorded as this run's.
        self._record(message, self.run_id)
        if len(self._pending) >= FLUSH_ROWS:
            self._write()

    def _record(self, message: Any, run_id: str) -> None:
        """The rows ``message`` (sent by run ``run_id``) gives: its ``events`` row and the rows
        it derives, unless it is a re-sent copy of one already recorded."""
        row = self._event_row(message, run_id)
        if self._is_repeat(type(message), row):
            self.duplicates += 1
            return
        self._run = run_id
        try:
            self._pending.events.append(row)
            derive = _DERIVES.get(type(message))
            if derive is not None:
                getattr(self, derive)(message)
        finally:
            self._run = self.run_id

    def _is_repeat(self, kind: type, row: EventRow) -> bool:
        """Whether ``row`` repeats what is already recorded, so that a restarted process adds
        nothing a continuous one would not have:

        - a restart re-does the unfinished end of what the killed process was doing and re-sends
          some messages exactly as they were (same kind, time and data: an order sent again
          with its client order id, a condition armed again); one already recorded is not
          recorded twice;
        - a restarted actor re-announces state it kept in memory only: the Sniper its account
          mark (``AccountMarked``) and the conditions a position limit blocks
          (``ConditionBlocked``, once per condition until trading state or a feed recovery
          changes, as the Sniper does), the RiskGate its trading state
          (``TradingStateChanged``); an announcement equal to the last recorded one of its
          subject is not recorded again.
        """
        if kind in _ANNOUNCEMENTS:
            state = _announced_state(kind, row.data)
            if self._announced.get(row.kind) == state:
                return True
            self._announced[row.kind] = state
            if kind is TradingStateChanged:
                self._blocked.clear()
            return False
        if kind is ConditionBlocked or kind is FeedRecovered:
            data = json.loads(row.data)
            if kind is FeedRecovered:
                self._blocked.clear()  # the Sniper forgets the coin's blocks: at most, so do we
            elif self._blocked.get(data["condition_id"]) == data["reason"]:
                return True
            else:
                self._blocked[data["condition_id"]] = data["reason"]
        until = self._replayed_until
        if until is None or row.ts_ns > until:
            return False
        key = (row.ts_ns, row.kind, row.data)
        if key in self._recent or self._store.has_event(row.ts_ns, row.kind, row.data):
            return True
        self._recent.add(key)
        return False

    def _event_row(self, message: Any, run_id: str) -> EventRow:
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
            run_id=run_id,
            data=json.dumps(data, separators=(",", ":"), sort_keys=True),
        )

    # --- the outbox ----------------------------------------------------------------------------------

    def _flush(self) -> None:
        """Bring the journal up to date: consume every committed outbox row, then write what is
        buffered. Every request calls it first (a new ``_ask_*`` must too)."""
        if self._broken is not None:
            raise RuntimeError(f"the journal failed to write outbox rows ({self._broken!r}); its successor will")
        if self._outbox is not None:
            while self._consume_chunk():
                pass
        self._write()

    def _consume_chunk(self) -> bool:
        """Record the next outbox rows and write them with the new cursor in ONE journal
        transaction (so each row is journaled exactly once). False when none was left."""
        assert self._outbox is not None
        rows = self._outbox.read_outbox(self._cursor, OUTBOX_CHUNK)
        if not rows:
            return False
        for row in rows:
            self._record_row(row)
        try:
            self._write(cursor=rows[-1].seq)
        except Exception as error:
            # The rows stay in the outbox (the cursor did not move) but this actor's memory has
            # seen them: it writes nothing more (a request that failed crashes it a moment
            # later); the successor rebuilds from the journal and reads them again.
            self._pending = _Pending()
            self._broken = error
            raise
        self.consumed += len(rows)
        return True

    def _record_row(self, row: OutboxRow) -> None:
        try:
            message = row.message()
        except OutboxDecodeError as error:
            self.undecodable += 1
            self.log.error("JOURNAL_OUTBOX_UNDECODABLE: {} (recorded as an OutboxUndecodable event)", error)
            self._pending.events.append(EventRow(
                ts_ns=row.ts_ns, kind="OutboxUndecodable", correlation_id=None, msg_id=None, run_id=row.run_id,
                data=json.dumps({"seq": row.seq, "kind": row.kind, "error": str(error),
                                 "data_hex": row.data.hex()}, separators=(",", ":"), sort_keys=True),
            ))
            return
        try:
            self._record(message, row.run_id)
        except Exception as error:  # noqa: BLE001 - a poison row must not stop the journal (or halt the engine)
            self.log.exception("JOURNAL_ROW_FAILED: outbox row {} ({}) gave no rows: {!r}", row.seq, row.kind, error)
            self._pending.events.append(EventRow(
                ts_ns=row.ts_ns, kind="JournalRowFailed", correlation_id=None, msg_id=None, run_id=row.run_id,
                data=json.dumps({"seq": row.seq, "kind": row.kind, "error": repr(error)},
                                separators=(",", ":"), sort_keys=True),
            ))

    def _delete_consumed(self, *, force: bool = False) -> None:
        """Delete consumed rows from the engine store, in batches (each delete takes the store's
        write lock, which the hot path also needs). Safe at any time: the cursor, committed
        with the rows, already skips them."""
        if self._outbox is None or self._cursor <= self._deleted_through:
            return
        if not force and self._cursor - self._deleted_through < OUTBOX_DELETE_EVERY:
            return
        try:
            self._outbox.delete_outbox(self._cursor)
        except Exception as error:  # noqa: BLE001 - housekeeping: the rows are tried again later
            self.log.warning("JOURNAL_OUTBOX_DELETE_FAILED: rows up to seq {} stay for now: {!r}", self._cursor, error)
            return
        self._deleted_through = self._cursor

    # --- writing -----------------------------------------------------------------------------------------

    def _write(self, cursor: int | None = None) -> None:
        """Write everything buffered (and the outbox ``cursor`` it reaches) in one transaction;
        on error it stays buffered."""
        if not len(self._pending) and cursor is None:
            return
        batch = self._pending.batch()
        if cursor is not None:
            assert self._outbox is not None
            batch = replace(batch, cursor=(self._outbox.outbox_id, cursor))
        self._store.write(batch)
        self._pending = _Pending()
        self._recent.clear()  # written: has_event finds them from now on
        if cursor is not None:
            self._cursor = cursor
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

    def _fill(self, trade_id: str) -> FillRow | None:
        row = self._pending.fills.get(trade_id)
        return row if row is not None else self._store.load_fill(trade_id)

    def _fills_of(self, client_order_id: str) -> list[FillRow]:
        """The order's journaled fills: those written, then those buffered."""
        written = self._store.load_fills(client_order_id)
        known = {f.trade_id for f in written}
        buffered = [f for f in self._pending.fills.values()
                    if f.client_order_id == client_order_id and f.trade_id not in known]
        return [*written, *buffered]

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
        self._put_trade(trade_row(position, status=TradeStatus.OPEN, run_id=self._run,
                                  ts_ns=event.ts_init_ns, previous=previous, venue=venue))

    def _on_position_changed(self, event: PositionChanged) -> None:
        position = event.position
        previous = self._trade(position.id)
        if previous is not None and previous.is_final:
            self.log.debug("STALE_POSITION_EVENT: {} already {}", position.id, previous.status)
            return
        self._put_trade(trade_row(position, status=TradeStatus.OPEN, run_id=self._run,
                                  ts_ns=event.ts_init_ns, previous=previous))

    def _on_position_closed(self, event: PositionClosed) -> None:
        position = event.position
        previous = self._trade(position.id)
        if previous is not None and previous.is_final:
            self.log.debug("DUPLICATE_CLOSE ignored: {} already {}", position.id, previous.status)
            return
        if is_rejected_entry(position):
            self._put_trade(trade_row(position, status=TradeStatus.REJECTED, run_id=self._run,
                                      ts_ns=event.ts_init_ns, previous=previous))
            return
        exit_id = exit_order_id(position.id, position.exit_attempts) if position.exit_attempts else None
        row = trade_row(position, status=TradeStatus.CLOSED, run_id=self._run, ts_ns=event.ts_init_ns,
                        previous=previous, venue=self._venue_of(exit_id))
        self._put_trade(row)
        assert row.pnl is not None
        self._put_day(day_after_close(self._day(event.ts_init_ns), row.pnl, row.fees))
        others = sum(self._open_share.values(), Decimal(0))
        self._pending.equity.append(EquitySample(
            ts_ns=event.ts_init_ns, run_id=self._run, kind=SampleKind.CLOSE.value,
            position_id=position.id, balance=event.balance, unrealized_pnl=others,
            equity=event.balance + others,
        ))

    # --- orders: the orders row, its state history and its fills ---------------------------------

    def _order_event(self, row: OrderRow, event: OrderEventKind, message: Any, **what: Any) -> None:
        self._pending.order_events.append(OrderEventRow(
            client_order_id=row.client_order_id, position_id=row.position_id, event=event.value,
            status=row.status, message=type(message).__name__, ts_ns=message.ts_init_ns, run_id=self._run,
            venue_order_id=what.pop("venue_order_id", None) or row.venue_order_id, **what,
        ))

    def _order_update(self, message: Any, status: JournalOrderStatus, event: OrderEventKind,
                      **outcome: Any) -> OrderRow | None:
        """The order's next row and its ``order_events`` row, or ``None`` (nothing written)
        when its row is already final or further along (a re-sent SubmitOrder)."""
        order = message.order
        previous = self._order(order.client_order_id)
        if previous is not None and not previous.advances_to(status):
            if previous.is_final and status is not JournalOrderStatus.REQUESTED:
                self.log.debug("ORDER_ALREADY_FINAL: {} {} ({} ignored)", order.client_order_id,
                               previous.status, status.value)
            return None
        row = order_row(order, status=status, run_id=self._run, ts_ns=message.ts_init_ns,
                        correlation_id=message.correlation_id, previous=previous, **outcome)
        self._put_order(row)
        self._order_event(row, event, message, reason=outcome.get("reason"))
        return row

    def _on_submit_order(self, command: SubmitOrder) -> None:
        self._order_update(command, JournalOrderStatus.REQUESTED, OrderEventKind.REQUESTED)

    def _on_execute_order(self, command: ExecuteOrder) -> None:
        self._order_update(command, JournalOrderStatus.SUBMITTED, OrderEventKind.SUBMITTED)

    def _on_order_accepted(self, event: OrderAccepted) -> None:
        self._order_update(event, JournalOrderStatus.ACCEPTED, OrderEventKind.ACCEPTED,
                           venue_order_id=event.venue_order_id)

    def _on_cancel_order(self, command: CancelOrder) -> None:
        """A cancel asked for (its audit copy): a history row of a known, working order; the
        order's status changes when the venue says (``OrderCanceled``, or the fill that won)."""
        row = self._order(command.client_order_id)
        if row is None or row.is_final:
            self.log.debug("CANCEL_NOT_JOURNALED: {} is {}", command.client_order_id,
                           "unknown" if row is None else row.status)
            return
        self._order_event(row, OrderEventKind.CANCEL_REQUESTED, command, reason=command.reason)

    def _on_order_filled(self, event: OrderFilled) -> None:
        """One fill, once per trade id: its ``fills`` row, its history row, and the order's
        filled quantity, average price, fees and slippage (against the fills' mids when every
        fill carries one, else the order's reference price)."""
        order = event.order
        if self._fill(event.trade_id) is not None:
            self.duplicate_fills += 1
            self.log.debug("DUPLICATE_FILL ignored: trade {} of {}", event.trade_id, order.client_order_id)
            return
        fill = FillRow(
            trade_id=event.trade_id, client_order_id=order.client_order_id, position_id=order.position_id,
            coin=order.coin, side=order.side.value, intent=order.intent.value, venue=event.venue,
            venue_order_id=event.venue_order_id, price=event.fill_price, quantity=event.fill_quantity,
            fee=event.fee, fee_currency=event.fee_currency, liquidity=event.liquidity.value,
            cumulative_quantity=event.cumulative_quantity,
            mid_price=getattr(event, "mid_price", None),  # a venue that fills against the mid says it
            ts_event_ms=event.ts_event_ms, ts_ns=event.ts_init_ns, run_id=self._run,
        )
        previous = self._order(order.client_order_id)
        fills = [*self._fills_of(order.client_order_id), fill] if previous is not None and \
            previous.fill_quantity else [fill]
        self._pending.fills[fill.trade_id] = fill
        filled = sum((f.quantity for f in fills), Decimal(0))
        if filled != event.cumulative_quantity:
            self.log.warning("JOURNAL_FILL_GAP: {} has {} filled in the journal, the venue says {} (a fill "
                             "the journal never received?)", order.client_order_id, filled,
                             event.cumulative_quantity)
        if previous is not None and previous.is_final:
            self.log.warning("JOURNAL_FILL_AFTER_FINAL: trade {} of {} after it was {}", event.trade_id,
                             order.client_order_id, previous.status)
        status = status_after_fill(previous, event.cumulative_quantity, order.quantity)
        row = order_row(
            order, status=status, run_id=self._run, ts_ns=event.ts_init_ns,
            correlation_id=event.correlation_id, previous=previous,
            fill_price=average_price(fills), fill_quantity=filled, fee=sum((f.fee for f in fills), Decimal(0)),
            venue=event.venue, venue_order_id=event.venue_order_id, trade_id=event.trade_id,
            slippage_reference=slippage_reference(order.reference_price, fills),
        )
        if previous is not None and previous.is_final:
            row = replace(row, status=previous.status, reason=previous.reason)
        self._put_order(row)
        self._order_event(row, OrderEventKind.FILL, event, trade_id=event.trade_id,
                          quantity=event.fill_quantity, price=event.fill_price)
        trade = self._trade(order.position_id)
        if trade is not None and not trade.is_final:
            changes: dict[str, Any] = {"venue": event.venue}
            if row.intent == OrderIntent.EXIT.value:
                changes["exit_order_id"] = row.client_order_id
            self._put_trade(replace(trade, **changes))

    def _ended(self, event: OrderCanceled | OrderExpired, status: JournalOrderStatus, kind: OrderEventKind) -> None:
        row = self._order_update(event, status, kind, venue_order_id=event.venue_order_id, reason=event.reason)
        if row is None:
            return
        filled = row.fill_quantity or Decimal(0)
        if filled != event.filled_quantity:
            self.log.warning("JOURNAL_FILL_GAP: {} ended {} with {} filled, the journal has {} (a fill the "
                             "journal never received?)", row.client_order_id, status.value,
                             event.filled_quantity, filled)

    def _on_order_canceled(self, event: OrderCanceled) -> None:
        self._ended(event, JournalOrderStatus.CANCELED, OrderEventKind.CANCELED)

    def _on_order_expired(self, event: OrderExpired) -> None:
        self._ended(event, JournalOrderStatus.EXPIRED, OrderEventKind.EXPIRED)

    def _on_order_rejected(self, event: OrderRejected) -> None:
        self._order_update(event, JournalOrderStatus.REJECTED, OrderEventKind.REJECTED, reason=event.reason)

    def _on_order_denied(self, event: OrderDenied) -> None:
        self._order_update(event, JournalOrderStatus.DENIED, OrderEventKind.DENIED, reason=event.reason)

    # --- account -----------------------------------------------------------------------------------------

    def _on_account_marked(self, event: AccountMarked) -> None:
        mark = Mark(event.equity, event.unrealized_pnl)
        self._put_day(day_after_mark(self._day(event.ts_init_ns), mark))
        self._last_mark = mark
        self._pending.equity.append(EquitySample(
            ts_ns=event.ts_init_ns, run_id=self._run, kind=SampleKind.MARK.value, position_id=None,
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

    def _ask_fills(self, run_id: str | None = None, client_order_id: str | None = None) -> list[dict[str, Any]]:
        """``fills`` rows (one per trade id), by engine time; of one run or one order."""
        self._flush()
        return self._store.fills(run_id=run_id, client_order_id=client_order_id)

    def _ask_order_events(self, client_order_id: str | None = None,
                          run_id: str | None = None) -> list[dict[str, Any]]:
        """``order_events`` rows (orders' state histories) in the order received."""
        self._flush()
        return self._store.order_events(client_order_id=client_order_id, run_id=run_id)

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
                "store": self._store.name, "consumed": self.consumed, "outbox_cursor": self._cursor,
                "duplicates": self.duplicates, "duplicate_fills": self.duplicate_fills,
                "undecodable": self.undecodable}


__all__ = ["FLUSH_ROWS", "Journal"]
