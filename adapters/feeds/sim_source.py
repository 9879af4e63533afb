"""A seeded synthetic market for paper sessions without network or keys.

Each symbol follows a geometric random walk with a realistic start price and volatility and
prints a few trades a second, paced in real time on the source's own thread. The same seed
gives the same price path (the timing of wall-clock pacing aside).
"""

from __future__ import annotations

import math
import random
import threading
import time
from decimal import Decimal

from adapters.ports import TickSink
from state.market import MarketRules, Rounding

START_PRICES = {"BTC": 64000.0, "ETH": 3400.0, "SOL": 145.0, "BNB": 580.0, "XRP": 0.52, "DOGE": 0.12}
# Daily volatility (fraction); per-tick sigma is scaled from it.
DAILY_VOL = {"BTC": 0.03, "ETH": 0.04, "SOL": 0.06}


class SimSource:
    name = "sim"
    simulated = True

    def __init__(
        self,
        symbols: tuple[str, ...],
        rules: dict[str, MarketRules],
        *,
        seed: int = 7,
        ticks_per_second: float = 4.0,
        volatility_boost: float = 8.0,
    ) -> None:
        self._symbols = symbols
        self._rules = rules
        self._rng = random.Random(seed)
        self._interval = 1.0 / (ticks_per_second * max(1, len(symbols)))
        self._prices = {coin: START_PRICES.get(coin, 100.0) for coin in symbols}
        seconds_per_day = 86_400.0
        # A quiet simulated market never triggers anything; the boost makes a session show
        # trades within minutes while keeping a believable shape.
        self._sigma = {
            coin: DAILY_VOL.get(coin, 0.05) * volatility_boost
            * math.sqrt(1.0 / (ticks_per_second * seconds_per_day))
            for coin in symbols
        }
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._sent = 0

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stats(self) -> dict[str, int]:
        return {"ticks": self._sent}

    def start(self, sink: TickSink) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._stopping.clear()
        self._thread = threading.Thread(
            target=self._run, args=(sink,), name="sim-source", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=2)
        self._thread = None

    def _run(self, sink: TickSink) -> None:
        index = 0
        while not self._stopping.wait(self._interval):
            coin = self._symbols[index % len(self._symbols)]
            index += 1
            price = self._prices[coin] * math.exp(self._rng.gauss(0.0, self._sigma[coin]))
            self._prices[coin] = price
            rules = self._rules[coin]
            tick_price = rules.round_price(Decimal(repr(price)), Rounding.DOWN)
            if tick_price <= 0:
                continue
            qty = rules.round_qty_down(Decimal(repr(self._rng.expovariate(1.0) * 500 / price)))
            try:
                sink(coin, tick_price, time.time_ns() // 1_000_000, qty, None)
                self._sent += 1
            except Exception:  # noqa: BLE001 - the engine is stopping; end quietly
                return
