"""The Feed as the door for market data: with its guard, a bad tick never reaches the Sniper, the
price board or the clock, and a restarted Feed judges the next tick against the last good price."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import pytest

from actors.bus import FEED, SNIPER
from actors.feed import Feed
from adapters.clock import TickClock, WallClock
from adapters.price_board import InMemoryPriceBoard
from state.market import default_rules
from state.messages import PushTick, Tick
from state.tick_guard import TickGuardSettings
from tests.actors.helpers import ActorRig, now_ms

D = Decimal


@pytest.fixture
def rig(probe_bus_for, tmp_path) -> Iterator[ActorRig]:
    rig = ActorRig(probe_bus_for(FEED), tmp_path)
    yield rig
    rig.close()


def push(rig: ActorRig, coin: str, price: str, ts_ms: int) -> None:
    rig.pb.bus.send(PushTick(ts_init_ns=rig.pb.clock.now_ns(), coin=coin, price=D(price), ts_ms=ts_ms))


def start(rig: ActorRig, board: InMemoryPriceBoard, clock) -> None:
    rig.start(Feed, source=None, board=board, clock=clock, guard=TickGuardSettings(), markets=default_rules)


@pytest.mark.parametrize("clock", [WallClock(), TickClock()], ids=["wall", "tick"])
def test_only_sane_ticks_reach_the_sniper_and_each_kind_is_counted(rig, clock):
    board = InMemoryPriceBoard()
    start(rig, board, clock)
    ts = now_ms()
    push(rig, "BTC", "42000.00", ts)
    push(rig, "BTC", "0.0000000001", ts + 1)  # off the grid: below one tick
    push(rig, "BTC", "42000.001", ts + 2)  # off the grid
    push(rig, "BTC", "9999999", ts + 3)  # a jump
    push(rig, "BTC", "42000.01", ts + 10 * 365 * 86_400_000)  # ten years ahead
    push(rig, "BTC", "42000.02", ts + 5)
    assert rig.pb.bus.wait_idle(5)
    ticks = [(t.price, t.ts_ms) for t in rig.pb.messages(Tick, SNIPER)]
    assert ticks == [(D("42000.00"), ts), (D("42000.02"), ts + 5)]
    stats = rig.ask("stats")
    assert stats["rejected_ticks"] == {"total": 4, "by_kind": {"clock_ahead": 1, "jump": 1, "off_grid": 2}}
    assert stats["ticks"] == 2 and stats["out_of_order"] == 0
    assert board.last("BTC") == (D("42000.02"), ts + 5)
    if clock.causal:
        assert clock.now_ns() == (ts + 5) * 1_000_000, "the clock never saw the tick ten years ahead"


def test_a_restarted_feed_judges_the_next_tick_against_the_price_board(rig):
    board = InMemoryPriceBoard()
    start(rig, board, WallClock())
    ts = now_ms()
    push(rig, "BTC", "42000.00", ts)
    assert rig.pb.bus.wait_idle(5)
    rig.stop()
    start(rig, board, WallClock())  # a successor: the guard's memory is gone, the board's is not
    push(rig, "BTC", "0.01", ts + 1)  # on the grid, but 100 % down: no free pass after a restart
    push(rig, "BTC", "42000.01", ts + 2)
    assert rig.pb.bus.wait_idle(5)
    assert [t.price for t in rig.pb.messages(Tick, SNIPER)] == [D("42000.00"), D("42000.01")]
    assert rig.ask("stats")["rejected_ticks"]["by_kind"] == {"jump": 1}
