"""JSON shapes of Binance USD-M answers and user-data events, built from the local exchange's
records. Numbers go out as strings, as Binance sends them: prices with the symbol's tick
places, quantities with its step places, money with 8 places; ids and times as integers.

The shapes follow the real payloads in ``shared/data/payloads/binance/futures/`` (order
response, positionRisk, account, balance, ORDER_TRADE_UPDATE, ACCOUNT_UPDATE) and the live
order lifecycles in ``payloads/binance-lean-brokerage/WebSocketFuture*.json``.
"""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tests.support.local_binance.matching import AlgoOrder, Order, Position, UserTrade
    from tests.support.local_binance.exchange_info import SymbolRules

ZERO = Decimal(0)
MONEY_PLACES = 8


def fmt(value: Decimal, places: int) -> str:
    """``value`` with exactly ``places`` decimals, never in exponent notation."""
    quantum = Decimal(1).scaleb(-places)
    return format(value.quantize(quantum), "f")


def plain(value: Decimal) -> str:
    """``value`` without trailing zeros or exponent (``12.50`` -> ``12.5``, ``0E-8`` -> ``0``)."""
    text = format(value.normalize(), "f")
    return "0" if text in ("-0", "0") else text


def money(value: Decimal) -> str:
    return fmt(value, MONEY_PLACES)


def order_json(order: Order, rules: SymbolRules, *, response: bool = False) -> dict[str, Any]:
    """``GET /fapi/v1/order`` (and open orders) or, with ``response``, the ``POST``/``DELETE``
    answer (which has ``cumQty`` and no ``time``)."""
    p, q = rules.price_places, rules.qty_places
    body: dict[str, Any] = {
        "orderId": order.order_id,
        "symbol": order.symbol,
        "status": order.status,
        "clientOrderId": order.client_order_id,
        "price": fmt(order.price, p),
        "avgPrice": fmt(order.avg_price, max(p, 5)),
        "origQty": fmt(order.quantity, q),
        "executedQty": fmt(order.executed_qty, q),
        "cumQuote": fmt(order.cum_quote, MONEY_PLACES),
        "timeInForce": order.time_in_force,
        "type": order.type,
        "reduceOnly": order.reduce_only,
        "closePosition": order.close_position,
        "side": order.side,
        "positionSide": order.position_side,
        "stopPrice": fmt(order.stop_price, p),
        "workingType": "CONTRACT_PRICE",
        "priceProtect": False,
        "origType": order.type,
        "priceMatch": "NONE",
        "selfTradePreventionMode": "EXPIRE_MAKER",
        "goodTillDate": 0,
        "updateTime": order.update_ms,
    }
    if response:
        body["cumQty"] = fmt(order.executed_qty, q)
    else:
        body["time"] = order.time_ms
    return body


def user_trade_json(trade: UserTrade, rules: SymbolRules) -> dict[str, Any]:
    """One row of ``GET /fapi/v1/userTrades``."""
    return {
        "symbol": trade.symbol,
        "id": trade.trade_id,
        "orderId": trade.order_id,
        "side": trade.side,
        "price": fmt(trade.price, rules.price_places),
        "qty": fmt(trade.quantity, rules.qty_places),
        "realizedPnl": money(trade.realized_pnl),
        "quoteQty": fmt(trade.price * trade.quantity, MONEY_PLACES),
        "commission": money(trade.commission),
        "commissionAsset": trade.commission_asset,
        "time": trade.time_ms,
        "positionSide": trade.position_side,
        "buyer": trade.side == "BUY",
        "maker": trade.maker,
    }


def order_update_event(order: Order, rules: SymbolRules, execution: str, event_ms: int,
                       trade: UserTrade | None = None) -> dict[str, Any]:
    """``ORDER_TRADE_UPDATE`` for one execution (``NEW``, ``TRADE``, ``CANCELED``, ``EXPIRED``,
    ``AMENDMENT``), with the fill's ``t/l/L/n/N/m/rp`` when ``trade`` is given."""
    p, q = rules.price_places, rules.qty_places
    return {
        "e": "ORDER_TRADE_UPDATE",
        "T": event_ms,
        "E": event_ms,
        "o": {
            "s": order.symbol,
            "c": order.client_order_id,
            "S": order.side,
            "o": order.type,
            "f": order.time_in_force,
            "q": fmt(order.quantity, q),
            "p": fmt(order.price, p),
            "ap": fmt(order.avg_price, max(p, 5)),
            "sp": fmt(order.stop_price, p),
            "x": execution,
            "X": order.status,
            "i": order.order_id,
            "l": fmt(trade.quantity, q) if trade else "0",
            "z": fmt(order.executed_qty, q),
            "L": fmt(trade.price, p) if trade else "0",
            "n": plain(trade.commission) if trade else "0",
            "N": trade.commission_asset if trade else "USDT",
            "T": trade.time_ms if trade else event_ms,
            "t": trade.trade_id if trade else 0,
            "b": "0",
            "a": "0",
            "m": trade.maker if trade else False,
            "R": order.reduce_only,
            "wt": "CONTRACT_PRICE",
            "ot": order.type,
            "ps": order.position_side,
            "cp": order.close_position,
            "rp": plain(trade.realized_pnl) if trade else "0",
            "pP": False,
            "si": order.algo_id,
            "ss": -1 if order.algo_id else 0,
            **({"st": "ALGO_CONDITION"} if order.algo_id else {}),
            "V": "EXPIRE_MAKER",
            "pm": "NONE",
            "gtd": 0,
            "er": "0",
        },
    }


def algo_json(algo: AlgoOrder, rules: SymbolRules) -> dict[str, Any]:
    """A conditional order as ``POST``/``GET /fapi/v1/algoOrder`` and ``openAlgoOrders`` show it."""
    p, q = rules.price_places, rules.qty_places
    return {
        "algoId": algo.algo_id,
        "clientAlgoId": algo.client_algo_id,
        "algoType": "CONDITIONAL",
        "orderType": algo.type,
        "symbol": algo.symbol,
        "side": algo.side,
        "positionSide": algo.position_side,
        "timeInForce": algo.time_in_force,
        "quantity": fmt(algo.quantity, q),
        "algoStatus": algo.status,
        "triggerPrice": fmt(algo.trigger_price, p),
        "price": fmt(algo.price, p),
        "icebergQuantity": None,
        "selfTradePreventionMode": "EXPIRE_MAKER",
        "workingType": "CONTRACT_PRICE",
        "priceMatch": "NONE",
        "closePosition": False,
        "priceProtect": False,
        "reduceOnly": algo.reduce_only,
        "createTime": algo.create_ms,
        "updateTime": algo.update_ms,
        "triggerTime": algo.trigger_ms,
        "goodTillDate": 0,
    }


def algo_update_event(algo: AlgoOrder, rules: SymbolRules, event_ms: int, *, child: Order | None = None,
                      reason: str | None = None) -> dict[str, Any]:
    """``ALGO_UPDATE`` (``X``: NEW, CANCELED, TRIGGERING, TRIGGERED, FINISHED, REJECTED), as in
    ``payloads/binance-lean-brokerage/WebSocketFutureStopMarket*.json``."""
    p, q = rules.price_places, rules.qty_places
    body: dict[str, Any] = {
        "caid": algo.client_algo_id, "aid": algo.algo_id, "at": "CONDITIONAL", "o": algo.type, "s": algo.symbol,
        "S": algo.side, "ps": algo.position_side, "f": algo.time_in_force, "q": fmt(algo.quantity, q),
        "X": algo.status, "ai": "" if child is None else str(child.order_id),
    }
    if child is not None:
        body.update({"ap": plain(child.avg_price), "aq": plain(child.executed_qty), "act": child.type})
    body.update({"tp": fmt(algo.trigger_price, p), "p": fmt(algo.price, p), "V": "EXPIRE_MAKER",
                 "wt": "CONTRACT_PRICE", "pm": "NONE", "cp": False, "pP": False, "R": algo.reduce_only,
                 "tt": algo.trigger_ms, "gtd": 0})
    if reason:
        body["rm"] = reason
    return {"e": "ALGO_UPDATE", "T": event_ms, "E": event_ms, "o": body}


def position_entry(position: Position, rules: SymbolRules, margin_type: str) -> dict[str, Any]:
    """One ``P`` entry of ``ACCOUNT_UPDATE``."""
    return {
        "s": position.symbol,
        "pa": fmt(position.amount, rules.qty_places),
        "ep": fmt(position.entry_price, max(rules.price_places, 5)),
        "bep": fmt(position.entry_price, max(rules.price_places, 5)),
        "cr": money(position.realized_pnl),
        "up": money(ZERO),
        "mt": "isolated" if margin_type == "ISOLATED" else "cross",
        "iw": money(ZERO),
        "ps": position.side,
    }


def account_update_event(reason: str, event_ms: int, balances: list[tuple[str, Decimal, Decimal]],
                         positions: list[dict[str, Any]]) -> dict[str, Any]:
    """``ACCOUNT_UPDATE`` (``reason`` ``ORDER``, ``DEPOSIT``, ...); ``balances`` are
    ``(asset, wallet balance, balance change)``."""
    return {
        "e": "ACCOUNT_UPDATE",
        "T": event_ms,
        "E": event_ms,
        "a": {
            "m": reason,
            "B": [{"a": asset, "wb": money(wallet), "cw": money(wallet), "bc": money(change)}
                  for asset, wallet, change in balances],
            "P": positions,
        },
    }
