"""The Bybit v5 dialect of ``CcxtVenue`` (``bybit``, category ``linear`` or ``spot``).

Requests go through ccxt's implicit v5 API (``privatePostV5OrderCreate``...) and so through the
venue's gate, token bucket and error translation (``ccxt_errors.BYBIT_CODES``). Payloads are
read by the pure parsers of ``adapters/venues/bybit_private.py`` (``parse_order_row``,
``parse_execution_row``) and the private stream is its ``BybitPrivateStream``; that module is
imported when first needed, so this one loads (and Binance trades) without it.

- Client order id: ``orderLinkId``. Exits are ``reduceOnly`` on linear, never on spot.
- Types: Market / Limit; stops are conditional orders (``triggerPrice``, ``triggerDirection``
  1 = rises to it for a BUY, 2 = falls to it for a SELL; spot adds ``orderFilter=StopOrder``);
  time in force GTC / IOC / FOK, post-only ``PostOnly``. Spot market orders are sized in the
  base coin (``marketUnit=baseCoin``: Bybit's default for a spot market buy is the quote).
- Start: the position mode (linear: a ``positionIdx`` of 1 or 2 on the coins' positions is hedge
  mode, refused), the account's margin mode (unified accounts: ``ISOLATED_MARGIN`` or
  ``REGULAR_MARGIN``, account-wide; set when it differs) and each coin's leverage (110043
  "leverage not modified" is fine).
- ``fetch_order``: ``/v5/order/realtime`` (working) then ``/v5/order/history`` (final) by
  ``orderLinkId``; fills from ``/v5/execution/list`` by order id.
- The answer to a create or cancel carries no status: the create pushes ACCEPTED, the rest
  comes from the stream or the polling.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from adapters.errors import InvalidOrder, UnsupportedAccount
from adapters.venues.binance_user_data import dec
from adapters.venues.ccxt_venue import Dialect, PrivateStream, decimal_text
from state.account import HeldPosition
from state.market import MarketRules
from state.messages import OrderRequest
from state.order import FINAL_STATUSES, Fill, OrderUpdate, VenueEvent, VenueOrder
from state.types import OrderStatus, OrderType, Side

if TYPE_CHECKING:
    from adapters.venues.ccxt_venue import CcxtVenue

MAINNET_WS = "wss://stream.bybit.com/v5/private"
TESTNET_WS = "wss://stream-testnet.bybit.com/v5/private"
PAGE = 100


def _private() -> Any:
    """``adapters.venues.bybit_private`` (the Bybit helper's module), imported on first use."""
    try:
        from adapters.venues import bybit_private  # noqa: PLC0415
    except ImportError as error:  # pragma: no cover - only before the Bybit module is merged
        raise UnsupportedAccount(f"bybit: the Bybit private-protocol module is not installed ({error})") from None
    return bybit_private


def _rows(answer: Any) -> list[Mapping[str, Any]]:
    result = answer.get("result") if isinstance(answer, Mapping) else None
    rows = result.get("list") if isinstance(result, Mapping) else None
    return list(rows or [])


class BybitDialect(Dialect):
    """See the module docstring."""

    create_method = "privatePostV5OrderCreate"
    weight_limit = 0

    def __init__(self, venue: CcxtVenue) -> None:
        super().__init__(venue)
        self.category = "spot" if venue.market == "spot" else "linear"
        self.derivatives = self.category != "spot"

    def ccxt_options(self, recv_window_ms: int) -> dict[str, Any]:
        return {"recvWindow": recv_window_ms, "adjustForTimeDifference": False, "fetchCurrencies": False}

    # --- start --------------------------------------------------------------------------------

    def prove_keys(self) -> dict[str, Decimal]:
        return self.balances()

    def check_position_mode(self) -> str:
        if self.category == "spot":
            return "spot"
        for coin, symbol in self.venue.coins.items():
            answer = self.venue.call("privateGetV5PositionList", {"category": "linear", "symbol": symbol})
            if any(str(row.get("positionIdx", "0")) not in ("0", "") for row in _rows(answer)):
                raise UnsupportedAccount(
                    f"bybit {symbol}: the position mode is hedge mode (positionIdx 1/2); the engine trades one-way "
                    f"mode only. Switch {coin} to one-way mode (Bybit: Derivatives settings > Position Mode, or POST "
                    f"/v5/position/switch-mode mode=0 with no position or order open), then start again")
        return "one-way"

    def set_leverage_and_margin(self) -> tuple[dict[str, int], dict[str, str]]:
        if self.category == "spot":
            return {}, {}
        wanted = "ISOLATED_MARGIN" if self.venue.margin_mode.lower() == "isolated" else "REGULAR_MARGIN"
        info = self.venue.call("privateGetV5AccountInfo")
        current = str((info.get("result") or {}).get("marginMode", "")) if isinstance(info, Mapping) else ""
        if current != wanted:
            try:
                self.venue.call("privatePostV5AccountSetMarginMode", {"setMarginMode": wanted})
            except InvalidOrder as error:
                raise UnsupportedAccount(f"bybit: the account's margin mode is {current or 'unknown'} and cannot be "
                                         f"set to {wanted}: {error}") from None
        leverage: dict[str, int] = {}
        for coin, symbol in self.venue.coins.items():
            value = str(self.venue.leverage[coin])
            try:
                self.venue.call("privatePostV5PositionSetLeverage", {"category": "linear", "symbol": symbol,
                                                                     "buyLeverage": value, "sellLeverage": value})
            except InvalidOrder as error:
                if "110043" not in str(error):  # leverage not modified: already so
                    raise UnsupportedAccount(f"bybit {symbol}: leverage cannot be set to {value}: {error}") from None
            leverage[coin] = self.venue.leverage[coin]
        return leverage, {coin: self.venue.margin_mode.lower() for coin in self.venue.coins}

    def make_stream(self) -> PrivateStream:
        venue = self.venue
        url = venue.ws_url or (TESTNET_WS if venue.testnet else MAINNET_WS)
        stream: PrivateStream = _private().BybitPrivateStream(
            url, venue.credentials, coins=venue.by_symbol, category=self.category,
            ping_interval_s=venue.ping_interval_s, silence_timeout_s=venue.silence_timeout_s,
            wall_ms=lambda: venue.wall_ms() + venue.time_offset_ms)  # the login's expiry is on Bybit's clock
        return stream

    # --- orders -------------------------------------------------------------------------------

    def order_params(self, order: OrderRequest, rules: MarketRules) -> dict[str, Any]:
        params: dict[str, Any] = {
            "category": self.category, "symbol": self.venue.coins[order.coin],
            "side": "Buy" if order.side is Side.BUY else "Sell",
            "qty": decimal_text(order.quantity, rules.qty_step, "quantity"), "orderLinkId": order.client_order_id,
        }
        limit = order.order_type in (OrderType.LIMIT, OrderType.STOP_LIMIT)
        params["orderType"] = "Limit" if limit else "Market"
        if limit:
            assert order.limit_price is not None  # OrderRequest requires it for these types
            params["price"] = decimal_text(order.limit_price, rules.tick_size, "limit price")
            params["timeInForce"] = "PostOnly" if order.post_only else order.time_in_force.value
        elif order.order_type is OrderType.MARKET and self.category == "spot":
            params["marketUnit"] = "baseCoin"
        if order.order_type in (OrderType.STOP_MARKET, OrderType.STOP_LIMIT):
            assert order.stop_price is not None
            params["triggerPrice"] = decimal_text(order.stop_price, rules.tick_size, "stop price")
            params["triggerDirection"] = 1 if order.side is Side.BUY else 2
            if self.category == "spot":
                params["orderFilter"] = "StopOrder"
        if order.reduce_only and self.category != "spot":
            params["reduceOnly"] = True
        return params

    def submitted(self, answer: Any, order: OrderRequest) -> tuple[list[VenueEvent], Decimal, bool]:
        result = answer.get("result") if isinstance(answer, Mapping) else None
        venue_id = str((result or {}).get("orderId", ""))
        self.venue.remember_order_id(venue_id, order.client_order_id)
        accepted = OrderUpdate(client_order_id=order.client_order_id, venue_order_id=venue_id,
                               status=OrderStatus.ACCEPTED, ts_ms=int(answer.get("time") or self.venue.wall_ms()))
        return [accepted], Decimal(0), False

    def cancel(self, coin: str, client_order_id: str) -> Any:
        return self.venue.call("privatePostV5OrderCancel", {"category": self.category,
                                                            "symbol": self.venue.coins[coin],
                                                            "orderLinkId": client_order_id}, action="cancel")

    def canceled(self, answer: Any, coin: str) -> tuple[list[VenueEvent], Decimal, bool]:
        return [], Decimal(0), False  # the stream (or the polling) says CANCELED, or the fill that won

    def fetch_order(self, coin: str, client_order_id: str) -> VenueOrder | None:
        symbol = self.venue.coins[coin]
        query = {"category": self.category, "symbol": symbol, "orderLinkId": client_order_id}
        rows = _rows(self.venue.call("privateGetV5OrderRealtime", query))
        if not rows:
            rows = _rows(self.venue.call("privateGetV5OrderHistory", query))
        if not rows:
            return None
        order: VenueOrder = _private().parse_order_row(rows[0], self.venue.by_symbol)
        self.venue.remember_order_id(order.venue_order_id, order.client_order_id)
        return self._with_fills(order) if order.filled_quantity > 0 else order

    def _parse_fill(self, row: Mapping[str, Any]) -> Fill | None:
        fill: Fill | None = _private().parse_execution_row(row, self.venue.by_symbol, category=self.category)
        return fill

    def _with_fills(self, order: VenueOrder) -> VenueOrder:
        answer = self.venue.call("privateGetV5ExecutionList", {"category": self.category,
                                                               "symbol": self.venue.coins[order.coin],
                                                               "orderId": order.venue_order_id, "limit": PAGE})
        fills = tuple(fill for fill in (self._parse_fill(row) for row in _rows(answer))
                      if fill is not None and fill.venue_order_id == order.venue_order_id)
        return replace(order, fills=fills)

    def open_orders(self, coin: str) -> list[VenueOrder]:
        parse = _private().parse_order_row
        answer = self.venue.call("privateGetV5OrderRealtime", {"category": self.category,
                                                               "symbol": self.venue.coins[coin]})
        orders = [parse(row, self.venue.by_symbol) for row in _rows(answer)]
        orders = [order for order in orders if order.status not in FINAL_STATUSES]
        return [self._with_fills(order) if order.filled_quantity > 0 else order for order in orders]

    # --- account ------------------------------------------------------------------------------

    def balances(self) -> dict[str, Decimal]:
        answer = self.venue.call("privateGetV5AccountWalletBalance", {"accountType": "UNIFIED"})
        out: dict[str, Decimal] = {}
        for account in _rows(answer):
            for row in account.get("coin") or ():
                total = dec(row.get("walletBalance") or "0", "walletBalance")
                if total != 0:
                    out[str(row["coin"])] = total
        return out

    def positions(self, balances: Mapping[str, Decimal]) -> list[HeldPosition]:
        held: list[HeldPosition] = []
        if self.category == "spot":
            for coin in self.venue.coins:
                quantity = self.venue.markets(coin).round_qty_down(balances.get(coin, Decimal(0)))
                if quantity > 0:
                    held.append(HeldPosition(coin=coin, side=Side.BUY, quantity=quantity))
            return held
        for coin, symbol in self.venue.coins.items():
            answer = self.venue.call("privateGetV5PositionList", {"category": "linear", "symbol": symbol})
            for row in _rows(answer):
                size = dec(row.get("size") or "0", "size")
                if size == 0 or str(row.get("side")) not in ("Buy", "Sell"):
                    continue
                entry = dec(row.get("avgPrice") or "0", "avgPrice")
                held.append(HeldPosition(coin=coin, side=Side.BUY if row["side"] == "Buy" else Side.SELL,
                                         quantity=size, entry_price=entry if entry > 0 else None))
        return held

    def fills_since(self, coin: str, since_ms: int) -> list[Fill]:
        params: dict[str, Any] = {"category": self.category, "symbol": self.venue.coins[coin], "startTime": since_ms,
                                  "limit": PAGE}
        fills: list[Fill] = []
        while True:
            answer = self.venue.call("privateGetV5ExecutionList", params)
            fills.extend(fill for fill in (self._parse_fill(row) for row in _rows(answer)) if fill is not None)
            cursor = (answer.get("result") or {}).get("nextPageCursor") if isinstance(answer, Mapping) else None
            if not cursor or len(_rows(answer)) < PAGE:
                return fills
            params = {**params, "cursor": cursor}


__all__ = ["BybitDialect"]
