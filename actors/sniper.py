"""The Sniper: watches every tick, fires armed conditions, and manages each position to its exit.

**Owns** all position state: armed conditions (a per-coin ``ConditionBook``) and a
``Portfolio`` (``state/portfolio.py``: positions with their FIFO lots, exit plans and orders
not final, the cash balance, realized PnL and fees). No other actor holds or changes any of
it. The decisions are the portfolio's (pure, tested without threads); the actor adds ordering,
persistence and publishing.

**Accepts**
- ``Tick``: expire due conditions of the coin, then the portfolio marks open positions to
  market, starts the exits the stop (first) or the take-profit calls for, decides on the
  triggered conditions within the position limits, and times out the working entry orders
  past their limit (a limit entry's ``entry_timeout_s``, a scale-in leg's
  ``scale_in_timeout_s``; of that coin, or on a tick clock of every coin, at the tick's time).
- ``ArmCondition``, ``ArmConditions`` (a strategy's set for one coin, replacing its previous
  set there), ``CancelCondition``, ``ClosePosition``, ``AdjustStop``: commands.
- ``BarClosed``: publishes ``AccountMarked`` (balance, unrealized PnL, equity) at each bar
  close, so the RiskGate and the Journal see equity at a deterministic cadence.
- ``OrderFilled`` (one fill each, applied once per trade id: an entry opens the position at its
  first fill and grows with each, an exit reduces it and closes it once nothing is held),
  ``OrderAccepted`` (a resting order is then *working*), ``OrderCanceled`` / ``OrderExpired``
  (an entry that filled part stays a position of exactly that part; one that filled nothing is
  ``ENTRY_REJECTED``; an exit that filled part leaves the rest OPEN and is retried as a failed
  exit), ``OrderRejected``, ``OrderDenied``: outcomes of its own orders.
- ``TickMatched``: the venue matched its working orders against a tick (see Ordering).
- ``EquityChecked`` (the RiskGate acted on an ``EquityMarked``) and ``ActorRestarted`` (of the
  RiskGate): end a tick clock's wait for the kill switch (see Ordering).
- ``TradingStateChanged``: a read model of the RiskGate's state (no entries unless ACTIVE).
- ``FeedStale`` / ``FeedRecovered``: no new entries on a coin whose feed is stale (its
  conditions stay armed; its open positions keep their exits).
- ``TimerFired("sweep")``: expire conditions by the engine clock when no tick comes, retry
  failed exits, ask again for stuck exits and, on a wall clock, time out working entry orders.
- Requests from outside (``engine.sniper``): ``add_condition``, ``set_conditions``,
  ``cancel_condition``, ``close_position``, ``snapshot``. ``engine.sniper``'s handle has the
  RiskGate vet and size a condition before it asks (``actors/handles.py``); the actor itself
  checks what it owns (ids, expiry, order size) and turns any arithmetic error into a
  ``ValueError``.

**Emits** ``SubmitOrder`` (to the RiskGate, which alone reaches the Executor): entries
(``-E``: market, or a GTC limit for a limit entry; ``-B``: plan B's market order for exactly the
rest of a timed-out limit, once its ``OrderCanceled`` says what filled; ``-S``: the scale-in
leg, a GTC limit placed when the first leg filled whole) and exits (``-X<n>``); ``CancelOrder``
(to the Executor: an entry or scale-in leg still working when its position's exit starts,
the exit order following only once they ended, see Ordering; an entry order at its time
limit, with the plan B decision as the reason); ``MatchTick`` (to the Executor, see Ordering);
``ConditionArmed/Triggered/Blocked/Expired/Canceled/Rejected``, ``ConditionsReplaced`` (one
per ``ArmConditions`` / ``set_conditions``, instead of a ``ConditionCanceled`` per old condition
and a ``ConditionArmed`` per new one); ``PositionOpened``,
``PositionChanged``, ``PositionClosed``, each carrying the frozen ``Position``;
``AccountMarked`` at bar closes (above); ``EquityMarked`` to the RiskGate alone, so its kill
switch sees every loss between bar closes: after every fill, and when a tick changed a mark,
at most once per ``mark_report_ms`` of engine time (the tick's own time, so a replay reports at
the same ticks; the next report due comes with the first changed mark at or after it).

**Ordering.** While an entry or exit order of a coin is in flight, that coin's later ticks are
queued and evaluated, in arrival order, when the order resolves: every tick after an entry is
checked against its stop. A market, IOC or FOK order is in flight until it is final (filled
whole, or canceled, expired, rejected); a resting order (``OrderRequest.rests``) only until
``OrderAccepted``: it is then *working* and ticks go on. For each tick of a coin with working
orders the Sniper first sends ``MatchTick(tick)`` to the Executor (the venue matches its
resting orders against it); on a tick clock it evaluates that tick, and holds every later one,
only after ``TickMatched``, so the venue matches a tick before the Sniper decides on it and a
replay with resting orders is deterministic. On a wall clock it does not wait. Without working
orders nothing of this happens. **An exit waits for its entry's end**: when a position's exit
starts (stop, target, close, kill switch) while its entry or scale-in leg still works, the
position goes CLOSING with its exit reason and only the ``CancelOrder`` messages go out; a
cancel is in flight like an order and holds the coin's lane (on a tick clock every coin waits). Once
every such order has ended (``OrderCanceled`` / ``OrderExpired``, or the fill that completed
it) the exit order (``-X<n>``) is sent for exactly the quantity then held, so a fill racing the
cancel is covered and the cancel's outcome always comes before the exit's: two replays journal
them in the same order. If nothing is held (a PENDING limit entry closed before any fill) the
position closes with no exit order (``ENTRY_CANCELED: canceled by the exit ...``).
An Executor restart (``ActorRestarted``) ends a wait for
``TickMatched`` (``MATCH_LOST``). Live (wall clock), other coins go on meanwhile. On a tick clock
(replay, manual) every coin waits: ticks are evaluated in exactly the Feed's order, as if the
venue answered instantly, so the balance and limits one coin's decision sees never depend on
how fast another coin's order came back, and two replays give the same journal. For the same
reason, on a tick clock with ``await_risk_checks`` (``[risk] replay_trips = "exact"``) ticks
also wait after each
``EquityMarked`` until the RiskGate's ``EquityChecked``, which comes after a kill switch's
``ClosePosition`` commands: a replay trips and closes at the same tick every time. A RiskGate
restart (``ActorRestarted``) ends the wait, since the report that crashed it is never answered.

**Durability.** Every decision (conditions armed, canceled or expired; a position's status,
quantity, lots, exit levels and orders not final, working ones marked, cancels asked; its
entry plan's progress: plan B decided, scale-in placed and its deadline; the balance) is written to the store before it takes effect, in one
transaction per change, and before any order goes out. Marks (a position's current price and
unrealized PnL) are written behind: when the mailbox runs empty, every ``MARK_FLUSH_TICKS``
marks under load, and on stop or crash, so a busy tape costs one write per batch, not per tick.
A tick that changes nothing writes nothing.

**Replay cursor.** A replayed tick carries its sequence number; the last one processed of
each coin is written with every decision (in the same transaction) and with the marks (per
coin, because a coin's ticks can wait behind its order while other coins go on). After a restart a
replay is fed again from an earlier point and the Sniper skips every tick it had already
processed, so a resumed replay trades exactly as an uninterrupted one.

**Bad fills and failed exits.** A fill that fails ``state/fill_guard.py`` (price or quantity
zero, negative, not finite, far from the order's reference price, more than ordered), or that
the position cannot take, is a rejected fill (``FILL_REJECTED``): an entry is dropped, an exit
leaves the position OPEN. A failed exit leaves the position OPEN with its stop and target
checked on every tick; the sweep sends it again after 2^attempts seconds (at most
``EXIT_RETRY_MAX_S``), and from ``EXIT_ESCALATE_AFTER`` failed attempts on each failure is
``EXIT_ESCALATED`` (critical). ``close_position`` on a CLOSING position asks again for its order
in flight (same client order id), and so does the sweep for an exit with no outcome after
``EXIT_STUCK_S`` (``EXIT_STUCK``). No position stays CLOSING with nothing in flight.

**Spot fees** (``state/fees.py``, decided by the portfolio): a fee charged in the coin makes the
holding net of it and the exit sells that, floored to the quantity step; a holding the venue
would refuse (the floor's rest, or under ``min_qty`` / ``min_notional``) is dust: no order is
sent, the position closes with it (``DUST_LEFT``, warning). A fee in another currency (BNB) is
not counted: ``FEE_UNVALUED`` is logged once per currency.

**On crash** the restart runs the cold-start path: load conditions, positions and the account
from the store, then reconcile each order not final with the Executor's records: its recorded
fills are applied (each once, by trade id), then a final status (a recorded fill that fails the
fill guard, e.g. a price of 0.00 an older version stored, is applied as a rejection); an order
in flight with no final record is
sent again with its same client order id (the Executor and the venue never fill an id twice);
a working order is not (the Executor reconciles it with the venue and publishes what it
learns; the RiskGate could deny it again while it rests), but a cancel decided for it (a time
limit, an exit) is asked for again. An end recorded meanwhile carries out what was decided (a
plan B market order for the rest, sent once: a later restart resends it with its same id). A
position CLOSING whose exit waits for its entry's end (written with its cancels, before they
went out) holds its coin's lane again, asks again for the cancel (the Executor answers an
order already final with its recorded outcome) and sends the exit once that end comes: the
exit order is written with it before it goes out, so a later restart resends that same id and
never a second exit. A
folder left inconsistent is repaired and reported (``RECONCILE_INCONSISTENT``): a CLOSING
position with no order goes back to OPEN, a PENDING one with no order is closed.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from decimal import Decimal
from typing import Any

from actors.base import EngineActor
from actors.bus import EXECUTOR, RISK_GATE, SNIPER
from state import rules
from state.book import ConditionBook
from state.market import MarketRules, TopOfBook
from state.messages import (
    AccountMarked,
    AdjustStop,
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
    ActorRestarted,
    CancelOrder,
    EquityChecked,
    EquityMarked,
    FeedRecovered,
    FeedStale,
    MatchTick,
    OrderAccepted,
    OrderCanceled,
    OrderDenied,
    OrderExpired,
    OrderFilled,
    OrderRejected,
    OrderRequest,
    PositionChanged,
    PositionClosed,
    PositionOpened,
    SubmitOrder,
    Tick,
    TickMatched,
    TimerFired,
    TradingStateChanged,
)
from state.models import Position, PositionOrder, SniperSnapshot, TradeCondition
from state.order import Fill, OrderRecord
from state.portfolio import (
    EXIT_ESCALATE_AFTER,
    EXIT_RETRY_MAX_S,
    EXIT_STUCK_S,
    Change,
    Ended,
    EntryDecision,
    EntryTerms,
    EntryTimeout,
    ExitStart,
    Portfolio,
    market_entry,
)
from state.rules import PositionLimits
from state.store import Store, position_order
from state.types import OrderIntent, OrderStatus, PositionStatus, TradingState, from_epoch_ns

__all__ = ["EXIT_ESCALATE_AFTER", "EXIT_RETRY_MAX_S", "EXIT_STUCK_S", "MARK_FLUSH_TICKS", "Sniper"]

ZERO = Decimal(0)
MARK_FLUSH_TICKS = 1_000
CURSOR_PREFIX = "replay_seq:"  # account keys of the replay cursor, one per coin
ALL_COINS = "*"  # the one waiting lane of a tick clock (never a coin symbol)


class Sniper(EngineActor):
    role = SNIPER
    crash_on_error = True

    def __init__(
        self,
        *,
        store: Store,
        markets: Callable[[str], MarketRules],
        limits: PositionLimits,
        initial_balance: Decimal,
        backlog_limit: int = 100_000,
        mark_report_ms: int = 1000,
        await_risk_checks: bool = False,
        entry_terms: EntryTerms = market_entry,
        quotes: Callable[[str], TopOfBook | None] | None = None,
        quote_max_age_ms: int = 0,
        **base: Any,
    ) -> None:
        """``await_risk_checks``: on a tick clock, hold later ticks after each ``EquityMarked``
        until the RiskGate's ``EquityChecked`` (the engine sets it; see Ordering).
        ``entry_terms``: the entry order's terms beyond market (``state/portfolio.py``).
        ``quotes``: a read-only view of the top of book per coin (the price board's), used for a
        limit entry's plan B when a quote is at most ``quote_max_age_ms`` old on the engine
        clock (0: never; the last trade is used)."""
        super().__init__(**base)
        self._quotes = quotes
        self._quote_max_age_ms = quote_max_age_ms
        self._store = store
        self._markets = markets
        self._limits = limits
        self._initial_balance = initial_balance
        self._entry_terms = entry_terms
        self._backlog_limit = backlog_limit
        self._book = ConditionBook()
        self._seq = 0
        self._portfolio = Portfolio(markets=markets, limits=limits, balance=initial_balance, entry_terms=entry_terms)
        self._inflight: dict[str, set[str]] = {}  # per coin: the orders holding its lane
        self._deferred: dict[str, deque[Tick]] = {}  # per lane: a coin, or ALL_COINS
        self._one_lane = self.clock.causal
        self._blocked: set[str] = set()
        self._trading_state = TradingState.ACTIVE
        self._unsaved_marks: set[str] = set()
        self._marks_since_flush = 0
        self._cursor: dict[str, int] = {}  # replay cursor per coin: last replayed tick processed
        self._saved_cursor: dict[str, int] = {}
        self._tick_ts_ms = 0
        self._last_account_mark: tuple[Decimal, Decimal, int] | None = None
        self._stale: set[str] = set()  # coins whose feed is stale: no new entries
        self._mark_report_ms = mark_report_ms
        self._marks_changed = False  # a mark changed since the last EquityMarked
        self._next_report_ms = 0  # tick time from which a changed mark is reported again
        self._await_checks = await_risk_checks and self._one_lane
        self._unchecked_reports = 0  # EquityMarked sent, EquityChecked not yet received
        self._matching: Tick | None = None  # tick clock: the tick sent to the venue, TickMatched not yet received
        self.backlog_dropped = 0
        self.replayed_skipped = 0
        self._unvalued_fees: set[str] = set()  # fee currencies FEE_UNVALUED was logged for

    # --- start: the one path for cold start and restart ------------------------------------------

    def on_start(self) -> None:
        account = self._store.load_account()
        balance = Decimal(account.get("balance", str(self._initial_balance)))
        self._portfolio = Portfolio(
            markets=self._markets, limits=self._limits, balance=balance,
            realized_pnl=Decimal(account.get("realized_pnl", "0")), fees_paid=Decimal(account.get("fees_paid", "0")),
            closed_positions=self._store.count_closed_positions(), entry_terms=self._entry_terms,
        )
        if "balance" not in account:
            self._store.save_account(balance=balance, realized_pnl=ZERO, fees_paid=ZERO)
        self._cursor = {key.removeprefix(CURSOR_PREFIX): int(value) for key, value in account.items()
                        if key.startswith(CURSOR_PREFIX)}
        self._saved_cursor = dict(self._cursor)
        self._tick_ts_ms = int(account.get("tick_ts_ms", "0"))
        self._trading_state = self._store.load_trading_state()
        for seq, condition, live in self._store.load_conditions():
            self._book.add(condition, None, live=live)
            self._seq = max(self._seq, seq + 1)
        for stored in self._store.load_positions():
            position = self._portfolio.load(stored)
            waits = self._portfolio.exit_waits(position)  # its cancels are asked again below
            for order in position.orders:
                if not order.working or waits:
                    self._hold(position.coin, order.client_order_id)
        self.log.info(
            "SNIPER_READY: {} condition(s), {} active position(s), balance {}, trading {}",
            len(self._book), len(self._portfolio), self._portfolio.balance, self._trading_state.value,
        )
        for repaired, why in self._portfolio.repair_orderless(self.now_ns()):
            self.log.error("RECONCILE_INCONSISTENT: position {} ({} {}) was {}", repaired.id,
                           repaired.direction.value, repaired.coin, why)
            with self._decision():
                self._store.save_position(repaired)
        for position in self._portfolio.positions():
            for order in position.orders:
                self._reconcile(position, order)

    def _reconcile(self, position: Position, order: PositionOrder) -> None:
        """Apply what the Executor recorded of ``order`` while the Sniper was down (every fill, by
        trade id, then a final status), or ask for it again (same client order id: never placed
        twice). A working order is left to the Executor, which reconciles it with the venue."""
        current = self._portfolio.get(position.id)
        if current is None or order not in current.orders:
            return  # an outcome applied meanwhile (of the entry, for the exit's position)
        request = self._portfolio.order_request(current, order)
        order_id = order.client_order_id
        record = self._store.get_order(order_id)
        if record is not None and (record.fills or record.is_final):
            self.log.info("RECONCILE: {} is {} with {} fill(s) recorded; applying", order_id, record.status.value,
                          len(record.fills))
            cumulative = ZERO
            for fill in record.fills:
                cumulative += fill.quantity
                self._apply_fill(_fill_event(fill, request, cumulative, record))
            after = self._portfolio.get(position.id)
            still = after is not None and any(o.client_order_id == order_id for o in after.orders)
            if still and record.status is not OrderStatus.FILLED and record.is_final:
                self._order_ended(request, record.reason or record.status.value, filled=record.filled_quantity)
            elif still and record.is_final:
                self.log.error("RECONCILE_INCONSISTENT: {} is FILLED with {} recorded, {} applied", order_id,
                               record.filled_quantity, order.filled)
        if record is not None and record.is_final:
            return
        current = self._portfolio.get(position.id)
        order = next((o for o in (current.orders if current else ()) if o.client_order_id == order_id), None)
        if order is None:
            return
        if order.working:
            self.log.info("RECONCILE: {} is working on the venue's book ({} of {} filled)", order_id,
                          order.filled, order.quantity)
            if order.cancel_requested:  # decided before the crash (a time limit, an exit): asked again
                self.log.info("RECONCILE: {} was to be canceled; asking again", order_id)
                self.send(CancelOrder(ts_init_ns=self.now_ns(), correlation_id=position.condition_id,
                                      client_order_id=order_id, reason="canceled before a restart"))
        else:
            state = "unknown to the Executor" if record is None else record.status.value
            self.log.info("RECONCILE: {} is {}; sending it again (same client order id)", order_id, state)
            self.send(SubmitOrder(ts_init_ns=self.now_ns(), correlation_id=position.condition_id, order=request))

    # --- ticks ----------------------------------------------------------------------------------

    def _on_tick(self, tick: Tick) -> None:
        coin = tick.coin
        if tick.seq is not None and tick.seq <= self._cursor.get(coin, -1):
            self.replayed_skipped += 1  # a resumed replay feeds what was already processed
            return
        lane = self._lane(coin)
        if self._waits(lane):
            backlog = self._deferred.setdefault(lane, deque())
            if len(backlog) >= self._backlog_limit:
                backlog.popleft()
                self.backlog_dropped += 1
                if self.backlog_dropped == 1 or self.backlog_dropped % 10_000 == 0:
                    self.log.warning(
                        "TICK_BACKLOG_OVERFLOW: {} waits on an order; {} oldest tick(s) dropped",
                        coin, self.backlog_dropped,
                    )
            backlog.append(tick)
            return
        self._evaluate(tick)

    def _evaluate(self, tick: Tick) -> None:
        """Evaluate a tick whose lane is free. While the coin has working orders the venue
        matches them against the tick first (``MatchTick``); on a tick clock the tick then waits
        for ``TickMatched`` (see Ordering)."""
        if self._portfolio.has_working(tick.coin):
            self.send(MatchTick(ts_init_ns=self.now_ns(), tick=tick))
            if self._one_lane:
                self._matching = tick
                return
        self._process_tick(tick)

    def _lane(self, coin: str) -> str:
        """The queue ``coin``'s ticks wait in behind an order: its own, or on a tick clock the
        one queue of every coin (see Ordering)."""
        return ALL_COINS if self._one_lane else coin

    def _waits(self, lane: str) -> bool:
        if lane == ALL_COINS:
            return bool(self._inflight) or self._unchecked_reports > 0 or self._matching is not None
        return lane in self._inflight

    def _process_tick(self, tick: Tick) -> None:
        coin = tick.coin
        if tick.seq is not None:
            self._cursor[coin] = tick.seq
            self._tick_ts_ms = max(self._tick_ts_ms, tick.ts_ms)
        for condition in self._book.expired(tick.ts_ms * 1_000_000, coin):
            self._expire(condition)
        plan = self._portfolio.on_tick(coin, tick.price, tick.ts_ms, fired=lambda: self._book.on_price(coin, tick.price),
                                       trading_state=self._trading_state, stale=coin in self._stale)
        for start in plan.exits:
            self._exit_started(start)
        if plan.marked:
            self._marks_changed = True
            self._unsaved_marks.update(p.id for p in plan.marked)
            self._marks_since_flush += len(plan.marked)
            if self._marks_since_flush >= MARK_FLUSH_TICKS or self.actor_inbox.empty():
                self._flush_marks()
        if self._marks_changed and tick.ts_ms >= self._next_report_ms:
            self._next_report_ms = tick.ts_ms + self._mark_report_ms
            self._report_equity()
        for decision in plan.entries:
            self._enter(decision)
        # On a tick clock every coin's limits are checked at each tick's time (and never by the
        # sweep, which runs on wall time): a replay times out at the same tick every time.
        self._time_out_entries(tick.ts_ms, None if self._one_lane else coin)
        self._persist_released()

    def _time_out_entries(self, now_ms: int, coin: str | None = None) -> None:
        """Cancel the working entry orders (of ``coin``, or of every coin) past their time limit
        (``Portfolio.entry_timeouts``): the decision (plan B for a limit entry) is written before
        the ``CancelOrder`` goes out; what it means is carried out when the order's end comes."""
        for timeout in self._portfolio.entry_timeouts(now_ms, coin=coin, quote=self._quotes,
                                                       quote_max_age_ms=self._quote_max_age_ms):
            self._entry_timed_out(timeout)

    def _entry_timed_out(self, timeout: EntryTimeout) -> None:
        position = timeout.position
        with self._decision():
            self._store.save_position(position)
        kind = "SCALE_IN_TIMEOUT" if timeout.decision is None else "ENTRY_TIMEOUT"
        self.log.info("{}: {} of {}: {}; canceling it", kind, timeout.cancel, position.id, timeout.note)
        self.send(CancelOrder(ts_init_ns=self.now_ns(), correlation_id=position.condition_id,
                              client_order_id=timeout.cancel, reason=f"{kind}: {timeout.note}"))

    def _flush_marks(self) -> None:
        """Write the latest mark of every position marked since the last flush."""
        self._marks_since_flush = 0
        if not self._unsaved_marks:
            return
        ids, self._unsaved_marks = self._unsaved_marks, set()
        marks = []
        for position_id in sorted(ids):
            position = self._portfolio.get(position_id)
            if position is not None and position.current_price is not None:
                marks.append((position_id, position.current_price, position.unrealized_pnl))
        with self._decision():
            self._store.save_marks(marks)

    @contextmanager
    def _decision(self) -> Iterator[None]:
        """One transaction for a decision, carrying the replay cursor along."""
        with self._store.transaction():
            yield
            if self._cursor != self._saved_cursor:
                changed = {CURSOR_PREFIX + coin: seq for coin, seq in self._cursor.items()
                           if self._saved_cursor.get(coin) != seq}
                self._store.save_account(tick_ts_ms=self._tick_ts_ms, **changed)
                self._saved_cursor = dict(self._cursor)

    def _close(self) -> None:
        try:
            self._flush_marks()
        except Exception as error:  # noqa: BLE001 - closing: report, never raise from cleanup
            self.log.error("MARKS_NOT_SAVED: {!r} (decisions are saved; only the last marks are lost)", error)

    def _persist_released(self) -> None:
        """Persist require_cross conditions the book released since the last call."""
        if not self._book.has_live_changes():
            return
        with self._decision():
            for condition_id in self._book.take_live_changes():
                self._store.set_condition_live(condition_id)

    # --- entries and exits: carrying out the portfolio's decisions ---------------------------------

    def _enter(self, decision: EntryDecision) -> None:
        condition, position = decision.condition, decision.position
        if decision.blocked is not None:
            self._block(condition, decision.blocked)
            return
        if position is None:
            self._remove_condition(condition, decision.canceled or "canceled", ConditionCanceled)
            return
        order = position.entry_order
        assert order is not None and order.reference_ts_ms is not None
        with self._decision():
            self._store.delete_condition(condition.id)
            self._store.save_position(position)
        self._book.remove(condition.id)
        self._blocked.discard(condition.id)
        self._hold(position.coin, order.client_order_id)
        self.log.info(
            "CONDITION_TRIGGERED: {} {} {} at {} ({} {}) -> {}",
            condition.id, condition.direction.value, condition.coin, order.reference_price,
            condition.trigger_type.value, condition.trigger_price, order.client_order_id,
        )
        now = self.now_ns()
        self.publish(ConditionTriggered(ts_init_ns=now, correlation_id=condition.id, condition=condition,
                                        price=order.reference_price, ts_ms=order.reference_ts_ms,
                                        position_id=position.id))
        self.send(SubmitOrder(ts_init_ns=now, correlation_id=condition.id,
                              order=self._portfolio.order_request(position, order)))

    def _block(self, condition: TradeCondition, reason: str) -> None:
        if condition.id in self._blocked:
            return
        self._blocked.add(condition.id)
        # A strategy's pair is blocked by design while its position is open: not a warning.
        log = self.log.warning if condition.strategy_id == "manual" else self.log.debug
        log("{} (condition {} stays armed)", reason, condition.id)
        self.publish(ConditionBlocked(ts_init_ns=self.now_ns(), correlation_id=condition.id,
                                      condition_id=condition.id, reason=reason))

    def _exit_started(self, start: ExitStart) -> None:
        """Carry out an exit started (written first). With an entry or scale-in order still
        working, only its cancel goes out: the exit order waits for its end (``_order_ended``,
        or the fill that completes it) and the coin's lane is held meanwhile (see Ordering)."""
        closing = start.position
        order = closing.exit_order
        with self._decision():
            self._store.save_position(closing)
            if closing.dust:  # closed on dust: its write-off moved the balance
                self._save_account()
        self._unsaved_marks.discard(closing.id)
        now = self.now_ns()
        if closing.status is PositionStatus.CLOSED:  # it held nothing the venue would take: dust
            self._closed_with_dust(closing, start.reason)
            return
        if order is None:
            waiting = [o.client_order_id for o in closing.orders]
            for order_id in waiting:  # the cancel is in flight: it holds the lane as an order does
                self._hold(closing.coin, order_id)
            self.log.info("EXIT_WAITS: {} {} {} at {} ({}): the exit waits for the end of {}", closing.id,
                          closing.direction.value, closing.coin, start.price, start.reason, ", ".join(waiting))
            self.publish(PositionChanged(ts_init_ns=now, correlation_id=closing.condition_id,
                                         position=closing, change="EXIT_STARTED"))
            for cancel in start.cancels:
                self.log.info("ENTRY_CANCEL: {} of {} (exit {})", cancel, closing.id, start.reason)
                self.send(CancelOrder(ts_init_ns=now, correlation_id=closing.condition_id,
                                      client_order_id=cancel, reason=f"exit {start.reason}"))
            return
        self._hold(closing.coin, order.client_order_id)
        self.log.info("EXIT_SUBMITTED: {} {} {} at {} ({}) -> {}", closing.id, closing.direction.value,
                      closing.coin, start.price, start.reason, order.client_order_id)
        self.publish(PositionChanged(ts_init_ns=now, correlation_id=closing.condition_id,
                                     position=closing, change="EXIT_SUBMITTED"))
        self.send(SubmitOrder(ts_init_ns=now, correlation_id=closing.condition_id,
                              order=self._portfolio.order_request(closing, order)))

    # --- order outcomes ----------------------------------------------------------------------------

    def _on_order_filled(self, event: OrderFilled) -> None:
        self._apply_fill(event)

    def _on_order_accepted(self, event: OrderAccepted) -> None:
        """The venue holds the order. A market (or IOC/FOK) order's fills or end follow and it
        stays in flight; a resting one is now *working*: written (a restart knows it), and the
        coin's ticks go on (see Ordering)."""
        position = self._portfolio.accepted(event.order)
        if position is None:
            return
        with self._store.transaction():
            self._store.save_position(position)
        self.log.info("ORDER_WORKING: {} of {} rests on the venue's book", event.order.client_order_id, position.id)
        self._resolve(position.coin, event.order.client_order_id)

    def _on_order_rejected(self, event: OrderRejected) -> None:
        self._order_ended(event.order, event.reason)

    def _on_order_canceled(self, event: OrderCanceled) -> None:
        self._order_ended(event.order, f"CANCELED: {event.reason}", kind="ORDER_CANCELED",
                          filled=event.filled_quantity)

    def _on_order_expired(self, event: OrderExpired) -> None:
        self._order_ended(event.order, f"EXPIRED: {event.reason}", kind="ORDER_EXPIRED",
                          filled=event.filled_quantity)

    def _on_tick_matched(self, event: TickMatched) -> None:
        """The venue matched the tick the Sniper waits on, and every outcome of it came before
        this: evaluate the tick now, then what waited behind it."""
        tick = self._matching
        if tick is None or (tick.coin, tick.ts_ms, tick.seq) != (event.coin, event.ts_ms, event.seq):
            return  # a wall clock does not wait; or an answer for a tick already evaluated
        self._matching = None
        with self.handling_later(tick):
            self._process_tick(tick)
        self._drain(ALL_COINS)

    def _on_order_denied(self, event: OrderDenied) -> None:
        self._order_ended(event.order, event.reason, kind="ORDER_DENIED")

    def _apply_fill(self, fill: OrderFilled) -> None:
        """Apply a sane fill; a fill that fails ``state/fill_guard.py`` or that the position
        cannot take (its exit levels cannot be computed) is a rejected fill (``FILL_REJECTED``):
        the order counts as refused (an entry is dropped, an exit leaves the position OPEN and is
        retried), never a crash of the state owner and never a stored record that crashes the
        next start."""
        order = fill.order
        result = self._portfolio.apply(fill)
        if result.change is Change.IGNORED:
            if result.position is None and self._is_late(fill):
                self.log.error("LATE_FILL: {} filled {} @ {} (trade {}) after its position {} closed; not held "
                               "by any position", order.client_order_id, fill.fill_quantity, fill.fill_price,
                               fill.trade_id, order.position_id)
                return
            self.log.debug("DUPLICATE_FILL ignored: {} ({})", order.client_order_id, result.reason)
            return
        if result.change is Change.REJECTED:
            self.log.error("FILL_REJECTED: {} of {}: {}", order.client_order_id, order.position_id, result.reason)
            if order.rests:  # it may still rest on the venue's book: no longer followed, so canceled
                self.send(CancelOrder(ts_init_ns=self.now_ns(), correlation_id=fill.correlation_id,
                                      client_order_id=order.client_order_id, reason="FILL_REJECTED"))
            self._order_ended(order, f"FILL_REJECTED: {result.reason}")
            return
        position = result.position
        assert position is not None
        with self._store.transaction():
            self._store.save_position(position)
            self._save_account()
        now = self.now_ns()
        self._note_fee(result.fee_unvalued, fill)
        if result.change is Change.OPENED:
            self.log.info(
                "POSITION_OPENED: {} {} {} {} @ {} stop {} target {} fee {}",
                position.id, position.direction.value, position.quantity, position.coin,
                position.entry_price, position.stop_loss_price, position.take_profit_price, fill.fee,
            )
            self.publish(PositionOpened(ts_init_ns=now, correlation_id=position.condition_id, position=position))
        elif result.change is Change.CLOSED:
            self.log.info(
                "POSITION_CLOSED: {} {} {} exit {} ({}) pnl {} balance {}",
                position.id, position.direction.value, position.coin, position.exit_price,
                position.exit_reason, rules.to_cents(position.realized_pnl or ZERO),
                rules.to_cents(self._portfolio.balance),
            )
            self._note_dust(position)
            self.publish(PositionClosed(ts_init_ns=now, correlation_id=position.condition_id,
                                        position=position, balance=self._portfolio.balance))
        else:
            change = "ENTRY_FILLED" if result.change is Change.INCREASED else "EXIT_FILLED"
            self.log.info("POSITION_{}: {} {} {} now holds {} after {} @ {}", result.change.value, position.id,
                          position.direction.value, position.coin, position.quantity, fill.fill_quantity,
                          fill.fill_price)
            if result.reexit:
                self.log.warning("EXIT_SHORT: {} still holds {} after its exit {} filled; sent again by the sweep",
                                 position.id, position.quantity, order.client_order_id)
            self.publish(PositionChanged(ts_init_ns=now, correlation_id=position.condition_id,
                                         position=position, change=change))
        if result.cancel is not None:
            self.send(CancelOrder(ts_init_ns=now, correlation_id=position.condition_id,
                                  client_order_id=result.cancel, reason="closed by an earlier exit's fill"))
        if result.submit is not None:  # written with the fill: the first leg filled whole, so the scale-in
            # leg goes; or the entry a waiting exit canceled filled whole, so the exit goes
            exiting = result.submit.intent is OrderIntent.EXIT
            self._submit(position, result.submit, "EXIT_SUBMITTED" if exiting else "SCALE_IN_PLACED")
        self._report_equity()
        if result.order_done or result.cancel is not None:
            self._resolve(position.coin, result.cancel or order.client_order_id)

    def _closed_with_dust(self, position: Position, reason: str) -> None:
        """``position`` closed with no exit order: all it held was dust (written with it)."""
        self.log.info("POSITION_CLOSED: {} {} {} ({}) with no exit order pnl {} balance {}", position.id,
                      position.direction.value, position.coin, reason, rules.to_cents(position.realized_pnl or ZERO),
                      rules.to_cents(self._portfolio.balance))
        self._note_dust(position)
        self.publish(PositionClosed(ts_init_ns=self.now_ns(), correlation_id=position.condition_id,
                                    position=position, balance=self._portfolio.balance))
        self._report_equity()

    def _note_dust(self, position: Position) -> None:
        """Log what a closed position left in the account (``Position.dust``), if anything."""
        if position.dust > 0:
            market = self._markets(position.coin)
            self.log.warning("DUST_LEFT: {} closed leaving {} {} in the account: below the quantity step {}, "
                             "min_qty {} or min_notional {}, so never sent; written off at its entry cost",
                             position.id, position.dust, position.coin, market.qty_step, market.min_qty,
                             market.min_notional)

    def _note_fee(self, currency: str | None, fill: OrderFilled) -> None:
        """Warn once per currency about a fee the PnL cannot count (``state/fees.py``)."""
        if currency is None or currency in self._unvalued_fees:
            return
        self._unvalued_fees.add(currency)
        self.log.warning("FEE_UNVALUED: {} of {} paid a fee of {} {}: neither the quote currency nor {}; recorded "
                         "with its currency (journal fills, report fees_other), not counted in fees or PnL "
                         "(warned once per currency)", fill.order.client_order_id, fill.order.position_id, fill.fee,
                         currency, fill.order.coin)

    def _is_late(self, fill: OrderFilled) -> bool:
        """A fill of a closed position that it never applied (a trade id it does not know): an
        entry that filled after its position closed (its exit, or its own end, came first)."""
        stored = self._store.get_position(fill.order.position_id)
        return (stored is not None and stored.status is PositionStatus.CLOSED and bool(fill.trade_id)
                and fill.trade_id not in stored.trade_ids)

    def _order_ended(self, order: OrderRequest, reason: str, *, kind: str = "ORDER_REJECTED",
                     filled: Decimal | None = None) -> None:
        """``order`` ended without completing (see ``Portfolio.order_ended``)."""
        end = self._portfolio.order_ended(order, reason, filled_quantity=filled)
        if end is None:
            return
        position, order_id = end.position, order.client_order_id
        with self._store.transaction():  # commits with the event below (the outbox)
            self._store.save_position(position)
            if position.dust:  # closed on dust: its write-off moved the balance
                self._save_account()
        now = self.now_ns()
        if end.missing:
            self.log.error("FILLS_MISSING: {} of {} filled {} more than the fills applied", order_id, position.id,
                           end.missing)
        if end.ended is Ended.ENTRY_FAILED:
            self.log.warning("{}: entry {} of {} failed: {}", kind, order_id, position.id, reason)
            self._note_dust(position)
            self.publish(PositionClosed(ts_init_ns=now, correlation_id=position.condition_id,
                                        position=position, balance=self._portfolio.balance))
        elif end.ended is Ended.PLAN_B:
            assert end.submit is not None
            self._submit(position, end.submit, "PLAN_B_TAKE")
        elif end.ended is Ended.EXIT_SENT:  # the exit waited for this end: it covers exactly what is held
            assert end.submit is not None
            self.log.info("ENTRY_ENDED: {} of {} ended ({}) after filling {}; the position holds {}", order_id,
                          position.id, reason, end.order.filled, position.quantity)
            self.publish(PositionChanged(ts_init_ns=now, correlation_id=position.condition_id,
                                         position=position, change="EXIT_SUBMITTED"))
            self._submit(position, end.submit, "EXIT_SUBMITTED")
        elif end.ended is Ended.ENTRY_ENDED:
            self.log.info("ENTRY_ENDED: {} of {} ended ({}) after filling {}; the position holds {}", order_id,
                          position.id, reason, end.order.filled, position.quantity)
            self.publish(PositionChanged(ts_init_ns=now, correlation_id=position.condition_id,
                                         position=position, change=f"ENTRY_ENDED: {reason}"))
        else:
            self.log.error("{}: exit {} of {} failed: {}; exits stay armed", kind, order_id, position.id, reason)
            self._portfolio.exit_failed(position.id, now)
            if position.exit_attempts >= EXIT_ESCALATE_AFTER:
                self.log.critical("EXIT_ESCALATED: {} {} {}: {} exit attempt(s) failed; still retried on every "
                                  "tick that crosses a level and every {}s by the sweep", position.id,
                                  position.direction.value, position.coin, position.exit_attempts, EXIT_RETRY_MAX_S)
            self.publish(PositionChanged(ts_init_ns=now, correlation_id=position.condition_id,
                                         position=position, change=f"EXIT_FAILED: {reason}"))
        self._resolve(position.coin, order_id)

    def _submit(self, position: Position, order: PositionOrder, kind: str) -> None:
        """Send a further entry order of ``position`` (already written with it): it is in flight."""
        self.log.info("{}: {} of {}: {} {} {}", kind, order.client_order_id, position.id, order.order_type.value,
                      order.quantity, position.coin if order.limit_price is None else f"@ {order.limit_price}")
        self._hold(position.coin, order.client_order_id)
        self.send(SubmitOrder(ts_init_ns=self.now_ns(), correlation_id=position.condition_id,
                              order=self._portfolio.order_request(position, order)))

    def _retry_failed_exits(self) -> None:
        """Sweep: send again the exit of every OPEN position whose last exit failed (with a
        backoff of 2^attempts seconds of engine time, at most ``EXIT_RETRY_MAX_S``), at the last
        price: a manual, kill-switch or time exit is not lost when no tick crosses a level."""
        for position, reason in self._portfolio.due_exit_retries(self.now_ns()):
            last = self._portfolio.last_price(position.coin)
            assert last is not None
            self.log.warning("EXIT_RETRY: {} ({}), attempt {}", position.id, reason, position.exit_attempts + 1)
            self._exit_started(self._portfolio.begin_exit(position.id, reason, last[0], last[1]))

    def _ask_again_for_stuck_exits(self) -> None:
        """Sweep: an exit in flight for ``EXIT_STUCK_S`` of engine time without an outcome (an
        ambiguous submit the venue never saw, a restart in between) is asked for again every
        ``EXIT_STUCK_S``, with its same client order id: the Executor resolves it with the venue
        and never places it twice. Entries are not: a resent entry could be denied while it
        may have filled."""
        now = self.now_ns()
        for position, waited_ns in self._portfolio.stuck_exits(now):
            order = position.exit_order
            assert order is not None
            self.log.warning("EXIT_STUCK: {} of {} has no outcome after {:.0f}s; asking again (same client "
                             "order id)", order.client_order_id, position.id, waited_ns / 1e9)
            self.send(SubmitOrder(ts_init_ns=now, correlation_id=position.condition_id,
                                  order=self._portfolio.order_request(position, order)))

    def _hold(self, coin: str, order_id: str) -> None:
        """An order of ``coin`` is in flight: the coin's later ticks wait (see Ordering)."""
        self._inflight.setdefault(coin, set()).add(order_id)

    def _resolve(self, coin: str, order_id: str) -> None:
        """An order of ``coin`` resolved: evaluate the ticks that waited for it, in order."""
        waiting = self._inflight.get(coin)
        if waiting is not None:
            waiting.discard(order_id)
            if not waiting:
                del self._inflight[coin]
        self._drain(self._lane(coin))

    def _on_equity_checked(self, event: EquityChecked) -> None:
        """The RiskGate acted on a report (and on a trip, its commands came first): the ticks
        that waited for it go on."""
        self._unchecked_reports = max(0, self._unchecked_reports - 1)
        self._drain(ALL_COINS)

    def _on_actor_restarted(self, event: ActorRestarted) -> None:
        """A restarted RiskGate may never answer the report that crashed its predecessor: stop
        waiting for answers (its successor has the equity from the store). So for a restarted
        Executor and the tick it was matching: the tick is evaluated (``MATCH_LOST``)."""
        if event.role == EXECUTOR and self._matching is not None:
            tick, self._matching = self._matching, None
            self.log.warning("MATCH_LOST: the Executor restarted; {} tick {} evaluated without its TickMatched",
                             tick.coin, tick.ts_ms)
            with self.handling_later(tick):
                self._process_tick(tick)
            self._drain(ALL_COINS)
        if event.role == RISK_GATE and self._unchecked_reports:
            self.log.warning("EQUITY_CHECK_LOST: the RiskGate restarted; {} report(s) unanswered, ticks go on",
                             self._unchecked_reports)
            self._unchecked_reports = 0
            self._drain(ALL_COINS)

    def _drain(self, lane: str) -> None:
        """Evaluate the ticks that waited in ``lane``, in order, while nothing holds it."""
        backlog = self._deferred.get(lane)
        while backlog and not self._waits(lane):
            tick = backlog.popleft()
            with self.handling_later(tick):
                self._evaluate(tick)
        if backlog is not None and not backlog:
            del self._deferred[lane]

    # --- commands ---------------------------------------------------------------------------------

    def _on_arm_condition(self, command: ArmCondition) -> None:
        try:
            with _arithmetic_as_value_error():
                self._arm([command.condition], replace_strategy=None)
        except ValueError as error:
            self.log.warning("CONDITION_REJECTED: {}: {}", command.condition.id, error)
            self.publish(ConditionRejected(ts_init_ns=self.now_ns(), correlation_id=command.condition.id,
                                           condition_id=command.condition.id, reason=str(error)))

    def _on_arm_conditions(self, command: ArmConditions) -> None:
        """Replace ``strategy_id``'s conditions on ``coin`` with the valid ones of the set; an
        invalid one (e.g. an id that already opened a position) is rejected on its own."""
        valid: list[TradeCondition] = []
        for condition in command.conditions:
            try:
                if any(c.id == condition.id for c in valid):
                    raise ValueError(f"id: {condition.id!r} appears twice in one set")
                self._check_armable(condition, self.now_ns())
            except ValueError as error:
                self.log.warning("CONDITION_REJECTED: {}: {}", condition.id, error)
                self.publish(ConditionRejected(ts_init_ns=self.now_ns(), correlation_id=condition.id,
                                               condition_id=condition.id, reason=str(error)))
                continue
            valid.append(condition)
        self._arm(valid, replace_strategy=command.strategy_id, replace_coin=command.coin)

    def _on_bar_closed(self, event: BarClosed) -> None:
        book = self._portfolio
        mark = (book.balance, book.unrealized(), len(book))
        if mark == self._last_account_mark:
            return
        self._last_account_mark = mark
        self.publish(AccountMarked(ts_init_ns=self.now_ns(), balance=book.balance, unrealized_pnl=mark[1],
                                   equity=book.equity(), open_positions=len(book)))

    def _report_equity(self) -> None:
        """Tell the RiskGate the account's equity now (see Emits: ``EquityMarked``)."""
        self._marks_changed = False
        if self._await_checks:
            self._unchecked_reports += 1  # later ticks wait for the RiskGate's answer (see Ordering)
        book = self._portfolio
        self.publish(EquityMarked(ts_init_ns=self.now_ns(), balance=book.balance, unrealized_pnl=book.unrealized(),
                                  equity=book.equity()))

    def _on_cancel_condition(self, command: CancelCondition) -> None:
        condition = self._book.get(command.condition_id)
        if condition is None:
            self.log.info("CANCEL ignored: condition {} is not armed", command.condition_id)
            return
        self._remove_condition(condition, command.reason, ConditionCanceled)

    def _on_close_position(self, command: ClosePosition) -> None:
        try:
            self._close_position(command.position_id, command.reason)
        except ValueError as error:
            self.log.warning("CLOSE ignored: {}", error)

    def _on_adjust_stop(self, command: AdjustStop) -> None:
        position = self._portfolio.get(command.position_id)
        if position is None or position.status is not PositionStatus.OPEN:
            self.log.warning("ADJUST_STOP ignored: {} is not an open position", command.position_id)
            return
        try:
            adjusted = self._portfolio.adjust_stop(position.id, command.stop_loss_price)
        except ValueError as error:
            self.log.warning("ADJUST_STOP refused for {}: {}", position.id, error)
            return
        with self._store.transaction():
            self._store.save_position(adjusted)
        self.publish(PositionChanged(ts_init_ns=self.now_ns(), correlation_id=adjusted.condition_id,
                                     position=adjusted, change="STOP_ADJUSTED"))

    def _on_feed_stale(self, event: FeedStale) -> None:
        self._stale.add(event.coin)

    def _on_feed_recovered(self, event: FeedRecovered) -> None:
        self._stale.discard(event.coin)
        self._blocked = {c for c in self._blocked if (cond := self._book.get(c)) is None or cond.coin != event.coin}

    def _on_trading_state_changed(self, event: TradingStateChanged) -> None:
        self._trading_state = event.state
        self._blocked.clear()

    def _on_timer_fired(self, timer: TimerFired) -> None:
        self._flush_marks()
        if timer.name == "sweep":
            for condition in self._book.expired(self.now_ns()):
                self._expire(condition)
            self._retry_failed_exits()
            self._ask_again_for_stuck_exits()
            if not self._one_lane:
                self._time_out_entries(self.now_ns() // 1_000_000)

    # --- requests from outside (engine.sniper) ------------------------------------------------------

    def _ask_add_condition(self, condition: TradeCondition) -> str:
        with _arithmetic_as_value_error():
            self._arm([condition], replace_strategy=None)
        return condition.id

    def _ask_set_conditions(self, conditions: Iterable[TradeCondition], strategy_id: str | None = None) -> tuple[str, ...]:
        new = list(conditions)
        with _arithmetic_as_value_error():
            self._arm(new, replace_strategy=strategy_id if strategy_id is not None else "*")
        return tuple(c.id for c in new)

    def _ask_cancel_condition(self, condition_id: str, reason: str = "canceled") -> str:
        condition = self._book.get(condition_id)
        if condition is None:
            raise ValueError(f"condition_id: {condition_id!r} is not armed")
        self._remove_condition(condition, reason, ConditionCanceled)
        return condition_id

    def _ask_close_position(self, position_id: str, reason: str = "MANUAL") -> str:
        return self._close_position(position_id, reason)

    def _ask_snapshot(self) -> SniperSnapshot:
        self._flush_marks()  # what a snapshot shows is what a restart would rebuild
        book = self._portfolio
        positions = sorted(book.positions(), key=position_order)
        return SniperSnapshot(
            conditions=self._book.all(),
            positions=tuple(positions),
            balance=book.balance,
            realized_pnl=book.realized_pnl,
            fees_paid=book.fees_paid,
            closed_positions=book.closed_positions,
            working_orders=tuple(o.client_order_id for p in positions for o in p.orders if o.working),
        )

    def _ask_stats(self) -> dict[str, Any]:
        return {
            "conditions": len(self._book),
            "positions": len(self._portfolio),
            "inflight_coins": sorted(self._inflight),
            "deferred_ticks": sum(len(q) for q in self._deferred.values()),
            "working_orders": list(self._portfolio.working_orders()),
            "matching": self._matching is not None,
            "backlog_dropped": self.backlog_dropped,
        }

    # --- helpers ------------------------------------------------------------------------------------

    def _arm(self, conditions: list[TradeCondition], *, replace_strategy: str | None,
             replace_coin: str | None = None) -> None:
        """Validate every condition first, then arm them all in one transaction."""
        now_ns = self.now_ns()
        ids: set[str] = set()
        used = self._store.used_condition_ids(c.id for c in conditions if isinstance(c, TradeCondition))
        for condition in conditions:
            if not isinstance(condition, TradeCondition):
                raise ValueError(f"condition: expected a TradeCondition, got {type(condition).__name__}")
            if condition.id in ids:
                raise ValueError(f"id: {condition.id!r} appears twice")
            ids.add(condition.id)
            self._check_armable(condition, now_ns, used)
        if replace_strategy is None:
            replaced: list[TradeCondition] = [c for c in conditions if c.id in self._book]
        elif replace_strategy == "*":
            replaced = list(self._book.all())
        else:
            replaced = self._book.for_strategy(replace_strategy, replace_coin)
        if replace_strategy is not None and {c.id: c for c in replaced} == {c.id: c for c in conditions}:
            # The very set already armed (a bar delivered again after a restart is proposed
            # again): nothing changes, so nothing is written or announced, and the conditions
            # keep what they learned meanwhile (the side a require_cross one has seen).
            self.log.debug("CONDITIONS_UNCHANGED: {} on {}: {} condition(s) already armed as proposed",
                           replace_strategy, replace_coin or "every coin", len(conditions))
            return
        with self._store.transaction():
            for old in replaced:
                self._store.delete_condition(old.id)
            for offset, condition in enumerate(conditions):
                self._store.save_condition(condition, self._seq + offset)
        for old in replaced:
            self._book.remove(old.id)
            self._blocked.discard(old.id)
        for condition in conditions:
            last = self._portfolio.last_price(condition.coin)
            self._book.add(condition, last[0] if last else None)
            self._seq += 1
        if replace_strategy is None:
            for condition in conditions:
                self._publish_armed(condition, now_ns)
        elif conditions or replaced:  # an empty set replacing nothing changes nothing
            self._publish_replaced(replace_strategy, replace_coin, conditions, replaced, ids, now_ns)
        self._persist_released()

    def _publish_armed(self, condition: TradeCondition, now_ns: int) -> None:
        """A condition armed on its own: its log line and ``ConditionArmed``."""
        log = self.log.info if condition.strategy_id == "manual" else self.log.debug
        log(
            "CONDITION_ARMED: {} {} {} if {} {} (stop {}, target {}, ${}){}",
            condition.id, condition.direction.value, condition.coin,
            condition.trigger_type.value, condition.trigger_price, condition.stop_loss_pct,
            condition.take_profit_pct, condition.position_size_usd,
            "" if condition.valid_until is None else f" until {condition.valid_until.isoformat()}",
        )
        self.publish(ConditionArmed(ts_init_ns=now_ns, correlation_id=condition.id, condition=condition))

    def _publish_replaced(self, strategy_id: str, coin: str | None, armed: list[TradeCondition],
                          replaced: list[TradeCondition], ids: set[str], now_ns: int) -> None:
        """A replacement (``ArmConditions``, ``set_conditions``): one log line and ONE
        ``ConditionsReplaced`` for the whole set (a strategy re-arms at every bar close)."""
        canceled = tuple(old.id for old in replaced if old.id not in ids)
        log = self.log.info if any(c.strategy_id == "manual" for c in armed) else self.log.debug
        log(
            "CONDITIONS_REPLACED: {} on {}: armed [{}], canceled {}", strategy_id, coin or "every coin",
            "; ".join(f"{c.id} {c.direction.value} {c.coin} if {c.trigger_type.value} {c.trigger_price} "
                      f"${c.position_size_usd}" for c in armed), len(canceled),
        )
        self.publish(ConditionsReplaced(
            ts_init_ns=now_ns, correlation_id=strategy_id if coin is None else f"{strategy_id}:{coin}",
            strategy_id=strategy_id, coin=coin, armed=tuple(armed), canceled=canceled,
        ))

    def _check_armable(self, condition: TradeCondition, now_ns: int, used: set[str] | None = None) -> None:
        """Raise ``ValueError`` naming the problem if ``condition`` cannot be armed now."""
        if used is None:
            used = self._store.used_condition_ids([condition.id])
        if condition.id in used or any(p.condition_id == condition.id for p in self._portfolio.positions()):
            raise ValueError(f"id: condition {condition.id!r} already triggered a position; use a new id")
        deadline = condition.valid_until_ns
        if deadline is not None and deadline <= now_ns:
            raise ValueError(
                f"valid_until: {condition.valid_until.isoformat() if condition.valid_until else ''} "
                f"is not after engine time {from_epoch_ns(now_ns).astimezone().isoformat()}"
            )
        market = self._markets(condition.coin)
        try:
            quantity = rules.entry_quantity(condition.position_size_usd, condition.trigger_price, market)
            problem = rules.order_size_problem(quantity, condition.trigger_price, market)
        except ArithmeticError as error:  # never a crash of the state owner over one condition
            raise ValueError(f"position_size_usd: {condition.position_size_usd} at trigger_price "
                             f"{condition.trigger_price} cannot be sized: {type(error).__name__}") from None
        if problem is not None:
            raise ValueError(
                f"position_size_usd: {condition.position_size_usd} buys {quantity} {condition.coin} at "
                f"{condition.trigger_price}: {problem}"
            )

    def _remove_condition(self, condition: TradeCondition, reason: str, event: type) -> None:
        with self._decision():
            self._store.delete_condition(condition.id)
        self._book.remove(condition.id)
        self._blocked.discard(condition.id)
        self.log.info("CONDITION_REMOVED: {} ({})", condition.id, reason)
        self.publish(event(ts_init_ns=self.now_ns(), correlation_id=condition.id,
                           condition_id=condition.id, reason=reason))

    def _expire(self, condition: TradeCondition) -> None:
        with self._decision():
            self._store.delete_condition(condition.id)
        self._book.remove(condition.id)
        self._blocked.discard(condition.id)
        self.log.info("CONDITION_EXPIRED: {} (valid until {})", condition.id,
                      condition.valid_until.isoformat() if condition.valid_until else "-")
        self.publish(ConditionExpired(ts_init_ns=self.now_ns(), correlation_id=condition.id,
                                      condition_id=condition.id))

    def _close_position(self, position_id: str, reason: str) -> str:
        position = self._portfolio.get(position_id)
        if position is None:
            raise ValueError(f"position_id: {position_id!r} is not an active position")
        if position.status is PositionStatus.CLOSING and position.exit_order is not None:
            # Ask again for the exit in flight (same client order id: the Executor never places
            # it twice, and answers with its outcome if it has one).
            self.log.info("CLOSE: {} is already closing; asking again for {}", position_id,
                          position.exit_order.client_order_id)
            self.send(SubmitOrder(ts_init_ns=self.now_ns(), correlation_id=position.condition_id,
                                  order=self._portfolio.order_request(position, position.exit_order)))
            return position_id
        if self._portfolio.exit_waits(position):
            # Its exit waits for the end of the entry orders it canceled: ask again for that.
            for order in position.orders:
                self.log.info("CLOSE: {} is already closing; asking again to cancel {}", position_id,
                              order.client_order_id)
                self.send(CancelOrder(ts_init_ns=self.now_ns(), correlation_id=position.condition_id,
                                      client_order_id=order.client_order_id, reason=f"exit {position.exit_reason}"))
            return position_id
        last = self._portfolio.last_price(position.coin)
        if last is None:
            raise ValueError(f"position_id: no price seen yet for {position.coin}")
        self._exit_started(self._portfolio.begin_exit(position_id, reason, last[0], last[1]))
        return position_id

    def _save_account(self) -> None:
        book = self._portfolio
        self._store.save_account(balance=book.balance, realized_pnl=book.realized_pnl, fees_paid=book.fees_paid)

@contextmanager
def _arithmetic_as_value_error() -> Iterator[None]:
    """A condition whose numbers break the arithmetic is the caller's mistake (``ValueError``,
    answered, state untouched), never a crash of the Sniper."""
    try:
        yield
    except ArithmeticError as error:
        raise ValueError(f"condition: its numbers cannot be computed with ({type(error).__name__})") from None


def _fill_event(fill: Fill, order: OrderRequest, cumulative: Decimal, record: OrderRecord) -> OrderFilled:
    """A fill the Executor recorded, as the ``OrderFilled`` it published (or would have)."""
    return OrderFilled(
        ts_init_ns=record.updated_ns, correlation_id=None, order=order,
        venue_order_id=fill.venue_order_id or record.venue_order_id or "", trade_id=fill.trade_id,
        fill_price=fill.price, fill_quantity=fill.quantity, cumulative_quantity=cumulative, fee=fill.fee,
        ts_event_ms=fill.ts_ms, liquidity=fill.liquidity, fee_currency=fill.fee_currency, venue=record.venue,
    )
