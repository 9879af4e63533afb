"""Positions, cash and the per-tick decisions: the pure core of the Sniper (no thread, no I/O).

``Portfolio`` owns the active positions (PENDING, OPEN, CLOSING), the cash balance, realized
PnL, fees paid, the count of closed positions, the last price of each coin and the failed exits
waiting for a retry. The Sniper actor owns one and adds ordering, persistence and publishing:
it asks, writes what changed, then announces it.

- ``on_tick(coin, price, ts_ms, ...)`` marks the coin's OPEN positions, starts the exits their
  stop (checked first) or target calls for, then decides on the conditions the price fired, in
  arming order, within the position limits: it returns a ``TickPlan`` (marks changed, exits
  started, entries decided).
- ``apply(fill)`` applies one ``OrderFilled`` and returns a ``FillResult`` (opened, increased,
  reduced, closed; or ignored, rejected). A position changes only through its fills: its
  quantity is the sum of its entry fills less its exit fills, held as FIFO ``Lot``s (an entry
  fill appends a lot, an exit fill depletes the oldest first, realized PnL is per lot), and a
  venue trade id already applied to the position is ignored. Exit levels follow the average
  entry price. An exit order covers exactly the quantity held.
- ``accepted(order)``, ``order_ended(order, reason, ...)``: the other outcomes of an order.
- **Entry plans** (``state/entry_plan.py``): a condition with ``entry_type`` LIMIT enters with a
  GTC limit order for its first leg; ``entry_timeouts(now_ms, ...)`` finds the limit entries
  still working at their deadline (engine time) and decides plan B from the executable price
  (a fresh top of book, else the last trade): the limit is canceled either way, and once its
  end says what filled (``order_ended``) TAKE returns a market order (``-B``) for exactly the
  rest, CANCEL leaves the position holding what filled (nothing: closed, ``ENTRY_TIMEOUT``).
  With ``scale_in_fraction`` the fill that completes the first leg places the second leg
  (``FillResult.submit``: a GTC limit ``-S`` at the pullback level from the average entry),
  canceled by ``entry_timeouts`` at its own deadline or first thing when the position exits
  (``ExitStart.cancel_add``). Every order of a position has its own slot (``entry_order``,
  ``add_order``, ``exit_order``) and ``entry_plan`` records the plan's progress.
- **An exit waits for its entry's end.** ``begin_exit`` on a position whose entry or scale-in
  leg still works (or a PENDING one whose limit entry rests) makes it CLOSING with its exit
  reason and those orders marked to cancel, with no exit order yet (``exit_waits``). When the
  last of them ends (``order_ended``, ``Ended.EXIT_SENT``) or the fill that completes it
  comes (``FillResult.submit``), the exit order is decided for exactly the quantity then held
  (``-X<n>``); with nothing held the position closes without one (``ENTRY_CANCELED``). Every
  step is a new ``Position`` the Sniper writes before it acts, so a restart in between finds
  the CLOSING position with its cancels asked and no exit order (``repair_orderless`` leaves it).

**Fees by currency** (``state/fees.py``): a fee in quote currency is counted as it is; a fee
charged in the coin (a spot BUY on Binance or Bybit) makes the lot and the holding net of it
(``Position.fees_coin``) and counts in quote at the fill's price; a fee in another currency
(BNB) leaves the quantity whole and is not counted (``FillResult.fee_unvalued`` names it). The
order's own filled quantity is always what it traded. **Dust**: ``exit_quantity`` floors a
holding net of such fees to the quantity step; what cannot be sold (the rest of the floor, or a
holding below ``min_qty`` / ``min_notional``) is never sent: the position closes with it as
``Position.dust``, written off at its entry cost (an exit that completed leaving only dust, or
an exit started on a holding that is all dust, closes the position without an order).

**Cash** (to the cent as before fills could be partial): an entry fill takes its fee from the
balance, an exit fill adds its gross PnL less its fee, and a closed position's realized PnL is
its gross PnL less every fee it paid; so ``initial - balance == fees - gross`` always holds
(``fees_paid`` counts every fee, ``realized_pnl`` every closed position's net PnL).

Everything is decided from its arguments: the time comes in (tick time, ``now_ns``), the
markets' rules and the limits are given at construction.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from decimal import Decimal
from enum import StrEnum
from typing import Any

from state import rules
from state.fees import FeeKind, coin_moved, fee_in_quote, fee_kind
from state.fill_guard import fill_problem
from state.entry_plan import (
    EntryPlan,
    PlanB,
    entry_limit_price,
    executable_price,
    plan_b,
    scale_in_level,
    split_legs,
)
from state.market import MarketRules, TopOfBook
from state.messages import OrderFilled, OrderRequest
from state.models import (
    Lot,
    Position,
    PositionOrder,
    PositionTrigger,
    TradeCondition,
    account_equity,
    entry_order_id,
    exit_order_id,
    plan_b_order_id,
    position_id_for,
    scale_in_order_id,
)
from state.rules import ActiveExposure, PositionLimits
from state.types import (
    Direction,
    ExitReason,
    OrderIntent,
    OrderType,
    PositionStatus,
    Side,
    TimeInForce,
    TradingState,
    from_epoch_ns,
)

ZERO = Decimal(0)
EXIT_ESCALATE_AFTER = 3  # failed exit attempts of one position before EXIT_ESCALATED
EXIT_RETRY_MAX_S = 60  # a failed exit is retried after 2^attempts s, at most this
EXIT_STUCK_S = 10  # an exit in flight this long (engine time) without an outcome is asked for again

EntryTerms = Callable[[TradeCondition, Decimal, MarketRules], dict[str, Any]]
"""The terms of an entry order beyond market (``order_type``, ``time_in_force``,
``limit_price``, ...), given the condition, the triggering price and the coin's rules."""


def market_entry(condition: TradeCondition, price: Decimal, market: MarketRules) -> dict[str, Any]:
    """The default entry: a market order."""
    return {}


class Change(StrEnum):
    IGNORED = "IGNORED"  # not an order of the position in flight, or a trade id already applied
    REJECTED = "REJECTED"  # the fill fails the fill guard or the position cannot take it
    OPENED = "OPENED"  # the entry's first fill
    INCREASED = "INCREASED"  # a later entry fill
    REDUCED = "REDUCED"  # an exit fill that leaves a quantity held
    CLOSED = "CLOSED"  # the exit fill that took the quantity held to 0


@dataclass(frozen=True, slots=True, kw_only=True)
class FillResult:
    """What a fill changed. ``position``: the position after it (before it for IGNORED and
    REJECTED; ``None`` when it is not an active position). ``realized_gross``: the gross PnL
    the fill realized (FIFO, per lot). ``order_done``: the fill completed its order (it is no
    longer in flight). ``reexit``: an exit completed with a quantity still held (an entry fill
    came in between): the position is OPEN again and its exit is to be sent again. A fill of an
    order that had ended (it raced the cancel) is applied all the same while the position is
    held; ``cancel`` names an exit order no longer needed because such a fill closed it."""

    change: Change
    position: Position | None
    reason: str = ""
    realized_gross: Decimal = ZERO
    order_done: bool = False
    reexit: bool = False
    cancel: str | None = None
    submit: PositionOrder | None = None
    fee_unvalued: str | None = None  # the fill's fee is in this currency (neither quote nor coin): not counted


@dataclass(frozen=True, slots=True, kw_only=True)
class ExitStart:
    """An exit started: ``position`` is CLOSING. ``cancel`` names the entry order still working
    to cancel, ``cancel_add`` the scale-in leg; while either (or one whose cancel was asked
    before) has not ended, ``position.exit_order`` is ``None``: the exit waits for their end
    and then covers exactly what they filled. Otherwise it carries its ``exit_order``."""

    position: Position
    reason: str
    price: Decimal
    cancel: str | None = None
    cancel_add: str | None = None

    @property
    def cancels(self) -> tuple[str, ...]:
        return tuple(c for c in (self.cancel_add, self.cancel) if c is not None)


@dataclass(frozen=True, slots=True, kw_only=True)
class EntryTimeout:
    """A working entry order reached its deadline: ``cancel`` it (``position`` records why and,
    for the limit entry, the plan B decided: ``decision``; ``None`` for a scale-in leg)."""

    position: Position
    cancel: str
    decision: PlanB | None
    note: str


@dataclass(frozen=True, slots=True, kw_only=True)
class EntryDecision:
    """What a fired condition gets: an entry (``position``, PENDING with its ``entry_order``),
    a block (``blocked``: why; it stays armed) or a cancellation (``canceled``: why; its order
    would be too small at this price)."""

    condition: TradeCondition
    position: Position | None = None
    blocked: str | None = None
    canceled: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class TickPlan:
    """What a tick decided: ``marked`` (OPEN positions whose mark changed), ``exits`` (started),
    ``entries`` (in arming order; none when entries were not looked at)."""

    marked: tuple[Position, ...] = ()
    exits: tuple[ExitStart, ...] = ()
    entries: tuple[EntryDecision, ...] = ()


class Ended(StrEnum):
    ENTRY_FAILED = "ENTRY_FAILED"  # nothing of the entry filled: the position never existed (CLOSED)
    ENTRY_ENDED = "ENTRY_ENDED"  # the entry ended partly filled: the position keeps that quantity
    PLAN_B = "PLAN_B"  # a timed-out limit entry ended: ``OrderEnd.submit`` takes the rest at market
    EXIT_FAILED = "EXIT_FAILED"  # the exit ended with a quantity still held: OPEN again
    EXIT_SENT = "EXIT_SENT"  # the last entry order a waiting exit canceled ended: ``submit`` is the exit


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderEnd:
    """An order ended without completing (rejected, denied, canceled, expired, a rejected fill).
    ``missing``: what the venue says filled beyond the fills applied (should be 0)."""

    ended: Ended
    position: Position
    order: PositionOrder
    missing: Decimal = ZERO
    submit: PositionOrder | None = None


class Portfolio:
    """The active positions, cash and the decisions on them. Not thread-safe: one owner."""

    def __init__(
        self,
        *,
        markets: Callable[[str], MarketRules],
        limits: PositionLimits,
        balance: Decimal,
        realized_pnl: Decimal = ZERO,
        fees_paid: Decimal = ZERO,
        closed_positions: int = 0,
        entry_terms: EntryTerms = market_entry,
    ) -> None:
        self._markets = markets
        self._limits = limits
        self._entry_terms = entry_terms
        self.balance = balance
        self.realized_pnl = realized_pnl
        self.fees_paid = fees_paid
        self.closed_positions = closed_positions
        self._positions: dict[str, Position] = {}
        self._by_coin: dict[str, list[str]] = {}
        self._last_price: dict[str, tuple[Decimal, int]] = {}
        self._failed_exits: dict[str, tuple[str, int]] = {}  # position -> (exit reason, failed at ns)
        self._exit_asked_ns: dict[str, int] = {}  # exit in flight -> when first seen or last asked

    # --- reading --------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._positions)

    def get(self, position_id: str) -> Position | None:
        return self._positions.get(position_id)

    def positions(self) -> tuple[Position, ...]:
        return tuple(self._positions.values())

    def of_coin(self, coin: str) -> tuple[Position, ...]:
        return tuple(self._positions[pid] for pid in self._by_coin.get(coin, ()))

    def last_price(self, coin: str) -> tuple[Decimal, int] | None:
        """The coin's last price and its time (ms), if one was seen."""
        return self._last_price.get(coin)

    def unrealized(self) -> Decimal:
        return sum((p.unrealized_pnl for p in self._positions.values()
                    if p.status is not PositionStatus.PENDING), ZERO)

    def equity(self) -> Decimal:
        return account_equity(self.balance, self._positions.values())

    def has_orders(self, coin: str) -> bool:
        """Whether a position of ``coin`` has an order not final (in flight or working)."""
        return any(p.orders for p in self.of_coin(coin))

    def has_working(self, coin: str) -> bool:
        """Whether an order of ``coin`` rests on the venue's book."""
        return any(o.working for p in self.of_coin(coin) for o in p.orders)

    def working_orders(self) -> tuple[str, ...]:
        return tuple(o.client_order_id for p in self._positions.values() for o in p.orders if o.working)

    def order_request(self, position: Position, order: PositionOrder) -> OrderRequest:
        """The ``OrderRequest`` of one of ``position``'s orders (sent again with the same id)."""
        entry = order.intent is OrderIntent.ENTRY
        return OrderRequest(
            client_order_id=order.client_order_id,
            position_id=position.id,
            coin=position.coin,
            side=rules.entry_side(position.direction) if entry else rules.exit_side(position.direction),
            quantity=order.quantity,
            intent=order.intent,
            reference_price=order.reference_price,
            reference_ts_ms=order.reference_ts_ms,
            order_type=order.order_type,
            time_in_force=order.time_in_force,
            limit_price=order.limit_price,
            stop_price=order.stop_price,
            post_only=order.post_only,
        )

    # --- loading --------------------------------------------------------------------------------

    def load(self, position: Position) -> Position:
        """Track a position read back from the store. One stored by an older version names its
        order in flight only by ``pending_order_id``: its terms are rebuilt from the position."""
        if position.pending_order_id is not None and not position.orders:
            intent = OrderIntent.ENTRY if position.status is PositionStatus.PENDING else OrderIntent.EXIT
            if position.pending_quantity is None or position.reference_price is None:
                raise ValueError(f"position {position.id}: order {position.pending_order_id} in flight "
                                 "without its quantity or reference price")
            order = PositionOrder(client_order_id=position.pending_order_id, intent=intent,
                                  quantity=position.pending_quantity, reference_price=position.reference_price,
                                  reference_ts_ms=position.reference_ts_ms or 0)
            position = replace(position, **{"entry_order" if intent is OrderIntent.ENTRY else "exit_order": order})
        self._track(position)
        if position.current_price is not None:
            self._last_price[position.coin] = (position.current_price, position.reference_ts_ms or 0)
        return position

    def repair_orderless(self, now_ns: int) -> list[tuple[Position, str]]:
        """Positions a crash or an older version left inconsistent, repaired: a CLOSING one with
        no exit order goes back to OPEN (its exits stay armed; a manual or kill-switch exit is
        retried), a PENDING one with no entry order never opened and is closed. Returns each
        repaired position with why."""
        repaired: list[tuple[Position, str]] = []
        for position in [p for p in self._positions.values() if p.pending_order_id is None]:
            if position.status is PositionStatus.CLOSING and self.exit_waits(position):
                continue  # its exit waits for the end of the entry orders it canceled
            if position.status is PositionStatus.CLOSING:
                after = position.transition(PositionTrigger.EXIT_FAILED, pending_quantity=None, exit_order=None)
                why = "CLOSING with no exit order in flight: reopened, its exits stay armed"
                if position.exit_reason:
                    self._failed_exits[position.id] = (position.exit_reason, now_ns)
            elif position.status is PositionStatus.PENDING:
                after = position.transition(
                    PositionTrigger.ENTRY_FAILED, pending_quantity=None, unrealized_pnl=ZERO, entry_order=None,
                    exit_reason=f"{ExitReason.ENTRY_REJECTED.value}: no entry order was ever recorded")
                why = "PENDING with no entry order: it never opened; closed"
            else:
                continue
            if after.status is PositionStatus.CLOSED:
                self._untrack(after)
            else:
                self._put(after)
            repaired.append((after, why))
        return repaired

    # --- ticks ----------------------------------------------------------------------------------

    def on_tick(
        self,
        coin: str,
        price: Decimal,
        ts_ms: int,
        *,
        fired: Callable[[], Iterable[TradeCondition]] = tuple,
        trading_state: TradingState = TradingState.ACTIVE,
        stale: bool = False,
    ) -> TickPlan:
        """Mark ``coin``'s OPEN positions at ``price`` and start the exits it calls for (the
        stop is checked before the target), then decide on the conditions ``fired()`` returns,
        each seeing the entries decided before it. With one position per coin (``max_per_coin``
        1) entries are not looked at (nor ``fired`` called) while the coin has an order not
        final: they could only be blocked."""
        self._last_price[coin] = (price, ts_ms)
        marked: list[Position] = []
        exits: list[ExitStart] = []
        for position in self.of_coin(coin):
            if position.status is not PositionStatus.OPEN:
                continue
            reason = rules.exit_trigger(position.direction, price, position.stop_loss_price,
                                        position.take_profit_price)
            if reason is None and price == position.current_price:
                continue  # same price, same mark: nothing changes
            now = replace(position, current_price=price,
                          unrealized_pnl=_unrealized(position.direction, position.lots, position.fees_paid, price))
            self._put(now)
            if reason is not None:
                exits.append(self.begin_exit(position.id, reason.value, price, ts_ms))
            else:
                marked.append(now)
        if self._limits.max_per_coin <= 1 and self.has_orders(coin):
            return TickPlan(marked=tuple(marked), exits=tuple(exits))
        entries = [self._entry(condition, price, ts_ms, trading_state, stale) for condition in fired()]
        return TickPlan(marked=tuple(marked), exits=tuple(exits), entries=tuple(entries))

    def _entry(self, condition: TradeCondition, price: Decimal, ts_ms: int, trading_state: TradingState,
               stale: bool) -> EntryDecision:
        if trading_state is not TradingState.ACTIVE:
            return EntryDecision(condition=condition, blocked=f"ENTRIES_BLOCKED: trading is {trading_state.value}")
        if stale:
            return EntryDecision(condition=condition,
                                 blocked=f"ORDER_BOOK_STALE: the {condition.coin} feed is stale")
        active = [ActiveExposure(p.coin, p.exposure_usd) for p in self._positions.values()]
        breach = rules.entry_limit_breach(condition.coin, condition.position_size_usd, active, self.balance,
                                          self._limits)
        if breach is not None:
            return EntryDecision(condition=condition, blocked=f"POSITION_LIMIT_EXCEEDED: {breach}")
        market = self._markets(condition.coin)
        quantity = rules.entry_quantity(condition.position_size_usd, price, market)
        problem = rules.order_size_problem(quantity, price, market)
        if problem is not None:
            return EntryDecision(condition=condition, canceled=f"order too small at {price}: {problem}")
        position_id = position_id_for(condition.id)
        legs = split_legs(quantity, condition.scale_in_fraction, market, price)
        plan: EntryPlan | None = None
        if condition.limit_entry:
            try:
                limit = entry_limit_price(condition.direction, condition.trigger_price, market,
                                          offset_ticks=condition.entry_offset_ticks,
                                          offset_pct=condition.entry_offset_pct)
            except ValueError as error:
                return EntryDecision(condition=condition, canceled=f"entry_offset: {error}")
            terms: dict[str, Any] = {"order_type": OrderType.LIMIT, "time_in_force": TimeInForce.GTC,
                                     "limit_price": limit}
        else:
            terms = self._entry_terms(condition, price, market)
        if condition.limit_entry or legs.second > 0:
            timeout = condition.entry_timeout_s if condition.limit_entry else None
            plan = EntryPlan(
                trigger_price=condition.trigger_price, first_leg=legs.first, timeout_s=timeout,
                deadline_ms=None if timeout is None else ts_ms + timeout * 1000,
                plan_b_pct=condition.entry_plan_b_pct, second_leg=legs.second,
                pullback_pct=condition.scale_in_pullback_pct if legs.second > 0 else None,
                scale_in_timeout_s=condition.scale_in_timeout_s if legs.second > 0 else None,
            )
        order = PositionOrder(client_order_id=entry_order_id(position_id), intent=OrderIntent.ENTRY,
                              quantity=legs.first, reference_price=price, reference_ts_ms=ts_ms, **terms)
        position = Position(
            id=position_id, coin=condition.coin, direction=condition.direction,
            size_usd=condition.position_size_usd, condition_id=condition.id, strategy_id=condition.strategy_id,
            reasoning=condition.reasoning, stop_loss_pct=condition.stop_loss_pct,
            take_profit_pct=condition.take_profit_pct, status=PositionStatus.PENDING, current_price=price,
            pending_order_id=order.client_order_id, pending_quantity=legs.first, reference_price=price,
            reference_ts_ms=ts_ms, entry_order=order, entry_plan=plan,
        )
        self._track(position)
        return EntryDecision(condition=condition, position=position)

    # --- exits ----------------------------------------------------------------------------------

    def begin_exit(self, position_id: str, reason: str, price: Decimal, ts_ms: int) -> ExitStart:
        """Start the exit of an OPEN position (or of a PENDING one whose entry rests on the
        book): it goes CLOSING with ``reason``. With no entry or scale-in order left, the exit
        order goes with it: exactly the quantity held, at the next attempt's client order id.
        Otherwise those orders are to be canceled first (``ExitStart.cancel``, ``cancel_add``)
        and the exit waits for their end: ``order_ended`` (or the fill that completes the last
        of them) sends it for exactly what is then held, or closes the position when nothing
        is (``ENTRY_CANCELED``). ``ValueError`` when the position cannot exit."""
        position = self._positions.get(position_id)
        if position is None:
            raise ValueError(f"position_id: {position_id!r} is not an active position")
        entry, add = position.entry_order, position.add_order
        resting = position.status is PositionStatus.PENDING and entry is not None and entry.working
        if position.status is not PositionStatus.OPEN and not resting:
            raise ValueError(f"position_id: {position_id!r} is {position.status.value}; its entry is still in flight")
        cancel = cancel_add = None
        if entry is not None and not entry.cancel_requested:
            cancel = entry.client_order_id
            entry = replace(entry, cancel_requested=True)
        if add is not None and not add.cancel_requested:  # never an exit racing a resting add
            cancel_add = add.client_order_id
            add = replace(add, cancel_requested=True)
        closing = position.transition(
            PositionTrigger.EXIT_SUBMITTED, reference_price=price, reference_ts_ms=ts_ms, exit_reason=reason,
            entry_order=entry, add_order=add,
        )
        if entry is None and add is None:
            closing = self._with_exit(closing, price, ts_ms)
        if closing.status is not PositionStatus.CLOSED:  # closed: nothing but dust was held
            self._put(closing)
        self._failed_exits.pop(position.id, None)
        return ExitStart(position=closing, reason=reason, price=price, cancel=cancel, cancel_add=cancel_add)

    def _with_exit(self, closing: Position, price: Decimal, ts_ms: int) -> Position:
        """``closing`` (CLOSING, no entry order left) with its exit order: the quantity held
        (``exit_quantity``), at the next attempt's client order id; or, when that cannot be sent
        (dust), closed with its dust (``close_dust``, CLOSED, no order)."""
        quantity, problem = self.exit_quantity(closing, price)
        if problem is not None:
            return self._close_dust(closing, price, ts_ms)
        attempt = closing.exit_attempts + 1
        order = PositionOrder(client_order_id=exit_order_id(closing.id, attempt), intent=OrderIntent.EXIT,
                              quantity=quantity, reference_price=price, reference_ts_ms=ts_ms)
        return replace(closing, pending_order_id=order.client_order_id, pending_quantity=order.quantity,
                       reference_price=price, reference_ts_ms=ts_ms, exit_attempts=attempt, exit_order=order)

    def exit_quantity(self, position: Position, price: Decimal) -> tuple[Decimal, str | None]:
        """What an exit of ``position`` at ``price`` sells, and why it cannot be sent (``None``:
        it can). Exactly the quantity held when that is on the coin's quantity step and no fee
        was charged in the coin (every paper and derivatives position); otherwise (a spot
        position net of base-asset fees) the holding floored to the step, which must meet the
        coin's ``min_qty`` and ``min_notional`` at ``price``: the venue refuses less, so what
        is left is dust and no order goes."""
        held = position.quantity
        market = self._markets(position.coin)
        quantity = market.round_qty_down(held)
        if quantity == held and position.fees_coin == 0:
            return held, None
        problem = rules.order_size_problem(quantity, price, market)
        return quantity, None if problem is None else f"{held} {position.coin} held: {problem}"

    def is_dust(self, position: Position, price: Decimal) -> bool:
        """Whether what ``position`` holds (more than nothing) cannot be sold (``exit_quantity``)."""
        return position.quantity > 0 and self.exit_quantity(position, price)[1] is not None

    def _close_dust(self, position: Position, price: Decimal, ts_ms: int) -> Position:
        """``position`` (OPEN or CLOSING) closed with no order: what it holds is dust that the
        venue would refuse. The dust stays in the account; here it is written off at its entry
        cost (in ``realized_gross``; the cash balance follows), recorded in ``dust``, and the
        position is CLOSED (untracked)."""
        dust = position.quantity
        write_off = -_total(lot.quantity * lot.price for lot in position.lots) if position.lots else ZERO
        realized_gross = position.realized_gross + write_off
        if position.status is PositionStatus.OPEN:
            position = position.transition(PositionTrigger.EXIT_SUBMITTED)
        after = position.transition(
            PositionTrigger.EXIT_FILLED, exit_price=position.exit_price or price,
            exit_time=from_epoch_ns(ts_ms * 1_000_000).astimezone(), realized_pnl=realized_gross - position.fees_paid,
            unrealized_pnl=ZERO, pending_order_id=None, pending_quantity=None,
            quantity=position.exited_quantity + dust, lots=(), realized_gross=realized_gross, exit_order=None,
            dust=dust,
        )
        self.balance += write_off
        assert after.realized_pnl is not None
        self.realized_pnl += after.realized_pnl
        self.closed_positions += 1
        self._untrack(after)
        return after

    def exit_waits(self, position: Position) -> bool:
        """Whether ``position`` is CLOSING with its exit waiting for its entry orders' end."""
        return position.status is PositionStatus.CLOSING and position.exit_order is None and (
            position.entry_order is not None or position.add_order is not None)

    def _exit_after_entries(self, position: Position, **ended: Any) -> tuple[Position, PositionOrder | None]:
        """``position`` with ``ended`` (its order slots that ended, cleared) put back; when it is
        CLOSING, its exit waited and no entry order is left: with its exit order (for exactly
        what it holds; the order is returned to be sent), or, when it holds nothing, closed
        (``ENTRY_CANCELED``; no order)."""
        entry, add = ended.get("entry_order", position.entry_order), ended.get("add_order", position.add_order)
        if (position.status is not PositionStatus.CLOSING or position.exit_order is not None
                or entry is not None or add is not None):
            return self._put(replace(position, **ended)), None
        if position.quantity > 0:
            last = self._last_price.get(position.coin)
            price, ts_ms = last if last is not None else (position.reference_price, position.reference_ts_ms or 0)
            assert price is not None
            after = self._with_exit(replace(position, **ended), price, ts_ms)
            if after.status is PositionStatus.CLOSED:  # nothing but dust held: closed, no order
                return after, None
            return self._put(after), after.exit_order
        after = position.transition(
            PositionTrigger.ENTRY_FAILED, pending_order_id=None, pending_quantity=None, unrealized_pnl=ZERO,
            exit_reason=f"ENTRY_CANCELED: canceled by the exit ({position.exit_reason}); nothing filled", **ended)
        self._untrack(after)
        return after, None

    # --- entry plans -----------------------------------------------------------------------------

    def entry_timeouts(self, now_ms: int, *, coin: str | None = None,
                       quote: Callable[[str], TopOfBook | None] | None = None,
                       quote_max_age_ms: int = 0) -> list[EntryTimeout]:
        """The working entry orders (of ``coin``, or of every coin) at or past their deadline
        at ``now_ms`` (engine time), each marked to be canceled and returned once:

        - a limit entry (``-E``) at ``entry_timeout_s`` after its trigger: plan B is decided
          from the executable price (``quote(coin)`` when it is sane and at most
          ``quote_max_age_ms`` old, else the last trade) and recorded in ``entry_plan``; what
          it means is carried out when the order's end comes (``order_ended``);
        - a scale-in leg (``-S``) at ``scale_in_timeout_s`` after it was placed.

        An order not yet accepted (still in flight) waits for its acceptance; a CLOSING
        position's orders were canceled by its exit already."""
        timeouts: list[EntryTimeout] = []
        for position in self.of_coin(coin) if coin is not None else self.positions():
            plan = position.entry_plan
            if plan is None or position.status is PositionStatus.CLOSING:
                continue
            entry = position.entry_order
            if (entry is not None and entry.working and not entry.cancel_requested and plan.plan_b is None
                    and plan.deadline_ms is not None and now_ms >= plan.deadline_ms
                    and entry.client_order_id == entry_order_id(position.id)):
                last = self._last_price.get(position.coin)
                book = quote(position.coin) if quote is not None and quote_max_age_ms > 0 else None
                fresh = book is not None and book.sane and 0 <= now_ms - book.ts_ms <= quote_max_age_ms
                bid, ask = (book.bid, book.ask) if fresh and book is not None else (None, None)
                price = executable_price(position.direction, bid=bid, ask=ask,
                                         last=last[0] if last else plan.trigger_price)
                decision = plan_b(position.direction, plan.trigger_price, price, plan.plan_b_pct)
                source = "top of book" if fresh else "last trade"
                distance = "off" if plan.plan_b_pct is None else f"within {plan.plan_b_pct} of the trigger"
                note = (f"limit {entry.limit_price} filled {entry.filled} of {entry.quantity} in {plan.timeout_s}s; "
                        f"executable {price} ({source}), trigger {plan.trigger_price}, plan B {distance}: "
                        f"{decision.value}")
                plan = replace(plan, plan_b=decision, note=note)
                position = self._put(replace(position, entry_order=replace(entry, cancel_requested=True),
                                             entry_plan=plan))
                timeouts.append(EntryTimeout(position=position, cancel=entry.client_order_id, decision=decision,
                                             note=note))
            add = position.add_order
            if (add is not None and add.working and not add.cancel_requested and plan.add_deadline_ms is not None
                    and now_ms >= plan.add_deadline_ms):
                note = (f"scale-in {add.limit_price} filled {add.filled} of {add.quantity} "
                        f"in {plan.scale_in_timeout_s}s")
                position = self._put(replace(position, add_order=replace(add, cancel_requested=True)))
                timeouts.append(EntryTimeout(position=position, cancel=add.client_order_id, decision=None, note=note))
        return timeouts

    def _scale_in(self, position: Position, fill: OrderFilled) -> tuple[Position, PositionOrder | None]:
        """After the fill that completed the first leg: the position with its scale-in leg
        placed (a GTC limit at the pullback level from the average entry), and that order."""
        plan = position.entry_plan
        if (plan is None or plan.second_leg <= 0 or plan.add_placed or plan.pullback_pct is None
                or plan.scale_in_timeout_s is None or position.status is not PositionStatus.OPEN
                or position.entry_price is None):
            return position, None
        level = scale_in_level(position.direction, position.entry_price, plan.pullback_pct,
                               self._markets(position.coin))
        # its reference is the market now (the venue judges from it whether the limit takes at once)
        last = self._last_price.get(position.coin)
        reference = last[0] if last is not None else fill.fill_price
        add = PositionOrder(client_order_id=scale_in_order_id(position.id), intent=OrderIntent.ENTRY,
                            quantity=plan.second_leg, reference_price=reference, reference_ts_ms=fill.ts_event_ms,
                            order_type=OrderType.LIMIT, time_in_force=TimeInForce.GTC, limit_price=level)
        plan = replace(plan, add_placed=True, add_deadline_ms=fill.ts_event_ms + plan.scale_in_timeout_s * 1000)
        return self._put(replace(position, add_order=add, entry_plan=plan)), add

    def _plan_b_take(self, position: Position, active: PositionOrder) -> tuple[Position | None, str]:
        """The position with the market order that takes the rest of its timed-out limit entry
        (``-B``), or ``None`` and why not (the rest is below the market's minimums)."""
        plan = position.entry_plan
        assert plan is not None
        rest = active.remaining
        last = self._last_price.get(position.coin)
        price, ts_ms = last if last is not None else (plan.trigger_price, active.reference_ts_ms)
        problem = rules.order_size_problem(rest, price, self._markets(position.coin))
        if problem is not None:
            return None, f"the rest {rest} is not taken: {problem}"
        take = PositionOrder(client_order_id=plan_b_order_id(position.id), intent=OrderIntent.ENTRY, quantity=rest,
                             reference_price=price, reference_ts_ms=ts_ms)
        changes: dict[str, Any] = {"entry_order": take}
        if position.status is PositionStatus.PENDING:
            changes.update(pending_order_id=take.client_order_id, pending_quantity=rest, reference_price=price,
                           reference_ts_ms=ts_ms)
        return self._put(replace(position, **changes)), ""

    def exit_failed(self, position_id: str, now_ns: int) -> None:
        """Remember a failed exit for ``due_exit_retries``."""
        position = self._positions.get(position_id)
        if position is not None:
            self._failed_exits[position_id] = (position.exit_reason or ExitReason.MANUAL.value, now_ns)

    def due_exit_retries(self, now_ns: int) -> list[tuple[Position, str]]:
        """OPEN positions whose last exit failed at least 2^attempts seconds (at most
        ``EXIT_RETRY_MAX_S``) ago, with the exit reason, by position id; each is forgotten
        here (``begin_exit`` starts it again)."""
        due: list[tuple[Position, str]] = []
        for position_id, (reason, failed_ns) in sorted(self._failed_exits.items()):
            position = self._positions.get(position_id)
            if position is None or position.status is not PositionStatus.OPEN:
                self._failed_exits.pop(position_id, None)
                continue
            delay_s = min(2 ** position.exit_attempts, EXIT_RETRY_MAX_S)
            if self._last_price.get(position.coin) is None or now_ns - failed_ns < delay_s * 1_000_000_000:
                continue
            self._failed_exits.pop(position_id, None)
            due.append((position, reason))
        return due

    def stuck_exits(self, now_ns: int) -> list[tuple[Position, int]]:
        """CLOSING positions whose exit has had no outcome for ``EXIT_STUCK_S`` since it was
        first seen here or last returned, with how long (ns); each is returned again every
        ``EXIT_STUCK_S``."""
        stuck: list[tuple[Position, int]] = []
        for position in list(self._positions.values()):
            order = position.exit_order
            if position.status is not PositionStatus.CLOSING or order is None:
                continue
            since = self._exit_asked_ns.setdefault(order.client_order_id, now_ns)
            if now_ns - since < EXIT_STUCK_S * 1_000_000_000:
                continue
            self._exit_asked_ns[order.client_order_id] = now_ns
            stuck.append((position, now_ns - since))
        live = {o.client_order_id for p in self._positions.values() for o in p.orders}
        for order_id in [o for o in self._exit_asked_ns if o not in live]:
            del self._exit_asked_ns[order_id]
        return stuck

    def adjust_stop(self, position_id: str, stop_loss_price: Decimal) -> Position:
        """Move an OPEN position's stop (rounded to the tick); ``ValueError`` if it is not
        OPEN or the stop is on the wrong side of the entry."""
        position = self._positions.get(position_id)
        if position is None or position.status is not PositionStatus.OPEN:
            raise ValueError(f"position_id: {position_id!r} is not an open position")
        market = self._markets(position.coin)
        adjusted = replace(position, stop_loss_price=stop_loss_price.quantize(market.tick_size))
        self._put(adjusted)
        return adjusted

    # --- order outcomes -------------------------------------------------------------------------

    def accepted(self, order: OrderRequest) -> Position | None:
        """The venue holds ``order``: a resting one is now *working* (the position, changed, is
        returned); anything else changes nothing (``None``)."""
        position, active = self._order_of(order)
        if position is None or active is None or not active.rests or active.working:
            return None
        return self._put(_with_order(position, replace(active, working=True)))

    def apply(self, fill: OrderFilled) -> FillResult:
        """Apply one fill of one of the positions' orders (see the module docstring)."""
        order = fill.order
        position, active = self._order_of(order)
        if position is None:
            return FillResult(change=Change.IGNORED, position=None, reason="no active position")
        if fill.trade_id and fill.trade_id in position.trade_ids:
            return FillResult(change=Change.IGNORED, position=position, reason=f"trade {fill.trade_id} already applied")
        late = active is None
        if active is None:
            # A fill of an order that ended already (it raced the cancel at the venue): a fact,
            # applied to the position while it is held, bounded by what the order had left.
            if position.status is PositionStatus.PENDING or not _is_order_of(position, order):
                return FillResult(change=Change.IGNORED, position=position,
                                  reason=f"{order.client_order_id} is not an order of it")
            before = min(order.quantity, max(ZERO, fill.cumulative_quantity - fill.fill_quantity))
            active = PositionOrder(client_order_id=order.client_order_id, intent=order.intent,
                                   quantity=order.quantity, reference_price=order.reference_price,
                                   reference_ts_ms=order.reference_ts_ms, filled=before)
        room = active.remaining if active.intent is OrderIntent.ENTRY else min(active.remaining, position.quantity)
        problem = fill_problem(reference_price=order.reference_price, ordered_quantity=room,
                               fill_price=fill.fill_price, fill_quantity=fill.fill_quantity, fee=fill.fee)
        if problem is not None:
            return FillResult(change=Change.REJECTED, position=position, reason=problem)
        try:
            if active.intent is OrderIntent.ENTRY:
                return self._apply_entry(position, active, fill, late=late)
            return self._apply_exit(position, active, fill, late=late)
        except (ValueError, ArithmeticError) as error:
            return FillResult(change=Change.REJECTED, position=position,
                              reason=f"the position cannot take it: {error}")

    def _apply_entry(self, position: Position, order: PositionOrder, fill: OrderFilled, *,
                     late: bool = False) -> FillResult:
        price, traded = fill.fill_price, fill.fill_quantity
        quantity, fee, fee_coin = _fill_terms(position, fill, rules.entry_side(position.direction))
        lots = (*position.lots, Lot(quantity=quantity, price=price, fee=fee, ts_ms=fill.ts_event_ms,
                                    trade_id=fill.trade_id or None))
        held = position.quantity + quantity
        if position.entry_price is None:
            entry_price = price
        elif position.exited_quantity == 0:
            entry_price = _total(lot.quantity * lot.price for lot in lots) / held
        else:  # an entry fill after exit fills (a race): the running average of every entry fill
            entered = position.quantity + position.exited_quantity
            entry_price = (position.entry_price * entered + price * quantity) / (entered + quantity)
        stop, target = rules.exit_levels(position.direction, entry_price, position.stop_loss_pct,
                                         position.take_profit_pct, self._markets(position.coin))
        filled = replace(order, filled=order.filled + traded)  # the order's own quantity: what it traded
        done = filled.remaining <= 0 and not late
        opening = position.status is PositionStatus.PENDING
        first = opening or position.entry_time is None  # a CLOSING one's first fill (its exit waits)
        fees = fee if opening else position.fees_paid + fee
        slot = _slot(position, order.client_order_id) or "entry_order"
        changes: dict[str, Any] = dict(
            entry_price=entry_price, quantity=held, lots=lots, stop_loss_price=stop, take_profit_price=target,
            current_price=price, fees_paid=fees, trade_ids=_with_trade(position, fill),
        )
        if fee_coin:
            changes.update(fees_coin=position.fees_coin + fee_coin)
        changes[slot] = getattr(position, slot) if late else None if done else filled
        if opening:
            after = position.transition(
                PositionTrigger.ENTRY_FILLED, entry_time=_fill_time(fill), unrealized_pnl=-fee,
                pending_order_id=None, pending_quantity=None, **changes)
            change = Change.OPENED
        else:
            if first:
                changes.update(entry_time=_fill_time(fill))
            after = replace(position, unrealized_pnl=_unrealized(position.direction, lots, fees, price), **changes)
            change = Change.OPENED if first else Change.INCREASED
        self.balance -= fee
        self.fees_paid += fee
        self._put(after)
        submit = None
        if done and slot == "entry_order":  # the first leg filled whole: its scale-in leg, if planned
            after, submit = self._scale_in(after, fill)
        if done and submit is None:  # the last order a waiting exit canceled completed: the exit goes
            after, submit = self._exit_after_entries(after)
            if after.status is PositionStatus.CLOSED:  # it holds nothing but dust: closed with no exit order
                change = Change.CLOSED
        return FillResult(change=change, position=after, order_done=done, submit=submit,
                          fee_unvalued=_unvalued(position, fill))

    def _apply_exit(self, position: Position, order: PositionOrder, fill: OrderFilled, *,
                    late: bool = False) -> FillResult:
        price, traded = fill.fill_price, fill.fill_quantity
        quantity, fee, fee_coin = _fill_terms(position, fill, rules.exit_side(position.direction))
        quantity = min(quantity, position.quantity)  # a fee in the coin beyond what is held: the account paid it
        lots, gross = _deplete(position, quantity, price)
        held = position.quantity - quantity
        if position.exited_quantity == 0:  # the first exit fill: its own numbers, as they are
            exited, exit_price, realized_gross = quantity, price, gross
        else:
            assert position.exit_price is not None
            exited = position.exited_quantity + quantity
            exit_price = (position.exit_price * position.exited_quantity + price * quantity) / exited
            realized_gross = position.realized_gross + gross
        fees = position.fees_paid + fee
        filled = replace(order, filled=order.filled + traded)
        done = (filled.remaining <= 0 or held == 0) and not late
        trade_ids = _with_trade(position, fill)
        fees_coin = position.fees_coin + fee_coin
        reexit = False
        cancel = None
        if held == 0:
            realized = realized_gross - fees
            if position.status is PositionStatus.OPEN:  # a late fill of an exit that had ended: it was submitted
                position = position.transition(PositionTrigger.EXIT_SUBMITTED)
            if late and position.exit_order is not None:  # the exit sent since is no longer needed
                cancel = position.exit_order.client_order_id
            after = position.transition(
                PositionTrigger.EXIT_FILLED, exit_price=exit_price, exit_time=_fill_time(fill), realized_pnl=realized,
                fees_paid=fees, current_price=price, unrealized_pnl=ZERO, pending_order_id=None,
                pending_quantity=None, quantity=exited, lots=(), exited_quantity=exited,
                realized_gross=realized_gross, trade_ids=trade_ids, exit_order=None, fees_coin=fees_coin,
            )
            change = Change.CLOSED
        else:
            changes: dict[str, Any] = dict(
                quantity=held, lots=lots, exited_quantity=exited, exit_price=exit_price,
                realized_gross=realized_gross, fees_paid=fees, current_price=price, trade_ids=trade_ids,
                fees_coin=fees_coin,
            )
            unrealized = _unrealized(position.direction, lots, fees, price)
            if late:
                after = replace(position, unrealized_pnl=unrealized, **changes)
            elif done:  # the exit completed and something is still held (an entry fill came in between)
                after = position.transition(PositionTrigger.EXIT_FAILED, pending_order_id=None, pending_quantity=None,
                                            exit_order=None, unrealized_pnl=unrealized, **changes)
                reexit = True
            else:
                after = replace(position, exit_order=filled, unrealized_pnl=unrealized, **changes)
            change = Change.REDUCED
        self.balance += gross - fee
        self.fees_paid += fee
        if reexit and self.is_dust(after, price):  # what its exit left is dust the venue would refuse
            after = self._close_dust(after, price, fill.ts_event_ms)
            return FillResult(change=Change.CLOSED, position=after, realized_gross=gross, order_done=done,
                              fee_unvalued=_unvalued(position, fill))
        if change is Change.CLOSED:
            assert after.realized_pnl is not None
            self.realized_pnl += after.realized_pnl
            self.closed_positions += 1
            self._untrack(after)
        else:
            self._put(after)
            if reexit:
                self._failed_exits[after.id] = (after.exit_reason or ExitReason.MANUAL.value, 0)
        return FillResult(change=change, position=after, realized_gross=gross, order_done=done, reexit=reexit,
                          cancel=cancel, fee_unvalued=_unvalued(position, fill))

    def order_ended(self, order: OrderRequest, reason: str, *, filled_quantity: Decimal | None = None) -> OrderEnd | None:
        """``order`` ended without completing: rejected or denied (nothing filled), canceled or
        expired (``filled_quantity`` of it filled before), or a fill of it was rejected. An
        entry with nothing filled closes its position (it never existed); an entry with fills
        leaves the position holding exactly them; an exit leaves the position OPEN with what
        it still holds (its exits stay armed; see ``exit_failed``). ``None`` when ``order`` is
        no order of an active position (an outcome already applied)."""
        position, active = self._order_of(order)
        if position is None or active is None:
            return None
        missing = ZERO if filled_quantity is None else filled_quantity - active.filled
        if active.intent is OrderIntent.ENTRY:
            slot = _slot(position, active.client_order_id) or "entry_order"
            plan = position.entry_plan
            exit_reason = f"{ExitReason.ENTRY_REJECTED.value}: {reason}"
            if plan is not None and plan.plan_b is not None and active.client_order_id == entry_order_id(position.id):
                # The limit entry timed out (entry_timeouts) and its end says what filled.
                why = plan.note
                if plan.plan_b is PlanB.TAKE and position.status is not PositionStatus.CLOSING and active.remaining > 0:
                    taking, why_not = self._plan_b_take(position, active)
                    if taking is not None:
                        return OrderEnd(ended=Ended.PLAN_B, position=taking, order=active, missing=missing,
                                        submit=taking.entry_order)
                    why = f"{why}; {why_not}"
                reason = exit_reason = f"ENTRY_TIMEOUT: {why}"
            if position.status is PositionStatus.PENDING:
                after = position.transition(
                    PositionTrigger.ENTRY_FAILED, exit_reason=exit_reason,
                    pending_order_id=None, pending_quantity=None, unrealized_pnl=ZERO, entry_order=None)
                self._untrack(after)
                return OrderEnd(ended=Ended.ENTRY_FAILED, position=after, order=active, missing=missing)
            after, exit_order = self._exit_after_entries(position, **{slot: None})
            if exit_order is not None:
                return OrderEnd(ended=Ended.EXIT_SENT, position=after, order=active, missing=missing,
                                submit=exit_order)
            if after.status is PositionStatus.CLOSED:
                return OrderEnd(ended=Ended.ENTRY_FAILED, position=after, order=active, missing=missing)
            return OrderEnd(ended=Ended.ENTRY_ENDED, position=after, order=active, missing=missing)
        after = self._put(position.transition(PositionTrigger.EXIT_FAILED, pending_order_id=None,
                                              pending_quantity=None, exit_order=None))
        return OrderEnd(ended=Ended.EXIT_FAILED, position=after, order=active, missing=missing)

    # --- bookkeeping ----------------------------------------------------------------------------

    def _order_of(self, order: OrderRequest) -> tuple[Position | None, PositionOrder | None]:
        """The active position ``order`` belongs to, and its active order of that id (if any)."""
        position = self._positions.get(order.position_id)
        if position is None:
            return None, None
        for active in position.orders:
            if active.client_order_id == order.client_order_id:
                return position, active
        return position, None

    def _put(self, position: Position) -> Position:
        self._positions[position.id] = position
        return position

    def _track(self, position: Position) -> None:
        self._positions[position.id] = position
        members = self._by_coin.setdefault(position.coin, [])
        if position.id not in members:
            members.append(position.id)

    def _untrack(self, position: Position) -> None:
        self._positions.pop(position.id, None)
        self._failed_exits.pop(position.id, None)
        members = self._by_coin.get(position.coin)
        if members is not None:
            if position.id in members:
                members.remove(position.id)
            if not members:
                del self._by_coin[position.coin]


def _is_order_of(position: Position, order: OrderRequest) -> bool:
    """Whether ``order`` is one of ``position``'s orders, past or present (by its client id)."""
    if order.position_id != position.id:
        return False
    if order.intent is OrderIntent.ENTRY:
        return order.client_order_id in (entry_order_id(position.id), plan_b_order_id(position.id),
                                         scale_in_order_id(position.id))
    return any(order.client_order_id == exit_order_id(position.id, n) for n in range(1, position.exit_attempts + 1))


def _slot(position: Position, client_order_id: str) -> str | None:
    """The field of ``position`` holding its order ``client_order_id`` (``None``: none does)."""
    for slot in ("entry_order", "add_order", "exit_order"):
        order = getattr(position, slot)
        if order is not None and order.client_order_id == client_order_id:
            return slot
    return None


def _with_order(position: Position, order: PositionOrder) -> Position:
    slot = _slot(position, order.client_order_id) or (
        "entry_order" if order.intent is OrderIntent.ENTRY else "exit_order")
    return replace(position, **{slot: order})


def _total(values: Iterable[Decimal]) -> Decimal:
    """The sum of ``values`` (at least one), without a leading ``Decimal(0)``: a single value
    comes back as it is, exponent included, so one lot gives the very numbers one fill did."""
    iterator = iter(values)
    total = next(iterator)
    for value in iterator:
        total += value
    return total


def _unrealized(direction: Direction, lots: tuple[Lot, ...], fees: Decimal, price: Decimal) -> Decimal:
    """``lots`` marked at ``price``, less every fee the position paid (``fees``)."""
    if not lots:
        return -fees
    return _total(rules.gross_pnl(direction, lot.quantity, lot.price, price) for lot in lots) - fees


def _fill_terms(position: Position, fill: OrderFilled, side: Side) -> tuple[Decimal, Decimal, Decimal]:
    """``(quantity, fee, fee_coin)`` of a fill for ``position``: the quantity of the coin it moved
    (net of a fee charged in the coin, ``state/fees.py``), its fee in quote currency (a fee in the
    coin at the fill's price; 0 for a fee in another currency) and the fee charged in the coin."""
    coin = position.coin
    quantity = coin_moved(side, fill.fill_quantity, fill.fee, fill.fee_currency, coin)
    fee = fee_in_quote(fill.fee, fill.fee_currency, coin, fill.fill_price)
    fee_coin = fill.fee if fee_kind(fill.fee_currency, coin) is FeeKind.BASE else ZERO
    return quantity, fee, fee_coin


def _unvalued(position: Position, fill: OrderFilled) -> str | None:
    """The currency of ``fill``'s fee when the portfolio could not count it (neither quote nor coin)."""
    if fill.fee and fee_kind(fill.fee_currency, position.coin) is FeeKind.OTHER:
        return fill.fee_currency.strip().upper()
    return None


def _with_trade(position: Position, fill: OrderFilled) -> tuple[str, ...]:
    return (*position.trade_ids, fill.trade_id) if fill.trade_id else position.trade_ids


def _deplete(position: Position, quantity: Decimal, price: Decimal) -> tuple[tuple[Lot, ...], Decimal]:
    """The lots left after an exit of ``quantity`` at ``price`` (oldest first) and the gross
    PnL it realized, per lot."""
    left = quantity
    gains: list[Decimal] = []
    kept: list[Lot] = []
    for lot in position.lots:
        if left <= 0:
            kept.append(lot)
            continue
        take = min(lot.quantity, left)
        gains.append(rules.gross_pnl(position.direction, take, lot.price, price))
        left -= take
        if take < lot.quantity:
            kept.append(replace(lot, quantity=lot.quantity - take))
    if left > 0:
        raise ValueError(f"an exit of {quantity} is more than the {position.quantity} held")
    return tuple(kept), _total(gains)


def _fill_time(fill: OrderFilled) -> Any:
    return from_epoch_ns(fill.ts_event_ms * 1_000_000).astimezone()
