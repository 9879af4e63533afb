"""The price board: last price and timestamp per coin as immutable tuples.

Written only by the Feed actor; read by the paper venue, the REPL and the status line. A dict
assignment of a tuple is atomic in CPython, so readers never see half an update.
"""

from __future__ import annotations

from decimal import Decimal


class InMemoryPriceBoard:
    def __init__(self) -> None:
        self._prices: dict[str, tuple[Decimal, int]] = {}

    def update(self, coin: str, price: Decimal, ts_ms: int) -> None:
        self._prices[coin] = (price, ts_ms)

    def last(self, coin: str) -> tuple[Decimal, int] | None:
        return self._prices.get(coin)

    def all(self) -> dict[str, tuple[Decimal, int]]:
        return dict(self._prices)
