"""Builds the ``binance`` and ``bybit`` market sources from ``[feed]``: the parser of the
exchange, its websocket connection and its REST fallback, wired into one ``LiveSource``.

Coins map to exchange symbols by ``[feed] symbol_map`` (``BTC`` -> ``BTCUSDT`` by default);
the endpoints default to the exchanges' public ones and are configurable (``url``,
``rest_url``) so tests point them at local servers. No API key is needed or read.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from adapters.net.backoff import Backoff
from adapters.feeds.binance_frames import BinanceFrameParser, combined_url
from adapters.feeds.bybit_frames import BybitFrameParser, ping_message
from adapters.venues.exchange_rules import load_market_rules
from adapters.feeds.frame_log import default_symbols
from adapters.feeds.live_source import LiveSource
from adapters.net.rate_limit import TokenBucket
from adapters.feeds.rest_fallback import CcxtTickerFetcher, RestPoller, rebase_api_urls
from adapters.net.ws_connection import WsConnection
from state.config import FeedConfig
from state.market import MarketRules

CCXT_IDS = {("binance", "usdm"): "binanceusdm", ("binance", "spot"): "binance",
            ("bybit", "linear"): "bybit", ("bybit", "spot"): "bybit"}


def ccxt_symbol(coin: str, symbol: str, market: str) -> str:
    """``BTCUSDT`` of a USDT market as ccxt names it: ``BTC/USDT`` (spot) or ``BTC/USDT:USDT``."""
    quote = symbol[len(coin):] if symbol.startswith(coin) and len(symbol) > len(coin) else "USDT"
    return f"{coin}/{quote}" if market == "spot" else f"{coin}/{quote}:{quote}"


def exchange_symbols(feed: FeedConfig) -> dict[str, str]:
    """Coin -> exchange symbol: ``[feed] symbol_map`` over the default ``COIN + USDT``."""
    return {**default_symbols(feed.symbols), **{c: s for c, s in feed.symbol_map.items() if c in feed.symbols}}


def ccxt_client(feed: FeedConfig, limiter: TokenBucket) -> CcxtTickerFetcher:
    """The public, rate-limited ccxt client of the feed's venue (REST fallback, market rules),
    pointed at ``[feed] rest_url`` when set."""
    market = feed.market_kind()
    exchange_id = CCXT_IDS[(feed.source, market)]
    symbols = {coin: ccxt_symbol(coin, symbol, market) for coin, symbol in exchange_symbols(feed).items()}
    return CcxtTickerFetcher(
        exchange_id, symbols, limiter,
        api_urls=rebase_api_urls(exchange_id, feed.rest_url) if feed.rest_url else None,
    )


def exchange_market_rules(feed: FeedConfig, limiter: TokenBucket) -> dict[str, MarketRules]:
    """Every configured coin's rules from the venue (one ``load_markets``). Raises
    ``UnknownMarkets`` for a coin the venue does not list, ``MarketRulesUnavailable`` when the
    venue cannot be read."""
    client = ccxt_client(feed, limiter)
    try:
        return load_market_rules(client)
    finally:
        client.close()


def live_source(feed: FeedConfig, limiter: TokenBucket) -> LiveSource:
    market = feed.market_kind()
    symbols = exchange_symbols(feed)
    name = feed.source

    def backoff() -> Backoff:
        return Backoff(first_s=feed.reconnect_first_s, cap_s=feed.reconnect_max_s)

    parser: Any
    if name == "binance":
        parser = BinanceFrameParser(symbols, market=market)
        url = combined_url(feed.url or parser.default_url, parser.stream_names(trades=feed.trades))
        subscribe: Callable[[], list[str]] = list
        ping_payload: Callable[[], str | None] | None = None
    else:
        parser = BybitFrameParser(symbols, category=market)
        url = feed.url or parser.default_url

        def subscribe() -> list[str]:
            parser.reset()  # a new connection starts with no known bid/ask
            return parser.subscribe_messages()

        ping_payload = ping_message

    def make_connection(on_text: Callable[[str, int], None],
                        on_state: Callable[[str, dict[str, Any]], None]) -> WsConnection:
        return WsConnection(
            name, url, on_text=on_text, subscribe=subscribe, on_state=on_state, backoff=backoff(),
            ping_interval_s=feed.ping_interval_s, ping_payload=ping_payload,
            silence_timeout_s=feed.silence_timeout_s, max_lifetime_s=feed.max_connection_age_s,
        )

    def make_poller(sink: Callable[..., None]) -> RestPoller:
        return RestPoller(name, ccxt_client(feed, limiter), tuple(symbols), sink, interval_s=feed.rest_poll_s)

    return LiveSource(name, parser=parser, make_connection=make_connection, make_poller=make_poller,
                      rest_fallback_after_s=feed.rest_fallback_after_s)
