"""The local exchange's book and account, Binance USD-M rules, without I/O or threads.

``Exchange`` holds, for one account: the orders (by order id, and by client id: the latest
order with that id), the user trades, one position per symbol (one-way mode, position side
``BOTH``) or two (hedge mode: ``LONG`` and ``SHORT``), the wallet balances, the leverage and
margin type per symbol, and the last trade per symbol. Every operation takes the time it
happens at (``now_ms``, the server clock for REST calls; the event time for a replayed
trade) and returns the user-data events it caused, already in Binance's JSON shapes, in the
order Binance sends them: ``NEW`` before the fills of an order, ``ACCOUNT_UPDATE`` after each
fill, ``CANCELED``/``EXPIRED`` last. The caller (``LocalBinance``) serializes calls with a
lock and sends the events.

**Orders** (``place``), checked in Binance's order: parameters (-1102, -1100, -1121,
-4061/-1106 for position side and reduce-only), conditional types on the order endpoint
(-4120: ccxt 4.5 sends stops to the algo endpoint), precision (-1111), quantity range and
step (-4003/-4004/-4005/-4023), price range and tick (-4013/-4016/-4014), min notional
(-4164, reduce-only exempt), duplicate client id of a working order (-4116), reduce-only that
would increase the position (-2022), margin (-2019: the initial margin ``notional /
leverage`` of what the order adds to the exposure, plus that of the open orders and the
positions, must fit in the wallet balance), then matching:

- MARKET fills at once at the symbol's last trade price as taker (no trade seen yet: -4131,
  no liquidity); in ``market_fill_parts`` fills when that is above 1 (each its own trade id,
  ``PARTIALLY_FILLED`` then ``FILLED``). A reduce-only order larger than the position fills the
  position and the rest is ``EXPIRED``.
- LIMIT that is marketable against the last trade (buy: limit >= last) takes at once at the
  last price (capped at the limit) as taker; GTX (post-only) that would take is refused
  (-5022), FOK that cannot fill whole is refused (-5021); IOC's remainder is ``EXPIRED``; a GTC
  remainder rests.
- A resting limit fills as MAKER at its own price when a trade prints at or through it (buy:
  trade price <= limit; sell: >=), best price first then oldest; ``fill_model`` ``full``: the
  touched order fills whole; ``traded_volume``: each trade fills at most its own quantity across
  the orders it touches (the rest keeps resting). Our fills are not printed on the public
  stream (a replay then sees exactly the recorded tape).

These are the rules of the paper venue (``state/matching.py``) restated for a one-way Binance
account, so a live session against this server fills as a paper one with the same fill model.

**Account.** A fill pays ``taker_fee``/``maker_fee`` on its notional (``commission`` in USDT,
taken from the wallet) and realizes ``(price - entry) * closed`` (sign by side) into the
wallet; a position keeps its average entry price and its realized PnL.
"""

from __future__ import annotations

import re
from collections import Counter, deque
from collections.abc import Mapping
from dataclasses import dataclass, replace
from decimal import Decimal, InvalidOperation
from typing import Any

from tests.support.local_binance import errors as E
from tests.support.local_binance.errors import BinanceError, bad
from tests.support.local_binance.exchange_info import SymbolRules
from tests.support.local_binance.shapes import (
    account_update_event,
    algo_update_event,
    order_update_event,
    position_entry,
)

ZERO = Decimal(0)
CLIENT_ID = re.compile(r"^[\.A-Z\:/a-z0-9_-]{1,36}$")
WORKING = frozenset({"NEW", "PARTIALLY_FILLED"})
ORDER_TYPES = frozenset({"LIMIT", "MARKET"})
ALGO_TYPES = frozenset({"STOP", "STOP_MARKET", "TAKE_PROFIT", "TAKE_PROFIT_MARKET", "TRAILING_STOP_MARKET"})
CONDITIONAL_TYPES = ("STOP", "STOP_MARKET", "TAKE_PROFIT", "TAKE_PROFIT_MARKET")  # served by the algo endpoint
FIRST_ALGO_ID = 2_000_000_547_000_001
TIME_IN_FORCE = frozenset({"GTC", "IOC", "FOK", "GTX", "GTD"})
DEFAULT_LEVERAGE = 20
FILL_MODELS = ("full", "traded_volume")
FIRST_ORDER_ID = 8_389_765_000_000_000_001
FIRST_TRADE_ID = 5_000_000_001

FORCED = {
    "balance": E.MARGIN_INSUFFICIENT,
    "min_notional": None,  # the symbol's own -4164 text
    "price_filter": E.PRICE_TICK,
    "reduce_only": E.REDUCE_ONLY_REJECTED,
}


@dataclass(slots=True)
class Order:
    order_id: int
    client_order_id: str
    symbol: str
    side: str  # BUY | SELL
    type: str  # LIMIT | MARKET
    time_in_force: str
    quantity: Decimal
    price: Decimal  # 0 for a market order
    reduce_only: bool
    position_side: str  # BOTH | LONG | SHORT
    time_ms: int
    update_ms: int
    seq: int
    stop_price: Decimal = ZERO
    close_position: bool = False
    status: str = "NEW"
    executed_qty: Decimal = ZERO
    cum_quote: Decimal = ZERO
    by_hand: bool = False
    algo_id: int = 0  # the conditional order that created it

    @property
    def avg_price(self) -> Decimal:
        return self.cum_quote / self.executed_qty if self.executed_qty else ZERO

    @property
    def remaining(self) -> Decimal:
        return self.quantity - self.executed_qty

    @property
    def working(self) -> bool:
        return self.status in WORKING

    @property
    def sign(self) -> int:
        return 1 if self.side == "BUY" else -1


@dataclass(slots=True)
class AlgoOrder:
    """A conditional order (``POST /fapi/v1/algoOrder``): waits for its trigger price, then
    places a MARKET (``STOP_MARKET``, ``TAKE_PROFIT_MARKET``) or LIMIT (``STOP``,
    ``TAKE_PROFIT``) order with ``clientAlgoId`` as its client id."""

    algo_id: int
    client_algo_id: str
    symbol: str
    side: str
    type: str
    quantity: Decimal
    trigger_price: Decimal
    price: Decimal
    time_in_force: str
    reduce_only: bool
    position_side: str
    create_ms: int
    update_ms: int
    seq: int
    status: str = "NEW"  # NEW, CANCELED, TRIGGERING, TRIGGERED, FINISHED, REJECTED
    trigger_ms: int = 0
    order_id: int | None = None

    def triggers(self, price: Decimal) -> bool:
        stop = self.type.startswith("STOP")
        if (self.side == "BUY") == stop:
            return price >= self.trigger_price
        return price <= self.trigger_price


@dataclass(frozen=True, slots=True)
class UserTrade:
    trade_id: int
    order_id: int
    client_order_id: str
    symbol: str
    side: str
    price: Decimal
    quantity: Decimal
    commission: Decimal
    commission_asset: str
    realized_pnl: Decimal
    maker: bool
    position_side: str
    time_ms: int


@dataclass(slots=True)
class Position:
    symbol: str
    side: str  # BOTH | LONG | SHORT
    amount: Decimal = ZERO  # signed: > 0 long, < 0 short (a SHORT hedge position is negative)
    entry_price: Decimal = ZERO
    realized_pnl: Decimal = ZERO
    update_ms: int = 0


@dataclass(slots=True)
class SymbolSettings:
    leverage: int = DEFAULT_LEVERAGE
    margin_type: str = "CROSSED"  # CROSSED | ISOLATED


@dataclass(frozen=True, slots=True)
class LastTrade:
    price: Decimal
    quantity: Decimal
    ts_ms: int


def parse_decimal(params: Mapping[str, str], name: str, *, required: bool = True) -> Decimal | None:
    text = params.get(name)
    if text is None or text == "":
        if required:
            raise E.mandatory(name)
        return None
    try:
        value = Decimal(text)
    except (InvalidOperation, ValueError):
        raise E.invalid_value(name) from None
    if not value.is_finite():
        raise E.invalid_value(name)
    return value


def parse_bool(params: Mapping[str, str], name: str) -> bool:
    text = params.get(name)
    if text is None or text == "":
        return False
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    raise E.invalid_value(name)


def _places(value: Decimal) -> int:
    exponent = value.normalize().as_tuple().exponent
    return max(0, -int(exponent))


class Exchange:
    """One account's book at the local exchange (see the module docstring)."""

    def __init__(self, rules: Mapping[str, SymbolRules], *, balances: Mapping[str, Decimal],
                 maker_fee: Decimal, taker_fee: Decimal, dual_side_position: bool = False,
                 fill_model: str = "full") -> None:
        if fill_model not in FILL_MODELS:
            raise ValueError(f"fill_model: must be one of {', '.join(FILL_MODELS)}, got {fill_model!r}")
        self.rules = dict(rules)
        self.wallet: dict[str, Decimal] = {asset: Decimal(amount) for asset, amount in balances.items()}
        self.maker_fee = Decimal(maker_fee)
        self.taker_fee = Decimal(taker_fee)
        self.dual_side_position = dual_side_position
        self.fill_model = fill_model
        self.market_fill_parts = 1
        self.orders: dict[int, Order] = {}
        self.by_client: dict[str, Order] = {}
        self.submissions: Counter[str] = Counter()
        self.trades: list[UserTrade] = []
        self.positions: dict[tuple[str, str], Position] = {}
        self.settings: dict[str, SymbolSettings] = {}
        self.last: dict[str, LastTrade] = {}
        self.forced: deque[tuple[int, str] | str] = deque()
        self.algos: dict[int, AlgoOrder] = {}
        self.algo_by_client: dict[str, AlgoOrder] = {}
        self._next_algo_id = FIRST_ALGO_ID
        self._next_order_id = FIRST_ORDER_ID
        self._next_trade_id = FIRST_TRADE_ID
        self._seq = 0

    # --- lookups -------------------------------------------------------------------------------

    def symbol(self, params: Mapping[str, str], *, required: bool = True) -> SymbolRules | None:
        name = params.get("symbol")
        if not name:
            if required:
                raise E.mandatory("symbol")
            return None
        rules = self.rules.get(name)
        if rules is None:
            raise bad(*E.INVALID_SYMBOL)
        return rules

    def settings_of(self, symbol: str) -> SymbolSettings:
        return self.settings.setdefault(symbol, SymbolSettings())

    def position(self, symbol: str, side: str) -> Position:
        return self.positions.setdefault((symbol, side), Position(symbol, side))

    def open_orders(self, symbol: str | None = None) -> list[Order]:
        return sorted((o for o in self.orders.values() if o.working and (symbol is None or o.symbol == symbol)),
                      key=lambda o: o.seq)

    def find(self, params: Mapping[str, str], missing: tuple[int, str]) -> Order:
        """The order named by ``orderId`` or ``origClientOrderId`` of ``symbol``."""
        rules = self.symbol(params)
        assert rules is not None
        order: Order | None = None
        if params.get("orderId"):
            try:
                order = self.orders.get(int(params["orderId"]))
            except ValueError:
                raise E.invalid_value("orderId") from None
        elif params.get("origClientOrderId"):
            order = self.by_client.get(params["origClientOrderId"])
        else:
            raise bad(-1102, "Param 'origClientOrderId' or 'orderId' must be sent, but both were empty/null!")
        if order is None or order.symbol != rules.symbol:
            raise bad(*missing)
        return order

    # --- margin --------------------------------------------------------------------------------

    def available_balance(self, asset: str = "USDT") -> Decimal:
        """Wallet minus the initial margin of positions and open orders (no unrealized PnL)."""
        used = ZERO
        for position in self.positions.values():
            if position.amount:
                used += abs(position.amount) * position.entry_price / self.settings_of(position.symbol).leverage
        for order in self.open_orders():
            used += self._order_margin(order, order.remaining)
        return self.wallet.get(asset, ZERO) - used

    def _order_margin(self, order: Order, quantity: Decimal) -> Decimal:
        price = order.price if order.price else self._last_price(order.symbol) or ZERO
        return quantity * price / self.settings_of(order.symbol).leverage

    def _last_price(self, symbol: str) -> Decimal | None:
        last = self.last.get(symbol)
        return None if last is None else last.price

    def _increase(self, order: Order) -> Decimal:
        """How much of ``order`` would add to the exposure (the rest closes a position)."""
        if order.reduce_only:
            return ZERO
        if order.position_side != "BOTH":
            opens = (order.position_side == "LONG") == (order.side == "BUY")
            return order.quantity if opens else ZERO
        amount = self.position(order.symbol, "BOTH").amount
        if amount * order.sign >= 0:
            return order.quantity
        return max(ZERO, order.quantity - abs(amount))

    # --- placing -------------------------------------------------------------------------------

    def place(self, params: Mapping[str, str], now_ms: int, *, by_hand: bool = False, algo_id: int = 0
              ) -> tuple[Order, list[dict], Order]:
        """Check and place an order (``POST /fapi/v1/order``); ``BinanceError`` refuses it.
        Returns the order, its events and a copy of it as it was accepted (before any fill: the
        ``newOrderRespType=ACK`` answer)."""
        if params.get("newClientOrderId"):
            self.submissions[params["newClientOrderId"]] += 1
        rules = self.symbol(params)
        assert rules is not None
        side = params.get("side")
        if side not in ("BUY", "SELL"):
            raise E.mandatory("side") if not side else E.invalid_value("side")
        kind = params.get("type")
        if not kind:
            raise E.mandatory("type")
        if kind in ALGO_TYPES:
            raise bad(*E.ALGO_REQUIRED)
        if kind not in ORDER_TYPES:
            raise E.invalid_value("type")
        client_id = params.get("newClientOrderId") or f"autoclient{self._next_order_id % 10**12}"
        if not CLIENT_ID.match(client_id):
            raise bad(*E.ILLEGAL_CLIENT_ID)
        reduce_only = parse_bool(params, "reduceOnly")
        position_side = params.get("positionSide") or "BOTH"
        if position_side not in ("BOTH", "LONG", "SHORT"):
            raise E.invalid_value("positionSide")
        if (position_side == "BOTH") == self.dual_side_position:
            raise bad(*E.POSITION_SIDE_MISMATCH)
        if reduce_only and self.dual_side_position:
            raise bad(*E.REDUCE_ONLY_NOT_REQUIRED)
        quantity = parse_decimal(params, "quantity")
        assert quantity is not None
        if kind == "LIMIT":
            price = parse_decimal(params, "price")
            assert price is not None
            tif = params.get("timeInForce")
            if not tif:
                raise E.mandatory("timeInForce")
            if tif not in TIME_IN_FORCE:
                raise E.invalid_value("timeInForce")
        else:
            if params.get("price"):
                raise bad(-1106, "Parameter 'price' sent when not required.")
            price = ZERO
            tif = "GTC"
        self._check_filters(rules, kind, quantity, price, reduce_only)
        self._forced_rejection(rules)
        existing = self.by_client.get(client_id)
        if existing is not None and existing.working:
            raise bad(*E.DUPLICATE_CLIENT_ID)
        order = Order(order_id=self._next_order_id, client_order_id=client_id, symbol=rules.symbol, side=side,
                      type=kind, time_in_force=tif, quantity=quantity, price=price, reduce_only=reduce_only,
                      position_side=position_side, time_ms=now_ms, update_ms=now_ms, seq=self._seq + 1,
                      by_hand=by_hand, algo_id=algo_id)
        self._check_reduce(order)
        last = self._last_price(rules.symbol)
        marketable = kind == "MARKET" or (last is not None and (price >= last if side == "BUY" else price <= last))
        if kind == "MARKET" and last is None:
            raise bad(*E.NO_LIQUIDITY)
        if kind == "LIMIT" and tif == "GTX" and marketable:
            raise bad(*E.GTX_REJECTED)
        if kind == "LIMIT" and tif == "FOK" and not marketable:
            raise bad(*E.FOK_REJECTED)
        increase = self._increase(order)
        if increase > 0 and self._order_margin(order, increase) > self.available_balance():
            raise bad(*E.MARGIN_INSUFFICIENT)
        # accepted
        self._next_order_id += 1
        self._seq += 1
        self.orders[order.order_id] = order
        self.by_client[client_id] = order
        events = [order_update_event(order, rules, "NEW", now_ms)]
        accepted = replace(order)
        if marketable:
            assert last is not None
            fill_price = last if kind == "MARKET" else (min(price, last) if side == "BUY" else max(price, last))
            self._take(order, rules, fill_price, now_ms, events)
        elif tif == "IOC":
            self._finish(order, rules, "EXPIRED", now_ms, events)
        return order, events, accepted

    def _check_filters(self, rules: SymbolRules, kind: str, quantity: Decimal, price: Decimal,
                       reduce_only: bool) -> None:
        if quantity <= 0:
            raise bad(*E.QTY_NOT_POSITIVE)
        if _places(quantity) > rules.quantity_precision:
            raise bad(*E.PRECISION)
        step, min_qty, max_qty = ((rules.market_step_size, rules.market_min_qty, rules.market_max_qty)
                                  if kind == "MARKET" else (rules.step_size, rules.min_qty, rules.max_qty))
        if quantity < min_qty:
            raise bad(*E.QTY_BELOW_MIN)
        if max_qty and quantity > max_qty:
            raise bad(*E.QTY_ABOVE_MAX)
        if step and (quantity - min_qty) % step:
            raise bad(*E.QTY_STEP)
        if kind == "LIMIT":
            if price <= 0:
                raise E.invalid_value("price")
            if _places(price) > rules.price_precision:
                raise bad(*E.PRECISION)
            if price < rules.min_price:
                raise bad(*E.PRICE_BELOW_MIN)
            if rules.max_price and price > rules.max_price:
                raise bad(*E.PRICE_ABOVE_MAX)
            if rules.tick_size and (price - rules.min_price) % rules.tick_size:
                raise bad(*E.PRICE_TICK)
        reference = price if kind == "LIMIT" else self._last_price(rules.symbol)
        if not reduce_only and reference is not None and quantity * reference < rules.min_notional:
            raise E.min_notional(format(rules.min_notional.normalize(), "f"))

    def _forced_rejection(self, rules: SymbolRules) -> None:
        if not self.forced:
            return
        forced = self.forced.popleft()
        if forced == "min_notional":
            raise E.min_notional(format(rules.min_notional.normalize(), "f"))
        if isinstance(forced, str):
            code = FORCED[forced]
            assert code is not None
            raise bad(*code)
        raise bad(*forced)

    def _check_reduce(self, order: Order) -> None:
        if order.position_side == "BOTH":
            if not order.reduce_only:
                return
            amount = self.position(order.symbol, "BOTH").amount
            if amount == 0 or amount * order.sign > 0:
                raise bad(*E.REDUCE_ONLY_REJECTED)
            return
        closes = (order.position_side == "LONG") != (order.side == "BUY")
        if closes:
            held = abs(self.position(order.symbol, order.position_side).amount)
            pending = sum((o.remaining for o in self.open_orders(order.symbol)
                           if o.position_side == order.position_side and o.side == order.side), ZERO)
            if order.quantity + pending > held:
                raise bad(*E.REDUCE_ONLY_REJECTED)

    # --- filling -------------------------------------------------------------------------------

    def _closable(self, order: Order) -> Decimal | None:
        """Reduce-only (or a hedge close): the most the order may still fill; None: no cap."""
        if order.position_side == "BOTH":
            if not order.reduce_only:
                return None
            amount = self.position(order.symbol, "BOTH").amount
            return abs(amount) if amount * order.sign < 0 else ZERO
        closes = (order.position_side == "LONG") != (order.side == "BUY")
        return abs(self.position(order.symbol, order.position_side).amount) if closes else None

    def _take(self, order: Order, rules: SymbolRules, price: Decimal, now_ms: int, events: list[dict]) -> None:
        quantity = order.remaining
        cap = self._closable(order)
        if cap is not None:
            quantity = min(quantity, cap)
        parts = self.market_fill_parts if order.type == "MARKET" else 1
        for size in _split(quantity, parts, rules.market_step_size or rules.step_size):
            self._fill(order, rules, size, price, maker=False, now_ms=now_ms, events=events)
        if order.remaining > 0:
            if order.type == "MARKET" or order.time_in_force == "IOC" or cap is not None and order.reduce_only:
                self._finish(order, rules, "EXPIRED", now_ms, events)

    def _fill(self, order: Order, rules: SymbolRules, quantity: Decimal, price: Decimal, *, maker: bool,
              now_ms: int, events: list[dict]) -> None:
        fee_rate = self.maker_fee if maker else self.taker_fee
        commission = quantity * price * fee_rate
        position = self.position(order.symbol, order.position_side)
        realized = self._apply(position, order.sign * quantity, price, now_ms)
        self.wallet["USDT"] = self.wallet.get("USDT", ZERO) + realized - commission
        trade = UserTrade(trade_id=self._next_trade_id, order_id=order.order_id,
                          client_order_id=order.client_order_id, symbol=order.symbol, side=order.side, price=price,
                          quantity=quantity, commission=commission, commission_asset="USDT", realized_pnl=realized,
                          maker=maker, position_side=order.position_side, time_ms=now_ms)
        self._next_trade_id += 1
        self.trades.append(trade)
        order.executed_qty += quantity
        order.cum_quote += quantity * price
        order.status = "FILLED" if order.remaining <= 0 else "PARTIALLY_FILLED"
        order.update_ms = now_ms
        events.append(order_update_event(order, rules, "TRADE", now_ms, trade))
        margin_type = self.settings_of(order.symbol).margin_type
        events.append(account_update_event(  # bc: transfers only (Binance leaves PnL and fees out)
            "ORDER", now_ms, [("USDT", self.wallet["USDT"], ZERO)],
            [position_entry(position, rules, margin_type)]))

    @staticmethod
    def _apply(position: Position, signed_qty: Decimal, price: Decimal, now_ms: int) -> Decimal:
        """Move ``position`` by ``signed_qty`` at ``price``; the PnL realized."""
        amount = position.amount
        realized = ZERO
        if amount == 0 or amount * signed_qty > 0:
            total = abs(amount) + abs(signed_qty)
            position.entry_price = (abs(amount) * position.entry_price + abs(signed_qty) * price) / total
            position.amount = amount + signed_qty
        else:
            closed = min(abs(amount), abs(signed_qty))
            direction = 1 if amount > 0 else -1
            realized = closed * (price - position.entry_price) * direction
            position.amount = amount + signed_qty
            if position.amount == 0:
                position.entry_price = ZERO
            elif position.amount * amount < 0:  # flipped: the rest opened at this price
                position.entry_price = price
        position.realized_pnl += realized
        position.update_ms = now_ms
        return realized

    def _finish(self, order: Order, rules: SymbolRules, status: str, now_ms: int, events: list[dict]) -> None:
        order.status = status
        order.update_ms = now_ms
        events.append(order_update_event(order, rules, status, now_ms))

    # --- conditional (algo) orders ------------------------------------------------------------

    def place_algo(self, params: Mapping[str, str], now_ms: int) -> tuple[AlgoOrder, list[dict]]:
        """``POST /fapi/v1/algoOrder`` (``algoType=CONDITIONAL``)."""
        if params.get("clientAlgoId"):
            self.submissions[params["clientAlgoId"]] += 1
        if params.get("algoType") != "CONDITIONAL":
            raise E.mandatory("algoType") if not params.get("algoType") else E.invalid_value("algoType")
        rules = self.symbol(params)
        assert rules is not None
        side = params.get("side")
        if side not in ("BUY", "SELL"):
            raise E.mandatory("side") if not side else E.invalid_value("side")
        kind = params.get("type")
        if kind not in CONDITIONAL_TYPES:
            raise E.mandatory("type") if not kind else E.invalid_value("type")
        trigger = parse_decimal(params, "triggerPrice")
        assert trigger is not None
        limit_kind = kind in ("STOP", "TAKE_PROFIT")
        price = parse_decimal(params, "price") if limit_kind else ZERO
        assert price is not None
        quantity = parse_decimal(params, "quantity")
        assert quantity is not None
        reduce_only = parse_bool(params, "reduceOnly")
        position_side = params.get("positionSide") or "BOTH"
        if (position_side == "BOTH") == self.dual_side_position:
            raise bad(*E.POSITION_SIDE_MISMATCH)
        client_id = params.get("clientAlgoId") or f"autoalgo{self._next_algo_id % 10**12}"
        if not CLIENT_ID.match(client_id):
            raise bad(*E.ILLEGAL_CLIENT_ID)
        for value in (trigger, price) if limit_kind else (trigger,):
            if _places(value) > rules.price_precision:
                raise bad(*E.PRECISION)
            if rules.tick_size and (value - rules.min_price) % rules.tick_size:
                raise bad(*E.PRICE_TICK)
        self._check_filters(rules, "LIMIT" if limit_kind else "MARKET", quantity,
                            price if limit_kind else trigger, reduce_only)
        existing = self.algo_by_client.get(client_id)
        if existing is not None and existing.status == "NEW":
            raise bad(*E.DUPLICATE_CLIENT_ID)
        if reduce_only:
            amount = self.position(rules.symbol, "BOTH").amount
            if amount == 0 or (amount > 0) == (side == "BUY"):
                raise bad(*E.REDUCE_ONLY_REJECTED)
        algo = AlgoOrder(algo_id=self._next_algo_id, client_algo_id=client_id, symbol=rules.symbol, side=side,
                         type=kind, quantity=quantity, trigger_price=trigger, price=price,
                         time_in_force=params.get("timeInForce") or "GTC", reduce_only=reduce_only,
                         position_side=position_side, create_ms=now_ms, update_ms=now_ms, seq=self._seq + 1)
        last = self._last_price(rules.symbol)
        if last is not None and algo.triggers(last):
            raise bad(*E.WOULD_TRIGGER)
        self._next_algo_id += 1
        self._seq += 1
        self.algos[algo.algo_id] = algo
        self.algo_by_client[client_id] = algo
        return algo, [algo_update_event(algo, rules, now_ms)]

    def find_algo(self, params: Mapping[str, str], missing: tuple[int, str]) -> AlgoOrder:
        algo: AlgoOrder | None = None
        if params.get("algoId"):
            try:
                algo = self.algos.get(int(params["algoId"]))
            except ValueError:
                raise E.invalid_value("algoId") from None
        elif params.get("clientAlgoId"):
            algo = self.algo_by_client.get(params["clientAlgoId"])
        else:
            raise bad(-1102, "Param 'clientAlgoId' or 'algoId' must be sent, but both were empty/null!")
        if algo is None:
            raise bad(*missing)
        return algo

    def cancel_algo(self, params: Mapping[str, str], now_ms: int) -> tuple[AlgoOrder, list[dict]]:
        algo = self.find_algo(params, E.UNKNOWN_ORDER)
        if algo.status != "NEW":
            raise bad(*E.UNKNOWN_ORDER)
        algo.status = "CANCELED"
        algo.update_ms = now_ms
        return algo, [algo_update_event(algo, self.rules[algo.symbol], now_ms)]

    def open_algos(self, symbol: str | None = None) -> list[AlgoOrder]:
        return sorted((a for a in self.algos.values() if a.status == "NEW" and (symbol is None or a.symbol == symbol)),
                      key=lambda a: a.seq)

    def _trigger_algos(self, symbol: str, price: Decimal, event_ms: int, events: list[dict]) -> None:
        rules = self.rules[symbol]
        for algo in self.open_algos(symbol):
            if not algo.triggers(price):
                continue
            algo.status = "TRIGGERING"
            algo.trigger_ms = algo.update_ms = event_ms
            events.append(algo_update_event(algo, rules, event_ms))
            request = {"symbol": symbol, "side": algo.side, "quantity": str(algo.quantity),
                       "positionSide": algo.position_side, "newClientOrderId": algo.client_algo_id,
                       "reduceOnly": "true" if algo.reduce_only else "false"}
            if algo.type in ("STOP", "TAKE_PROFIT"):
                request.update({"type": "LIMIT", "price": str(algo.price), "timeInForce": algo.time_in_force})
            else:
                request["type"] = "MARKET"
            try:
                child, child_events, _ = self.place(request, event_ms, algo_id=algo.algo_id)
            except BinanceError as refused:
                algo.status = "REJECTED"
                events.append(algo_update_event(algo, rules, event_ms, reason=refused.msg))
                continue
            events.extend(child_events)
            algo.order_id = child.order_id
            algo.status = "TRIGGERED"
            events.append(algo_update_event(algo, rules, event_ms, child=child))
            if not child.working:
                algo.status = "FINISHED"
                events.append(algo_update_event(algo, rules, event_ms, child=child))

    # --- canceling -----------------------------------------------------------------------------

    def cancel(self, params: Mapping[str, str], now_ms: int) -> tuple[Order, list[dict]]:
        order = self.find(params, E.UNKNOWN_ORDER)
        if not order.working:
            raise bad(*E.UNKNOWN_ORDER)
        events: list[dict] = []
        self._finish(order, self.rules[order.symbol], "CANCELED", now_ms, events)
        return order, events

    def cancel_all(self, symbol: str, now_ms: int) -> list[dict]:
        events: list[dict] = []
        for order in self.open_orders(symbol):
            self._finish(order, self.rules[symbol], "CANCELED", now_ms, events)
        return events

    # --- market data ---------------------------------------------------------------------------

    def on_trade(self, symbol: str, price: Decimal, quantity: Decimal, ts_ms: int, event_ms: int) -> list[dict]:
        """A trade printed on the tape: resting orders it touches fill (see the module doc)."""
        rules = self.rules.get(symbol)
        if rules is None:
            raise ValueError(f"symbol: {symbol!r} is not listed (known: {', '.join(sorted(self.rules))})")
        last = self.last.get(symbol)
        if last is None or ts_ms >= last.ts_ms:
            self.last[symbol] = LastTrade(price, quantity, ts_ms)
        events: list[dict] = []
        self._trigger_algos(symbol, price, event_ms, events)
        volume: Decimal | None = quantity if self.fill_model == "traded_volume" else None
        for side in ("BUY", "SELL"):
            touched = [o for o in self.open_orders(symbol) if o.side == side and o.type == "LIMIT"
                       and (price <= o.price if side == "BUY" else price >= o.price)]
            touched.sort(key=lambda o: (-o.price if side == "BUY" else o.price, o.seq))
            side_volume = volume
            for order in touched:
                if side_volume is not None and side_volume <= 0:
                    break
                size = order.remaining
                cap = self._closable(order)
                if cap is not None:
                    size = min(size, cap)
                if side_volume is not None:
                    size = min(size, _round_down(side_volume, rules.step_size))
                if size <= 0:
                    if cap is not None and cap <= 0 and order.reduce_only:
                        self._finish(order, rules, "EXPIRED", event_ms, events)
                    continue
                self._fill(order, rules, size, order.price, maker=True, now_ms=event_ms, events=events)
                if side_volume is not None:
                    side_volume -= size
        return events


def _round_down(value: Decimal, step: Decimal) -> Decimal:
    if not step:
        return value
    return (value // step) * step


def _split(quantity: Decimal, parts: int, step: Decimal) -> list[Decimal]:
    """``quantity`` in at most ``parts`` sizes on the step (the last takes the remainder)."""
    if quantity <= 0:
        return []
    if parts <= 1:
        return [quantity]
    size = _round_down(quantity / parts, step)
    if size <= 0:
        return [quantity]
    sizes = [size] * (parts - 1)
    sizes.append(quantity - size * (parts - 1))
    return [s for s in sizes if s > 0]


def describe(order: Order) -> dict[str, Any]:
    """A short view of an order for test failure messages."""
    return {"orderId": order.order_id, "clientOrderId": order.client_order_id, "status": order.status,
            "side": order.side, "type": order.type, "qty": str(order.quantity),
            "executed": str(order.executed_qty), "avg": str(order.avg_price)}
