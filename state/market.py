"""Per-coin market rules (tick size, quantity step, minimum notional) and directional rounding.

A price is always rounded to the tick in a stated direction; a quantity is always rounded down
to the step, so an order never asks for more than its budget.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from enum import StrEnum
from typing import Any

from state.types import coin_symbol, non_negative_decimal, positive_decimal


class Rounding(StrEnum):
    UP = "UP"
    DOWN = "DOWN"


def round_to_increment(value: Decimal, increment: Decimal, rounding: Rounding) -> Decimal:
    """Round ``value`` to a multiple of ``increment``, up or down (never to nearest)."""
    steps = (value / increment).to_integral_value(
        rounding=ROUND_CEILING if rounding is Rounding.UP else ROUND_FLOOR
    )
    return (steps * increment).quantize(increment)


@dataclass(frozen=True, slots=True, kw_only=True)
class MarketRules:
    """A venue's rules for orders of one coin: prices on ``tick_size``, quantities on
    ``qty_step`` and at least ``min_qty``, notional (quantity x price) at least ``min_notional``."""

    coin: str
    tick_size: Decimal
    qty_step: Decimal
    min_notional: Decimal
    min_qty: Decimal = Decimal(0)

    def __post_init__(self) -> None:
        object.__setattr__(self, "coin", coin_symbol(self.coin))
        object.__setattr__(self, "tick_size", positive_decimal(self.tick_size, "tick_size"))
        object.__setattr__(self, "qty_step", positive_decimal(self.qty_step, "qty_step"))
        object.__setattr__(
            self, "min_notional", non_negative_decimal(self.min_notional, "min_notional")
        )
        object.__setattr__(self, "min_qty", non_negative_decimal(self.min_qty, "min_qty"))

    def round_price(self, price: Decimal, rounding: Rounding) -> Decimal:
        return round_to_increment(price, self.tick_size, rounding)

    def round_qty_down(self, quantity: Decimal) -> Decimal:
        return round_to_increment(quantity, self.qty_step, Rounding.DOWN)


@dataclass(frozen=True, slots=True, kw_only=True)
class TopOfBook:
    """Best bid and ask of a coin with their quantities, as a live source last reported them
    (``ts_ms``: the venue's time of the quote, or the receiving time when it has none)."""

    bid: Decimal
    bid_qty: Decimal
    ask: Decimal
    ask_qty: Decimal
    ts_ms: int

    @property
    def mid(self) -> Decimal:
        return (self.bid + self.ask) / 2

    @property
    def sane(self) -> bool:
        """Both sides positive and not crossed (a crossed or empty book is never priced from)."""
        return self.bid > 0 and self.ask > 0 and self.bid <= self.ask


# Sensible defaults for sim and replay when config.toml has no [markets.<COIN>] section.
# They follow Binance's USD-M futures filters for the majors; any other coin gets the generic
# rules, which are fine enough for paper trading and are overridden by the exchange live.
DEFAULT_MARKETS: dict[str, dict[str, str]] = {
    "BTC": {"tick_size": "0.01", "qty_step": "0.00001", "min_notional": "5"},
    "ETH": {"tick_size": "0.01", "qty_step": "0.0001", "min_notional": "5"},
    "SOL": {"tick_size": "0.001", "qty_step": "0.001", "min_notional": "5"},
    "BNB": {"tick_size": "0.01", "qty_step": "0.001", "min_notional": "5"},
    "XRP": {"tick_size": "0.0001", "qty_step": "0.1", "min_notional": "5"},
    "DOGE": {"tick_size": "0.00001", "qty_step": "1", "min_notional": "5"},
}
GENERIC_MARKET: dict[str, str] = {"tick_size": "0.0001", "qty_step": "0.001", "min_notional": "5"}


def default_rules(coin: str, overrides: dict[str, Any] | None = None) -> MarketRules:
    fields: dict[str, Any] = dict(DEFAULT_MARKETS.get(coin_symbol(coin), GENERIC_MARKET))
    fields.update(overrides or {})
    return MarketRules(coin=coin, **fields)
