"""Market rules from the venue: parsed from the real Binance exchangeInfo and Bybit instruments
payloads in ``../shared/data``, loaded through the real ccxt client from a local HTTP server."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from adapters.venues.exchange_rules import MarketRulesUnavailable, UnknownMarkets, load_market_rules, rules_from_market
from adapters.net.rate_limit import TokenBucket
from adapters.feeds.rest_fallback import CcxtTickerFetcher, rebase_api_urls
from state.market import MarketRules
from tests.support.http_server import LocalHttpServer

D = Decimal
USDM_INFO = "payloads/binance-live-rest/binance-usdm_fapi_v1_exchangeInfo_2021-07-22.json.gz"
SPOT_INFO = "payloads/binance-live-rest/binance-spot_api_v3_exchangeInfo_2021-10-12.json.gz"
BYBIT_LINEAR = "payloads/bybit/http_get_instruments_linear.json"
BYBIT_SPOT = "payloads/bybit/http_get_instruments_spot.json"


def rules(coin: str, tick: str, step: str, min_qty: str, min_notional: str) -> MarketRules:
    return MarketRules(coin=coin, tick_size=D(tick), qty_step=D(step), min_qty=D(min_qty),
                       min_notional=D(min_notional))


def binance_symbol(shared_data: Path, file: str, symbol: str) -> dict[str, Any]:
    with gzip.open(shared_data / file, "rt") as handle:
        return next(s for s in json.load(handle)["symbols"] if s["symbol"] == symbol)


def bybit_instrument(shared_data: Path, file: str, symbol: str) -> dict[str, Any]:
    payload = json.loads((shared_data / file).read_text())
    return next(i for i in payload["result"]["list"] if i["symbol"] == symbol)


# --- parsing the venue's own numbers ---------------------------------------------------------------

def test_binance_usdm_rules_come_from_its_price_lot_and_notional_filters(shared_data: Path) -> None:
    info = binance_symbol(shared_data, USDM_INFO, "BTCUSDT")
    assert rules_from_market("binanceusdm", "BTC", {"info": info}) == rules("BTC", "0.01", "0.001", "0.001", "5")


def test_binance_spot_uses_lot_size_when_the_market_lot_step_is_zero(shared_data: Path) -> None:
    info = binance_symbol(shared_data, SPOT_INFO, "ETHUSDT")  # MARKET_LOT_SIZE stepSize "0.00000000"
    assert rules_from_market("binance", "ETH", {"info": info}) == rules("ETH", "0.01", "0.0001", "0.0001", "10")


def test_bybit_linear_rules_come_from_its_price_and_lot_size_filters(shared_data: Path) -> None:
    info = bybit_instrument(shared_data, BYBIT_LINEAR, "BTCUSDT")
    assert rules_from_market("bybit", "BTC", {"info": info}) == rules("BTC", "0.5", "0.001", "0.001", "5")


def test_bybit_spot_steps_by_base_precision_with_its_own_minimum_quantity(shared_data: Path) -> None:
    info = bybit_instrument(shared_data, BYBIT_SPOT, "BTCUSDT")
    assert rules_from_market("bybit", "BTC", {"info": info}) == rules("BTC", "0.1", "0.0001", "0.001", "10")


def test_another_venue_falls_back_to_ccxt_unified_precision_and_limits() -> None:
    market = {"symbol": "SOL/USDT", "precision": {"price": 0.001, "amount": 0.01},
              "limits": {"amount": {"min": 0.01}, "cost": {"min": 1.0}}, "info": {}}
    assert rules_from_market("okx", "SOL", market) == rules("SOL", "0.001", "0.01", "0.01", "1")


def test_a_missing_or_unusable_number_is_an_error_naming_the_venue_symbol_and_field(shared_data: Path) -> None:
    info = binance_symbol(shared_data, USDM_INFO, "BTCUSDT")
    info["filters"] = [f for f in info["filters"] if f["filterType"] != "PRICE_FILTER"]
    with pytest.raises(ValueError, match=r"binanceusdm BTC/USDT:USDT: PRICE_FILTER.tickSize: not a number: None"):
        rules_from_market("binanceusdm", "BTC", {"symbol": "BTC/USDT:USDT", "info": info})
    bad = {"info": {"priceFilter": {"tickSize": "-1"}, "lotSizeFilter": {"qtyStep": "0.001"}}}
    with pytest.raises(ValueError, match=r"priceFilter.tickSize: not a usable number: '-1'"):
        rules_from_market("bybit", "BTC", bad)


# --- loading them through ccxt ---------------------------------------------------------------------

@pytest.fixture
def rest() -> Iterator[LocalHttpServer]:
    server = LocalHttpServer().start()
    try:
        yield server
    finally:
        server.stop()


def client(server: LocalHttpServer, exchange_id: str, symbols: dict[str, str]) -> CcxtTickerFetcher:
    return CcxtTickerFetcher(exchange_id, symbols, TokenBucket(20, 50), timeout_s=5,
                             api_urls=rebase_api_urls(exchange_id, server.url))


def test_loads_every_coins_rules_from_the_usdm_exchange_info_in_one_rate_limited_request(
        shared_data: Path, rest: LocalHttpServer) -> None:
    with gzip.open(shared_data / USDM_INFO, "rt") as handle:
        rest.route("/fapi/v1/exchangeInfo", handle.read())
    fetcher = client(rest, "binanceusdm", {"BTC": "BTC/USDT:USDT", "ETH": "ETH/USDT:USDT"})

    loaded = load_market_rules(fetcher)

    assert loaded == {"BTC": rules("BTC", "0.01", "0.001", "0.001", "5"),
                      "ETH": rules("ETH", "0.01", "0.001", "0.001", "5")}
    assert rest.count() == fetcher.limiter.stats()["requests"] == 1
    assert rest.unrouted == []


def test_loads_bybit_linear_rules_from_its_instruments(shared_data: Path, rest: LocalHttpServer) -> None:
    rest.route("/v5/market/instruments-info", (shared_data / BYBIT_LINEAR).read_text())
    loaded = load_market_rules(client(rest, "bybit", {"ETH": "ETH/USDT:USDT"}))
    assert loaded == {"ETH": rules("ETH", "0.05", "0.01", "0.01", "5")}


def test_a_coin_the_venue_does_not_list_is_named_with_its_symbol(shared_data: Path, rest: LocalHttpServer) -> None:
    with gzip.open(shared_data / USDM_INFO, "rt") as handle:
        rest.route("/fapi/v1/exchangeInfo", handle.read())
    with pytest.raises(UnknownMarkets, match=r"not a market on binanceusdm: NOPE \(NOPE/USDT:USDT\)") as caught:
        load_market_rules(client(rest, "binanceusdm", {"BTC": "BTC/USDT:USDT", "NOPE": "NOPE/USDT:USDT"}))
    assert caught.value.missing == {"NOPE": "NOPE/USDT:USDT"}


@pytest.mark.parametrize("mode", [500, 429, "drop"])
def test_a_venue_that_cannot_be_read_is_unavailable_not_a_crash(rest: LocalHttpServer, mode: Any) -> None:
    rest.route("/fapi/v1/exchangeInfo", "{}")
    rest.fail("/fapi/v1/exchangeInfo", mode)
    with pytest.raises(MarketRulesUnavailable, match=r"binanceusdm: markets not loaded: \w+"):
        load_market_rules(client(rest, "binanceusdm", {"BTC": "BTC/USDT:USDT"}))
