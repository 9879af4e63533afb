"""The Feed as a threaded actor: every other role is a probe on a real bus."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import pykka
import pytest

from actors.bus import EXIT_MONITOR, FEED, INVARIANTS, JOURNAL, SNIPER, STRATEGIST, Bus
from actors.feed import BAR_EFFECT_ROLES, RESUME_KEY, Feed
from adapters.clock import FakeClock, TickClock, WallClock
from adapters.price_board import InMemoryPriceBoard
from adapters.ports import TickSink
from state.bars import Bar
from state.messages import BarClosed, EndOfData, FeedFinished, InjectCrash, PushTick, Tick
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


def push(rig: ActorRig, coin: str, price: str, ts_ms: int, qty: str = "0", seq: int | None = None) -> None:
    rig.pb.bus.send(PushTick(ts_init_ns=rig.pb.clock.now_ns(), coin=coin, price=Decimal(price),
                             ts_ms=ts_ms, qty=Decimal(qty), seq=seq))


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


def test_inject_crash_kills_the_feed_notices_the_supervisor_and_keeps_its_source_running(rig, board):
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
    assert not source.stopped.is_set(), "a crash keeps the source running: its ticks wait for the successor"


# --- bars ---------------------------------------------------------------------------------------------

T0 = 1_700_000_040_000  # on a minute
D = Decimal


class Busy:
    """A message that keeps a gated role busy until its gate opens."""


class Gated(pykka.ThreadingActor):
    """Plays a role like a probe, but handles nothing until ``gate`` is set, so the test decides
    when that role becomes idle."""

    def __init__(self, role: str, bus: Bus, inbox: Any, gate: threading.Event) -> None:
        super().__init__()
        self.role, self.bus, self.inbox, self.gate = role, bus, inbox, gate

    def on_receive(self, message: Any) -> Any:
        if type(message).__name__ == "Request":
            return self.role
        self.gate.wait(WAIT)
        self.inbox.put((self.role, message))
        self.bus.message_done(self.role)
        return None


@pytest.fixture
def hold(rig) -> Iterator[Callable[..., threading.Event]]:
    """``hold(role)``: replace that role's probe by a ``Gated`` one, kept busy (``busy=True``)
    or idle until its next message; set the returned event to let it finish."""
    gates: list[threading.Event] = []
    refs: list[pykka.ActorRef[Any]] = []

    def make(role: str, busy: bool = True) -> threading.Event:
        gate = threading.Event()
        ref = Gated.start(role, rig.pb.bus, rig.pb.inbox, gate)
        refs.append(ref)
        gates.append(gate)
        rig.pb.bus.register(role, ref)
        if busy:
            rig.pb.bus.tell(role, Busy())
        return gate

    yield make
    for gate in gates:
        gate.set()
    for ref in refs:
        ref.stop(block=True, timeout=WAIT)


class Deliveries(list):  # type: ignore[type-arg]
    """Every delivery on the bus as ``(role, message)``, in order, recorded by a bus tap."""

    def __init__(self) -> None:
        super().__init__()
        self.changed = threading.Condition()

    def __call__(self, role: str, message: Any) -> None:
        with self.changed:
            self.append((role, message))
            self.changed.notify_all()

    def wait_for(self, kind: type, role: str, timeout: float = WAIT) -> None:
        with self.changed:
            found = self.changed.wait_for(
                lambda: any(isinstance(m, kind) and r == role for r, m in self), timeout)
        assert found, f"no {kind.__name__} delivered to {role} within {timeout}s"


@pytest.fixture
def deliveries(rig) -> Iterator[Deliveries]:
    seen = Deliveries()
    rig.pb.bus.add_tap(seen)
    yield seen
    rig.pb.bus.remove_tap(seen)


def start_feed(rig: ActorRig, board: InMemoryPriceBoard, *, clock: Any = None, source: Any = None,
               bar_seconds: int = 60, **extra: Any) -> Any:
    return rig.start(Feed, source=source, board=board, store=rig.store, bar_seconds=bar_seconds,
                     clock=clock or FakeClock(T0 * 1_000_000), **extra)


def to_sniper(messages: list[tuple[str, Any]]) -> list[str]:
    """What the Sniper got, as 'Tick <ts>' and 'Bar <end>' in order."""
    out = []
    for role, message in messages:
        if role != SNIPER:
            continue
        if isinstance(message, Tick):
            out.append(f"Tick {message.coin} {message.ts_ms - T0}")
        elif isinstance(message, BarClosed):
            out.append(f"Bar {message.bar.coin} {message.bar.end_ms - T0}")
    return out


def test_bar_closed_is_published_before_the_tick_that_closed_it_and_excludes_it(rig, board):
    start_feed(rig, board)
    push(rig, "BTC", "100", T0, qty="1")
    push(rig, "BTC", "101", T0 + 500, qty="2")
    push(rig, "BTC", "99", T0 + 59_999, qty="0.5")
    push(rig, "BTC", "102", T0 + 60_000, qty="7")

    assert to_sniper(rig.pb.drain()) == [
        "Tick BTC 0", "Tick BTC 500", "Tick BTC 59999", "Bar BTC 60000", "Tick BTC 60000",
    ]
    closed = rig.pb.wait_for(BarClosed, STRATEGIST).bar
    assert closed == Bar(coin="BTC", start_ms=T0, end_ms=T0 + 60_000, open=D("100"), high=D("101"),
                         low=D("99"), close=D("99"), volume=D("3.5"), trades=3, closed_at_ms=T0 + 60_000)
    assert rig.pb.wait_for(BarClosed, EXIT_MONITOR).bar == closed
    assert rig.ask("stats")["bars"] == 1


def test_bar_closed_when_not_causal_then_the_bar_is_stored_at_once(rig, board):
    start_feed(rig, board)
    push(rig, "BTC", "100", T0)
    push(rig, "BTC", "101", T0 + 60_000)

    closed = rig.pb.wait_for(BarClosed, SNIPER).bar

    rig.pb.drain()
    assert rig.store.load_bars() == [closed]


def test_bars_use_the_configured_bar_seconds(rig, board):
    start_feed(rig, board, bar_seconds=5)
    for offset in (0, 4_999, 5_000, 10_001):
        push(rig, "ETH", "10", T0 + offset)

    bars = [m.bar for m in rig.pb.messages(BarClosed, SNIPER)]

    assert [(b.start_ms - T0, b.end_ms - T0, b.trades) for b in bars] == [(0, 5_000, 2), (5_000, 10_000, 1)]


@pytest.mark.parametrize("clock", [FakeClock(T0 * 1_000_000), WallClock()], ids=["fake", "wall"])
def test_not_causal_clock_does_not_hold_ticks_while_a_bar_is_being_handled(rig, board, hold, clock):
    gate = hold(STRATEGIST)
    start_feed(rig, board, clock=clock)
    push(rig, "BTC", "100", T0)
    push(rig, "BTC", "101", T0 + 60_000)
    push(rig, "BTC", "102", T0 + 60_001)

    last = rig.pb.wait_for(Tick, SNIPER, where=lambda t: t.ts_ms == T0 + 60_001)

    assert last.price == D("102")
    assert not gate.is_set(), "the Strategist is still busy with the bar"
    assert rig.ask("stats")["held"] == 0


@pytest.mark.parametrize("busy_role", BAR_EFFECT_ROLES)
def test_causal_clock_holds_the_bar_and_the_closing_tick_until_earlier_work_is_done(
    rig, board, hold, deliveries, busy_role
):
    gate = hold(busy_role)  # still busy with something from before the bar's end
    start_feed(rig, board, clock=TickClock())
    push(rig, "BTC", "100", T0)
    push(rig, "BTC", "101", T0 + 60_000)  # closes the bar: held
    push(rig, "ETH", "10", T0 + 60_001)  # another coin: held too, to keep the tape's order
    push(rig, "BTC", "102", T0 + 61_000)

    assert rig.ask("stats")["held"] == 3
    assert to_sniper(deliveries) == ["Tick BTC 0"], "the bar waits until earlier work is settled"
    assert rig.store.load_bars() == []
    assert board.last("BTC") == (D("100"), T0), "a held tick has not reached the board"

    gate.set()
    rig.pb.wait_for(Tick, SNIPER, where=lambda t: t.ts_ms == T0 + 61_000)

    rig.pb.drain()
    assert to_sniper(deliveries) == ["Tick BTC 0", "Bar BTC 60000", "Tick BTC 60000", "Tick ETH 60001",
                                     "Tick BTC 61000"]
    assert rig.ask("stats")["held"] == 0
    assert board.last("BTC") == (D("102"), T0 + 61_000)


def test_causal_clock_holds_the_ticks_after_a_bar_until_what_the_bar_caused_is_handled(
    rig, board, hold, deliveries
):
    gate = hold(STRATEGIST, busy=False)  # idle until the bar arrives, then busy with it
    start_feed(rig, board, clock=TickClock())
    push(rig, "BTC", "100", T0)
    push(rig, "BTC", "101", T0 + 60_000)
    push(rig, "BTC", "102", T0 + 61_000)

    deliveries.wait_for(BarClosed, STRATEGIST)
    assert rig.ask("stats")["held"] == 2
    assert to_sniper(deliveries) == ["Tick BTC 0", "Bar BTC 60000"]

    gate.set()
    rig.pb.wait_for(Tick, SNIPER, where=lambda t: t.ts_ms == T0 + 61_000)

    rig.pb.drain()
    assert to_sniper(deliveries) == ["Tick BTC 0", "Bar BTC 60000", "Tick BTC 60000", "Tick BTC 61000"]
    assert [b.end_ms - T0 for b in rig.store.load_bars()] == [60_000]


@pytest.mark.parametrize("busy_role", [JOURNAL, INVARIANTS])
def test_causal_clock_does_not_wait_for_roles_a_bar_cannot_set_working(rig, board, hold, busy_role):
    gate = hold(busy_role)
    start_feed(rig, board, clock=TickClock())
    push(rig, "BTC", "100", T0)
    push(rig, "BTC", "101", T0 + 60_000)

    rig.pb.wait_for(Tick, SNIPER, where=lambda t: t.ts_ms == T0 + 60_000)

    assert not gate.is_set()


def test_causal_clock_stamps_bars_and_ticks_with_their_own_time(rig, board):
    clock = TickClock()
    start_feed(rig, board, clock=clock)
    push(rig, "BTC", "100", T0 + 10)
    push(rig, "BTC", "101", T0 + 60_020)

    bar_closed = rig.pb.wait_for(BarClosed, SNIPER)
    tick = rig.pb.wait_for(Tick, SNIPER, where=lambda t: t.ts_ms == T0 + 60_020)

    assert bar_closed.ts_init_ns == (T0 + 60_000) * 1_000_000
    assert tick.ts_init_ns == (T0 + 60_020) * 1_000_000
    rig.pb.drain()
    assert clock.now_ns() == (T0 + 60_020) * 1_000_000


def test_a_bar_closed_by_a_released_tick_is_held_again_and_everything_stays_in_order(rig, board, hold, deliveries):
    gate = hold(STRATEGIST)
    start_feed(rig, board, clock=TickClock())
    for offset in (0, 60_000, 90_000, 120_000, 130_000):
        push(rig, "BTC", "100", T0 + offset)
    assert rig.ask("stats")["held"] == 4

    gate.set()
    rig.pb.wait_for(Tick, SNIPER, where=lambda t: t.ts_ms == T0 + 130_000)

    rig.pb.drain()
    assert to_sniper(deliveries) == [
        "Tick BTC 0", "Bar BTC 60000", "Tick BTC 60000", "Tick BTC 90000", "Bar BTC 120000",
        "Tick BTC 120000", "Tick BTC 130000",
    ]
    bars = rig.store.load_bars()
    assert [(b.end_ms - T0, b.trades) for b in bars] == [(60_000, 1), (120_000, 2)], \
        "the closing tick counts once, in the next bar"


def test_causal_bar_is_stored_with_the_replay_resume_point_only_when_released(rig, board, hold):
    gate = hold(STRATEGIST)
    start_feed(rig, board, clock=TickClock())
    push(rig, "BTC", "100", T0, seq=1)
    push(rig, "ETH", "10", T0 + 100, seq=2)
    push(rig, "BTC", "101", T0 + 60_000, seq=3)  # closes the BTC bar
    push(rig, "BTC", "102", T0 + 60_500, seq=4)

    assert rig.ask("stats")["held"] == 2
    assert rig.store.load_bars() == [], "not stored while its effects are still being handled"
    assert rig.store.get_setting(RESUME_KEY) is None

    gate.set()
    rig.pb.wait_for(Tick, SNIPER, where=lambda t: t.seq == 4)

    rig.pb.drain()
    (stored,) = rig.store.load_bars()
    assert (stored.coin, stored.end_ms) == ("BTC", T0 + 60_000)
    # ETH's bar, still open, began at tick #2: a resumed replay must start there.
    assert rig.store.get_setting(RESUME_KEY) == "2"


def test_resume_point_is_the_first_tick_of_the_open_bar_when_only_one_coin_trades(rig, board):
    start_feed(rig, board, clock=TickClock())
    for seq, offset in enumerate((0, 30_000, 60_000, 61_000, 62_000), start=10):
        push(rig, "BTC", "100", T0 + offset, seq=seq)

    rig.pb.wait_for(Tick, SNIPER, where=lambda t: t.seq == 14)

    rig.pb.drain()
    assert rig.store.get_setting(RESUME_KEY) == "12"


def test_ticks_keep_their_replay_seq_on_the_way_to_the_sniper(rig, board):
    start_feed(rig, board, clock=TickClock())
    push(rig, "BTC", "100", T0, seq=41)

    assert rig.pb.wait_for(Tick, SNIPER).seq == 41


def test_restart_on_the_same_store_does_not_emit_a_stored_bar_again(rig, board):
    first = start_feed(rig, board, clock=TickClock())
    for seq, offset in enumerate((0, 30_000, 60_000), start=1):
        push(rig, "BTC", "100", T0 + offset, seq=seq)
    rig.pb.wait_for(Tick, SNIPER, where=lambda t: t.seq == 3)
    rig.pb.drain()
    assert [b.end_ms - T0 for b in rig.store.load_bars()] == [60_000]
    rig.stop(first)
    rig.pb.seen.clear()

    start_feed(rig, board, clock=TickClock())  # a resumed replay reads the same tape again
    for seq, offset in enumerate((0, 30_000, 60_000, 90_000, 120_000), start=1):
        push(rig, "BTC", "100", T0 + offset, seq=seq)

    bars = [m.bar for m in rig.pb.messages(BarClosed, SNIPER)]
    assert [(b.end_ms - T0, b.trades) for b in bars] == [(120_000, 2)], "only the new bar, built from its own ticks"
    assert [t.seq for t in rig.pb.messages(Tick, SNIPER)] == [1, 2, 3, 4, 5], \
        "ticks still go on: the Sniper skips the ones it saw"
    assert [b.end_ms - T0 for b in rig.store.load_bars()] == [60_000, 120_000]


def test_resumable_source_is_started_after_the_stored_resume_point(rig, board):
    class ResumableSource(FakeSource):
        resumable = True

        def start(self, sink: TickSink, resume_after: int | None = None) -> None:  # type: ignore[override]
            self.resume_after = resume_after
            super().start(sink)

    rig.store.set_setting(RESUME_KEY, "7")
    source = ResumableSource()

    start_feed(rig, board, source=source)

    assert source.started.wait(WAIT)
    assert source.resume_after == 6


def test_resumable_source_without_a_resume_point_starts_from_the_beginning(rig, board):
    class ResumableSource(FakeSource):
        resumable = True

        def start(self, sink: TickSink, resume_after: int | None = None) -> None:  # type: ignore[override]
            self.resume_after = resume_after
            super().start(sink)

    source = ResumableSource()

    start_feed(rig, board, source=source)

    assert source.started.wait(WAIT)
    assert source.resume_after is None


def test_out_of_order_tick_is_dropped_before_the_bar_builder(rig, board, logs):
    start_feed(rig, board, clock=TickClock())
    push(rig, "BTC", "100", T0 + 60_500)
    push(rig, "BTC", "1", T0 + 1_000)  # older, and in an earlier bar
    push(rig, "BTC", "101", T0 + 120_000)

    closed = rig.pb.wait_for(BarClosed, SNIPER).bar

    assert (closed.start_ms, closed.low, closed.trades) == (T0 + 60_000, D("100"), 1)
    stats = rig.ask("stats")
    assert stats["out_of_order"] == 1
    assert "HANDLER_ERROR" not in logs.text()


def test_out_of_order_tick_arriving_while_held_is_dropped_at_release(rig, board, hold):
    gate = hold(STRATEGIST)
    start_feed(rig, board, clock=TickClock())
    push(rig, "BTC", "100", T0 + 30_000)
    push(rig, "BTC", "101", T0 + 60_000)
    push(rig, "BTC", "102", T0 + 61_000)
    push(rig, "BTC", "1", T0 + 60_500)  # older than the tick before it

    gate.set()

    assert [t.ts_ms - T0 for t in rig.pb.messages(Tick, SNIPER)] == [30_000, 60_000, 61_000]
    assert rig.ask("stats")["out_of_order"] == 1


def test_feed_finished_after_end_of_data_when_nothing_is_held(rig, board):
    start_feed(rig, board, clock=TickClock())
    push(rig, "BTC", "100", T0)
    rig.pb.bus.send(EndOfData(ts_init_ns=T0 * 1_000_000, ticks=1, bad_rows=2))

    finished = rig.pb.wait_for(FeedFinished, JOURNAL)

    assert (finished.source, finished.ticks, finished.bad_rows) == ("manual", 1, 2)
    assert rig.ask("stats")["finished"] is True


def test_feed_finished_waits_for_the_held_ticks_and_everything_they_cause(rig, board, hold, deliveries):
    gate = hold(STRATEGIST)
    start_feed(rig, board, clock=TickClock())
    push(rig, "BTC", "100", T0)
    push(rig, "BTC", "101", T0 + 60_000)
    rig.pb.bus.send(EndOfData(ts_init_ns=T0 * 1_000_000, ticks=2))

    assert rig.ask("stats")["finished"] is False
    assert not any(isinstance(m, FeedFinished) for _, m in deliveries)

    gate.set()
    rig.pb.wait_for(FeedFinished, JOURNAL)

    kinds = [type(m).__name__ for role, m in deliveries if role in (SNIPER, JOURNAL)]
    assert kinds[-2:] == ["Tick", "FeedFinished"], "the last tick goes out before the end is announced"
    assert len([m for _, m in deliveries if isinstance(m, FeedFinished)]) == 1


def test_feed_finished_waits_until_the_bar_effect_roles_are_idle(rig, board, hold, deliveries):
    gate = hold(SNIPER)
    start_feed(rig, board, clock=TickClock())
    push(rig, "BTC", "100", T0)
    rig.pb.bus.send(EndOfData(ts_init_ns=T0 * 1_000_000, ticks=1))

    rig.ask("stats")  # the EndOfData has been handled
    assert not any(isinstance(m, FeedFinished) for _, m in deliveries), "the Sniper is still busy"

    gate.set()
    assert rig.pb.wait_for(FeedFinished, JOURNAL).ticks == 1


def test_ticks_held_when_the_feed_crashes_are_not_lost(rig, board, hold):
    gate = hold(STRATEGIST)
    notices = FailureNotices()
    start_feed(rig, board, clock=TickClock(), on_failure_notice=notices)
    push(rig, "BTC", "100", T0)
    push(rig, "BTC", "101", T0 + 60_000)
    push(rig, "BTC", "102", T0 + 61_000)
    assert rig.ask("stats")["held"] == 2
    rig.pb.bus.tell(FEED, InjectCrash(ts_init_ns=T0 * 1_000_000, reason="chaos"))
    assert notices.wait(), "the supervisor restarts only after on_failure's notice"

    start_feed(rig, board, clock=TickClock())  # the supervisor's restart
    gate.set()
    rig.pb.drain()

    assert [t.ts_ms - T0 for t in rig.pb.messages(Tick, SNIPER)] == [0, 60_000, 61_000]
