"""adapters/live_source.py with a fake connection and a fake REST poller (no sockets)."""

from __future__ import annotations

import json
import threading
from decimal import Decimal
from typing import Any

import pytest

from adapters.binance_frames import BinanceFrameParser
from adapters.live_source import LiveSource

WAIT = 5.0


class FakeConnection:
    def __init__(self, on_text: Any, on_state: Any) -> None:
        self.on_text, self.on_state = on_text, on_state
        self.started = self.stopped = False
        self.reconnects = 0

    def start(self) -> None:
        self.started = True

    def stop(self) -> None:
        self.stopped = True

    def stats(self) -> dict[str, Any]:
        return {"state": "open", "reconnects": self.reconnects}


class FakePoller:
    def __init__(self, sink: Any) -> None:
        self.sink = sink
        self._active = False
        self.changed = threading.Event()
        self.reasons: list[str] = []

    @property
    def active(self) -> bool:
        return self._active

    def start(self) -> None:
        return None

    def stop(self) -> None:
        return None

    def activate(self, reason: str) -> None:
        self._active = True
        self.reasons.append(reason)
        self.changed.set()

    def deactivate(self) -> None:
        self._active = False
        self.changed.set()

    def stats(self) -> dict[str, Any]:
        return {"active": self._active}


class Monotonic:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def trade(price: str, trade_id: int, symbol: str = "BTCUSDT") -> str:
    return json.dumps({"stream": f"{symbol.lower()}@trade", "data": {
        "e": "trade", "E": 1_700_000_000_000 + trade_id, "T": 1_700_000_000_000 + trade_id, "s": symbol,
        "t": trade_id, "p": price, "q": "0.5", "X": "MARKET", "m": False}})


@pytest.fixture
def parts() -> dict[str, Any]:
    return {}


def make_source(parts: dict[str, Any], *, fallback_after_s: float = 10.0, poller: bool = True) -> LiveSource:
    clock = parts.setdefault("clock", Monotonic())

    def connection(on_text: Any, on_state: Any) -> FakeConnection:
        parts["connection"] = FakeConnection(on_text, on_state)
        return parts["connection"]

    def make_poller(sink: Any) -> FakePoller:
        parts["poller"] = FakePoller(sink)
        return parts["poller"]

    return LiveSource("binance", parser=BinanceFrameParser({"BTC": "BTCUSDT", "ETH": "ETHUSDT"}),
                      make_connection=connection, make_poller=make_poller if poller else None,
                      rest_fallback_after_s=fallback_after_s, monotonic=clock)


def test_trades_go_to_the_sink_once_each_and_quotes_to_the_quote_sink(parts):
    ticks: list[tuple[Any, ...]] = []
    quotes: list[tuple[Any, ...]] = []
    source = make_source(parts, poller=False)
    source.start(lambda *tick, **kw: ticks.append(tick), lambda *quote: quotes.append(quote))
    on_text = parts["connection"].on_text
    for frame in (trade("100.5", 1), trade("100.6", 2), trade("100.5", 1), trade("3000", 7, "ETHUSDT")):
        on_text(frame, 0)
    on_text(json.dumps({"stream": "btcusdt@bookTicker", "data": {
        "e": "bookTicker", "u": 1, "s": "BTCUSDT", "b": "100.4", "B": "2", "a": "100.7", "A": "3"}}), 0)
    on_text("{broken", 0)
    source.stop()

    assert [(coin, price) for coin, price, *_ in ticks] == [
        ("BTC", Decimal("100.5")), ("BTC", Decimal("100.6")), ("ETH", Decimal("3000"))]
    assert quotes == [("BTC", Decimal("100.4"), Decimal("2"), Decimal("100.7"), Decimal("3"), None)]
    stats = source.stats()
    assert stats["duplicates"] == 1 and stats["trades"] == 3 and stats["quotes"] == 1
    assert stats["bad_frames"]["total"] == 1
    assert stats["top_of_book"] == {"BTC": {"bid": "100.4", "ask": "100.7"}}
    assert parts["connection"].stopped


def test_rest_fallback_turns_on_after_the_stream_is_down_long_enough_and_off_when_it_is_back(parts):
    source = make_source(parts, fallback_after_s=10.0)
    source.start(lambda *a, **k: None)
    connection, poller, clock = parts["connection"], parts["poller"], parts["clock"]
    try:
        connection.on_state("open", {})
        clock.now = 100.0
        connection.on_state("backoff", {"reason": "dropped"})
        clock.now = 105.0
        assert not poller.changed.wait(0.6), "not before rest_fallback_after_s"
        clock.now = 110.5
        assert poller.changed.wait(WAIT) and poller.active
        assert poller.reasons == ["stream down for 10.5s"]
        poller.changed.clear()
        connection.on_state("open", {})
        assert poller.changed.is_set() and not poller.active
    finally:
        source.stop()


def test_rest_prices_reach_the_sink_marked_as_rest(parts):
    ticks: list[tuple[tuple[Any, ...], dict[str, Any]]] = []
    source = make_source(parts)
    source.start(lambda *tick, **kw: ticks.append((tick, kw)))
    try:
        parts["poller"].sink("BTC", Decimal("101"), 1_700_000_000_000, Decimal(0), None)
    finally:
        source.stop()
    assert ticks == [(("BTC", Decimal("101"), 1_700_000_000_000, Decimal(0), None), {"origin": "rest"})]
