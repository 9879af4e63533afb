"""A live market source's stand-in for engine tests: it delivers nothing by itself (the test
pushes ticks with ``engine.push_tick``), so a live-mode engine runs without a market stream."""

from __future__ import annotations

from typing import Any


class QuietSource:
    name = "binance"
    simulated = False

    def start(self, sink: Any) -> None:
        return None

    def stop(self) -> None:
        return None

    def stats(self) -> dict[str, Any]:
        return {}
