"""The symbols the local exchange lists: a Binance USD-M ``exchangeInfo`` document and the
filters read from it.

Two sources, chosen by the caller (``LocalBinance(exchange_info=...)``):

- ``builtin_exchange_info()``: a small document built here in the shape of the real
  ``GET /fapi/v1/exchangeInfo`` (same keys, filter types and string numbers) listing
  BTCUSDT, ETHUSDT and SOLUSDT perpetuals with the filters Binance had for them in July 2021
  (tick 0.01 / step 0.001 / notional 5 for BTC and ETH; tick 0.001 / step 1 / notional 5 for
  SOL). It is the default, so the server works without the shared data folder.
- ``load_exchange_info(path)``: a real answer saved as JSON (``.gz`` or plain), e.g.
  ``SHARED_EXCHANGE_INFO`` (122 symbols, 2021-07-22); tests that use it take the ``shared_data``
  fixture and skip when the folder is absent.

``SymbolRules.from_info`` reads one symbol's filters as ``Decimal`` from the strings.
"""

from __future__ import annotations

import copy
import gzip
import json
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

SHARED_EXCHANGE_INFO = Path("payloads/binance-live-rest/binance-usdm_fapi_v1_exchangeInfo_2021-07-22.json.gz")
"""Relative to the shared data folder (``tests/conftest.py`` ``SHARED_DATA``)."""

_RATE_LIMITS = [
    {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 2400},
    {"rateLimitType": "ORDERS", "interval": "MINUTE", "intervalNum": 1, "limit": 1200},
    {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 300},
]

# symbol, base, pricePrecision, quantityPrecision, minPrice, maxPrice, tickSize, stepSize, minQty,
# maxQty, market maxQty, notional
_BUILTIN = (
    ("BTCUSDT", "BTC", 2, 3, "556.72", "1000000", "0.01", "0.001", "0.001", "1000", "1000", "5"),
    ("ETHUSDT", "ETH", 2, 3, "39.86", "100000", "0.01", "0.001", "0.001", "10000", "10000", "5"),
    ("SOLUSDT", "SOL", 4, 0, "0.4130", "400", "0.0010", "1", "1", "10000000", "20000", "5"),
)


def _symbol(spec: tuple[Any, ...]) -> dict[str, Any]:
    (symbol, base, price_precision, qty_precision, min_price, max_price, tick, step, min_qty, max_qty,
     market_max_qty, notional) = spec
    return {
        "symbol": symbol, "pair": symbol, "contractType": "PERPETUAL", "deliveryDate": 4133404800000,
        "onboardDate": 1569398400000, "status": "TRADING", "maintMarginPercent": "2.5000",
        "requiredMarginPercent": "5.0000", "baseAsset": base, "quoteAsset": "USDT", "marginAsset": "USDT",
        "pricePrecision": price_precision, "quantityPrecision": qty_precision, "baseAssetPrecision": 8,
        "quotePrecision": 8, "underlyingType": "COIN", "underlyingSubType": [], "settlePlan": 0,
        "triggerProtect": "0.0500", "liquidationFee": "0.012000", "marketTakeBound": "0.30",
        "filters": [
            {"minPrice": min_price, "maxPrice": max_price, "filterType": "PRICE_FILTER", "tickSize": tick},
            {"stepSize": step, "filterType": "LOT_SIZE", "maxQty": max_qty, "minQty": min_qty},
            {"stepSize": step, "filterType": "MARKET_LOT_SIZE", "maxQty": market_max_qty, "minQty": min_qty},
            {"limit": 200, "filterType": "MAX_NUM_ORDERS"},
            {"limit": 10, "filterType": "MAX_NUM_ALGO_ORDERS"},
            {"notional": notional, "filterType": "MIN_NOTIONAL"},
            {"multiplierDown": "0.8500", "multiplierUp": "1.1500", "multiplierDecimal": "4",
             "filterType": "PERCENT_PRICE"},
        ],
        "orderTypes": ["LIMIT", "MARKET", "STOP", "STOP_MARKET", "TAKE_PROFIT", "TAKE_PROFIT_MARKET",
                       "TRAILING_STOP_MARKET"],
        "timeInForce": ["GTC", "IOC", "FOK", "GTX"],
    }


def builtin_exchange_info() -> dict[str, Any]:
    """A fresh copy of the built-in document (BTCUSDT, ETHUSDT, SOLUSDT)."""
    return {
        "timezone": "UTC", "serverTime": 0, "futuresType": "U_MARGINED", "rateLimits": copy.deepcopy(_RATE_LIMITS),
        "exchangeFilters": [],
        "assets": [{"asset": "USDT", "marginAvailable": True, "autoAssetExchange": "-10000"}],
        "symbols": [_symbol(spec) for spec in _BUILTIN],
    }


def load_exchange_info(path: Path | str) -> dict[str, Any]:
    """A saved ``exchangeInfo`` answer (gzip recognized by its magic bytes)."""
    data = Path(path).read_bytes()
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    info = json.loads(data)
    if not isinstance(info, dict) or not isinstance(info.get("symbols"), list):
        raise ValueError(f"{path}: not an exchangeInfo document (no 'symbols' list)")
    return info


def places(step: Decimal) -> int:
    """Decimal places of a tick or step (``0.010`` -> 2, ``1`` -> 0)."""
    exponent = step.normalize().as_tuple().exponent
    return max(0, -int(exponent))


@dataclass(frozen=True, slots=True, kw_only=True)
class SymbolRules:
    """The filters of one symbol, as numbers."""

    symbol: str
    base: str
    quote: str
    status: str
    price_precision: int
    quantity_precision: int
    min_price: Decimal
    max_price: Decimal
    tick_size: Decimal
    step_size: Decimal
    min_qty: Decimal
    max_qty: Decimal
    market_step_size: Decimal
    market_min_qty: Decimal
    market_max_qty: Decimal
    min_notional: Decimal

    @property
    def price_places(self) -> int:
        return places(self.tick_size)

    @property
    def qty_places(self) -> int:
        return places(self.step_size)

    @classmethod
    def from_info(cls, entry: Mapping[str, Any]) -> SymbolRules:
        filters = {f["filterType"]: f for f in entry.get("filters", [])}
        price = filters.get("PRICE_FILTER", {})
        lot = filters.get("LOT_SIZE", {})
        market_lot = filters.get("MARKET_LOT_SIZE", lot)
        notional = filters.get("MIN_NOTIONAL", {})
        return cls(
            symbol=entry["symbol"], base=entry.get("baseAsset", ""), quote=entry.get("quoteAsset", "USDT"),
            status=entry.get("status", "TRADING"),
            price_precision=int(entry.get("pricePrecision", 8)),
            quantity_precision=int(entry.get("quantityPrecision", 8)),
            min_price=Decimal(price.get("minPrice", "0")), max_price=Decimal(price.get("maxPrice", "0")),
            tick_size=Decimal(price.get("tickSize", "0")),
            step_size=Decimal(lot.get("stepSize", "0")), min_qty=Decimal(lot.get("minQty", "0")),
            max_qty=Decimal(lot.get("maxQty", "0")),
            market_step_size=Decimal(market_lot.get("stepSize", "0")),
            market_min_qty=Decimal(market_lot.get("minQty", "0")),
            market_max_qty=Decimal(market_lot.get("maxQty", "0")),
            min_notional=Decimal(notional.get("notional", notional.get("minNotional", "0"))),
        )


def symbol_rules(info: Mapping[str, Any]) -> dict[str, SymbolRules]:
    """Every symbol of an ``exchangeInfo`` document -> its rules."""
    return {entry["symbol"]: SymbolRules.from_info(entry) for entry in info["symbols"]}
