"""Bad input through every way in: ticks (engine.push_tick), conditions (engine.sniper.add_condition,
engine.propose_and_wait, the console's arm), and a data folder an older version left inconsistent.

Each bad input is refused with a reason that names what was wrong; none crashes an actor, halts
the engine, moves the clock or reaches the Sniper."""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation

import pytest

from adapters.console.repl import Console
from state import risk
from state.models import TradeCondition, exit_order_id
from state.order import Fill, OrderRecord
from state.store import Store
from state.types import Liquidity, OrderIntent, OrderStatus, PositionStatus, Side
from tests.conftest import WAIT, condition

TEN_YEARS_MS = 10 * 365 * 86_400_000


def settle(engine) -> None:
    assert engine.wait_idle(WAIT), f"engine not idle: {engine.bus.outstanding()}"


def open_long(engine, ts):
    engine.sniper.add_condition(condition(trigger=42000, size=1000))
    engine.push_tick("BTC", "42001", ts())
    settle(engine)
    (position,) = engine.sniper.snapshot().positions
    assert position.status is PositionStatus.OPEN
    return position


def rejected(engine) -> dict:
    return engine.handles["feed"].stats()["rejected_ticks"]["by_kind"]


# --- ticks -------------------------------------------------------------------------------------

@pytest.mark.parametrize(("price", "kind"), [
    ("0.0000000001", "off_grid"),  # would fire the stop and fill at 0.00
    ("0.001", "off_grid"),
    ("42001.005", "off_grid"),
    ("1e15", "bad_price"),  # finite, positive, absurd
    ("20000", "jump"),  # through the stop, but a lone tick 52 % away
    ("90000", "jump"),
])
def test_an_absurd_tick_with_a_long_open_is_rejected_at_the_feed_and_the_position_is_untouched(
        make_engine, ts, price, kind):
    engine = make_engine()
    position = open_long(engine, ts)
    engine.push_tick("BTC", price, ts())
    settle(engine)
    (still,) = engine.sniper.snapshot().positions
    assert still.status is PositionStatus.OPEN and still.current_price == position.current_price
    assert rejected(engine) == {kind: 1}
    assert engine.restarts == {role: 0 for role in engine.restarts}
    engine.push_tick("BTC", "41000", ts())  # a real tick through the stop still works
    settle(engine)
    assert engine.sniper.snapshot().positions == ()
    assert engine.store.get_position(position.id).exit_reason == "STOP_LOSS"
    report = engine.shutdown()
    assert report["rejected_ticks"] == {"total": 1, "by_kind": {kind: 1}}


@pytest.mark.parametrize("price", [1e308, "1e1000", 10**400, math.nan, math.inf, -1, 0, True, "abc"])
def test_a_tick_that_is_not_a_number_is_refused_to_the_caller_naming_the_price(make_engine, ts, price):
    engine = make_engine()
    with pytest.raises(ValueError, match="^price: "):
        engine.push_tick("BTC", price, ts())


def test_a_real_move_beyond_the_band_is_accepted_after_three_agreeing_ticks(make_engine, ts):
    engine = make_engine()
    position = open_long(engine, ts)
    for price in ("30000", "30010"):
        engine.push_tick("BTC", price, ts())
    settle(engine)
    assert engine.sniper.snapshot().positions[0].status is PositionStatus.OPEN
    engine.push_tick("BTC", "30020", ts())  # the third agreeing tick: a real crash
    settle(engine)
    assert engine.sniper.snapshot().positions == ()
    closed = engine.store.get_position(position.id)
    assert closed.exit_reason == "STOP_LOSS" and closed.exit_price == Decimal("30020")
    assert rejected(engine) == {"jump": 2}


def test_a_tick_ten_years_ahead_moves_no_clock_and_expires_nothing(make_engine, ts, logs):
    engine = make_engine()
    armed = engine.sniper.add_condition(condition(trigger=42000, size=1000))
    engine.push_tick("BTC", "41990", ts())
    settle(engine)
    engine.push_tick("BTC", "41991", ts() + TEN_YEARS_MS)
    settle(engine)
    assert rejected(engine) == {"clock_ahead": 1}
    assert logs.wait_for("TICK_REJECTED: clock_ahead: BTC 41991")
    assert [c.id for c in engine.sniper.snapshot().conditions] == [armed]
    assert engine.clock.now_ns() < (ts() + 3_600_000) * 1_000_000
    engine.push_tick("BTC", "41992", ts())  # a real tick after it is not "out of order"
    engine.sniper.add_condition(condition(coin="ETH", trigger=3000, size=300))  # new conditions still armed
    engine.push_tick("BTC", "42001", ts())
    settle(engine)
    assert engine.handles["feed"].stats()["out_of_order"] == 0
    assert [p.coin for p in engine.sniper.snapshot().positions] == ["BTC"]


# --- conditions: every way in validates the same way ------------------------------------------

BAD_CONDITIONS = [
    pytest.param(dict(coin="DOGE", trigger=0.1), "coin: DOGE is not traded in this session", id="unknown-coin"),
    pytest.param(dict(target=50), "take_profit_pct: 50 is above the maximum", id="absurd-take-profit"),
    pytest.param(dict(trigger="1.00", stop="0.001", size=1000), "stop_loss_pct", id="stop-finer-than-tick"),
    pytest.param(dict(trigger="0.001"), "trigger_price: 0.001 is below one tick", id="trigger-below-a-tick"),
    pytest.param(dict(trigger="42000.005"), "trigger_price: 42000.005 is not on the tick grid of BTC (0.01)",
                 id="trigger-off-grid"),
    pytest.param(dict(size="0.01"), "position_size_usd", id="size-below-the-minimum"),
    pytest.param(dict(trigger=10**12, size=10**12), "trigger_price", id="trigger-far-from-the-market"),
]


@pytest.mark.parametrize(("fields", "reason"), BAD_CONDITIONS)
def test_engine_sniper_add_condition_applies_the_risk_gates_vetting(make_engine, ts, fields, reason):
    engine = make_engine()
    engine.push_tick("BTC", "42000", ts())
    settle(engine)
    with pytest.raises(ValueError, match="rejected: ") as raised:
        engine.sniper.add_condition(condition(**fields))
    assert reason in str(raised.value)
    with pytest.raises(ValueError, match="rejected: "):
        engine.sniper.set_conditions([condition(**fields)])
    assert engine.sniper.snapshot().conditions == ()


@pytest.mark.parametrize(("fields", "reason"), BAD_CONDITIONS)
def test_propose_and_wait_returns_the_rejection_never_a_timeout(make_engine, ts, fields, reason):
    engine = make_engine()
    engine.push_tick("BTC", "42000", ts())
    settle(engine)
    with pytest.raises(ValueError, match="rejected: ") as raised:
        engine.propose_and_wait(condition(**fields), timeout=WAIT)
    assert reason in str(raised.value)


def test_a_condition_that_makes_vetting_raise_is_rejected_and_the_risk_gate_lives_on(make_engine, monkeypatch):
    def boom(*args, **kwargs):
        raise InvalidOperation([])

    monkeypatch.setattr(risk, "vet_condition", boom)
    engine = make_engine()
    for _ in range(4):  # more than the restart limit allows within a minute
        with pytest.raises(ValueError, match="VET_FAILED: cannot vet this condition: InvalidOperation"):
            engine.propose_and_wait(condition(), timeout=WAIT)
        with pytest.raises(ValueError, match="VET_FAILED"):
            engine.sniper.add_condition(condition())
    assert engine.restarts["risk_gate"] == 0 and engine.exit_code is None


@pytest.mark.parametrize(("field", "value"), [
    ("position_size_usd", 1e308), ("position_size_usd", "1e1000"), ("position_size_usd", 10**400),
    ("trigger_price", 1e308), ("trigger_price", math.nan), ("stop_loss_pct", math.inf),
    ("take_profit_pct", True), ("trigger_price", "42000;"), ("valid_until", datetime.min),
    ("valid_until", datetime.max),
])
def test_an_unrepresentable_value_never_reaches_an_actor(make_engine, field, value):
    engine = make_engine()
    fields = dict(coin="BTC", direction="LONG", trigger_price=42000, trigger_type="ABOVE", stop_loss_pct=0.02,
                  take_profit_pct=0.015, position_size_usd=500, valid_until=datetime.now() + timedelta(hours=1))
    with pytest.raises(ValueError, match=f"^{field}: "):
        TradeCondition(**{**fields, field: value})
    for way in (engine.sniper.add_condition, engine.propose):
        with pytest.raises(ValueError, match="^condition: expected a TradeCondition"):
            way({**fields, field: value})  # not a TradeCondition at all
    assert engine.restarts == {role: 0 for role in engine.restarts}


@pytest.mark.parametrize(("args", "kwargs", "reason"), [
    (("BTC", "long", ">1e308", 0.02, 0.015, 500), {}, "trigger: not a number"),
    (("BTC", "long", 1e308, 0.02, 0.015, 500), {}, "trigger: too large"),
    (("BTC", "long", math.nan, 0.02, 0.015, 500), {}, "trigger: must be a finite number"),
    (("BTC", "long", ">42100", 0.02, 0.015, 1e308), {}, "position_size_usd: too large"),
    (("BTC", "long", ">42100", 0.02, 0.015, 10**400), {}, "position_size_usd: too large"),
    (("BTC", "long", ">42100", math.inf, 0.015, 500), {}, "stop_loss_pct: must be a finite number"),
    (("BTC", "long", ">42100", 0.02, 0.015, 500), {"valid_for": math.inf}, "valid_for: must be a positive"),
    (("BTC", "long", ">42100", 0.02, 0.015, 500), {"valid_for": 1e308}, "valid_for: at most"),
    (("BTC", "sideways", ">42100", 0.02, 0.015, 500), {}, "direction: must be one of"),
    ((42, "long", ">42100", 0.02, 0.015, 500), {}, "coin: must be a coin symbol"),
    (("DOGE", "long", ">0.2", 0.02, 0.015, 500), {}, "coin: DOGE is not traded"),
    (("BTC", "long", ">42100", 0.0000001, 0.015, 500), {}, "stop_loss_pct: a LONG stop at 42100.00 is not between"),
    (("BTC", "long", ">42100", 0.02, 50, 500), {}, "take_profit_pct: 50 is above the maximum"),
    (("BTC", "long", ">42100.001", 0.02, 0.015, 500), {}, "trigger_price: 42100.001 is not on the tick grid"),
])
def test_the_consoles_arm_refuses_bad_input_with_the_reason(make_engine, ts, args, kwargs, reason):
    engine = make_engine()
    engine.push_tick("BTC", "42000", ts())
    settle(engine)
    with pytest.raises(ValueError) as raised:
        Console(engine).arm(*args, **kwargs)
    assert reason in str(raised.value)
    assert engine.sniper.snapshot().conditions == ()


# --- a folder left inconsistent -----------------------------------------------------------------

def test_a_closing_position_with_no_order_starts_open_with_a_report(make_engine, ts, logs):
    engine = make_engine()
    position = open_long(engine, ts)
    engine.stop()
    store = Store(engine.data_dir / "engine.db")
    store.save_position(replace(store.get_position(position.id), status=PositionStatus.CLOSING,
                                exit_reason="MANUAL", exit_attempts=1))
    store.close()

    again = make_engine(data_dir=engine.data_dir)
    assert logs.wait_for(f"RECONCILE_INCONSISTENT: position {position.id}")
    (reopened,) = again.sniper.snapshot().positions
    assert reopened.status is PositionStatus.OPEN and reopened.pending_order_id is None
    again.push_tick("BTC", "41000", ts())  # its stop works again
    settle(again)
    assert again.sniper.snapshot().positions == ()
    assert again.store.get_position(position.id).status is PositionStatus.CLOSED


def test_a_stored_exit_fill_at_zero_starts_with_the_fill_rejected_and_the_position_open(make_engine, ts, logs):
    engine = make_engine()
    position = open_long(engine, ts)
    engine.stop()
    store = Store(engine.data_dir / "engine.db")
    order_id = exit_order_id(position.id, 1)
    stamp = ts()
    store.save_position(replace(store.get_position(position.id), status=PositionStatus.CLOSING,
                                pending_order_id=order_id, pending_quantity=position.quantity,
                                reference_price=Decimal("0.0000000001"), reference_ts_ms=stamp,
                                exit_reason="STOP_LOSS", exit_attempts=1))
    store.save_order(OrderRecord(client_order_id=order_id, position_id=position.id, coin="BTC", side=Side.SELL,
                                 quantity=position.quantity, intent=OrderIntent.EXIT,
                                 reference_price=Decimal("0.0000000001"), reference_ts_ms=stamp,
                                 venue="paper").apply_fill(Fill(
        trade_id="t-0", client_order_id=order_id, venue_order_id="", quantity=position.quantity,
        price=Decimal("0.00"), fee=Decimal(0), fee_currency="USDT", liquidity=Liquidity.TAKER, ts_ms=stamp)))
    store.close()

    again = make_engine(data_dir=engine.data_dir)  # never an EngineStartError
    assert logs.wait_for(f"FILL_REJECTED: {order_id} of {position.id}")
    (reopened,) = again.sniper.snapshot().positions
    assert reopened.status is PositionStatus.OPEN
    again.push_tick("BTC", "41000", ts())
    settle(again)
    closed = again.store.get_position(position.id)
    assert closed.status is PositionStatus.CLOSED and closed.exit_price == Decimal("41000")
    assert again.restarts == {role: 0 for role in again.restarts}


@pytest.mark.parametrize(("stamp", "kind"), [(10**30, "clock_ahead"), (2**62, "clock_ahead")])
def test_an_absurd_timestamp_is_rejected_at_the_feed(make_engine, ts, stamp, kind):
    engine = make_engine()
    engine.push_tick("BTC", "42000", ts())
    engine.push_tick("BTC", "42000.01", stamp)
    settle(engine)
    assert rejected(engine) == {kind: 1}
    assert engine.clock.now_ns() < (ts() + 3_600_000) * 1_000_000


@pytest.mark.parametrize("stamp", [0, -1, 1.5, "now", True])
def test_a_timestamp_that_is_not_positive_milliseconds_is_refused_to_the_caller(make_engine, stamp):
    engine = make_engine()
    with pytest.raises(ValueError, match="^ts_ms: "):
        engine.push_tick("BTC", "42000", stamp)
