"""The Feed's watch on live data: per-coin staleness, recovery, top of book."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from actors.bus import FEED, JOURNAL, SNIPER
from actors.feed import Feed
from adapters.clock import WallClock
from adapters.price_board import InMemoryPriceBoard
from state.messages import ActorRestarted, FeedRecovered, FeedStale, PushQuote, PushTick, Tick, TimerFired
from tests.actors.helpers import ActorRig, now_ms


class Monotonic:
    """A monotonic clock the test moves by hand (the Feed's only notion of 'silent for')."""

    def __init__(self) -> None:
        self.now = 1000.0
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self.now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.now += seconds


@pytest.fixture
def rig(probe_bus_for, tmp_path) -> Iterator[ActorRig]:
    rig = ActorRig(probe_bus_for(FEED), tmp_path)
    yield rig
    rig.close()


@pytest.fixture
def clock() -> Monotonic:
    return Monotonic()


def start(rig: ActorRig, clock: Monotonic, *, stale_after_s: float | None = 15.0,
          board: InMemoryPriceBoard | None = None) -> Any:
    return rig.start(Feed, source=None, board=board or InMemoryPriceBoard(), store=rig.store, clock=WallClock(),
                     stale_after_s=stale_after_s, watched=("BTC", "ETH"), monotonic=clock)


def check(rig: ActorRig) -> None:
    rig.pb.bus.tell(FEED, TimerFired(ts_init_ns=0, name="stale_check"))
    rig.pb.drain()


def tick(rig: ActorRig, coin: str, price: str) -> None:
    """Deliver a tick and wait until the Feed has handled it (it reads the clock then)."""
    rig.pb.bus.send(PushTick(ts_init_ns=0, coin=coin, price=price, ts_ms=now_ms()))
    rig.pb.drain()


def test_a_coin_silent_for_stale_after_s_is_announced_stale_once_with_its_last_price(rig, clock):
    start(rig, clock)
    tick(rig, "BTC", "42000")
    tick(rig, "ETH", "3000")
    clock.advance(14.9)
    check(rig)
    assert rig.pb.messages(FeedStale) == []

    tick(rig, "ETH", "3001")  # ETH keeps talking; BTC goes quiet
    clock.advance(0.2)
    check(rig)
    check(rig)  # once per stale period, not once per check
    stale = rig.pb.messages(FeedStale, SNIPER)
    assert [(s.coin, s.last_price) for s in stale] == [("BTC", Decimal("42000"))]
    assert stale[0].silent_s >= 15.0
    assert rig.pb.messages(FeedStale, JOURNAL) == stale
    assert rig.ask("stats")["stale"] == ["BTC"]


def test_the_next_message_recovers_the_coin_before_its_tick_reaches_the_sniper(rig, clock):
    start(rig, clock)
    clock.advance(20)  # nothing ever arrived: both are stale
    check(rig)
    assert sorted(s.coin for s in rig.pb.messages(FeedStale, SNIPER)) == ["BTC", "ETH"]

    clock.advance(3)
    tick(rig, "BTC", "42010")
    rig.pb.drain()
    to_sniper = [m for role, m in rig.pb.seen if role == SNIPER and isinstance(m, (FeedRecovered, Tick))]
    assert [type(m).__name__ for m in to_sniper[-2:]] == ["FeedRecovered", "Tick"]
    assert to_sniper[-2].coin == "BTC" and to_sniper[-2].stale_s == pytest.approx(3.0)
    stats = rig.ask("stats")
    assert stats["stale"] == ["ETH"] and stats["stale_periods"] == 2


def test_quotes_count_as_data_and_are_kept_as_top_of_book(rig, clock):
    start(rig, clock)
    for _ in range(3):
        clock.advance(10)
        rig.pb.bus.send(PushQuote(ts_init_ns=0, coin="BTC", bid="41999.9", bid_qty="1.5", ask="42000.1",
                                  ask_qty="0.3", ts_ms=now_ms()))
        rig.pb.drain()
        tick(rig, "ETH", "3000")
        check(rig)
    assert rig.pb.messages(FeedStale) == []
    assert rig.ask("stats")["top_of_book"]["BTC"] == {"bid": "41999.9", "ask": "42000.1", "bid_qty": "1.5",
                                                      "ask_qty": "0.3"}


def test_a_sane_quote_goes_to_the_price_board_and_a_crossed_one_does_not(rig, clock):
    board = InMemoryPriceBoard()
    start(rig, clock, board=board)
    rig.pb.bus.send(PushQuote(ts_init_ns=0, coin="BTC", bid="41999.9", bid_qty="1.5", ask="42000.1",
                              ask_qty="0.3", ts_ms=1_700_000_000_000))
    rig.pb.drain()
    book = board.quote("BTC")
    assert book is not None and book.mid == Decimal("42000.0") and book.ts_ms == 1_700_000_000_000
    rig.pb.bus.send(PushQuote(ts_init_ns=0, coin="BTC", bid="42000.2", bid_qty="1", ask="42000.1",
                              ask_qty="1", ts_ms=1_700_000_000_500))
    rig.pb.drain()
    assert board.quote("BTC") == book  # crossed: never priced from, the last sane one stays
    assert board.quote("ETH") is None


def test_without_stale_after_s_nothing_is_ever_stale(rig, clock):
    start(rig, clock, stale_after_s=None)
    clock.advance(3600)
    check(rig)
    assert rig.pb.messages(FeedStale) == []


def test_a_restarted_sniper_is_told_again_which_coins_are_stale(rig, clock):
    start(rig, clock)
    tick(rig, "ETH", "3000")
    clock.advance(16)
    tick(rig, "ETH", "3001")
    check(rig)
    assert [s.coin for s in rig.pb.messages(FeedStale, SNIPER)] == ["BTC"]

    rig.pb.bus.publish(ActorRestarted(ts_init_ns=0, role=SNIPER, restarts=1, reason="test"))
    rig.pb.drain()
    assert [s.coin for s in rig.pb.messages(FeedStale, SNIPER)] == ["BTC", "BTC"]
