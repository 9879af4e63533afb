"""The paper venue's matching rules, pure: no I/O, no clock (time is passed in), no thread.

A ``MatchingBook`` per coin holds the venue's *working* orders of that coin, its last trade,
its last top-of-book quote and its positions. Its operations (``submit``, ``observe_trade``,
``cancel``) change the book and return a ``Step``: the events to report in order (``OrderUpdate``
ACCEPTED before the fills, CANCELED/EXPIRED after them) and every order, fill and position that
changed, so the venue (``adapters/venues/paper.py``) can write them before it answers. A
definite refusal raises ``OrderRefused`` and changes nothing.

**Taker price.** An order that takes liquidity (a market order, a marketable limit, a triggered
stop) fills at its *benchmark* moved by ``slippage_bps`` against the trader and rounded to the
tick against the trader (``state/rules.slipped_price``, today's rounding), capped at the limit
for a limit order (a limit fills at its price or better, as on Binance). The benchmark is the
mid of the top of book when a quote no older than ``quote_max_age_ms`` is at hand, else the
trade that triggered the order (a stop), else the last trade when it is newer than the order's
reference tick, else the order's reference price (the trade that caused it): with no quote and
no newer trade a market order fills at its reference price, as the engine has always filled it.
``slippage_vs_benchmark_bps`` measures a fill against its benchmark (``VenueOrder`` does not
carry it: ``BookOrder.benchmark`` does).

**Maker fills.** A resting limit (or triggered stop-limit) fills as MAKER at its limit price
when a trade prints at or through it (buy: trade price <= limit; sell: >=). Fill model
``full``: a touched order fills whole. ``traded_volume``: each trade fills at most its own
quantity among the orders it touches, best price first, then earliest submitted (partial fills;
the remainder keeps resting), rounded down to the quantity step. Under ``traded_volume`` a
limit that takes on arrival against a fresh quote takes at most the quantity shown at the touch
(market orders always fill whole: the slippage stands for the depth).

**Time in force and flags, as Binance USD-M answers them.** Post-only (GTX) that would take:
ACCEPTED then EXPIRED, nothing filled. IOC: what cannot fill at once is CANCELED (the design's
vocabulary; Binance itself reports the remainder as EXPIRED). FOK: fills whole at once, or
ACCEPTED then EXPIRED with nothing filled (the Binance FOK lifecycle in
shared/data/payloads/binance-lean-brokerage). Stop-market and stop-limit trigger on the last
trade (buy stop: price >= stop; sell stop: price <= stop); one that would trigger at once is
refused (Binance -2021 "Order would immediately trigger").

**Positions and reduce-only.** The book keeps one position per coin and position side (LONG:
entry buys and exit sells; SHORT: entry sells and exit buys; Binance's hedge mode, so a long
and a short condition on the same coin never net) from its own fills, with its average entry,
realized PnL and fees. A reduce-only order with nothing to reduce on its side is refused
(Binance -2022 "ReduceOnly Order is rejected"); one larger than the position fills at most the
position (as Binance USD-M resizes a reduce-only order to the position) and its remainder is
EXPIRED (CANCELED for an IOC); a resting reduce-only order whose position is gone when a trade
reaches it is EXPIRED.

**Ids.** The venue order id is today's ``paper-<sha256(client id)[:12]>``; the n-th fill of an
order has the trade id ``<venue order id>-<n>`` (the first fill of a market order keeps today's
``-1``). Every fill passes ``state/fill_guard.py``; a price that cannot be computed or fails it
is ``INVALID_PRICE`` (refused at submit, EXPIRED for a resting order): never a fill at 0.00.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from decimal import Decimal
from enum import StrEnum
from typing import Any

from state.fill_guard import fill_problem
from state.market import MarketRules, Rounding, TopOfBook
from state.messages import OrderRequest
from state.order import Fill, OrderUpdate, VenueEvent, VenueOrder
from state.rules import slipped_price
from state.types import Direction, Liquidity, OrderIntent, OrderStatus, OrderType, Side, TimeInForce

ZERO = Decimal(0)
BPS = Decimal(10_000)
WORKING_STATUSES = frozenset({OrderStatus.ACCEPTED, OrderStatus.PARTIALLY_FILLED})


class FillModel(StrEnum):
    FULL = "full"  # a touched resting order fills whole
    TRADED_VOLUME = "traded_volume"  # at most the traded quantity per trade


@dataclass(frozen=True, slots=True, kw_only=True)
class FeeSchedule:
    """Fee rates on the notional; a negative maker rate is a rebate (a negative fee)."""

    maker: Decimal = ZERO
    taker: Decimal = ZERO

    def rate(self, liquidity: Liquidity) -> Decimal:
        return self.maker if liquidity is Liquidity.MAKER else self.taker


@dataclass(frozen=True, slots=True, kw_only=True)
class MatchingSettings:
    slippage_bps: Decimal = ZERO
    fees: FeeSchedule = field(default_factory=FeeSchedule)
    fill_model: FillModel = FillModel.FULL
    quote_max_age_ms: int = 5_000
    max_price_age_ms: int = 60_000  # an order whose reference tick is older is PRICE_UNAVAILABLE
    fee_currency: str = "USDT"

    def __post_init__(self) -> None:
        object.__setattr__(self, "fill_model", FillModel(self.fill_model))
        if self.slippage_bps < 0:
            raise ValueError(f"slippage_bps: must be at least 0, got {self.slippage_bps}")
        if self.quote_max_age_ms < 0 or self.max_price_age_ms < 0:
            raise ValueError("quote_max_age_ms, max_price_age_ms: must be at least 0")


@dataclass(frozen=True, slots=True, kw_only=True)
class Trade:
    price: Decimal
    quantity: Decimal
    ts_ms: int


class OrderRefused(ValueError):
    """A definite refusal at submit: nothing was placed. ``code`` is the stable reason code
    (PRICE_UNAVAILABLE, INVALID_PRICE, INVALID_ORDER, REDUCE_ONLY, WOULD_TRIGGER)."""

    def __init__(self, code: str, detail: str) -> None:
        self.code = code
        self.reason = f"{code}: {detail}"
        super().__init__(self.reason)


# --- ids and small rules ---------------------------------------------------------------------------

def venue_order_id(client_order_id: str) -> str:
    """Deterministic: the same client id always gets the same venue id (today's scheme)."""
    return "paper-" + hashlib.sha256(client_order_id.encode()).hexdigest()[:12]


def trade_id(venue_id: str, number: int) -> str:
    """The ``number``-th fill (1-based) of an order."""
    return f"{venue_id}-{number}"


def position_side(order: OrderRequest) -> Direction:
    """The position an order opens or reduces (hedge mode)."""
    buys_long = (order.intent is OrderIntent.ENTRY) == (order.side is Side.BUY)
    return Direction.LONG if buys_long else Direction.SHORT


def slippage_vs_benchmark_bps(side: Side, benchmark: Decimal, price: Decimal) -> Decimal:
    """How much worse than ``benchmark`` (the mid, or the last trade, at submit) a fill at
    ``price`` was, in basis points: BUY ``(price - benchmark) / benchmark * 1e4``, SELL the
    opposite. Positive is worse for the trader. Not rounded."""
    if benchmark <= 0:
        raise ValueError(f"benchmark: must be greater than 0, got {benchmark}")
    moved = price - benchmark if side is Side.BUY else benchmark - price
    return moved / benchmark * BPS


def _on_increment(value: Decimal, increment: Decimal) -> bool:
    return value % increment == 0


# --- the book's records --------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True, kw_only=True)
class BookOrder:
    """One order as the venue holds it. ``seq``: the venue-wide submission number (time
    priority). ``benchmark``: the price its first taker fill was measured against."""

    order: OrderRequest
    venue_order_id: str
    seq: int
    status: OrderStatus
    ts_ms: int
    filled_quantity: Decimal = ZERO
    fill_count: int = 0
    triggered: bool = False
    benchmark: Decimal | None = None
    reason: str | None = None

    @property
    def client_order_id(self) -> str:
        return self.order.client_order_id

    @property
    def remaining(self) -> Decimal:
        return self.order.quantity - self.filled_quantity

    @property
    def working(self) -> bool:
        return self.status in WORKING_STATUSES

    def view(self, fills: Iterable[Fill] = ()) -> VenueOrder:
        return VenueOrder(
            client_order_id=self.order.client_order_id, venue_order_id=self.venue_order_id,
            coin=self.order.coin, side=self.order.side, quantity=self.order.quantity,
            status=self.status, filled_quantity=self.filled_quantity, fills=tuple(fills),
            ts_ms=self.ts_ms, reason=self.reason,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class VenuePosition:
    """The venue's position of one coin and side: quantity >= 0, average entry price,
    realized PnL and fees paid (a rebate counts negative) by its fills."""

    coin: str
    side: Direction
    quantity: Decimal = ZERO
    entry_price: Decimal = ZERO
    realized_pnl: Decimal = ZERO
    fees: Decimal = ZERO

    def apply(self, intent: OrderIntent, quantity: Decimal, price: Decimal, fee: Decimal) -> VenuePosition:
        if intent is OrderIntent.ENTRY:
            total = self.quantity + quantity
            entry = (self.quantity * self.entry_price + quantity * price) / total
            return replace(self, quantity=total, entry_price=entry, fees=self.fees + fee)
        closed = min(quantity, self.quantity)
        move = price - self.entry_price if self.side is Direction.LONG else self.entry_price - price
        left = self.quantity - closed
        return replace(self, quantity=left, entry_price=self.entry_price if left else ZERO,
                       realized_pnl=self.realized_pnl + closed * move, fees=self.fees + fee)


@dataclass(slots=True)
class Step:
    """What one operation did: the events in the order they are reported, and the records
    that changed (to be written before the events are reported)."""

    events: list[VenueEvent] = field(default_factory=list)
    orders: dict[str, BookOrder] = field(default_factory=dict)
    fills: list[Fill] = field(default_factory=list)
    positions: dict[Direction, VenuePosition] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.events or self.orders or self.fills or self.positions)


# --- the book -------------------------------------------------------------------------------------

class MatchingBook:
    """The working orders, last trade, last quote and positions of one coin at the venue."""

    def __init__(self, coin: str, settings: MatchingSettings) -> None:
        self.coin = coin
        self.settings = settings
        self.working: dict[str, BookOrder] = {}
        self.positions: dict[Direction, VenuePosition] = {}
        self.last: Trade | None = None
        self.quote: TopOfBook | None = None

    # -- restoring (the venue re-opens its ledger) --

    def restore_order(self, order: BookOrder) -> None:
        if order.working:
            self.working[order.client_order_id] = order

    def restore_position(self, position: VenuePosition) -> None:
        self.positions[position.side] = position

    def position(self, side: Direction) -> VenuePosition:
        return self.positions.get(side) or VenuePosition(coin=self.coin, side=side)

    # -- market data --

    def observe_quote(self, quote: TopOfBook) -> None:
        if quote.bid > 0 and quote.ask >= quote.bid:
            self.quote = quote

    def _fresh_quote(self, now_ms: int) -> TopOfBook | None:
        """The last quote when it is at most ``quote_max_age_ms`` old; never with 0 (pricing from
        quotes off: takers fill at the last trade, as in a replay of trades alone)."""
        quote = self.quote
        if self.settings.quote_max_age_ms == 0:
            return None
        if quote is not None and now_ms - quote.ts_ms <= self.settings.quote_max_age_ms:
            return quote
        return None

    def benchmark(self, order: OrderRequest, now_ms: int, trigger: Trade | None = None) -> Decimal:
        """The price a taker fill of ``order`` is measured against (see the module docstring)."""
        quote = self._fresh_quote(now_ms)
        if quote is not None:
            return quote.mid
        if trigger is not None:
            return trigger.price
        if self.last is not None and self.last.ts_ms > order.reference_ts_ms:
            return self.last.price
        return order.reference_price

    def _last_price(self, order: OrderRequest) -> Decimal:
        if self.last is not None and self.last.ts_ms > order.reference_ts_ms:
            return self.last.price
        return order.reference_price

    # -- submit --

    def submit(self, order: OrderRequest, *, seq: int, now_ms: int, market: MarketRules) -> tuple[BookOrder, Step]:
        """Accept ``order`` and do what it does at once; ``OrderRefused`` (nothing placed)
        for a definite refusal."""
        s = self.settings
        age_ms = now_ms - order.reference_ts_ms
        if age_ms > s.max_price_age_ms:
            raise OrderRefused("PRICE_UNAVAILABLE", f"reference price of {order.coin} is {age_ms / 1000:.1f}s old "
                                                    f"(limit {s.max_price_age_ms / 1000:.0f}s)")
        for name in ("limit_price", "stop_price"):
            price = getattr(order, name)
            if price is not None and not _on_increment(price, market.tick_size):
                raise OrderRefused("INVALID_ORDER", f"{name} {price} is not a multiple of the tick size "
                                                    f"{market.tick_size} of {order.coin} (Binance -4014)")
        if not _on_increment(order.quantity, market.qty_step):
            raise OrderRefused("INVALID_ORDER", f"quantity {order.quantity} is not a multiple of the quantity "
                                                f"step {market.qty_step} of {order.coin} (Binance -1111)")
        side = position_side(order)
        if order.reduce_only and self.position(side).quantity <= 0:
            raise OrderRefused("REDUCE_ONLY", f"ReduceOnly Order is rejected (Binance -2022): no {side.value} "
                                              f"position in {order.coin} to reduce")
        if order.stop_price is not None and self._triggers(order, self._last_price(order)):
            raise OrderRefused("WOULD_TRIGGER", f"Order would immediately trigger (Binance -2021): stop "
                                                f"{order.stop_price} against the last price {self._last_price(order)}")
        ts_ms = max(now_ms, order.reference_ts_ms)
        book_order = BookOrder(order=order, venue_order_id=venue_order_id(order.client_order_id), seq=seq,
                               status=OrderStatus.ACCEPTED, ts_ms=ts_ms)
        step = Step()
        if order.order_type is OrderType.MARKET:
            # priced before it is accepted: a price that cannot be computed refuses the order
            price, benchmark = self._taker_price(order, now_ms, market, None)
            book_order = replace(book_order, benchmark=benchmark)
            self._check_fill(order, price, order.quantity)
            self._accept(book_order, step)
            self._take(book_order, step, price=price, available=None, ts_ms=ts_ms, market=market)
        elif order.order_type is OrderType.LIMIT:
            self._limit_arrives(book_order, step, now_ms=now_ms, ts_ms=ts_ms, market=market, trigger=None,
                                at_submit=True)
        else:  # stops wait for their trigger
            self._accept(book_order, step)
        return step.orders.get(order.client_order_id, book_order), step

    def _accept(self, book_order: BookOrder, step: Step) -> None:
        self._put(book_order, step)
        step.events.append(OrderUpdate(client_order_id=book_order.client_order_id,
                                       venue_order_id=book_order.venue_order_id, status=OrderStatus.ACCEPTED,
                                       ts_ms=book_order.ts_ms))

    def _put(self, book_order: BookOrder, step: Step) -> None:
        step.orders[book_order.client_order_id] = book_order
        if book_order.working:
            self.working[book_order.client_order_id] = book_order
        else:
            self.working.pop(book_order.client_order_id, None)

    def _finish(self, book_order: BookOrder, step: Step, status: OrderStatus, reason: str, ts_ms: int) -> BookOrder:
        done = replace(book_order, status=status, reason=reason, ts_ms=ts_ms)
        self._put(done, step)
        step.events.append(OrderUpdate(client_order_id=done.client_order_id, venue_order_id=done.venue_order_id,
                                       status=status, ts_ms=ts_ms, reason=reason))
        return done

    # -- prices --

    def _taker_price(self, order: OrderRequest, now_ms: int, market: MarketRules,
                     trigger: Trade | None) -> tuple[Decimal, Decimal]:
        """(fill price, benchmark) of a taker fill; ``OrderRefused`` INVALID_PRICE when it
        cannot be computed."""
        benchmark = self.benchmark(order, now_ms, trigger)
        try:
            price = slipped_price(order.side, benchmark, self.settings.slippage_bps, market)
        except (ArithmeticError, ValueError) as error:
            raise OrderRefused("INVALID_PRICE", f"{order.coin} cannot price the order at {benchmark}: "
                                                f"{type(error).__name__}") from None
        limit = order.limit_price
        if limit is not None:
            price = min(price, limit) if order.side is Side.BUY else max(price, limit)
        return price, benchmark

    def _check_fill(self, order: OrderRequest, price: Decimal, quantity: Decimal,
                    liquidity: Liquidity = Liquidity.TAKER) -> None:
        try:
            fee = quantity * price * self.settings.fees.rate(liquidity)
            problem = fill_problem(reference_price=order.reference_price, ordered_quantity=order.quantity,
                                   fill_price=price, fill_quantity=quantity, fee=fee)
        except (ArithmeticError, ValueError) as error:
            problem = f"cannot price the order at {price}: {type(error).__name__}"
        if problem is not None:
            raise OrderRefused("INVALID_PRICE", f"{order.coin} {problem}")

    def _marketable(self, order: OrderRequest, limit: Decimal, now_ms: int, trigger: Trade | None) -> bool:
        quote = self._fresh_quote(now_ms)
        if quote is not None:
            return limit >= quote.ask if order.side is Side.BUY else limit <= quote.bid
        last = trigger.price if trigger is not None else self._last_price(order)
        return limit >= last if order.side is Side.BUY else limit <= last

    def _touch_quantity(self, order: OrderRequest, now_ms: int) -> Decimal | None:
        """Under ``traded_volume``: the quantity shown at the touch of a fresh quote (what a
        limit may take at once); ``None``: no cap."""
        if self.settings.fill_model is not FillModel.TRADED_VOLUME:
            return None
        quote = self._fresh_quote(now_ms)
        if quote is None:
            return None
        return quote.ask_qty if order.side is Side.BUY else quote.bid_qty

    # -- limits arriving (on submit, or a stop-limit at its trigger) --

    def _limit_arrives(self, book_order: BookOrder, step: Step, *, now_ms: int, ts_ms: int, market: MarketRules,
                       trigger: Trade | None, at_submit: bool) -> None:
        order = book_order.order
        limit = order.limit_price
        assert limit is not None
        marketable = self._marketable(order, limit, now_ms, trigger)
        price = benchmark = None
        if marketable and not order.post_only:
            try:
                price, benchmark = self._taker_price(order, now_ms, market, trigger)
                self._check_fill(order, price, book_order.remaining)
            except OrderRefused as refused:
                if at_submit:
                    raise
                self._finish(book_order, step, OrderStatus.EXPIRED, refused.reason, ts_ms)
                return
        if at_submit:
            self._accept(book_order, step)
        if marketable and order.post_only:
            self._finish(book_order, step, OrderStatus.EXPIRED,
                         "POST_ONLY: the order would take liquidity at once (Binance GTX: expired)", ts_ms)
            return
        tif = order.time_in_force
        if not marketable:
            if tif is TimeInForce.IOC:
                self._finish(book_order, step, OrderStatus.CANCELED,
                             "IOC: nothing could fill at once; canceled", ts_ms)
            elif tif is TimeInForce.FOK:
                self._finish(book_order, step, OrderStatus.EXPIRED,
                             "FOK: the order could not be filled whole at once; expired, nothing filled", ts_ms)
            else:
                self._put(book_order, step)  # rests
            return
        assert price is not None
        available = self._touch_quantity(order, now_ms)
        fillable = self._fillable(book_order, available, market)
        if tif is TimeInForce.FOK and fillable < book_order.remaining:
            self._finish(book_order, step, OrderStatus.EXPIRED,
                         "FOK: the order could not be filled whole at once; expired, nothing filled", ts_ms)
            return
        book_order = replace(book_order, benchmark=benchmark)
        self._take(book_order, step, price=price, available=available, ts_ms=ts_ms, market=market)

    def _fillable(self, book_order: BookOrder, available: Decimal | None, market: MarketRules) -> Decimal:
        quantity = book_order.remaining
        if available is not None:
            quantity = min(quantity, market.round_qty_down(available))
        if book_order.order.reduce_only:
            quantity = min(quantity, self.position(position_side(book_order.order)).quantity)
        return max(quantity, ZERO)

    def _take(self, book_order: BookOrder, step: Step, *, price: Decimal, available: Decimal | None,
              ts_ms: int, market: MarketRules) -> None:
        """Fill ``book_order`` as TAKER at ``price`` (up to ``available`` and, reduce-only, the
        position); what is left rests (GTC limit), is CANCELED (IOC) or EXPIRED."""
        quantity = self._fillable(book_order, available, market)
        if quantity > 0:
            book_order = self._fill(book_order, step, quantity, price, Liquidity.TAKER, ts_ms)
        rests = book_order.order.order_type in (OrderType.LIMIT, OrderType.STOP_LIMIT)  # a market never rests
        self._after_fill(book_order, step, ts_ms, resting_allowed=rests)

    def _after_fill(self, book_order: BookOrder, step: Step, ts_ms: int, *, resting_allowed: bool) -> None:
        if book_order.remaining <= 0:
            return
        order = book_order.order
        if order.reduce_only and self.position(position_side(order)).quantity <= 0:
            status = OrderStatus.CANCELED if order.time_in_force is TimeInForce.IOC else OrderStatus.EXPIRED
            self._finish(book_order, step, status, f"REDUCE_ONLY: the {position_side(order).value} position in "
                         f"{order.coin} is closed; the remaining {book_order.remaining} expired", ts_ms)
        elif order.time_in_force is TimeInForce.IOC:
            self._finish(book_order, step, OrderStatus.CANCELED,
                         f"IOC: the remaining {book_order.remaining} could not fill at once; canceled", ts_ms)
        elif not resting_allowed:
            self._finish(book_order, step, OrderStatus.EXPIRED,
                         f"the remaining {book_order.remaining} could not fill; expired", ts_ms)
        else:
            self._put(book_order, step)

    def _fill(self, book_order: BookOrder, step: Step, quantity: Decimal, price: Decimal,
              liquidity: Liquidity, ts_ms: int) -> BookOrder:
        order = book_order.order
        fee = quantity * price * self.settings.fees.rate(liquidity)
        number = book_order.fill_count + 1
        fill = Fill(trade_id=trade_id(book_order.venue_order_id, number), client_order_id=order.client_order_id,
                    venue_order_id=book_order.venue_order_id, quantity=quantity, price=price, fee=fee,
                    fee_currency=self.settings.fee_currency, liquidity=liquidity, ts_ms=ts_ms)
        filled = book_order.filled_quantity + quantity
        status = OrderStatus.FILLED if filled >= order.quantity else OrderStatus.PARTIALLY_FILLED
        book_order = replace(book_order, filled_quantity=filled, fill_count=number, status=status, ts_ms=ts_ms)
        side = position_side(order)
        position = self.position(side).apply(order.intent, quantity, price, fee)
        self.positions[side] = position
        step.positions[side] = position
        step.fills.append(fill)
        step.events.append(fill)
        self._put(book_order, step)
        return book_order

    # -- trades --

    def _triggers(self, order: OrderRequest, price: Decimal) -> bool:
        stop = order.stop_price
        assert stop is not None
        return price >= stop if order.side is Side.BUY else price <= stop

    def observe_trade(self, trade: Trade, *, market: MarketRules, now_ms: int | None = None) -> Step:
        """A trade printed: trigger the stops it reaches, then fill the resting orders it
        touches. ``now_ms`` (default: the trade's time) judges the quote's freshness."""
        now = trade.ts_ms if now_ms is None else now_ms
        if self.last is None or trade.ts_ms >= self.last.ts_ms:
            self.last = trade
        step = Step()
        just_triggered: set[str] = set()
        for book_order in sorted(self.working.values(), key=lambda o: o.seq):
            order = book_order.order
            if order.stop_price is None or book_order.triggered or not self._triggers(order, trade.price):
                continue
            just_triggered.add(order.client_order_id)
            book_order = replace(book_order, triggered=True, ts_ms=trade.ts_ms)
            self._put(book_order, step)
            if order.order_type is OrderType.STOP_MARKET:
                self._stop_market(book_order, step, trade, now, market)
            else:
                self._limit_arrives(book_order, step, now_ms=now, ts_ms=trade.ts_ms, market=market,
                                    trigger=trade, at_submit=False)
        self._match_resting(trade, step, market, skip=just_triggered)
        return step

    def _stop_market(self, book_order: BookOrder, step: Step, trade: Trade, now_ms: int,
                     market: MarketRules) -> None:
        order = book_order.order
        try:
            price, benchmark = self._taker_price(order, now_ms, market, trade)
            self._check_fill(order, price, book_order.remaining)
        except OrderRefused as refused:
            self._finish(book_order, step, OrderStatus.EXPIRED, refused.reason, trade.ts_ms)
            return
        book_order = replace(book_order, benchmark=benchmark)
        self._take(book_order, step, price=price, available=None, ts_ms=trade.ts_ms, market=market)

    def _match_resting(self, trade: Trade, step: Step, market: MarketRules, skip: set[str]) -> None:
        for side in (Side.BUY, Side.SELL):
            touched = [o for o in self.working.values()
                       if o.order.side is side and o.order.limit_price is not None
                       and (o.order.order_type is OrderType.LIMIT or o.triggered)
                       and o.client_order_id not in skip
                       and (trade.price <= o.order.limit_price if side is Side.BUY
                            else trade.price >= o.order.limit_price)]
            # best price first, then earliest submitted
            touched.sort(key=lambda o: (-o.order.limit_price if side is Side.BUY else o.order.limit_price, o.seq))
            volume: Decimal | None = (trade.quantity if self.settings.fill_model is FillModel.TRADED_VOLUME
                                      else None)
            for book_order in touched:
                if volume is not None and volume <= 0:
                    break
                order = book_order.order
                price = order.limit_price
                assert price is not None
                if order.reduce_only and self.position(position_side(order)).quantity <= 0:
                    self._after_fill(book_order, step, trade.ts_ms, resting_allowed=True)
                    continue
                quantity = self._fillable(book_order, volume, market)
                if quantity <= 0:
                    continue
                try:
                    self._check_fill(order, price, quantity, Liquidity.MAKER)
                except OrderRefused as refused:
                    self._finish(book_order, step, OrderStatus.EXPIRED, refused.reason, trade.ts_ms)
                    continue
                book_order = self._fill(book_order, step, quantity, price, Liquidity.MAKER, trade.ts_ms)
                if volume is not None:
                    volume -= quantity
                self._after_fill(book_order, step, trade.ts_ms, resting_allowed=True)

    # -- cancel --

    def cancel(self, client_order_id: str, *, now_ms: int, reason: str = "canceled") -> Step:
        """Cancel a working order; ``KeyError`` when this book has no such working order."""
        book_order = self.working[client_order_id]
        step = Step()
        self._finish(book_order, step, OrderStatus.CANCELED, f"CANCELED: {reason}", max(now_ms, book_order.ts_ms))
        return step


# --- durable form (the venue's ledger stores these dicts as JSON) -------------------------------------

_REQUEST_DECIMALS = ("quantity", "reference_price", "limit_price", "stop_price")


def request_to_dict(order: OrderRequest) -> dict[str, Any]:
    return {
        "client_order_id": order.client_order_id, "position_id": order.position_id, "coin": order.coin,
        "side": order.side.value, "quantity": str(order.quantity), "intent": order.intent.value,
        "reference_price": str(order.reference_price), "reference_ts_ms": order.reference_ts_ms,
        "order_type": order.order_type.value, "time_in_force": order.time_in_force.value,
        "limit_price": None if order.limit_price is None else str(order.limit_price),
        "stop_price": None if order.stop_price is None else str(order.stop_price),
        "post_only": order.post_only, "reduce_only": order.reduce_only,
    }


def request_from_dict(data: dict[str, Any]) -> OrderRequest:
    values = dict(data)
    for name in _REQUEST_DECIMALS:
        if values.get(name) is not None:
            values[name] = Decimal(values[name])
    return OrderRequest(**values)


def book_order_to_dict(book_order: BookOrder) -> dict[str, Any]:
    return {
        "order": request_to_dict(book_order.order), "venue_order_id": book_order.venue_order_id,
        "seq": book_order.seq, "status": book_order.status.value, "ts_ms": book_order.ts_ms,
        "filled_quantity": str(book_order.filled_quantity), "fill_count": book_order.fill_count,
        "triggered": book_order.triggered,
        "benchmark": None if book_order.benchmark is None else str(book_order.benchmark),
        "reason": book_order.reason,
    }


def book_order_from_dict(data: dict[str, Any]) -> BookOrder:
    return BookOrder(
        order=request_from_dict(data["order"]), venue_order_id=data["venue_order_id"], seq=int(data["seq"]),
        status=OrderStatus(data["status"]), ts_ms=int(data["ts_ms"]),
        filled_quantity=Decimal(data["filled_quantity"]), fill_count=int(data["fill_count"]),
        triggered=bool(data["triggered"]),
        benchmark=None if data.get("benchmark") is None else Decimal(data["benchmark"]), reason=data.get("reason"),
    )


def fill_to_dict(fill: Fill) -> dict[str, Any]:
    return {
        "trade_id": fill.trade_id, "client_order_id": fill.client_order_id, "venue_order_id": fill.venue_order_id,
        "quantity": str(fill.quantity), "price": str(fill.price), "fee": str(fill.fee),
        "fee_currency": fill.fee_currency, "liquidity": fill.liquidity.value, "ts_ms": fill.ts_ms,
    }


def fill_from_dict(data: dict[str, Any]) -> Fill:
    return Fill(
        trade_id=data["trade_id"], client_order_id=data["client_order_id"], venue_order_id=data["venue_order_id"],
        quantity=Decimal(data["quantity"]), price=Decimal(data["price"]), fee=Decimal(data["fee"]),
        fee_currency=data["fee_currency"], liquidity=Liquidity(data["liquidity"]), ts_ms=int(data["ts_ms"]),
    )


def position_to_dict(position: VenuePosition) -> dict[str, Any]:
    return {
        "coin": position.coin, "side": position.side.value, "quantity": str(position.quantity),
        "entry_price": str(position.entry_price), "realized_pnl": str(position.realized_pnl),
        "fees": str(position.fees),
    }


def position_from_dict(data: dict[str, Any]) -> VenuePosition:
    return VenuePosition(
        coin=data["coin"], side=Direction(data["side"]), quantity=Decimal(data["quantity"]),
        entry_price=Decimal(data["entry_price"]), realized_pnl=Decimal(data["realized_pnl"]),
        fees=Decimal(data["fees"]),
    )
