"""A minimal Binance USD-M ``/fapi/v1/exchangeInfo`` (BTCUSDT only, the real payload's shape and
filters, trimmed), for tests that start a live session against a local HTTP server without the
shared data: ccxt's ``load_markets`` reads it and the engine takes its market rules from it."""

from __future__ import annotations

from typing import Any


def usdm_exchange_info() -> dict[str, Any]:
    return {
        "timezone": "UTC", "serverTime": 1626858243909, "futuresType": "U_MARGINED", "rateLimits": [],
        "exchangeFilters": [], "assets": [{"asset": "USDT", "marginAvailable": True, "autoAssetExchange": "-10000"}],
        "symbols": [{
            "symbol": "BTCUSDT", "pair": "BTCUSDT", "contractType": "PERPETUAL", "deliveryDate": 4133404800000,
            "onboardDate": 1569398400000, "status": "TRADING", "baseAsset": "BTC", "quoteAsset": "USDT",
            "marginAsset": "USDT", "pricePrecision": 2, "quantityPrecision": 3, "baseAssetPrecision": 8,
            "quotePrecision": 8, "underlyingType": "COIN", "underlyingSubType": [],
            "filters": [
                {"filterType": "PRICE_FILTER", "minPrice": "556.72", "maxPrice": "1000000", "tickSize": "0.01"},
                {"filterType": "LOT_SIZE", "stepSize": "0.001", "maxQty": "1000", "minQty": "0.001"},
                {"filterType": "MARKET_LOT_SIZE", "stepSize": "0.001", "maxQty": "1000", "minQty": "0.001"},
                {"filterType": "MIN_NOTIONAL", "notional": "5"},
            ],
            "orderTypes": ["LIMIT", "MARKET", "STOP_MARKET"], "timeInForce": ["GTC", "IOC", "FOK", "GTX"],
        }],
    }
