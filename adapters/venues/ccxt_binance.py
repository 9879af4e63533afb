"""The Binance dialect of ``CcxtVenue``: USD-M futures (``binanceusdm``, ``/fapi``) and spot
(``binance``, ``/api/v3``) through ccxt's implicit API; the user-data stream, its listen key and
the payload parsers are ``binance_user_data.py``. Loaded by ``ccxt_venue.make_dialect``.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from loguru import logger

from adapters.errors import AuthenticationFailed, InvalidOrder, OrderNotFound, TemporaryError, UnsupportedAccount
from adapters.venues.binance_user_data import (
    BinanceUserDataStream,
    ListenKeys,
    dec,
    parse_order_row,
    parse_spot_fills,
    parse_trade_row,
)
from adapters.venues.ccxt_errors import utc
from adapters.venues.ccxt_venue import (
    FILLS_LOOKBACK_MS,
    TRADES_PAGE,
    ZERO,
    CcxtVenue,
    Dialect,
    PrivateStream,
    decimal_text,
    order_events,
)
from state.account import HeldPosition
from state.market import MarketRules
from state.messages import OrderRequest
from state.order import FINAL_STATUSES, Fill, VenueEvent, VenueOrder
from state.types import OrderType, Side


class BinanceDialect(Dialect):
    """Binance USD-M (``/fapi``) and spot (``/api/v3``) through ccxt's implicit API."""

    def __init__(self, venue: CcxtVenue) -> None:
        super().__init__(venue)
        self.spot = venue.exchange_id == "binance"
        self.derivatives = not self.spot
        self.weight_limit = 6000 if self.spot else 2400
        p = "private" if self.spot else "fapiPrivate"
        self.create_method = f"{p}PostOrder"
        self._cancel_method = f"{p}DeleteOrder"
        self._order_method = f"{p}GetOrder"
        self._open_method = f"{p}GetOpenOrders"
        self._trades_method = "privateGetMyTrades" if self.spot else "fapiPrivateGetUserTrades"

    def ccxt_options(self, recv_window_ms: int) -> dict[str, Any]:
        # fetchMargins: spot market loading would also read the margin pairs (signed /sapi calls)
        return {"recvWindow": recv_window_ms, "adjustForTimeDifference": False, "fetchCurrencies": False,
                "fetchMargins": False}

    # --- start --------------------------------------------------------------------------------

    def prove_keys(self) -> dict[str, Decimal]:
        if self.spot:
            account = self.venue.call("privateGetAccount")
            if account.get("canTrade") is False:
                raise AuthenticationFailed("binance: the account cannot trade spot (canTrade is false): enable "
                                           "spot trading for this API key")
        return self.balances()

    def check_position_mode(self) -> str:
        if self.spot:
            return "spot"
        answer = self.venue.call("fapiPrivateGetPositionSideDual")
        dual = answer.get("dualSidePosition")
        if dual is True or str(dual).lower() == "true":
            raise UnsupportedAccount(
                "binanceusdm: the account is in hedge mode (dualSidePosition=true); the engine trades one-way mode "
                "only. Switch Position Mode to One-way (Binance futures: Preferences > Position Mode, or POST "
                "/fapi/v1/positionSide/dual dualSidePosition=false; no position or open order may exist), then "
                "start again")
        return "one-way"

    def set_leverage_and_margin(self) -> tuple[dict[str, int], dict[str, str]]:
        if self.spot:
            return {}, {}
        wanted = {"isolated": "ISOLATED", "cross": "CROSSED", "crossed": "CROSSED"}.get(
            self.venue.margin_mode.lower(), self.venue.margin_mode.upper())
        leverage: dict[str, int] = {}
        margin: dict[str, str] = {}
        for coin, symbol in self.venue.coins.items():
            try:
                self.venue.call("fapiPrivatePostMarginType", {"symbol": symbol, "marginType": wanted})
            except InvalidOrder as error:
                if "-4046" not in str(error):  # "No need to change margin type": already so
                    raise UnsupportedAccount(f"binanceusdm {symbol}: margin mode cannot be set to {wanted}: {error}") \
                        from None
            margin[coin] = self.venue.margin_mode.lower()
            answer = self.venue.call("fapiPrivatePostLeverage", {"symbol": symbol,
                                                                 "leverage": self.venue.leverage[coin]})
            leverage[coin] = int(answer.get("leverage", self.venue.leverage[coin]))
        return leverage, margin

    def make_stream(self) -> PrivateStream:

        venue = self.venue
        if self.spot:
            create, keep, delete = "publicPostUserDataStream", "publicPutUserDataStream", "publicDeleteUserDataStream"
        else:
            create, keep, delete = "fapiPrivatePostListenKey", "fapiPrivatePutListenKey", "fapiPrivateDeleteListenKey"

        def create_key() -> str:
            answer = venue.call(create)
            key = answer.get("listenKey") if isinstance(answer, Mapping) else None
            if not key:
                raise TemporaryError(f"{venue.exchange_id}: no listen key in the answer")
            return str(key)

        keys = ListenKeys(create=create_key,
                          keepalive=lambda key: venue.call(keep, {"listenKey": key}),
                          delete=lambda key: venue.call(delete, {"listenKey": key}))
        return BinanceUserDataStream(self.ws_base(), keys, coins=venue.by_symbol,
                                     keepalive_s=venue.listen_key_keepalive_s, ping_interval_s=venue.ping_interval_s,
                                     silence_timeout_s=venue.silence_timeout_s, name=f"{venue.exchange_id}-user-data")

    def ws_base(self) -> str:
        if self.venue.ws_url:
            return self.venue.ws_url
        if self.spot:
            return "wss://stream.testnet.binance.vision" if self.venue.testnet else "wss://stream.binance.com:9443"
        return "wss://fstream.binancefuture.com" if self.venue.testnet else "wss://fstream.binance.com"

    # --- orders -------------------------------------------------------------------------------

    def order_params(self, order: OrderRequest, rules: MarketRules) -> dict[str, Any]:
        params: dict[str, Any] = {
            "symbol": self.venue.coins[order.coin], "side": order.side.value,
            "quantity": decimal_text(order.quantity, rules.qty_step, "quantity"),
            "newClientOrderId": order.client_order_id,
            "newOrderRespType": "FULL" if self.spot else "RESULT",
        }
        price = decimal_text(order.limit_price, rules.tick_size, "limit price") if order.limit_price else None
        stop = decimal_text(order.stop_price, rules.tick_size, "stop price") if order.stop_price else None
        kind = order.order_type
        if kind is OrderType.MARKET:
            params["type"] = "MARKET"
        elif kind is OrderType.LIMIT:
            params["price"] = price
            if order.post_only:
                if self.spot:
                    params["type"] = "LIMIT_MAKER"
                else:
                    params.update(type="LIMIT", timeInForce="GTX")
            else:
                params.update(type="LIMIT", timeInForce=order.time_in_force.value)
        elif kind is OrderType.STOP_MARKET:
            params.update(type="STOP_LOSS" if self.spot else "STOP_MARKET", stopPrice=stop)
        else:
            params.update(type="STOP_LOSS_LIMIT" if self.spot else "STOP", price=price, stopPrice=stop,
                          timeInForce=order.time_in_force.value)
        if order.reduce_only and not self.spot:
            params["reduceOnly"] = "true"
        return params

    def _parse(self, row: Mapping[str, Any], fills: tuple[Fill, ...] = ()) -> VenueOrder:

        order = parse_order_row(row, self.venue.by_symbol, fills)
        self.venue.remember_order_id(order.venue_order_id, order.client_order_id)
        return order

    def submitted(self, answer: Any, order: OrderRequest) -> tuple[list[VenueEvent], Decimal, bool]:

        fills = parse_spot_fills(answer, self.venue.by_symbol) if self.spot else ()
        parsed = self._parse(answer, fills)
        return order_events(parsed), parsed.filled_quantity, parsed.status in FINAL_STATUSES

    def cancel(self, coin: str, client_order_id: str) -> Any:
        return self.venue.call(self._cancel_method, {"symbol": self.venue.coins[coin],
                                                     "origClientOrderId": client_order_id}, action="cancel")

    def canceled(self, answer: Any, coin: str) -> tuple[list[VenueEvent], Decimal, bool]:
        parsed = self._parse(answer)
        events = [event for event in order_events(parsed) if not isinstance(event, Fill)]
        return events, parsed.filled_quantity, parsed.status in FINAL_STATUSES

    def fetch_order(self, coin: str, client_order_id: str) -> VenueOrder | None:
        symbol = self.venue.coins[coin]
        try:
            row = self.venue.call(self._order_method, {"symbol": symbol, "origClientOrderId": client_order_id})
        except OrderNotFound:
            return None  # -2013: the venue never had it
        parsed = self._parse(row)
        if parsed.filled_quantity <= 0:
            return parsed
        return self._with_fills(parsed)

    def _with_fills(self, order: VenueOrder) -> VenueOrder:
        from dataclasses import replace  # noqa: PLC0415

        rows = self.venue.call(self._trades_method, {"symbol": self.venue.coins[order.coin],
                                                     "orderId": order.venue_order_id})
        fills = tuple(parse_trade_row(row, self.venue.by_symbol, order.client_order_id) for row in rows or ()
                      if str(row.get("orderId")) == order.venue_order_id)
        return replace(order, fills=fills)

    def open_orders(self, coin: str) -> list[VenueOrder]:
        rows = self.venue.call(self._open_method, {"symbol": self.venue.coins[coin]})
        orders = [self._parse(row) for row in rows or ()]
        return [self._with_fills(order) if order.filled_quantity > 0 else order for order in orders]

    # --- account ------------------------------------------------------------------------------

    def balances(self) -> dict[str, Decimal]:

        if self.spot:
            rows = self.venue.call("privateGetAccount").get("balances") or ()
            totals = {str(r["asset"]): dec(r.get("free", "0"), "free") + dec(r.get("locked", "0"), "locked")
                      for r in rows}
            return {asset: total for asset, total in totals.items() if total != 0}
        rows = self.venue.call("fapiPrivateV2GetBalance") or ()
        return {str(r["asset"]): dec(r.get("balance", "0"), "balance") for r in rows
                if dec(r.get("balance", "0"), "balance") != 0}

    def positions(self, balances: Mapping[str, Decimal]) -> list[HeldPosition]:

        held: list[HeldPosition] = []
        if self.spot:
            for coin in self.venue.coins:
                quantity = self.venue.markets(coin).round_qty_down(balances.get(coin, ZERO))
                if quantity > 0:
                    held.append(HeldPosition(coin=coin, side=Side.BUY, quantity=quantity))
            return held
        for row in self.venue.call("fapiPrivateV2GetPositionRisk") or ():
            coin = self.venue.by_symbol.get(str(row.get("symbol")))
            if coin is None or str(row.get("positionSide", "BOTH")) != "BOTH":
                continue
            amount = dec(row.get("positionAmt", "0"), "positionAmt")
            if amount == 0:
                continue
            entry = dec(row.get("entryPrice", "0"), "entryPrice")
            held.append(HeldPosition(coin=coin, side=Side.BUY if amount > 0 else Side.SELL, quantity=abs(amount),
                                     entry_price=entry if entry > 0 else None))
        return held

    def fills_since(self, coin: str, since_ms: int) -> list[Fill]:
        """The account's trades on ``coin`` from ``since_ms`` to now: time windows as long as
        Binance allows (USD-M 7 days, spot 24 h), and past a full page by trade id (``fromId``),
        which runs to the latest trade. Binance keeps USD-M trades for 6 months: an older start
        is moved to ``FILLS_LOOKBACK_MS`` ago, and said (``VENUE_FILLS_TRUNCATED``)."""

        symbol = self.venue.coins[coin]
        window = (24 if self.spot else 7 * 24) * 3_600_000 - 1
        fills: list[Fill] = []
        now = self.venue.wall_ms()
        start = max(since_ms, now - FILLS_LOOKBACK_MS)
        if start > since_ms:
            logger.bind(actor="executor").warning(
                "VENUE_FILLS_TRUNCATED: {} {}: trades asked from {}, read from {} (the venue keeps {} days)",
                self.venue.exchange_id, coin, utc(since_ms), utc(start), FILLS_LOOKBACK_MS // 86_400_000)
        params: dict[str, Any] = {"symbol": symbol, "startTime": start, "endTime": min(start + window, now),
                                  "limit": TRADES_PAGE}
        while True:
            rows = self.venue.call(self._trades_method, params) or []
            for row in rows:
                order_id = str(row.get("orderId"))
                client = self.venue.client_id_of(order_id) or self._client_id(symbol, order_id)
                fills.append(parse_trade_row(row, self.venue.by_symbol, client))
            if len(rows) >= TRADES_PAGE:  # a full page: on by trade id, to the latest
                params = {"symbol": symbol, "fromId": int(rows[-1]["id"]) + 1, "limit": TRADES_PAGE}
                continue
            if "fromId" in params or params["endTime"] >= now:
                return fills
            start = params["endTime"] + 1
            params = {"symbol": symbol, "startTime": start, "endTime": min(start + window, now), "limit": TRADES_PAGE}

    def _client_id(self, symbol: str, order_id: str) -> str:
        row = self.venue.call(self._order_method, {"symbol": symbol, "orderId": order_id})
        client = str(row.get("clientOrderId", ""))
        self.venue.remember_order_id(order_id, client)
        return client


__all__ = ["BinanceDialect"]
