"""The Feed gives up on a live source that has delivered nothing at all since start."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from actors.bus import FEED, JOURNAL
from actors.feed import Feed, attempts_summary
from adapters.clock import WallClock
from adapters.price_board import InMemoryPriceBoard
from state.messages import FeedGaveUp, PushQuote, PushTick, TimerFired
from tests.actors.helpers import ActorRig, now_ms
from tests.actors.test_feed_stale import Monotonic

REFUSED = "connect failed: ConnectionRefusedError: [Errno 111] Connection refused"


class DeadSource:
    """A live source whose connection never opens: only its counters, as ``LiveSource.stats``
    reports them."""

    name = "binance"
    simulated = False
    accepts_quotes = True
    running = False

    def __init__(self) -> None:
        self.connection: dict[str, Any] = {
            "url": "wss://bob:s3cret@127.0.0.1:9", "connects": 0, "connect_failures": 7, "reconnects": 6,
            "errors": 0, "last_reason": REFUSED, "state": "backoff"}

    def start(self, sink: Any, quote_sink: Any = None) -> None:
        self.running = True

    def stop(self) -> None:
        self.running = False

    def stats(self) -> dict[str, Any]:
        return {"trades": 0, "quotes": 0, "connection": dict(self.connection), "rest_fallback": {
            "activations": 1, "polls": 3, "errors": 3, "last_error": "NetworkError: refused"}}


@pytest.fixture
def rig(probe_bus_for, tmp_path) -> Iterator[ActorRig]:
    rig = ActorRig(probe_bus_for(FEED), tmp_path)
    yield rig
    rig.close()


@pytest.fixture
def clock() -> Monotonic:
    return Monotonic()


def start(rig: ActorRig, clock: Monotonic, *, give_up_after_s: float | None = 300.0) -> Any:
    return rig.start(Feed, source=DeadSource(), board=InMemoryPriceBoard(), store=rig.store, clock=WallClock(),
                     stale_after_s=15.0, watched=("BTC",), monotonic=clock, give_up_after_s=give_up_after_s)


def check(rig: ActorRig) -> None:
    rig.pb.bus.tell(FEED, TimerFired(ts_init_ns=0, name="stale_check"))
    rig.pb.drain()


def test_nothing_received_for_give_up_after_s_gives_up_once_saying_what_was_tried(rig, clock, logs):
    start(rig, clock)
    clock.advance(299.9)
    check(rig)
    assert rig.pb.messages(FeedGaveUp) == []

    clock.advance(0.2)
    check(rig)
    check(rig)  # once, not once per check
    [gave_up] = rig.pb.messages(FeedGaveUp, JOURNAL)
    assert gave_up.source == "binance" and gave_up.waited_s == pytest.approx(300.1)
    assert "7 connect attempt(s) to wss://***@127.0.0.1:9 (0 opened, 7 failed)" in gave_up.detail
    assert REFUSED in gave_up.detail and "REST fallback: 3 poll(s), 3 error(s)" in gave_up.detail
    assert "s3cret" not in gave_up.detail
    assert logs.wait_for("FEED_GAVE_UP: binance received nothing (no trade, no quote) in 300.1s since start")
    assert "s3cret" not in logs.text()
    assert rig.pb.messages(FeedGaveUp, JOURNAL) == [gave_up]


@pytest.mark.parametrize("first", ["stream tick", "rest tick", "quote"])
def test_anything_received_before_the_deadline_means_it_never_gives_up(rig, clock, first):
    start(rig, clock)
    clock.advance(10)
    if first == "quote":
        rig.pb.bus.send(PushQuote(ts_init_ns=0, coin="BTC", bid="41999.9", bid_qty="1", ask="42000.1",
                                  ask_qty="1", ts_ms=now_ms()))
    else:
        rig.pb.bus.send(PushTick(ts_init_ns=0, coin="BTC", price="42000", ts_ms=now_ms(),
                                 origin="rest" if first == "rest tick" else "stream"))
    rig.pb.drain()
    clock.advance(3600)  # then silence for an hour: stale, not given up
    check(rig)
    assert rig.pb.messages(FeedGaveUp) == []
    assert rig.ask("stats")["stale"] == ["BTC"]


def test_without_give_up_after_s_it_waits_forever(rig, clock):
    start(rig, clock, give_up_after_s=None)
    clock.advance(86_400)
    check(rig)
    assert rig.pb.messages(FeedGaveUp) == []


def test_other_timers_do_not_give_up(rig, clock):
    start(rig, clock, give_up_after_s=1.0)
    clock.advance(5)
    rig.pb.bus.tell(FEED, TimerFired(ts_init_ns=0, name="flush"))
    rig.pb.drain()
    assert rig.pb.messages(FeedGaveUp) == []
    check(rig)
    assert len(rig.pb.messages(FeedGaveUp)) == 1


def test_the_summary_of_attempts_reads_the_source_counters():
    assert attempts_summary({}) == "no connection was made"
    stats = {"connection": {"url": "wss://fstream.binance.com", "connects": 2, "connect_failures": 1,
                            "errors": 1, "last_reason": "silent for 30s"},
             "rest_fallback": None}
    assert attempts_summary(stats) == ("3 connect attempt(s) to wss://fstream.binance.com (2 opened, 1 failed), "
                                       "1 other error(s), last: silent for 30s; no REST fallback")
    stats["rest_fallback"] = {"activations": 0, "polls": 0, "errors": 0}
    assert attempts_summary(stats).endswith("; REST fallback: not started yet (rest_fallback_after_s not reached)")
    stats["rest_fallback"] = {"activations": 1, "polls": 2, "errors": 2,
                              "last_error": "NetworkError: GET https://user:pw@api.example/x"}
    summary = attempts_summary(stats)
    assert summary.endswith("; REST fallback: 2 poll(s), 2 error(s), last: NetworkError: GET https://***@api.example/x")
