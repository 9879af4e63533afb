"""Entry plans end to end: the real engine (manual feed, tick clock), the real RiskGate, Executor
and paper venue. A limit entry rests and fills as maker; one that fills 3 of 10 steps and is
canceled at its time limit leaves 3 steps whose stop or target exits exactly them; plan B takes
the rest at market; a scale-in leg fills on the pullback; a stop that triggers while the limit
still works cancels it first and exits exactly what filled, the same way on every run.

A $4000 LONG above 39999 fired at 40000 is 0.1 BTC (ten steps of 0.01 here); its limit, 100
ticks below the trigger, is 39998.00. ``fill_model = "traded_volume"``: a resting order fills at
most the quantity each tick traded."""

from __future__ import annotations

import re
import sqlite3
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from state.models import Position
from state.types import PositionStatus
from tests.conftest import WAIT, condition

D = Decimal
LIMIT = {"entry_type": "limit", "entry_offset_ticks": -100, "entry_timeout_s": 60}
ROOM = {"risk": {"max_position_usd": 5000}, "sniper": {"max_exposure_pct": "0.5"}}  # $4000 positions
PARTIAL = {**ROOM, "paper": {"fill_model": "traded_volume", "maker_fee": "0.0002", "taker_fee": "0.0005"}}
T0 = 1_700_000_000_000


def settle(engine: Any) -> None:
    assert engine.wait_idle(WAIT), f"engine not idle: {engine.bus.outstanding()}"


def push(engine: Any, price: Any, ts_ms: int, qty: Any = "1") -> None:
    engine.push_tick("BTC", str(price), ts_ms, qty=D(str(qty)))
    settle(engine)


def only(engine: Any) -> Position:
    (position,) = engine.sniper.snapshot().positions
    return position


def closed(engine: Any, position_id: str) -> Position:
    position = engine.store.get_position(position_id)
    assert position is not None and position.status is PositionStatus.CLOSED, position
    return position


def test_a_limit_entry_rests_and_fills_as_maker_on_a_later_tick_through_its_price(make_engine):
    engine = make_engine(**ROOM, paper={"maker_fee": "-0.0002"})
    engine.sniper.add_condition(condition(trigger=39999, size=4000, **LIMIT))
    push(engine, 40000, T0)
    pending = only(engine)
    assert pending.status is PositionStatus.PENDING and pending.entry_order.limit_price == D("39998.00")
    assert engine.sniper.snapshot().working_orders == (f"{pending.id}-E",)
    push(engine, "39998.01", T0 + 1_000)  # not through it
    assert only(engine).status is PositionStatus.PENDING
    push(engine, "39997", T0 + 2_000)  # through it: a maker fill at the limit price
    opened = only(engine)
    assert opened.status is PositionStatus.OPEN and opened.quantity == D("0.1")
    assert opened.entry_price == D("39998.00")
    assert opened.fees_paid == D("-0.0002") * D("0.1") * D("39998.00") < 0  # a rebate
    assert engine.sniper.snapshot().working_orders == ()
    record = engine.store.get_order(f"{opened.id}-E")
    assert [f.liquidity.value for f in record.fills] == ["MAKER"]


@pytest.mark.parametrize(("exit_price", "reason"), [("39100", "STOP_LOSS"), ("40600", "TAKE_PROFIT")])
def test_an_entry_filled_3_of_10_steps_then_canceled_at_its_time_limit_exits_exactly_3_steps(
        make_engine, exit_price, reason):
    engine = make_engine(**PARTIAL)
    engine.sniper.add_condition(condition(trigger=39999, size=4000, stop="0.02", target="0.015", **LIMIT))
    push(engine, 40000, T0)
    push(engine, 39998, T0 + 1_000, qty="0.03")  # 3 of the 10 steps trade at the limit
    held = only(engine)
    assert held.status is PositionStatus.OPEN and held.quantity == D("0.03")
    push(engine, 40100, T0 + 59_999)
    assert only(engine).entry_order is not None, "still working before its time limit"
    push(engine, 40100, T0 + 60_000)  # the time limit, no plan B: canceled
    push(engine, 40100, T0 + 61_000)
    smaller = only(engine)
    assert smaller.entry_order is None and smaller.quantity == D("0.03")
    assert smaller.stop_loss_price == D("39198.04") and smaller.take_profit_price == D("40597.97")
    assert engine.store.get_order(f"{smaller.id}-E").status.value == "CANCELED"

    push(engine, exit_price, T0 + 62_000)
    done = closed(engine, smaller.id)
    assert done.exit_reason == reason and done.quantity == D("0.03") and done.exit_price == D(exit_price)
    (exit_record,) = [engine.store.get_order(f"{smaller.id}-X1")]
    assert exit_record.filled_quantity == D("0.03")
    maker = D("0.03") * D("39998.00") * D("0.0002")
    taker = D("0.03") * D(exit_price) * D("0.0005")
    assert done.realized_pnl == D("0.03") * (D(exit_price) - D("39998.00")) - maker - taker
    assert engine.sniper.snapshot().balance == D(10000) + done.realized_pnl


def test_nothing_filled_at_the_time_limit_closes_the_position_with_entry_timeout(make_engine):
    engine = make_engine(**PARTIAL)
    engine.sniper.add_condition(condition(trigger=39999, size=4000, **LIMIT, entry_plan_b_pct="0.001"))
    push(engine, 40000, T0)
    pending = only(engine)
    push(engine, 40100, T0 + 60_000)  # 101 from the trigger: beyond 0.1 %, canceled
    push(engine, 40100, T0 + 61_000)
    assert engine.sniper.snapshot().positions == ()
    done = closed(engine, pending.id)
    assert done.exit_reason.startswith("ENTRY_TIMEOUT: limit 39998.00 filled 0 of 0.10000 in 60s")
    assert engine.sniper.snapshot().balance == D(10000)


def test_plan_b_takes_exactly_the_rest_at_market_when_the_price_is_near_the_trigger(make_engine):
    engine = make_engine(**PARTIAL)
    engine.sniper.add_condition(condition(trigger=39999, size=4000, **LIMIT, entry_plan_b_pct="0.001"))
    push(engine, 40000, T0)
    push(engine, 39998, T0 + 1_000, qty="0.03")
    push(engine, 40010, T0 + 60_000)  # 11 from the trigger: within 0.1 % (39.999): TAKE
    push(engine, 40010, T0 + 61_000)
    held = only(engine)
    assert held.quantity == D("0.1") and held.entry_order is None
    take = engine.store.get_order(f"{held.id}-B")
    assert take is not None and take.filled_quantity == D("0.07")
    assert [(f.quantity, f.price, f.liquidity.value) for f in take.fills] == [(D("0.07"), D("40010.00"), "TAKER")]
    assert held.entry_price == (D("0.03") * D("39998.00") + D("0.07") * D("40010.00")) / D("0.1")
    maker = D("0.03") * D("39998.00") * D("0.0002")
    taker = D("0.07") * D("40010.00") * D("0.0005")
    assert held.fees_paid == maker + taker
    assert [lot.quantity for lot in held.lots] == [D("0.03"), D("0.07")]


def test_a_scale_in_leg_rests_after_the_first_leg_and_fills_on_the_pullback(make_engine):
    engine = make_engine(**ROOM, paper={"maker_fee": "0.0002", "taker_fee": "0.0005"})
    engine.sniper.add_condition(condition(trigger=39999, size=4000, stop="0.02", target="0.05",
                                          scale_in_fraction="0.4", scale_in_pullback_pct="0.01",
                                          scale_in_timeout_s=300))
    push(engine, 40000, T0)
    first = only(engine)
    assert first.status is PositionStatus.OPEN and first.quantity == D("0.06")
    assert first.add_order is not None and first.add_order.limit_price == D("39600.00")
    assert engine.sniper.snapshot().working_orders == (f"{first.id}-S",)
    push(engine, 39700, T0 + 1_000)
    assert only(engine).quantity == D("0.06")
    push(engine, 39600, T0 + 2_000)  # the pullback: the leg fills as maker
    grown = only(engine)
    assert grown.quantity == D("0.1") and grown.add_order is None
    assert grown.entry_price == D(39840)  # (0.06 x 40000 + 0.04 x 39600) / 0.1
    assert grown.stop_loss_price == D("39043.20")  # exit levels from the average entry
    assert engine.sniper.snapshot().working_orders == ()

    engine.sniper.close_position(grown.id, "MANUAL")
    settle(engine)
    done = closed(engine, grown.id)
    fees = D("0.06") * 40000 * D("0.0005") + D("0.04") * 39600 * D("0.0002") + D("0.1") * 39600 * D("0.0005")
    assert done.realized_pnl == D("0.06") * -400 - fees


def test_a_scale_in_leg_not_filled_is_canceled_at_its_time_limit_and_an_exit_covers_the_first_leg(make_engine):
    engine = make_engine(**ROOM)
    engine.sniper.add_condition(condition(trigger=39999, size=4000, stop="0.02", target="0.05",
                                          scale_in_fraction="0.4", scale_in_pullback_pct="0.01",
                                          scale_in_timeout_s=60))
    push(engine, 40000, T0)
    position = only(engine)
    push(engine, 40100, T0 + 60_000)
    push(engine, 40100, T0 + 61_000)
    after = only(engine)
    assert after.add_order is None and after.quantity == D("0.06")
    assert engine.store.get_order(f"{position.id}-S").status.value == "CANCELED"
    push(engine, 39000, T0 + 62_000)  # through the stop
    assert closed(engine, position.id).quantity == D("0.06")


def test_the_console_arms_a_limit_entry_with_plan_b_and_the_engine_carries_it_out(make_engine):
    from adapters.console.repl import Console

    engine = make_engine(**ROOM)
    push(engine, 39990, T0)
    cid = Console(engine).arm("BTC", "long", ">39999", 0.02, 0.015, 4000, entry_type="limit",
                              entry_offset_ticks=-100, entry_timeout_s=60, entry_plan_b_pct=0.001)
    (armed,) = engine.sniper.snapshot().conditions
    assert armed.id == cid and armed.limit_entry and armed.entry_plan_b_pct == D("0.001")
    push(engine, 40000, T0 + 1_000)
    assert only(engine).entry_order.limit_price == D("39998.00")
    push(engine, 40001, T0 + 61_000)  # the time limit: near the trigger, the whole size at market
    push(engine, 40001, T0 + 62_000)
    held = only(engine)
    assert held.quantity == D("0.1") and engine.store.get_order(f"{held.id}-B").filled_quantity == D("0.1")


JOURNAL_TABLES = ("trades", "orders", "daily_pnl", "equity", "events")
PER_RUN_COLUMNS = {"id", "run_id", "msg_id"}  # a run's own id and the random message ids


def _tape_time(value: Any) -> Any:
    """``value`` with every wall-clock time in ns (a manual feed's engine time before its first
    tick: the engine's start) replaced by ``WALL``; the tape's times (from T0) are kept."""
    def one(ns: int) -> Any:
        return ns if T0 * 1_000_000 <= ns < (T0 + 3_600_000) * 1_000_000 else "WALL"
    if isinstance(value, int) and value >= 10**18:
        return one(value)
    if isinstance(value, str):
        return re.sub(r"\b\d{19}\b", lambda m: str(one(int(m.group()))), value)
    return value


def whole_journal(data_dir: Path) -> dict[str, list[dict[str, Any]]]:
    """Every row of every journal table in insertion order, without what names the run or when
    the engine started."""
    with sqlite3.connect(data_dir / "journal.db") as db:
        db.row_factory = sqlite3.Row
        return {table: [{k: _tape_time(row[k]) for k in row.keys() if k not in PER_RUN_COLUMNS}
                        for row in db.execute(f"SELECT * FROM {table} ORDER BY rowid")]  # noqa: S608
                for table in JOURNAL_TABLES}


def stop_while_the_limit_works(make_engine: Any, data_dir: Path, armed: Any) -> Position:
    """A limit entry (``armed``) fills 3 of its 10 steps; the stop triggers while the other 7 still rest."""
    engine = make_engine(data_dir=data_dir, **PARTIAL)
    engine.sniper.add_condition(armed)
    push(engine, 40000, T0)
    push(engine, 39998, T0 + 1_000, qty="0.03")  # 3 of the 10 steps trade at the limit
    held = only(engine)
    assert held.quantity == D("0.03") and held.entry_order is not None and held.entry_order.working
    push(engine, 39100, T0 + 2_000, qty="0")  # through the stop (39198.04): nothing trades at the limit
    push(engine, 39100, T0 + 3_000, qty="0")
    done = closed(engine, held.id)
    engine.stop()
    return done


def test_a_stop_while_the_limit_entry_works_exits_exactly_what_filled_the_same_way_every_run(
        make_engine, tmp_path):
    armed = condition(trigger=39999, size=4000, stop="0.02", target="0.015", **LIMIT)  # the same in both runs
    done = stop_while_the_limit_works(make_engine, tmp_path / "one", armed)
    assert done.exit_reason == "STOP_LOSS" and done.quantity == D("0.03") and done.exit_price == D(39100)
    journal = whole_journal(tmp_path / "one")
    orders = [(row["client_order_id"], row["status"]) for row in journal["orders"]]
    entry, exit_ = f"{done.id}-E", f"{done.id}-X1"
    assert (entry, "CANCELED") in orders and (exit_, "FILLED") in orders
    # the exit went out only once the entry's cancel had ended: every row of it comes after
    canceled_at = orders.index((entry, "CANCELED"))
    assert all(i > canceled_at for i, (order_id, _) in enumerate(orders) if order_id == exit_), orders
    (trade,) = [row for row in journal["trades"] if row["position_id"] == done.id and row["status"] == "CLOSED"]
    assert D(trade["quantity"]) == D("0.03")

    again = stop_while_the_limit_works(make_engine, tmp_path / "two", armed)
    assert again.realized_pnl == done.realized_pnl
    second = whole_journal(tmp_path / "two")
    for table in JOURNAL_TABLES:
        assert second[table] == journal[table], table
