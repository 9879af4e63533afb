"""The Strategist as a threaded actor: every other role is a probe on a real bus."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from decimal import Decimal
from typing import Any

import pytest

from actors.bus import RISK_GATE, STRATEGIST
from actors.strategist import WARMUP_BARS, Strategist
from state.bars import Bar
from state.messages import (
    BarClosed,
    ConditionRejected,
    ProposeCondition,
    ProposeConditions,
    ProposeSignal,
    TradingStateChanged,
)
from state.strategies import Breakout, ReplaceConditions, StrategyContext
from state.types import Direction, TradingState
from tests.actors.helpers import ActorRig
from tests.conftest import condition

D = Decimal
MINUTE = 60_000
LOOKBACK = 3


def breakout(lookback: int = LOOKBACK) -> Breakout:
    return Breakout.from_settings({"lookback_bars": lookback}, StrategyContext(bar_seconds=60, symbols=("BTC",)))


def start_strategist(rig: ActorRig, make_strategies: Any = None, store: Any = "rig") -> Any:
    return rig.start(
        Strategist,
        make_strategies=make_strategies or (lambda: [breakout()]),
        store=rig.store if store == "rig" else store,
        bar_seconds=60,
    )


@pytest.fixture
def rig(probe_bus_for, tmp_path) -> Iterator[ActorRig]:
    rig = ActorRig(probe_bus_for(STRATEGIST), tmp_path)
    yield rig
    rig.close()


@pytest.fixture
def strategist(rig) -> Any:
    return start_strategist(rig)


def test_answers_ping_with_its_role(rig, strategist):
    assert rig.ask("ping") == STRATEGIST


def test_propose_signal_then_propose_condition_to_the_risk_gate_carries_the_same_condition(rig, strategist):
    wanted = condition(coin="SOL", trigger="142.50", size=500)

    rig.pb.bus.send(ProposeSignal(ts_init_ns=rig.pb.clock.now_ns(), condition=wanted))
    proposed = rig.pb.wait_for(ProposeCondition, RISK_GATE)

    assert proposed.condition == wanted
    assert proposed.correlation_id == wanted.id, "the condition id ties the whole flow together"
    assert proposed.ts_init_ns == rig.pb.clock.now_ns()
    assert rig.ask("stats")["proposed"] == 1


def test_each_signal_is_proposed_once_in_the_order_it_came(rig, strategist):
    first, second = condition(coin="BTC"), condition(coin="ETH")

    for wanted in (first, second):
        rig.pb.bus.send(ProposeSignal(ts_init_ns=rig.pb.clock.now_ns(), condition=wanted))

    proposals = rig.pb.messages(ProposeCondition, RISK_GATE)
    assert [p.condition.id for p in proposals] == [first.id, second.id]


def test_condition_rejected_is_counted_and_trading_state_changes_are_accepted(rig, strategist):
    now = rig.pb.clock.now_ns()
    rig.pb.bus.publish(ConditionRejected(ts_init_ns=now, condition_id="c-1", reason="trading is HALTED"))
    rig.pb.bus.publish(TradingStateChanged(ts_init_ns=now, state=TradingState.HALTED, reason="test"))

    assert rig.ask("stats") == {"strategies": ["breakout"], "bars": 0, "proposed": 0, "rejected": 1,
                                "strategy_errors": 0}
    assert strategist.is_alive()


# --- bars and strategies ---------------------------------------------------------------------------


class Recorder:
    """A strategy that records the bars it is given (live and in warm-up) and proposes nothing."""

    def __init__(self, strategy_id: str) -> None:
        self.strategy_id = strategy_id
        self.bars: list[Bar] = []
        self.warmed: list[Bar] = []

    def on_bar(self, bar: Bar) -> ReplaceConditions | None:
        self.bars.append(bar)
        return None

    def warm_up(self, bars: Iterable[Bar]) -> None:
        self.warmed.extend(bars)


class Exploding(Recorder):
    def on_bar(self, bar: Bar) -> ReplaceConditions | None:
        super().on_bar(bar)
        raise RuntimeError("plugin bug")


def minute_start(rig: ActorRig, minutes_ago: int = 30) -> int:
    """A minute boundary shortly before the rig's clock (stored bars must be recent to warm up)."""
    now_ms = rig.pb.clock.now_ns() // 1_000_000
    return now_ms - now_ms % MINUTE - minutes_ago * MINUTE


def make_bar(start_ms: int, index: int, high: Any, low: Any, coin: str = "BTC") -> Bar:
    high, low = D(str(high)), D(str(low))
    start = start_ms + index * MINUTE
    return Bar(coin=coin, start_ms=start, end_ms=start + MINUTE, open=low, high=high, low=low, close=high,
               volume=D("1"), trades=1)


def close_bar(rig: ActorRig, bar: Bar) -> None:
    rig.pb.bus.publish(BarClosed(ts_init_ns=bar.end_ms * 1_000_000, bar=bar))


def test_bars_go_to_every_strategy_in_order(rig):
    first, second = Recorder("one"), Recorder("two")
    start_strategist(rig, lambda: [first, second])
    t0 = minute_start(rig)
    bars = [make_bar(t0, i, 101 + i, 99) for i in range(3)] + [make_bar(t0, 0, 11, 9, coin="ETH")]

    for bar in bars:
        close_bar(rig, bar)
    rig.pb.drain()

    assert first.bars == bars and second.bars == bars
    assert rig.ask("stats")["bars"] == 4


def test_breakout_proposes_its_conditions_for_the_coin_once_it_has_lookback_bars(rig, strategist):
    t0 = minute_start(rig)
    bars = [make_bar(t0, 0, 101, 99), make_bar(t0, 1, 103, 98), make_bar(t0, 2, 102, "97.5")]

    for bar in bars[:2]:
        close_bar(rig, bar)
    assert rig.pb.messages(ProposeConditions) == [], "nothing before lookback bars"
    close_bar(rig, bars[2])
    proposed = rig.pb.wait_for(ProposeConditions, RISK_GATE)

    assert (proposed.strategy_id, proposed.coin) == ("breakout", "BTC")
    assert proposed.correlation_id == "breakout:BTC"
    long, short = proposed.conditions
    assert (long.direction, long.trigger_price) == (Direction.LONG, D("103"))
    assert (short.direction, short.trigger_price) == (Direction.SHORT, D("97.5"))
    assert rig.ask("stats")["proposed"] == 2


def test_every_later_bar_proposes_a_fresh_set(rig, strategist):
    t0 = minute_start(rig)
    for i in range(LOOKBACK + 2):
        close_bar(rig, make_bar(t0, i, 100 + i, 90))

    proposals = rig.pb.messages(ProposeConditions, RISK_GATE)

    assert len(proposals) == 3
    assert [p.conditions[0].trigger_price for p in proposals] == [D("102"), D("103"), D("104")]


def test_nothing_is_proposed_while_halted_but_indicators_keep_updating(rig, strategist):
    t0 = minute_start(rig)
    rig.pb.bus.publish(TradingStateChanged(ts_init_ns=rig.pb.clock.now_ns(), state=TradingState.HALTED,
                                           reason="test"))
    for i, (high, low) in enumerate([(200, 99), (101, 50), (102, 98)]):
        close_bar(rig, make_bar(t0, i, high, low))
    assert rig.pb.messages(ProposeConditions) == []
    assert rig.ask("stats")["bars"] == 3

    rig.pb.bus.publish(TradingStateChanged(ts_init_ns=rig.pb.clock.now_ns(), state=TradingState.ACTIVE,
                                           reason="resumed"))
    close_bar(rig, make_bar(t0, 3, 103, 97))
    proposed = rig.pb.wait_for(ProposeConditions, RISK_GATE)

    # The window is bars 1..3, two of them seen while HALTED.
    assert [c.trigger_price for c in proposed.conditions] == [D("103"), D("50")]


@pytest.mark.parametrize("state", [TradingState.REDUCING, TradingState.HALTED])
def test_nothing_is_proposed_unless_active(rig, strategist, state):
    t0 = minute_start(rig)
    rig.pb.bus.publish(TradingStateChanged(ts_init_ns=rig.pb.clock.now_ns(), state=state, reason="test"))
    for i in range(LOOKBACK + 1):
        close_bar(rig, make_bar(t0, i, 101, 99))

    assert rig.pb.messages(ProposeConditions) == []
    assert rig.ask("stats")["proposed"] == 0


def test_warm_up_from_stored_bars_lets_the_first_live_bar_propose(rig):
    t0 = minute_start(rig)
    for i, (high, low) in enumerate([(150, 99), (101, 95)]):
        rig.store.save_bar(make_bar(t0, i, high, low))  # as the Feed stored them
    recorder = Recorder("rec")
    start_strategist(rig, lambda: [breakout(), recorder])
    assert rig.ask("ping") == STRATEGIST  # on_start has run

    close_bar(rig, make_bar(t0, 2, 102, 98))
    proposed = rig.pb.wait_for(ProposeConditions, RISK_GATE)

    assert [c.trigger_price for c in proposed.conditions] == [D("150"), D("95")]
    assert [b.end_ms for b in recorder.warmed] == [t0 + MINUTE, t0 + 2 * MINUTE]
    assert recorder.bars == [make_bar(t0, 2, 102, 98)], "warm-up bars are not fed as live bars"


def test_warm_up_skips_bars_older_than_the_warm_up_horizon(rig):
    t0 = minute_start(rig, minutes_ago=WARMUP_BARS + 10)
    rig.store.save_bar(make_bar(t0, 0, 101, 99))  # ended more than WARMUP_BARS minutes ago
    recent = make_bar(minute_start(rig), 0, 101, 99)
    rig.store.save_bar(recent)
    recorder = Recorder("rec")

    start_strategist(rig, lambda: [recorder])
    rig.ask("ping")

    assert recorder.warmed == [recent]


def test_restart_warms_the_new_strategies_up_from_the_store(rig):
    t0 = minute_start(rig)
    first = start_strategist(rig)
    for i, (high, low) in enumerate([(150, 99), (101, 95)]):
        bar = make_bar(t0, i, high, low)
        rig.store.save_bar(bar)  # the Feed stores each bar it publishes
        close_bar(rig, bar)
    rig.pb.drain()
    rig.stop(first)

    start_strategist(rig)  # fresh strategy objects, as after a crash
    close_bar(rig, make_bar(t0, 2, 102, 98))
    proposed = rig.pb.wait_for(ProposeConditions, RISK_GATE)

    assert [c.trigger_price for c in proposed.conditions] == [D("150"), D("95")]


def test_without_a_store_strategies_start_cold(rig):
    start_strategist(rig, store=None)
    t0 = minute_start(rig)
    for i in range(LOOKBACK - 1):
        close_bar(rig, make_bar(t0, i, 101, 99))

    assert rig.pb.messages(ProposeConditions) == []


def test_a_strategy_raising_on_a_bar_does_not_stop_the_others(rig, logs):
    broken, after = Exploding("broken"), Recorder("after")
    ref = start_strategist(rig, lambda: [broken, breakout(1), after])
    t0 = minute_start(rig)

    close_bar(rig, make_bar(t0, 0, 101, 99))
    close_bar(rig, make_bar(t0, 1, 102, 98))

    proposals = rig.pb.messages(ProposeConditions, RISK_GATE)
    assert len(proposals) == 2
    assert len(after.bars) == 2 and len(broken.bars) == 2
    stats = rig.ask("stats")
    assert (stats["strategy_errors"], stats["bars"]) == (2, 2)
    assert ref.is_alive()
    assert logs.wait_for("STRATEGY_ERROR: broken failed")


def test_propose_signal_still_becomes_propose_condition_while_strategies_run(rig, strategist):
    wanted = condition(coin="BTC")
    t0 = minute_start(rig)
    close_bar(rig, make_bar(t0, 0, 101, 99))

    rig.pb.bus.send(ProposeSignal(ts_init_ns=rig.pb.clock.now_ns(), condition=wanted))

    assert rig.pb.wait_for(ProposeCondition, RISK_GATE).condition == wanted
    assert rig.pb.messages(ProposeConditions) == []


def test_strategies_are_built_in_on_start(rig):
    built: list[Sequence[Any]] = []

    def make() -> list[Any]:
        strategies = [Recorder("made")]
        built.append(strategies)
        return strategies

    start_strategist(rig, make)

    assert rig.ask("stats")["strategies"] == ["made"]
    assert len(built) == 1
