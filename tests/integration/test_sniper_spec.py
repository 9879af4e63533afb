"""The Sniper specification's checks, through the public API (engine.sniper, push_tick)."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

import pytest

from state import rules
from state.types import Direction, PositionStatus
from tests.conftest import WAIT, condition

FEE = Decimal("0.0005")


def settle(engine) -> None:
    assert engine.wait_idle(WAIT), f"engine not idle: {engine.bus.outstanding()}"


def test_long_above_does_nothing_at_41999_and_triggers_at_42001(engine, ts):
    engine.sniper.add_condition(condition(trigger=42000, size=1000))
    engine.push_tick("BTC", "41999", ts())
    settle(engine)
    snap = engine.sniper.snapshot()
    assert snap.positions == () and len(snap.conditions) == 1

    engine.push_tick("BTC", "42001", ts())
    settle(engine)
    snap = engine.sniper.snapshot()
    assert snap.conditions == ()
    (position,) = snap.positions
    assert position.status is PositionStatus.OPEN
    assert position.entry_price == Decimal("42001")
    assert position.quantity == Decimal("0.02380")  # 1000 / 42001 rounded down to 0.00001


def test_price_equal_to_the_trigger_does_not_fire(engine, ts):
    engine.sniper.add_condition(condition(trigger=42000))
    engine.push_tick("BTC", "42000", ts())
    settle(engine)
    assert engine.sniper.snapshot().positions == ()


@pytest.mark.parametrize(
    ("direction", "entry", "exit_price", "stop", "target"),
    [
        ("LONG", "42001", "41160", "41160.98", "42631.01"),
        ("SHORT", "41999", "42840", "42838.98", "41369.02"),
    ],
)
def test_stop_loss_exit(engine, ts, direction, entry, exit_price, stop, target):
    engine.sniper.add_condition(condition(direction=direction, trigger=42000, size=1000))
    engine.push_tick("BTC", entry, ts())
    settle(engine)
    (position,) = engine.sniper.snapshot().positions
    assert position.stop_loss_price == Decimal(stop)
    assert position.take_profit_price == Decimal(target)

    engine.push_tick("BTC", exit_price, ts())
    settle(engine)
    snap = engine.sniper.snapshot()
    assert snap.positions == ()
    closed = engine.store.get_position(position.id)
    assert closed.status is PositionStatus.CLOSED
    assert closed.exit_reason == "STOP_LOSS"
    assert closed.realized_pnl < 0


@pytest.mark.parametrize(
    ("direction", "entry", "exit_price"),
    [("LONG", "42001", "42700"), ("SHORT", "41999", "41300")],
)
def test_take_profit_exit(engine, ts, direction, entry, exit_price):
    engine.sniper.add_condition(condition(direction=direction, trigger=42000, size=1000))
    engine.push_tick("BTC", entry, ts())
    settle(engine)
    (position,) = engine.sniper.snapshot().positions
    engine.push_tick("BTC", exit_price, ts())
    settle(engine)
    closed = engine.store.get_position(position.id)
    assert closed.exit_reason == "TAKE_PROFIT"
    assert closed.realized_pnl > 0


def test_pnl_is_right_to_the_cent(engine, ts):
    engine.sniper.add_condition(condition(trigger=42000, size=1000, target="0.015"))
    engine.push_tick("BTC", "42001", ts())
    engine.push_tick("BTC", "42650", ts())
    settle(engine)
    snap = engine.sniper.snapshot()
    qty, entry, exit_ = Decimal("0.02380"), Decimal("42001"), Decimal("42650")
    fees = qty * entry * FEE + qty * exit_ * FEE
    expected = qty * (exit_ - entry) - fees  # 15.4462... - 1.0073... = 14.4389...
    assert rules.to_cents(snap.realized_pnl) == Decimal("14.44")
    assert snap.realized_pnl == expected
    assert snap.balance == Decimal(10000) + expected
    assert snap.fees_paid == fees


def test_short_pnl_is_right_to_the_cent(engine, ts):
    engine.sniper.add_condition(condition(direction="SHORT", trigger=42000, size=1000, target="0.015"))
    engine.push_tick("BTC", "41999", ts())
    engine.push_tick("BTC", "41360", ts())
    settle(engine)
    snap = engine.sniper.snapshot()
    qty, entry, exit_ = Decimal("0.02381"), Decimal("41999"), Decimal("41360")
    expected = qty * (entry - exit_) - qty * entry * FEE - qty * exit_ * FEE
    assert snap.realized_pnl == expected
    assert rules.to_cents(snap.realized_pnl) == Decimal("14.22")


def test_unrealized_pnl_follows_every_tick(engine, ts):
    engine.sniper.add_condition(condition(trigger=42000, size=1000))
    engine.push_tick("BTC", "42001", ts())
    engine.push_tick("BTC", "42300", ts())
    settle(engine)
    (position,) = engine.sniper.snapshot().positions
    assert position.current_price == Decimal("42300")
    assert position.unrealized_pnl == Decimal("0.02380") * (Decimal("42300") - Decimal("42001")) - position.fees_paid


def test_max_positions_limit_blocks_and_keeps_the_condition_armed(make_engine, ts, logs):
    engine = make_engine(sniper={"max_positions": 2, "max_exposure_pct": 1})
    for coin, trigger in (("BTC", 42000), ("ETH", 3000), ("SOL", 140)):
        engine.sniper.add_condition(condition(coin=coin, trigger=trigger, size=100))
    for coin, price in (("BTC", 42001), ("ETH", 3001), ("SOL", 141)):
        engine.push_tick(coin, price, ts())
    settle(engine)
    snap = engine.sniper.snapshot()
    assert sorted(p.coin for p in snap.positions) == ["BTC", "ETH"]
    assert [c.coin for c in snap.conditions] == ["SOL"]
    assert logs.wait_for("POSITION_LIMIT_EXCEEDED: max_positions")


def test_one_position_per_coin(engine, ts, logs):
    first = engine.sniper.add_condition(condition(trigger=42000, size=100))
    second = engine.sniper.add_condition(condition(trigger=42100, size=100))
    engine.push_tick("BTC", "42200", ts())
    settle(engine)
    snap = engine.sniper.snapshot()
    assert [p.condition_id for p in snap.positions] == [first]
    assert [c.id for c in snap.conditions] == [second]
    assert logs.wait_for("POSITION_LIMIT_EXCEEDED: max_per_coin")


def test_exposure_limit_counts_open_and_pending(engine, ts, logs):
    # balance 10000, 10 %: 1000 in all; 600 is open, a second 600 would exceed it.
    engine.sniper.add_condition(condition(coin="BTC", trigger=42000, size=600))
    engine.sniper.add_condition(condition(coin="ETH", trigger=3000, size=600))
    engine.push_tick("BTC", "42001", ts())
    engine.push_tick("ETH", "3001", ts())
    settle(engine)
    snap = engine.sniper.snapshot()
    assert [p.coin for p in snap.positions] == ["BTC"]
    assert [c.coin for c in snap.conditions] == ["ETH"]
    assert logs.wait_for("POSITION_LIMIT_EXCEEDED: max_exposure_pct")


def test_condition_expires_by_engine_clock(engine, ts):
    expiring = condition(trigger=42000, valid_for=timedelta(seconds=2))
    engine.sniper.add_condition(expiring)
    engine.push_tick("BTC", "41000", ts())
    settle(engine)
    assert len(engine.sniper.snapshot().conditions) == 1
    engine.push_tick("BTC", "43000", ts(3_000))  # 3 s later in tick time: expired first
    settle(engine)
    snap = engine.sniper.snapshot()
    assert snap.conditions == () and snap.positions == ()


def test_state_survives_a_restart(make_engine, tmp_path, ts):
    engine = make_engine(data_dir=tmp_path / "d")
    engine.sniper.add_condition(condition(coin="BTC", trigger=42000, size=300))
    engine.sniper.add_condition(condition(coin="ETH", trigger=3000, size=300))
    engine.sniper.add_condition(condition(coin="SOL", direction="SHORT", trigger=100, size=300))
    engine.push_tick("BTC", "42001", ts())
    engine.push_tick("BTC", "42100", ts())
    settle(engine)
    before = engine.sniper.snapshot()
    engine.stop()

    again = make_engine(data_dir=tmp_path / "d")
    assert again.sniper.snapshot() == before
    again.push_tick("BTC", "41000", ts())  # through the stop
    settle(again)
    after = again.sniper.snapshot()
    assert [p.coin for p in after.positions] == []
    assert len(after.conditions) == 2


def test_bad_condition_is_refused_with_the_field_named(engine):
    with pytest.raises(ValueError, match="stop_loss_pct"):
        condition(stop=2)
    with pytest.raises(ValueError, match="min"):
        engine.sniper.add_condition(condition(size="0.5"))
    past = condition(valid_for=timedelta(hours=-1), created_at=datetime.now() - timedelta(hours=3))
    with pytest.raises(ValueError, match="valid_until"):
        engine.sniper.add_condition(past)


def test_reusing_a_triggered_condition_id_is_refused(engine, ts):
    first = condition(trigger=42000, size=100, id="once")
    engine.sniper.add_condition(first)
    engine.push_tick("BTC", "42001", ts())
    settle(engine)
    with pytest.raises(ValueError, match="already triggered"):
        engine.sniper.add_condition(condition(trigger=50000, size=100, id="once"))
