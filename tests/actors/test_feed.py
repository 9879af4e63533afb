"""The Feed as a threaded actor: every other role is a probe on a real bus."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from actors.bus import FEED, SNIPER
from actors.feed import Feed
from adapters.clock import TickClock
from adapters.price_board import InMemoryPriceBoard
from adapters.ports import TickSink
from state.messages import InjectCrash, PushTick, Tick
from tests.actors.helpers import ActorRig, FailureNotices, now_ms
from tests.conftest import WAIT


class FakeSource:
    """A market-data source the test drives by hand through the sink the Feed gave it."""

    name = "fake"
    simulated = True

    def __init__(self) -> None:
        self.sink: TickSink | None = None
        self.starts = 0
        self.started = threading.Event()
        self.stopped = threading.Event()

    def start(self, sink: TickSink) -> None:
        self.sink = sink
        self.starts += 1
        self.started.set()

    def stop(self) -> None:
        self.stopped.set()

    def emit_from_own_thread(self, coin: str, price: str, ts_ms: int, qty: str = "0") -> None:
        assert self.sink is not None, "source was never started"
        sink = self.sink
        thread = threading.Thread(target=sink, args=(coin, Decimal(price), ts_ms, Decimal(qty)))
        thread.start()
        thread.join(WAIT)
        assert not thread.is_alive(), "the sink blocked the source thread"


class FailingBoard(InMemoryPriceBoard):
    """A price board that breaks for one coin, to make the Feed's handler fail."""

    def update(self, coin: str, price: Decimal, ts_ms: int) -> None:
        if coin == "DOGE":
            raise RuntimeError("board broke on DOGE")
        super().update(coin, price, ts_ms)


@pytest.fixture
def rig(probe_bus_for, tmp_path) -> Iterator[ActorRig]:
    rig = ActorRig(probe_bus_for(FEED), tmp_path)
    yield rig
    rig.close()


@pytest.fixture
def board() -> InMemoryPriceBoard:
    return InMemoryPriceBoard()


@pytest.fixture
def feed(rig, board) -> Any:
    return rig.start(Feed, source=None, board=board)


def push(rig: ActorRig, coin: str, price: str, ts_ms: int, qty: str = "0") -> None:
    rig.pb.bus.send(PushTick(ts_init_ns=rig.pb.clock.now_ns(), coin=coin, price=Decimal(price),
                             ts_ms=ts_ms, qty=Decimal(qty)))


def test_answers_ping_with_its_role(rig, feed):
    assert rig.ask("ping") == FEED


def test_push_tick_when_accepted_then_the_sniper_gets_a_tick_with_the_same_coin_price_ts_and_qty(rig, feed):
    ts = now_ms()
    push(rig, "btc", "42000.50", ts, qty="0.25")

    tick = rig.pb.wait_for(Tick, SNIPER)

    assert (tick.coin, tick.price, tick.ts_ms, tick.qty) == ("BTC", Decimal("42000.50"), ts, Decimal("0.25"))
    assert rig.ask("stats")["ticks"] == 1


def test_push_tick_when_accepted_then_the_price_board_and_the_tick_clock_follow_it(rig, board):
    clock = TickClock()
    rig.start(Feed, source=None, board=board, clock=clock)
    ts = 1_600_000_000_123  # far from wall time: only observe_tick can make the clock read it

    push(rig, "ETH", "3400.10", ts)
    tick = rig.pb.wait_for(Tick, SNIPER)

    assert board.last("ETH") == (Decimal("3400.10"), ts)
    assert clock.now_ns() == ts * 1_000_000
    assert tick.ts_init_ns == ts * 1_000_000, "the Tick is stamped by the clock the tick just moved"


def test_push_tick_older_than_the_last_of_its_coin_is_dropped_and_counted(rig, feed, board, logs):
    ts = now_ms()
    push(rig, "BTC", "42000", ts)
    push(rig, "BTC", "41000", ts - 1)  # older: time never runs backwards
    push(rig, "BTC", "42100", ts)  # same timestamp as the last accepted one: still in order

    ticks = rig.pb.messages(Tick, SNIPER)

    assert [t.price for t in ticks] == [Decimal("42000"), Decimal("42100")]
    stats = rig.ask("stats")
    assert stats["out_of_order"] == 1
    assert stats["ticks"] == 2
    assert stats["coins"] == {"BTC": ts}
    assert board.last("BTC") == (Decimal("42100"), ts), "a dropped tick never reaches the board"
    assert logs.wait_for("TICK_OUT_OF_ORDER: BTC")


def test_tick_order_is_kept_per_coin_so_an_older_tick_of_another_coin_passes(rig, feed):
    ts = now_ms()
    push(rig, "BTC", "42000", ts)
    push(rig, "ETH", "3400", ts - 500)

    eth = rig.pb.wait_for(Tick, SNIPER, where=lambda t: t.coin == "ETH")

    assert eth.ts_ms == ts - 500
    assert rig.ask("stats")["out_of_order"] == 0


def test_source_when_the_feed_starts_then_it_is_started_and_its_ticks_reach_the_sniper_through_the_bus(
    rig, board, logs
):
    source = FakeSource()
    rig.start(Feed, source=source, board=board)
    assert source.started.wait(WAIT), "on_start did not start the source"
    ts = now_ms()

    source.emit_from_own_thread("SOL", "145.123", ts, qty="2")
    tick = rig.pb.wait_for(Tick, SNIPER)

    assert (tick.coin, tick.price, tick.ts_ms, tick.qty) == ("SOL", Decimal("145.123"), ts, Decimal("2"))
    assert board.last("SOL") == (Decimal("145.123"), ts)
    assert source.starts == 1
    assert logs.wait_for("FEED_STARTED: source fake (SIMULATED market)")


def test_source_when_the_feed_stops_then_it_is_stopped(rig, board):
    source = FakeSource()
    ref = rig.start(Feed, source=source, board=board)
    assert source.started.wait(WAIT)
    assert not source.stopped.is_set()

    ref.stop(block=True, timeout=WAIT)

    assert source.stopped.wait(WAIT), "the source is still running after the Feed stopped"


def test_message_of_an_unknown_type_is_ignored_and_the_feed_keeps_working(rig, feed, logs):
    rig.pb.bus.tell(FEED, object())
    push(rig, "BTC", "42000", now_ms())

    assert rig.pb.wait_for(Tick, SNIPER).coin == "BTC"
    assert feed.is_alive()
    assert logs.wait_for("UNHANDLED_MESSAGE: object ignored")


def test_handler_error_is_logged_and_skipped_and_the_next_tick_is_handled(rig, logs):
    ref = rig.start(Feed, source=None, board=FailingBoard())
    ts = now_ms()
    push(rig, "DOGE", "0.12", ts)
    push(rig, "BTC", "42000", ts)

    ticks = rig.pb.messages(Tick, SNIPER)

    assert [t.coin for t in ticks] == ["BTC"]
    assert ref.is_alive(), "a derived actor must skip a failing message, not crash"
    assert rig.ask("ping") == FEED
    assert logs.wait_for("HANDLER_ERROR: PushTick skipped")


def test_inject_crash_kills_the_feed_notices_the_supervisor_and_stops_its_source(rig, board):
    source = FakeSource()
    notices = FailureNotices()
    ref = rig.start(Feed, source=source, board=board, on_failure_notice=notices)
    assert source.started.wait(WAIT)

    rig.pb.bus.tell(FEED, InjectCrash(ts_init_ns=rig.pb.clock.now_ns(), reason="poison"))

    assert ref.actor_stopped.wait(WAIT), "InjectCrash did not kill the Feed"
    assert notices.wait(), "on_failure did not notice the supervisor"
    assert not ref.is_alive()
    assert [role for role, _ in notices.notices] == [FEED]
    assert "poison" in str(notices.notices[0][1])
    assert source.stopped.wait(WAIT), "a crashed Feed must release its source"
