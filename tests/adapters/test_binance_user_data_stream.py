"""The Binance user-data stream on a local websocket server: listen key lifecycle, events,
state changes, renewal on listenKeyExpired and -1125."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from adapters.net.backoff import Backoff
from adapters.venues.binance_user_data import BinanceUserDataStream, ListenKeys
from adapters.venues.ccxt_errors import ListenKeyInvalid
from state.order import Fill, VenueEvent
from tests.conftest import WAIT
from tests.support.ws_server import ReplayServer


def wait_until(predicate: Callable[[], bool], timeout: float = WAIT) -> bool:
    deadline = time.monotonic() + timeout
    tick = threading.Event()
    while not predicate():
        if time.monotonic() >= deadline:
            return False
        tick.wait(0.02)
    return True


class Keys:
    def __init__(self) -> None:
        self.created: list[str] = []
        self.kept: list[str] = []
        self.deleted: list[str] = []
        self.invalid = False

    def create(self) -> str:
        key = f"lk{len(self.created) + 1}"
        self.created.append(key)
        return key

    def keepalive(self, key: str) -> None:
        if self.invalid:
            self.invalid = False
            raise ListenKeyInvalid("binanceusdm: -1125 This listenKey does not exist.")
        self.kept.append(key)

    def delete(self, key: str) -> None:
        self.deleted.append(key)


TRADE = {"e": "ORDER_TRADE_UPDATE", "E": 5, "T": 5, "o": {
    "s": "BTCUSDT", "c": "p1-E", "S": "BUY", "o": "MARKET", "f": "GTC", "q": "1", "p": "0", "x": "TRADE",
    "X": "FILLED", "i": 9, "l": "1", "z": "1", "L": "100.5", "N": "USDT", "n": "0.05", "T": 5, "t": 77, "m": False}}


@pytest.fixture
def rig() -> Iterator[tuple[ReplayServer, Keys, list[VenueEvent], list[tuple[bool, str]], Callable[..., Any]]]:
    with ReplayServer() as server:
        keys = Keys()
        events: list[VenueEvent] = []
        states: list[tuple[bool, str]] = []
        streams: list[BinanceUserDataStream] = []

        def start(**kwargs: Any) -> BinanceUserDataStream:
            stream = BinanceUserDataStream(server.url, ListenKeys(keys.create, keys.keepalive, keys.delete),
                                           coins={"BTCUSDT": "BTC"}, backoff=Backoff(first_s=0.05, cap_s=0.2),
                                           **kwargs)
            streams.append(stream)
            stream.start(events.append, lambda up, why: states.append((up, why)))
            return stream

        yield server, keys, events, states, start
        for stream in streams:
            stream.stop()


def test_events_flow_and_stop_deletes_the_key(rig: Any) -> None:
    server, keys, events, states, start = rig
    stream = start()
    assert server.wait_for_connections(1, WAIT) and server.paths == ["/ws/lk1"]
    assert wait_until(lambda: states == [(True, "connected")])
    server.push(json.dumps(TRADE))
    server.push(json.dumps({"e": "ORDER_TRADE_UPDATE", "E": 5, "o": {**TRADE["o"], "s": "ETHUSDT"}}))
    assert wait_until(lambda: len(events) == 1)
    assert isinstance(events[0], Fill) and events[0].trade_id == "77"
    stream.stop()
    assert keys.deleted == ["lk1"]


def test_listen_key_expired_renews_key_and_connection(rig: Any) -> None:
    server, keys, events, states, start = rig
    stream = start()
    assert wait_until(lambda: (True, "connected") in states)
    server.push(json.dumps({"e": "listenKeyExpired", "E": 1, "listenKey": "lk1"}))
    assert wait_until(lambda: "/ws/lk2" in server.paths)
    assert wait_until(lambda: states.count((True, "connected")) == 2)
    assert any(not up for up, _ in states)  # the gap was said (the venue polls meanwhile)
    assert stream.stats()["renewals"] == 1


def test_keepalive_and_renewal_on_1125(rig: Any) -> None:
    server, keys, events, states, start = rig
    start(keepalive_s=0.1)
    assert wait_until(lambda: len(keys.kept) >= 2)
    keys.invalid = True
    assert wait_until(lambda: "/ws/lk2" in server.paths)
    assert wait_until(lambda: states[-1] == (True, "connected"))


def test_a_dropped_connection_reports_down_then_up(rig: Any) -> None:
    server, keys, events, states, start = rig
    start()
    assert wait_until(lambda: states == [(True, "connected")])
    server.drop_clients()
    assert wait_until(lambda: len(states) >= 3)
    assert states[1][0] is False and states[2] == (True, "connected")
    assert keys.created == ["lk1"]  # the same key: only the connection was lost
