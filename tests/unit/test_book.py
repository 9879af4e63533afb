"""state/book.py: the armed-condition index (firing, arming order, expiry, require_cross)."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from state.book import ConditionBook
from state.models import TradeCondition
from state.types import epoch_ns

D = Decimal
CREATED = datetime(2024, 3, 1, 12, 0)


def cond(
    cid: str,
    trigger_price: str | int,
    trigger_type: str = "ABOVE",
    *,
    coin: str = "BTC",
    require_cross: bool = False,
    valid_for: timedelta | None = None,
    **extra: Any,
) -> TradeCondition:
    return TradeCondition(
        id=cid,
        coin=coin,
        direction="LONG" if trigger_type == "ABOVE" else "SHORT",
        trigger_price=trigger_price,
        trigger_type=trigger_type,
        stop_loss_pct="0.02",
        take_profit_pct="0.03",
        position_size_usd=100,
        require_cross=require_cross,
        created_at=CREATED,
        valid_until=None if valid_for is None else CREATED + valid_for,
        **extra,
    )


def ids(conditions: list[TradeCondition] | tuple[TradeCondition, ...]) -> list[str]:
    return [c.id for c in conditions]


def at(minutes: float) -> int:
    """Engine time ``minutes`` after CREATED, in ns."""
    return epoch_ns(CREATED + timedelta(minutes=minutes))


# --- firing -------------------------------------------------------------------------------------


def test_on_price_when_above_conditions_below_price_then_they_fire() -> None:
    book = ConditionBook()
    book.add(cond("a1", 100), None)
    book.add(cond("a2", 105), None)
    book.add(cond("a3", 110), None)
    assert ids(book.on_price("BTC", D("106"))) == ["a1", "a2"]


def test_on_price_when_below_conditions_above_price_then_they_fire() -> None:
    book = ConditionBook()
    book.add(cond("b1", 100, "BELOW"), None)
    book.add(cond("b2", 95, "BELOW"), None)
    book.add(cond("b3", 90, "BELOW"), None)
    assert ids(book.on_price("BTC", D("94"))) == ["b1", "b2"]


def test_on_price_when_price_equals_the_level_then_nothing_fires() -> None:
    book = ConditionBook()
    book.add(cond("a", 100), None)
    book.add(cond("b", 100, "BELOW"), None)
    assert book.on_price("BTC", D("100")) == []


def test_on_price_when_price_equals_a_higher_level_then_only_lower_levels_fire() -> None:
    book = ConditionBook()
    for cid, level, kind in [("a100", 100, "ABOVE"), ("a105", 105, "ABOVE"),
                             ("b95", 95, "BELOW"), ("b90", 90, "BELOW")]:
        book.add(cond(cid, level, kind), None)
    assert ids(book.on_price("BTC", D("105"))) == ["a100"]
    assert ids(book.on_price("BTC", D("90"))) == ["b95"]


def test_on_price_when_several_fire_then_returned_in_arming_order_not_level_order() -> None:
    book = ConditionBook()
    book.add(cond("first", 103), None)
    book.add(cond("second", 120, "BELOW"), None)
    book.add(cond("third", 101), None)
    book.add(cond("fourth", 115, "BELOW"), None)
    book.add(cond("fifth", 102), None)
    assert ids(book.on_price("BTC", D("110"))) == ["first", "second", "third", "fourth", "fifth"]


def test_on_price_when_same_level_then_tie_broken_by_arming_order() -> None:
    book = ConditionBook()
    for cid in ["z", "m", "a"]:
        book.add(cond(cid, 100), None)
    assert ids(book.on_price("BTC", D("101"))) == ["z", "m", "a"]


def test_on_price_when_none_fire_then_empty_list() -> None:
    book = ConditionBook()
    book.add(cond("a", 110), None)
    book.add(cond("b", 90, "BELOW"), None)
    assert book.on_price("BTC", D("100")) == []


def test_on_price_when_other_coin_ticks_then_nothing_fires() -> None:
    book = ConditionBook()
    book.add(cond("a", 100), None)
    assert book.on_price("ETH", D("1000")) == []
    assert ids(book.on_price("BTC", D("101"))) == ["a"]


def test_on_price_when_fired_then_conditions_stay_armed_until_removed() -> None:
    book = ConditionBook()
    book.add(cond("a", 100), None)
    assert ids(book.on_price("BTC", D("101"))) == ["a"]
    assert ids(book.on_price("BTC", D("102"))) == ["a"]
    assert "a" in book


def test_on_price_when_ten_thousand_far_conditions_then_nothing_fires() -> None:
    # correctness only: speed is measured in bench/, never asserted in tests
    book = ConditionBook()
    for n in range(5_000):
        book.add(cond(f"a{n}", 200_000 + n), None)
        book.add(cond(f"b{n}", 1_000 + n, "BELOW"), None)
    assert len(book) == 10_000
    assert book.on_price("BTC", D("42000")) == []
    assert ids(book.on_price("BTC", D("200000.5"))) == ["a0"]
    assert ids(book.on_price("BTC", D("999.5"))) == [f"b{n}" for n in range(5_000)]


# --- add, remove, replace -----------------------------------------------------------------------


def test_remove_when_armed_then_no_longer_fires_and_is_returned() -> None:
    book = ConditionBook()
    first = cond("a", 100)
    book.add(first, None)
    book.add(cond("b", 100), None)
    assert book.remove("a") is first
    assert ids(book.on_price("BTC", D("101"))) == ["b"]
    assert "a" not in book and len(book) == 1


def test_remove_when_unknown_id_then_none() -> None:
    assert ConditionBook().remove("nope") is None


def test_remove_when_last_of_a_coin_then_coin_can_be_armed_again() -> None:
    book = ConditionBook()
    book.add(cond("a", 100), None)
    book.remove("a")
    assert book.on_price("BTC", D("101")) == []
    book.add(cond("b", 100), None)
    assert ids(book.on_price("BTC", D("101"))) == ["b"]


def test_add_when_same_id_then_replaces_the_old_level() -> None:
    book = ConditionBook()
    book.add(cond("a", 100), None)
    replacement = cond("a", 200)
    book.add(replacement, None)
    assert len(book) == 1
    assert book.get("a") is replacement
    assert book.on_price("BTC", D("150")) == []
    assert ids(book.on_price("BTC", D("201"))) == ["a"]


def test_add_when_same_id_then_it_moves_to_the_end_of_arming_order() -> None:
    book = ConditionBook()
    book.add(cond("a", 100), None)
    book.add(cond("b", 100), None)
    book.add(cond("a", 100), None)
    assert ids(book.all()) == ["b", "a"]
    assert ids(book.on_price("BTC", D("101"))) == ["b", "a"]


def test_add_when_same_id_on_another_coin_then_old_coin_no_longer_fires() -> None:
    book = ConditionBook()
    book.add(cond("a", 100, coin="BTC"), None)
    book.add(cond("a", 100, coin="ETH"), None)
    assert book.on_price("BTC", D("101")) == []
    assert ids(book.on_price("ETH", D("101"))) == ["a"]


def test_all_when_mixed_coins_and_types_then_arming_order() -> None:
    book = ConditionBook()
    book.add(cond("x", 5, coin="ETH"), None)
    book.add(cond("y", 9, "BELOW"), None)
    book.add(cond("z", 1, require_cross=True), None)
    assert ids(book.all()) == ["x", "y", "z"]


def test_for_strategy_when_filtered_by_strategy_and_coin_then_only_matching() -> None:
    book = ConditionBook()
    book.add(cond("a", 1, strategy_id="s1"), None)
    book.add(cond("b", 1, coin="ETH", strategy_id="s1"), None)
    book.add(cond("c", 1, strategy_id="s2"), None)
    assert ids(book.for_strategy("s1")) == ["a", "b"]
    assert ids(book.for_strategy("s1", "ETH")) == ["b"]


def test_clear_when_called_then_book_is_empty() -> None:
    book = ConditionBook()
    book.add(cond("a", 100), None)
    book.add(cond("w", 100, require_cross=True), D("99"))
    book.clear()
    assert len(book) == 0
    assert book.on_price("BTC", D("101")) == []
    assert book.take_live_changes() == []


# --- expiry ----------------------------------------------------------------------------------------


def test_expired_when_deadline_not_reached_then_nothing() -> None:
    book = ConditionBook()
    book.add(cond("a", 100, valid_for=timedelta(minutes=10)), None)
    assert book.expired(at(9.99)) == []
    assert book.expired(at(9.99), "BTC") == []


def test_expired_when_deadline_reached_then_returned_and_still_in_book() -> None:
    book = ConditionBook()
    condition = cond("a", 100, valid_for=timedelta(minutes=10))
    book.add(condition, None)
    assert book.expired(at(10)) == [condition]
    assert "a" in book  # the caller removes it


def test_expired_when_coin_given_then_only_that_coin() -> None:
    book = ConditionBook()
    book.add(cond("btc", 100, valid_for=timedelta(minutes=1)), None)
    book.add(cond("eth", 100, coin="ETH", valid_for=timedelta(minutes=1)), None)
    assert ids(book.expired(at(5), "ETH")) == ["eth"]
    assert ids(book.expired(at(5), "BTC")) == ["btc"]
    assert book.expired(at(5), "SOL") == []


def test_expired_when_no_coin_given_then_all_coins_in_arming_order() -> None:
    book = ConditionBook()
    book.add(cond("e1", 100, coin="ETH", valid_for=timedelta(minutes=3)), None)
    book.add(cond("b1", 100, valid_for=timedelta(minutes=1)), None)
    book.add(cond("never", 100), None)
    book.add(cond("e2", 100, coin="ETH", valid_for=timedelta(minutes=2)), None)
    book.add(cond("later", 100, valid_for=timedelta(minutes=30)), None)
    assert ids(book.expired(at(5))) == ["e1", "b1", "e2"]


def test_expired_when_condition_removed_then_not_returned() -> None:
    book = ConditionBook()
    book.add(cond("a", 100, valid_for=timedelta(minutes=1)), None)
    book.add(cond("b", 100, valid_for=timedelta(minutes=1)), None)
    book.remove("a")
    assert ids(book.expired(at(5))) == ["b"]


def test_expired_when_replaced_with_later_deadline_then_old_deadline_ignored() -> None:
    book = ConditionBook()
    book.add(cond("a", 100, valid_for=timedelta(minutes=1)), None)
    book.add(cond("keep", 100), None)  # keeps the coin's index alive across the replace
    book.add(cond("a", 100, valid_for=timedelta(minutes=60)), None)
    assert book.expired(at(5), "BTC") == []
    assert ids(book.expired(at(60), "BTC")) == ["a"]


def test_expired_when_replaced_without_deadline_then_never_expires() -> None:
    book = ConditionBook()
    book.add(cond("keep", 100), None)
    book.add(cond("a", 100, valid_for=timedelta(minutes=1)), None)
    book.add(cond("a", 100), None)
    assert book.expired(at(10_000)) == []


def test_expired_when_replaced_several_times_with_same_deadline_then_returned_once() -> None:
    book = ConditionBook()
    book.add(cond("keep", 100), None)
    for _ in range(5):
        book.add(cond("a", 100, valid_for=timedelta(minutes=1)), None)
    assert ids(book.expired(at(2))) == ["a"]


def test_expired_when_require_cross_waiting_then_still_expires() -> None:
    book = ConditionBook()
    book.add(cond("w", 100, require_cross=True, valid_for=timedelta(minutes=1)), None)
    assert ids(book.expired(at(1), "BTC")) == ["w"]


# --- require_cross --------------------------------------------------------------------------------


def test_require_cross_when_above_armed_with_price_already_above_then_waits_for_reset() -> None:
    book = ConditionBook()
    book.add(cond("a", 100, require_cross=True), D("105"))
    assert not book.is_live("a")
    assert book.on_price("BTC", D("106")) == []
    assert book.on_price("BTC", D("101")) == []
    assert book.on_price("BTC", D("100")) == []  # reset side seen: at the level
    assert book.is_live("a")
    assert ids(book.on_price("BTC", D("100.01"))) == ["a"]


def test_require_cross_when_above_and_reset_tick_is_below_level_then_fires_on_later_cross() -> None:
    book = ConditionBook()
    book.add(cond("a", 100, require_cross=True), D("105"))
    assert book.on_price("BTC", D("95")) == []
    assert ids(book.on_price("BTC", D("101"))) == ["a"]


def test_require_cross_when_below_armed_with_price_already_below_then_waits_for_reset() -> None:
    book = ConditionBook()
    book.add(cond("b", 100, "BELOW", require_cross=True), D("95"))
    assert book.on_price("BTC", D("94")) == []
    assert book.on_price("BTC", D("99.99")) == []
    assert book.on_price("BTC", D("100")) == []
    assert ids(book.on_price("BTC", D("99.99"))) == ["b"]


def test_require_cross_when_armed_on_reset_side_then_live_at_once() -> None:
    book = ConditionBook()
    book.add(cond("a", 100, require_cross=True), D("99"))
    assert book.is_live("a")
    assert ids(book.on_price("BTC", D("101"))) == ["a"]


@pytest.mark.parametrize(("trigger_type", "first_tick", "crossing"), [("ABOVE", "99", "101"), ("BELOW", "101", "99")])
def test_require_cross_when_no_last_price_then_waits_for_first_tick_on_reset_side(
    trigger_type: str, first_tick: str, crossing: str
) -> None:
    book = ConditionBook()
    book.add(cond("a", 100, trigger_type, require_cross=True), None)
    assert not book.is_live("a")
    assert book.on_price("BTC", D(crossing)) == []  # past the level, but never seen the reset side
    assert book.on_price("BTC", D(first_tick)) == []
    assert ids(book.on_price("BTC", D(crossing))) == ["a"]


def test_require_cross_when_not_set_and_armed_past_level_then_fires_on_next_tick() -> None:
    book = ConditionBook()
    book.add(cond("a", 100), D("105"))
    assert ids(book.on_price("BTC", D("106"))) == ["a"]


def test_require_cross_when_several_waiting_then_only_those_whose_reset_side_is_seen_release() -> None:
    book = ConditionBook()
    for level in (100, 102, 104):
        book.add(cond(f"a{level}", level, require_cross=True), D("110"))
    assert book.on_price("BTC", D("102")) == []
    assert [book.is_live(f"a{level}") for level in (100, 102, 104)] == [False, True, True]
    assert ids(book.on_price("BTC", D("104.5"))) == ["a102", "a104"]


def test_take_live_changes_when_released_then_reports_ids_once() -> None:
    book = ConditionBook()
    book.add(cond("now", 100, require_cross=True), D("99"))
    book.add(cond("later", 100, "BELOW", require_cross=True), D("95"))
    book.add(cond("plain", 100), None)
    assert book.has_live_changes()
    assert book.take_live_changes() == ["now"]
    assert not book.has_live_changes()
    book.on_price("BTC", D("100"))
    assert book.take_live_changes() == ["later"]
    assert book.take_live_changes() == []


def test_take_live_changes_when_released_condition_removed_then_not_reported() -> None:
    book = ConditionBook()
    book.add(cond("a", 100, require_cross=True), D("99"))
    book.remove("a")
    assert book.take_live_changes() == []


def test_take_live_changes_when_released_then_replaced_by_waiting_condition_then_not_reported() -> None:
    book = ConditionBook()
    book.add(cond("a", 100, require_cross=True), D("99"))  # live at once, released
    book.add(cond("a", 100, require_cross=True), None)  # same id, now waiting
    assert not book.is_live("a")
    assert book.take_live_changes() == []


@pytest.mark.parametrize("trigger_type", ["ABOVE", "BELOW"])
def test_add_when_live_true_then_restored_live_without_seeing_reset_side(trigger_type: str) -> None:
    crossing = "101" if trigger_type == "ABOVE" else "99"
    book = ConditionBook()
    book.add(cond("a", 100, trigger_type, require_cross=True), None, live=True)
    assert book.is_live("a")
    assert not book.has_live_changes()  # a restored state is not a new change
    assert ids(book.on_price("BTC", D(crossing))) == ["a"]


def test_add_when_live_false_then_restored_waiting_even_on_reset_side() -> None:
    book = ConditionBook()
    book.add(cond("a", 100, require_cross=True), D("99"), live=False)
    assert not book.is_live("a")
    assert book.on_price("BTC", D("101")) == []


def test_add_when_live_false_but_not_require_cross_then_live_anyway() -> None:
    book = ConditionBook()
    book.add(cond("a", 100), None, live=False)
    assert book.is_live("a")
    assert ids(book.on_price("BTC", D("101"))) == ["a"]


def test_remove_when_condition_waiting_then_it_never_fires() -> None:
    book = ConditionBook()
    book.add(cond("a", 100, require_cross=True), None)
    assert book.remove("a") is not None
    assert book.on_price("BTC", D("99")) == []
    assert book.on_price("BTC", D("101")) == []
    assert len(book) == 0
