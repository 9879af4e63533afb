"""Market rules (tick size, quantity step, minimum quantity and notional) from the venue itself.

A paper session on a live feed sizes and rounds its orders by the venue's own filters, so that
its fills are ones the venue would have accepted: ``[feed] market_rules = "exchange"`` (the
default of the ``binance`` and ``bybit`` sources). The rules are read once, at start, through
ccxt's ``load_markets`` on the same public, rate-limited client as the REST fallback
(``CcxtTickerFetcher``: every request takes a token from the process-wide bucket).

Numbers come from the venue's own strings in ccxt's ``market["info"]``, never through a float:

- Binance (spot and USD-M): ``PRICE_FILTER.tickSize``; ``MARKET_LOT_SIZE.stepSize`` and
  ``minQty`` (the engine places market orders) unless zero, else ``LOT_SIZE``; the minimum
  notional from ``MIN_NOTIONAL`` (``minNotional`` on spot, ``notional`` on USD-M) or
  ``NOTIONAL.minNotional``.
- Bybit v5 instruments: ``priceFilter.tickSize``; ``lotSizeFilter.qtyStep`` (linear) or
  ``basePrecision`` (spot); ``minOrderQty``; ``minNotionalValue`` (linear) or ``minOrderAmt``
  (spot).
- Any other venue: ccxt's unified ``precision`` (as a tick size: ccxt 4 reports tick sizes for
  these venues) and ``limits``.

**Errors.** A configured coin the venue does not list is ``UnknownMarkets`` (a configuration
mistake: the session does not start). A venue that cannot be reached or answers nonsense is
``MarketRulesUnavailable`` (the caller decides: a paper session falls back to ``[markets]``).
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from adapters.errors import TemporaryError
from adapters.feeds.rest_fallback import CcxtTickerFetcher
from state.market import MarketRules
from state.secrets import mask_url

ZERO = Decimal(0)


class UnknownMarkets(ValueError):
    """Configured coins whose symbol the venue does not list; ``missing`` maps coin -> symbol."""

    def __init__(self, exchange_id: str, missing: Mapping[str, str]) -> None:
        self.exchange_id = exchange_id
        self.missing = dict(missing)
        listed = ", ".join(f"{coin} ({symbol})" for coin, symbol in sorted(self.missing.items()))
        super().__init__(f"not a market on {exchange_id}: {listed}")


class MarketRulesUnavailable(TemporaryError):
    """The venue's markets could not be loaded (network, HTTP error, rate limit, bad payload)."""


def _decimal(value: Any, what: str) -> Decimal:
    try:
        number = Decimal(str(value))
    except (InvalidOperation, ValueError) as exc:
        raise ValueError(f"{what}: not a number: {value!r}") from exc
    if not number.is_finite() or number < 0:
        raise ValueError(f"{what}: not a usable number: {value!r}")
    return number.normalize() if number else ZERO


def _binance(coin: str, info: Mapping[str, Any]) -> MarketRules:
    filters = {f.get("filterType"): f for f in info.get("filters", ()) if isinstance(f, Mapping)}
    price = filters.get("PRICE_FILTER") or {}
    market_lot = filters.get("MARKET_LOT_SIZE") or {}
    lot = market_lot if _decimal(market_lot.get("stepSize", 0), "MARKET_LOT_SIZE.stepSize") > 0 else (
        filters.get("LOT_SIZE") or {})
    minimum = filters.get("MIN_NOTIONAL") or filters.get("NOTIONAL") or {}
    notional = minimum.get("minNotional", minimum.get("notional", 0))
    return MarketRules(
        coin=coin,
        tick_size=_decimal(price.get("tickSize"), "PRICE_FILTER.tickSize"),
        qty_step=_decimal(lot.get("stepSize"), "LOT_SIZE.stepSize"),
        min_qty=_decimal(lot.get("minQty", 0), "LOT_SIZE.minQty"),
        min_notional=_decimal(notional, "MIN_NOTIONAL"),
    )


def _bybit(coin: str, info: Mapping[str, Any]) -> MarketRules:
    price = info.get("priceFilter") or {}
    lot = info.get("lotSizeFilter") or {}
    step = lot.get("qtyStep", lot.get("basePrecision"))
    notional = lot.get("minNotionalValue", lot.get("minOrderAmt", 0))
    return MarketRules(
        coin=coin,
        tick_size=_decimal(price.get("tickSize"), "priceFilter.tickSize"),
        qty_step=_decimal(step, "lotSizeFilter.qtyStep"),
        min_qty=_decimal(lot.get("minOrderQty", 0), "lotSizeFilter.minOrderQty"),
        min_notional=_decimal(notional, "lotSizeFilter.minNotionalValue"),
    )


def _unified(coin: str, market: Mapping[str, Any]) -> MarketRules:
    precision = market.get("precision") or {}
    limits = market.get("limits") or {}
    amount = (limits.get("amount") or {}).get("min")
    cost = (limits.get("cost") or {}).get("min")
    return MarketRules(
        coin=coin,
        tick_size=_decimal(precision.get("price"), "precision.price"),
        qty_step=_decimal(precision.get("amount"), "precision.amount"),
        min_qty=_decimal(amount or 0, "limits.amount.min"),
        min_notional=_decimal(cost or 0, "limits.cost.min"),
    )


def rules_from_market(exchange_id: str, coin: str, market: Mapping[str, Any]) -> MarketRules:
    """The rules of ``coin`` from one ccxt market of ``exchange_id``; raises ``ValueError``
    naming the field when the venue's numbers are missing or unusable."""
    info = market.get("info")
    if not isinstance(info, Mapping):
        info = {}
    try:
        if exchange_id.startswith("binance") and "filters" in info:
            return _binance(coin, info)
        if exchange_id == "bybit" and "lotSizeFilter" in info:
            return _bybit(coin, info)
        return _unified(coin, market)
    except ValueError as exc:
        raise ValueError(f"{exchange_id} {market.get('symbol', coin)}: {exc}") from exc


def load_market_rules(fetcher: CcxtTickerFetcher) -> dict[str, MarketRules]:
    """The rules of every coin of ``fetcher.symbols`` (coin -> ccxt symbol), from one
    ``load_markets`` through the fetcher's rate-limited client. Raises ``UnknownMarkets`` or
    ``MarketRulesUnavailable``."""
    exchange_id = fetcher.exchange_id
    try:
        markets = fetcher.exchange.load_markets()
    except Exception as exc:  # noqa: BLE001 - ccxt's errors, the limiter's timeout, a bad payload
        kind = type(exc).__name__
        detail = mask_url(str(exc)).splitlines()[0][:300] if str(exc) else kind  # masked, then cut
        raise MarketRulesUnavailable(f"{exchange_id}: markets not loaded: {kind}: {detail}") from exc
    missing = {coin: symbol for coin, symbol in fetcher.symbols.items() if symbol not in markets}
    if missing:
        raise UnknownMarkets(exchange_id, missing)
    try:
        return {coin: rules_from_market(exchange_id, coin, markets[symbol])
                for coin, symbol in fetcher.symbols.items()}
    except ValueError as exc:
        raise MarketRulesUnavailable(str(exc)) from exc

