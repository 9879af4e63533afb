"""The Feed: the one door through which market data enters the engine.

**Owns** the market-data source (started in ``on_start``, stopped in ``_close``), per-coin
freshness (last accepted timestamp) and counters, and is the only writer of the price board.

**Accepts** ``PushTick`` from its source's thread (through the bus, so a restart of the Feed
loses nothing) or from ``engine.push_tick``.

**Emits** ``Tick`` to the Sniper. A tick older than the last accepted one of its coin is
counted and dropped (time never runs backwards); every accepted tick moves the engine clock
(a tick clock follows it; a wall clock ignores it) and the price board.

**On crash** (a derived actor: a failing message is logged and skipped) the restart starts the
same source object again, which keeps its own state (a simulation continues its path).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from actors.base import EngineActor
from actors.bus import FEED
from adapters.ports import MarketSource, PriceBoard
from state.messages import PushTick, Tick


class Feed(EngineActor):
    role = FEED
    crash_on_error = False

    def __init__(self, *, source: MarketSource | None, board: PriceBoard, **base: Any) -> None:
        super().__init__(**base)
        self._source = source
        self._board = board
        self._last_ts: dict[str, int] = {}
        self.ticks = 0
        self.out_of_order = 0

    def on_start(self) -> None:
        if self._source is not None:
            self._source.start(self._from_source)
            self.log.info("FEED_STARTED: source {}{}", self._source.name,
                          " (SIMULATED market)" if self._source.simulated else "")

    def _close(self) -> None:
        if self._source is not None:
            self._source.stop()

    def _from_source(self, coin: str, price: Decimal, ts_ms: int, qty: Decimal) -> None:
        """Runs on the source's thread: only builds a message and hands it to the bus."""
        self.bus.send(PushTick(ts_init_ns=self.clock.now_ns(), coin=coin, price=price, ts_ms=ts_ms, qty=qty))

    def _on_push_tick(self, raw: PushTick) -> None:
        last = self._last_ts.get(raw.coin)
        if last is not None and raw.ts_ms < last:
            self.out_of_order += 1
            if self.out_of_order == 1 or self.out_of_order % 1000 == 0:
                self.log.warning("TICK_OUT_OF_ORDER: {} at {} is older than {}; dropped ({} so far)",
                                 raw.coin, raw.ts_ms, last, self.out_of_order)
            return
        self._last_ts[raw.coin] = raw.ts_ms
        self.clock.observe_tick(raw.ts_ms)
        self._board.update(raw.coin, raw.price, raw.ts_ms)
        self.ticks += 1
        self.publish(Tick(ts_init_ns=self.clock.now_ns(), coin=raw.coin, price=raw.price,
                          ts_ms=raw.ts_ms, qty=raw.qty))

    def _ask_stats(self) -> dict[str, Any]:
        return {"ticks": self.ticks, "out_of_order": self.out_of_order,
                "coins": {coin: ts for coin, ts in self._last_ts.items()}}
