"""Time bars built from ticks: pure, deterministic, no threads.

A bar covers ``[start, start + bar_ms)`` aligned to the epoch (a 60 s bar starts on the
minute). It closes when the first tick at or after its end arrives: ``BarBuilder.on_tick``
returns the closed bar *before* that tick is counted into the next one. Minutes without a
trade produce no bar (nothing is invented); the next bar simply starts later.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from state.types import coin_symbol, non_negative_decimal, positive_decimal


@dataclass(frozen=True, slots=True, kw_only=True)
class Bar:
    coin: str
    start_ms: int
    end_ms: int  # exclusive: the bar covers [start_ms, end_ms)
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal
    trades: int
    closed_at_ms: int | None = None  # the tick that closed it (after a gap, long after end_ms)

    def __post_init__(self) -> None:
        object.__setattr__(self, "coin", coin_symbol(self.coin))
        for name in ("open", "high", "low", "close"):
            object.__setattr__(self, name, positive_decimal(getattr(self, name), name))
        object.__setattr__(self, "volume", non_negative_decimal(self.volume, "volume"))
        if isinstance(self.trades, bool) or not isinstance(self.trades, int) or self.trades < 1:
            raise ValueError(f"trades: must be a whole number of at least 1, got {self.trades!r}")
        if self.end_ms <= self.start_ms:
            raise ValueError(f"end_ms: must be after start_ms {self.start_ms}, got {self.end_ms}")
        if not (self.low <= min(self.open, self.close) and max(self.open, self.close) <= self.high):
            raise ValueError(
                f"high/low: open {self.open} and close {self.close} must lie within "
                f"low {self.low} and high {self.high}"
            )


def bar_start(ts_ms: int, bar_ms: int) -> int:
    return ts_ms - ts_ms % bar_ms


def next_close_ms(bar: Bar, bar_ms: int) -> int:
    """When the bar after ``bar`` can close at the earliest: the end of the bar that the tick
    which closed ``bar`` opened (``bar.end_ms + bar_ms`` when trading had no gap)."""
    if bar.closed_at_ms is None:
        return bar.end_ms + bar_ms
    return max(bar.end_ms, bar_start(bar.closed_at_ms, bar_ms)) + bar_ms


class _OpenBar:
    __slots__ = ("start_ms", "open", "high", "low", "close", "volume", "trades")

    def __init__(self, start_ms: int, price: Decimal, qty: Decimal) -> None:
        self.start_ms = start_ms
        self.open = self.high = self.low = self.close = price
        self.volume = qty
        self.trades = 1

    def add(self, price: Decimal, qty: Decimal) -> None:
        if price > self.high:
            self.high = price
        elif price < self.low:
            self.low = price
        self.close = price
        self.volume += qty
        self.trades += 1


class BarBuilder:
    """Per-coin bars of ``bar_seconds``. Ticks of a coin must arrive in time order (the Feed
    drops older ones before they get here)."""

    def __init__(self, bar_seconds: int) -> None:
        if bar_seconds < 1:
            raise ValueError(f"bar_seconds: must be at least 1, got {bar_seconds}")
        self.bar_ms = bar_seconds * 1000
        self._open: dict[str, _OpenBar] = {}

    def on_tick(self, coin: str, price: Decimal, qty: Decimal, ts_ms: int) -> Bar | None:
        """Count the tick; return the bar it closed, if any (that bar excludes this tick)."""
        start = bar_start(ts_ms, self.bar_ms)
        current = self._open.get(coin)
        if current is None:
            self._open[coin] = _OpenBar(start, price, qty)
            return None
        if start == current.start_ms:
            current.add(price, qty)
            return None
        if start < current.start_ms:
            raise ValueError(f"ts_ms: {coin} tick at {ts_ms} is older than its open bar {current.start_ms}")
        self._open[coin] = _OpenBar(start, price, qty)
        return Bar(
            coin=coin, start_ms=current.start_ms, end_ms=current.start_ms + self.bar_ms,
            open=current.open, high=current.high, low=current.low, close=current.close,
            volume=current.volume, trades=current.trades, closed_at_ms=ts_ms,
        )

    def open_bar_start(self, coin: str) -> int | None:
        current = self._open.get(coin)
        return None if current is None else current.start_ms
