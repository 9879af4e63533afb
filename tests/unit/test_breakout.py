"""state/strategies: the Breakout strategy, its settings, and how strategy names are resolved."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest

from state.bars import Bar
from state.entry_plan import ENTRY_FIELDS, EntryType
from state.strategies import (
    BUILT_IN,
    Breakout,
    ReplaceConditions,
    StrategyContext,
    StrategySettingsError,
    build_strategy,
    strategy_class,
)
from state.strategies.breakout import BreakoutSettings, breakout_levels
from state.types import Direction, TriggerType, from_epoch_ns

D = Decimal
MINUTE = 60_000
CONTEXT = StrategyContext(bar_seconds=60, symbols=("BTC", "ETH"))
T0 = 1_700_000_040_000  # on a minute


def bar(index: int, high: Any, low: Any, coin: str = "BTC", bar_ms: int = MINUTE) -> Bar:
    """The ``index``-th bar after T0; open and close in the middle of its range."""
    high, low = D(str(high)), D(str(low))
    mid = (high + low) / 2
    start = T0 + index * bar_ms
    return Bar(coin=coin, start_ms=start, end_ms=start + bar_ms, open=mid, high=high, low=low,
               close=mid, volume=D("1"), trades=1)


def breakout(lookback: int = 3, **settings: Any) -> Breakout:
    return Breakout.from_settings({"lookback_bars": lookback, **settings}, CONTEXT)


# --- settings ---------------------------------------------------------------------------------


def test_settings_when_empty_then_the_documented_defaults() -> None:
    assert BreakoutSettings.parse({}) == BreakoutSettings(
        lookback_bars=20, stop_loss_pct=D("0.005"), take_profit_pct=D("0.005"), position_size_usd=D("100"),
    )


def test_settings_when_valid_then_numbers_become_exact_decimals() -> None:
    parsed = BreakoutSettings.parse(
        {"lookback_bars": 5, "stop_loss_pct": 0.01, "take_profit_pct": "0.02", "position_size_usd": 250}
    )

    assert parsed == BreakoutSettings(lookback_bars=5, stop_loss_pct=D("0.01"), take_profit_pct=D("0.02"),
                                      position_size_usd=D("250"))


def test_settings_when_everything_is_wrong_then_every_problem_is_named_at_once() -> None:
    raw = {
        "lookback_bars": 0,
        "stop_loss_pct": 1.5,
        "take_profit_pct": "lots",
        "position_size_usd": -10,
        "lookbak_bars": 3,
    }

    with pytest.raises(StrategySettingsError) as raised:
        BreakoutSettings.parse(raw)

    problems = raised.value.problems
    assert sorted(p.split(":")[0] for p in problems) == sorted(raw)
    assert isinstance(raised.value, ValueError)
    assert all(p in str(raised.value) for p in problems)
    unknown = next(p for p in problems if p.startswith("lookbak_bars:"))
    assert "unknown key" in unknown and "lookback_bars" in unknown


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("lookback_bars", True),
        ("lookback_bars", 2.0),
        ("lookback_bars", "5"),
        ("lookback_bars", 10_001),
        ("lookback_bars", -1),
        ("stop_loss_pct", 0),
        ("stop_loss_pct", 1),
        ("take_profit_pct", -0.01),
        ("take_profit_pct", "nan"),
        ("take_profit_pct", True),
        ("position_size_usd", 0),
        ("position_size_usd", [100]),
    ],
)
def test_settings_when_one_value_is_bad_then_one_problem_naming_that_key(key: str, value: Any) -> None:
    with pytest.raises(StrategySettingsError) as raised:
        BreakoutSettings.parse({key: value})

    assert len(raised.value.problems) == 1
    assert raised.value.problems[0].startswith(f"{key}: ")
    assert repr(value) in raised.value.problems[0]


@pytest.mark.parametrize(("key", "value"), [("lookback_bars", 1), ("lookback_bars", 10_000),
                                            ("position_size_usd", 1_000_000), ("stop_loss_pct", "0.99")])
def test_settings_at_the_bounds_are_accepted(key: str, value: Any) -> None:
    assert getattr(BreakoutSettings.parse({key: value}), key) == (value if key == "lookback_bars" else D(str(value)))


# --- entry plans ------------------------------------------------------------------------------

LIMIT_PLAN = {
    "entry_type": "limit", "entry_offset_ticks": -2, "entry_timeout_s": 30, "entry_plan_b_pct": "0.001",
    "scale_in_fraction": 0.25, "scale_in_pullback_pct": "0.002", "scale_in_timeout_s": 60,
}


def test_settings_without_an_entry_plan_enter_at_market_as_before() -> None:
    settings = BreakoutSettings.parse({"lookback_bars": 3})

    assert settings.entry_plan() == {"entry_type": EntryType.MARKET, **dict.fromkeys(ENTRY_FIELDS[1:])}


def test_settings_with_a_limit_plan_parse_every_key_as_a_condition_does() -> None:
    settings = BreakoutSettings.parse(LIMIT_PLAN)

    assert settings.entry_plan() == {
        "entry_type": EntryType.LIMIT, "entry_offset_ticks": -2, "entry_offset_pct": None, "entry_timeout_s": 30,
        "entry_plan_b_pct": D("0.001"), "scale_in_fraction": D("0.25"), "scale_in_pullback_pct": D("0.002"),
        "scale_in_timeout_s": 60,
    }
    assert BreakoutSettings.parse({"entry_type": "LIMIT", "entry_offset_pct": 0.0005,
                                   "entry_timeout_s": 5}).entry_offset_pct == D("0.0005")


@pytest.mark.parametrize(
    ("raw", "key", "says"),
    [
        ({"entry_type": "stop"}, "entry_type", "must be one of MARKET|LIMIT"),
        ({"entry_type": "limit", "entry_offset_ticks": 1.5, "entry_timeout_s": 5}, "entry_offset_ticks",
         "whole number"),
        ({"entry_type": "limit", "entry_offset_pct": "near", "entry_timeout_s": 5}, "entry_offset_pct",
         "not a number"),
        ({"entry_type": "limit", "entry_timeout_s": True}, "entry_timeout_s", "whole number"),
        ({"entry_type": "limit"}, "entry_timeout_s", "needs a time limit"),
        ({"entry_type": "limit", "entry_timeout_s": 0}, "entry_timeout_s", "must be in (0,"),
        ({"entry_offset_ticks": 3}, "entry_offset_ticks", "only for entry_type LIMIT"),
        ({"entry_timeout_s": 30}, "entry_timeout_s", "only for entry_type LIMIT"),
        ({"entry_type": "limit", "entry_timeout_s": 5, "entry_offset_ticks": 1, "entry_offset_pct": 0.001},
         "entry_offset_pct", "not both"),
        ({"entry_type": "limit", "entry_timeout_s": 5, "entry_offset_pct": 0.5}, "entry_offset_pct", "within"),
        ({"entry_type": "limit", "entry_timeout_s": 5, "entry_plan_b_pct": -0.001}, "entry_plan_b_pct", "must be in"),
        ({"scale_in_fraction": 1}, "scale_in_fraction", "between 0 and 1"),
        ({"scale_in_fraction": 0.5, "scale_in_timeout_s": 60}, "scale_in_pullback_pct", "pullback level"),
        ({"scale_in_pullback_pct": 0.01}, "scale_in_pullback_pct", "only with scale_in_fraction"),
        ({"scale_in_fraction": 0.5, "scale_in_pullback_pct": 0.01}, "scale_in_timeout_s", "needs a time limit"),
    ],
)
def test_settings_with_a_bad_entry_plan_then_one_problem_naming_the_key(raw: dict[str, Any], key: str,
                                                                          says: str) -> None:
    with pytest.raises(StrategySettingsError) as raised:
        BreakoutSettings.parse(raw)

    (problem,) = raised.value.problems
    assert problem.startswith(f"{key}: ") and says in problem, problem


def test_settings_report_a_bad_entry_key_beside_the_other_problems() -> None:
    with pytest.raises(StrategySettingsError) as raised:
        BreakoutSettings.parse({"lookback_bars": 0, "entry_type": "limit", "entry_timeout_s": "soon",
                                "entry_offset": 2})

    assert sorted(p.split(":")[0] for p in raised.value.problems) == ["entry_offset", "entry_timeout_s",
                                                                       "lookback_bars"]


def test_conditions_carry_the_entry_plan_of_the_settings() -> None:
    strategy = breakout(1, **LIMIT_PLAN)

    decision = strategy.on_bar(bar(0, 101, 99))

    assert decision is not None
    expected = BreakoutSettings.parse(LIMIT_PLAN).entry_plan()
    for condition in decision.conditions:
        assert {name: getattr(condition, name) for name in ENTRY_FIELDS} == expected
        assert condition.limit_entry


def test_conditions_of_the_default_settings_enter_at_market() -> None:
    decision = breakout(1).on_bar(bar(0, 101, 99))

    assert decision is not None
    for condition in decision.conditions:
        assert condition.entry_type is EntryType.MARKET and not condition.limit_entry
        assert all(getattr(condition, name) is None for name in ENTRY_FIELDS[1:])


# --- signals ----------------------------------------------------------------------------------


def test_on_bar_when_fewer_than_lookback_bars_then_nothing() -> None:
    strategy = breakout(3)

    assert strategy.on_bar(bar(0, 101, 99)) is None
    assert strategy.on_bar(bar(1, 102, 98)) is None


def test_on_bar_at_lookback_bars_then_long_above_the_highest_high_and_short_below_the_lowest_low() -> None:
    strategy = breakout(3, stop_loss_pct="0.01", take_profit_pct="0.02", position_size_usd=500)
    strategy.on_bar(bar(0, "101.5", 99))
    strategy.on_bar(bar(1, 103, "97.25"))

    decision = strategy.on_bar(bar(2, 102, 98))

    assert isinstance(decision, ReplaceConditions)
    assert (decision.strategy_id, decision.coin) == ("breakout", "BTC")
    long, short = decision.conditions
    assert (long.direction, long.trigger_type, long.trigger_price) == (Direction.LONG, TriggerType.ABOVE, D("103"))
    assert (short.direction, short.trigger_type, short.trigger_price) == (Direction.SHORT, TriggerType.BELOW, D("97.25"))
    for condition in (long, short):
        assert condition.coin == "BTC"
        assert condition.strategy_id == "breakout"
        assert (condition.stop_loss_pct, condition.take_profit_pct, condition.position_size_usd) == (
            D("0.01"), D("0.02"), D("500"))
        assert condition.require_cross is False


def test_on_bar_the_window_slides_so_an_old_extreme_drops_out() -> None:
    strategy = breakout(3)
    strategy.on_bar(bar(0, 200, 1))  # the extremes, soon out of the window
    strategy.on_bar(bar(1, 101, 99))
    strategy.on_bar(bar(2, 102, 98))

    decision = strategy.on_bar(bar(3, 100, 97))

    assert decision is not None
    assert [c.trigger_price for c in decision.conditions] == [D("102"), D("97")]


def test_conditions_are_valid_until_the_next_bar_close_and_created_at_the_bar_end() -> None:
    strategy = breakout(1)
    closed = bar(0, 101, 99)

    decision = strategy.on_bar(closed)

    assert decision is not None
    for condition in decision.conditions:
        assert condition.created_at == from_epoch_ns(closed.end_ms * 1_000_000)
        assert condition.valid_until == from_epoch_ns((closed.end_ms + MINUTE) * 1_000_000)
        assert condition.valid_until - condition.created_at == timedelta(seconds=60)
        assert condition.valid_until_ns == (closed.end_ms + MINUTE) * 1_000_000


def test_valid_until_follows_the_context_bar_seconds() -> None:
    strategy = Breakout.from_settings({"lookback_bars": 1}, StrategyContext(bar_seconds=300, symbols=("BTC",)))
    closed = bar(0, 101, 99, bar_ms=300_000)

    decision = strategy.on_bar(closed)

    assert decision is not None
    assert decision.conditions[0].valid_until_ns == (closed.end_ms + 300_000) * 1_000_000


def test_condition_ids_are_derived_from_the_coin_and_the_bar_end_so_replays_agree() -> None:
    bars = [bar(i, 100 + i, 90 - i) for i in range(5)]
    first, second = breakout(3), breakout(3)

    decisions = [first.on_bar(b) for b in bars]
    again = [second.on_bar(b) for b in bars]

    assert decisions == again, "same bars, same conditions (ids, times, levels)"
    last = decisions[-1]
    assert last is not None
    assert [c.id for c in last.conditions] == [f"bo-BTC-{bars[-1].end_ms}-L", f"bo-BTC-{bars[-1].end_ms}-S"]
    assert len({c.id for d in decisions if d for c in d.conditions}) == 6, "each bar proposes new ids"


def test_coins_have_their_own_windows() -> None:
    strategy = breakout(2)
    assert strategy.on_bar(bar(0, 101, 99, coin="BTC")) is None
    assert strategy.on_bar(bar(0, 11, 9, coin="ETH")) is None, "a BTC bar does not count for ETH"

    decision = strategy.on_bar(bar(1, 12, 8, coin="ETH"))

    assert decision is not None and decision.coin == "ETH"
    assert [c.trigger_price for c in decision.conditions] == [D("12"), D("8")]


def test_warm_up_feeds_the_window_without_output_then_the_next_bar_proposes() -> None:
    strategy = breakout(3)

    assert strategy.warm_up([bar(0, 150, 99), bar(1, 101, 95), bar(2, 102, 98)]) is None

    decision = strategy.on_bar(bar(3, 100, 97))
    assert decision is not None
    assert [c.trigger_price for c in decision.conditions] == [D("102"), D("95")]


def test_a_bar_seen_in_warm_up_and_again_live_counts_once() -> None:
    strategy = breakout(3)
    bars = [bar(0, 150, 99), bar(1, 101, 95), bar(2, 102, 98)]
    strategy.warm_up(bars)

    decision = strategy.on_bar(bars[-1])  # the Feed's live copy of the last stored bar

    assert decision is not None
    assert decision.conditions[0].trigger_price == D("150"), "bar 0 must still be in the 3-bar window"


def test_breakout_levels() -> None:
    assert breakout_levels([bar(0, 101, 99), bar(1, 105, "98.5")]) == (D("105"), D("98.5"))
    with pytest.raises(ValueError, match="^bars:"):
        breakout_levels([])


# --- strategy names -----------------------------------------------------------------------------


class EchoStrategy:
    """A plugin found by 'tests.unit.test_breakout:EchoStrategy'."""

    strategy_id = "echo"

    def __init__(self, settings: Mapping[str, Any], context: StrategyContext) -> None:
        self.settings = dict(settings)
        self.context = context

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any], context: StrategyContext) -> EchoStrategy:
        return cls(settings, context)

    def on_bar(self, bar: Bar) -> ReplaceConditions | None:
        return None

    def warm_up(self, bars: Iterable[Bar]) -> None:
        return None


class NotAStrategy:
    pass


def test_strategy_class_when_built_in_name_then_its_class() -> None:
    assert strategy_class("breakout") is Breakout
    assert BUILT_IN["breakout"] is Breakout


def test_strategy_class_when_module_colon_class_then_imported() -> None:
    assert strategy_class("state.strategies.breakout:Breakout") is Breakout
    assert strategy_class("tests.unit.test_breakout:EchoStrategy") is EchoStrategy


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("nope", "unknown strategy 'nope'"),
        ("Breakout", "unknown strategy"),
        ("no_such_package.mod:Thing", "cannot import 'no_such_package.mod'"),
        ("state.strategies.breakout:Missing", "no strategy class 'Missing'"),
        ("tests.unit.test_breakout:NotAStrategy", "from_settings"),
    ],
)
def test_strategy_class_when_it_cannot_be_found_then_value_error_saying_why(name: str, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(")) as raised:
        strategy_class(name)
    assert not isinstance(raised.value, StrategySettingsError)


def test_unknown_name_error_lists_the_built_in_ones_and_the_plugin_form() -> None:
    with pytest.raises(ValueError) as raised:
        strategy_class("breakut")
    assert "breakout" in str(raised.value) and "package.module:Class" in str(raised.value)


def test_build_strategy_passes_settings_and_context() -> None:
    built = build_strategy("tests.unit.test_breakout:EchoStrategy", {"x": 1}, CONTEXT)

    assert isinstance(built, EchoStrategy)
    assert (built.settings, built.context) == ({"x": 1}, CONTEXT)
    assert isinstance(build_strategy("breakout", {"lookback_bars": 2}, CONTEXT), Breakout)


def test_build_strategy_when_settings_are_bad_then_strategy_settings_error() -> None:
    with pytest.raises(StrategySettingsError) as raised:
        build_strategy("breakout", {"lookback_bars": 0, "colour": "red"}, CONTEXT)
    assert len(raised.value.problems) == 2
