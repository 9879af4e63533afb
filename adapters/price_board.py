"""The price board: last price and timestamp, and the top of book, per coin, as immutable values.

Written only by the Feed actor; read by the paper venue (a market order fills against the mid of
a fresh top of book), the REPL and the status line. A dict
assignment of a tuple is atomic in CPython, so readers never see half an update.
"""

from __future__ import annotations

from decimal import Decimal

from state.market import TopOfBook


class InMemoryPriceBoard:
    def __init__(self) -> None:
        self._prices: dict[str, tuple[Decimal, int]] = {}
        self._books: dict[str, TopOfBook] = {}

    def update(self, coin: str, price: Decimal, ts_ms: int) -> None:
        self._prices[coin] = (price, ts_ms)

    def last(self, coin: str) -> tuple[Decimal, int] | None:
        return self._prices.get(coin)

    def all(self) -> dict[str, tuple[Decimal, int]]:
        return dict(self._prices)

    def update_quote(self, coin: str, book: TopOfBook) -> None:
        self._books[coin] = book

    def quote(self, coin: str) -> TopOfBook | None:
        """The last sane top of book of ``coin`` (the reader judges its age by ``ts_ms``)."""
        return self._books.get(coin)
