"""state/store.py: the codec and the SQLite store, on a temporary file (no threads)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import closing
from dataclasses import fields, replace
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from state.models import Position, TradeCondition, entry_order_id, position_id_for
from state.order import Fill, OrderRecord
from state.store import Store, decode, encode, jsonable
from state.types import Direction, Liquidity, OrderIntent, OrderStatus, PositionStatus, Side, TradingState

D = Decimal
NAIVE = datetime(2024, 3, 1, 12, 0, 0, 123456)
AWARE = datetime(2024, 3, 1, 12, 0, 0, 654321, tzinfo=timezone(timedelta(hours=-5)))


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = Store(tmp_path / "data" / "engine.db")
    try:
        yield opened
    finally:
        opened.close()


def make_condition(cid: str = "c-1", **overrides: Any) -> TradeCondition:
    values: dict[str, Any] = dict(
        id=cid,
        coin="BTC",
        direction="SHORT",
        trigger_price="42000.50",
        trigger_type="BELOW",
        stop_loss_pct="0.020",
        take_profit_pct="0.0150",
        position_size_usd="500.00",
        strategy_id="alpha",
        reasoning="breakdown below support — ünïcode too",
        created_at=NAIVE,
        valid_until=NAIVE + timedelta(hours=1),
        require_cross=True,
    )
    values.update(overrides)
    return TradeCondition(**values)


def make_position(pid: str = "p-1", condition_id: str = "c-1", **overrides: Any) -> Position:
    values: dict[str, Any] = dict(
        id=pid,
        coin="BTC",
        direction=Direction.LONG,
        size_usd=D("1000.00"),
        condition_id=condition_id,
        strategy_id="alpha",
        reasoning="",
        stop_loss_pct=D("0.020"),
        take_profit_pct=D("0.03"),
        status=PositionStatus.OPEN,
        entry_price=D("42000.00"),
        entry_time=AWARE,
        quantity=D("0.02380"),
        stop_loss_price=D("41160.00"),
        take_profit_price=D("43260.00"),
        current_price=D("42100.5"),
        unrealized_pnl=D("2.3919"),
        fees_paid=D("0.4998"),
        pending_order_id=None,
        reference_price=D("42000"),
        reference_ts_ms=1_709_294_400_000,
        exit_attempts=2,
    )
    values.update(overrides)
    return Position(**values)


def make_order(coid: str = "p1-E", **overrides: Any) -> OrderRecord:
    values: dict[str, Any] = dict(
        client_order_id=coid,
        position_id="p1",
        coin="BTC",
        side=Side.BUY,
        quantity=D("0.02380"),
        intent=OrderIntent.ENTRY,
        reference_price=D("42000.00"),
        reference_ts_ms=1_709_294_400_000,
        created_ns=1,
    )
    values.update(overrides)
    return OrderRecord(**values)


def assert_identical(decoded: Any, original: Any) -> None:
    """Equal, and each Decimal keeps its exponent and each datetime its tzinfo."""
    assert decoded == original
    for item in fields(original):
        before, after = getattr(original, item.name), getattr(decoded, item.name)
        assert type(after) is type(before), item.name
        if isinstance(before, Decimal):
            assert str(after) == str(before), item.name
        if isinstance(before, datetime):
            assert after.utcoffset() == before.utcoffset(), item.name


# --- codec ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "condition",
    [
        make_condition(),
        make_condition(created_at=AWARE, valid_until=AWARE + timedelta(minutes=1)),
        make_condition(valid_until=None, require_cross=False, reasoning=""),
    ],
    ids=["naive", "aware", "no-deadline"],
)
def test_decode_when_condition_encoded_then_identical_object(condition: TradeCondition) -> None:
    data = json.loads(json.dumps(encode(condition)))
    assert_identical(decode(TradeCondition, data), condition)


def test_encode_when_decimal_then_text_keeping_trailing_zeros() -> None:
    data = encode(make_condition())
    assert data["stop_loss_pct"] == "0.020"
    assert data["direction"] == "SHORT"
    assert data["created_at"] == NAIVE.isoformat()


@pytest.mark.parametrize(
    "position",
    [
        make_position(),
        make_position(entry_time=NAIVE),
        make_position(
            status=PositionStatus.PENDING, entry_price=None, entry_time=None, quantity=D(0),
            stop_loss_price=None, take_profit_price=None, current_price=None,
            reference_ts_ms=None, pending_order_id="p-1-E", pending_quantity=D("0.5"),
        ),
        make_position(
            status=PositionStatus.CLOSED, realized_pnl=D("-12.50"), exit_price=D("41160.00"),
            exit_time=NAIVE + timedelta(minutes=3), exit_reason="STOP_LOSS",
        ),
        make_position(direction=Direction.SHORT, stop_loss_price=D("42840"),
                      take_profit_price=D("40740")),
    ],
    ids=["open-aware", "open-naive", "pending-nones", "closed", "short"],
)
def test_decode_when_position_encoded_then_identical_object(position: Position) -> None:
    data = json.loads(json.dumps(encode(position)))
    assert_identical(decode(Position, data), position)


def make_fill(coid: str = "p1-E", trade_id: str = "t-1", **overrides: Any) -> Fill:
    values: dict[str, Any] = dict(
        trade_id=trade_id, client_order_id=coid, venue_order_id="v-9", quantity=D("0.02380"),
        price=D("42021.00"), fee=D("0.500"), fee_currency="USDT", liquidity=Liquidity.TAKER,
        ts_ms=1_709_294_400_123,
    )
    values.update(overrides)
    return Fill(**values)


@pytest.mark.parametrize(
    "record",
    [
        make_order(),
        replace(make_order(venue="paper", updated_ns=5, submissions=1).apply_fill(make_fill()), venue_order_id="v-9"),
        make_order(status=OrderStatus.REJECTED, reason="insufficient margin", side=Side.SELL,
                   intent=OrderIntent.EXIT),
    ],
    ids=["submitting", "filled", "rejected"],
)
def test_order_when_saved_and_read_back_then_identical_object(store: Store, record: OrderRecord) -> None:
    store.save_order(record)
    again = store.get_order(record.client_order_id)
    assert_identical(again, record)
    for read, written in zip(again.fills, record.fills, strict=True):
        assert_identical(read, written)


def test_jsonable_when_nested_objects_then_plain_json_values() -> None:
    value = {"c": make_condition(), "n": (D("1.0"), {1, 2} - {1}), "e": OrderStatus.FILLED}
    plain = jsonable(value)
    json.dumps(plain)  # raises if anything is not JSON
    assert plain["c"]["trigger_price"] == "42000.50"
    assert plain["n"] == ["1.0", [2]]
    assert plain["e"] == "FILLED"


# --- conditions -----------------------------------------------------------------------------------


def test_load_conditions_when_saved_out_of_order_then_returned_in_arming_order(store: Store) -> None:
    store.save_condition(make_condition("c-late"), 7)
    store.save_condition(make_condition("c-first"), 1)
    store.save_condition(make_condition("c-mid"), 3, live=True)
    loaded = store.load_conditions()
    assert [(seq, c.id, live) for seq, c, live in loaded] == [
        (1, "c-first", False), (3, "c-mid", True), (7, "c-late", False)
    ]
    assert_identical(loaded[0][1], make_condition("c-first"))


def test_set_condition_live_when_called_then_live_flag_persisted(store: Store) -> None:
    store.save_condition(make_condition("c-1"), 1)
    store.set_condition_live("c-1")
    assert [live for _, _, live in store.load_conditions()] == [True]


def test_save_condition_when_same_id_then_replaced_not_duplicated(store: Store) -> None:
    store.save_condition(make_condition("c-1"), 1, live=True)
    store.save_condition(make_condition("c-1", trigger_price="100"), 2)
    [(seq, condition, live)] = store.load_conditions()
    assert (seq, condition.trigger_price, live) == (2, D("100"), False)


def test_delete_condition_when_called_then_gone(store: Store) -> None:
    store.save_condition(make_condition("c-1"), 1)
    store.save_condition(make_condition("c-2"), 2)
    store.delete_condition("c-1")
    assert [c.id for _, c, _ in store.load_conditions()] == ["c-2"]


def test_transaction_when_body_raises_then_nothing_written(store: Store) -> None:
    with pytest.raises(RuntimeError):
        with store.transaction():
            store.save_condition(make_condition("c-1"), 1)
            raise RuntimeError("crash between two writes")
    assert store.load_conditions() == []


# --- positions ------------------------------------------------------------------------------------


def test_load_positions_when_some_closed_then_active_only_by_default(store: Store) -> None:
    store.save_position(make_position("p-open", "c-1"))
    store.save_position(make_position("p-closed", "c-2", status=PositionStatus.CLOSED))
    assert [p.id for p in store.load_positions()] == ["p-open"]
    assert sorted(p.id for p in store.load_positions(active_only=False)) == ["p-closed", "p-open"]
    assert store.count_closed_positions() == 1


def test_load_positions_when_several_then_ordered_by_entry_time_pending_last(store: Store) -> None:
    store.save_position(make_position("p-b", "c-1", entry_time=AWARE + timedelta(minutes=2)))
    store.save_position(make_position(
        "p-pending", "c-2", status=PositionStatus.PENDING, entry_price=None, entry_time=None,
        quantity=D(0), stop_loss_price=None, take_profit_price=None,
    ))
    store.save_position(make_position("p-a", "c-3", entry_time=AWARE))
    assert [p.id for p in store.load_positions()] == ["p-a", "p-b", "p-pending"]


def test_load_positions_when_naive_and_aware_entry_times_then_loaded_in_time_order(
    store: Store,
) -> None:
    early = datetime(2024, 3, 1, 10, 0, tzinfo=timezone.utc)
    store.save_position(make_position("p-aware", "c-1", entry_time=early))
    store.save_position(make_position("p-naive", "c-2", entry_time=datetime(2030, 1, 1)))
    assert [p.id for p in store.load_positions()] == ["p-aware", "p-naive"]


def test_save_position_when_status_changes_then_row_replaced(store: Store) -> None:
    position = make_position()
    store.save_position(position)
    store.save_position(make_position(status=PositionStatus.CLOSED, exit_price=D("43260")))
    assert store.load_positions() == []
    stored = store.get_position(position.id)
    assert stored is not None and stored.status is PositionStatus.CLOSED


def test_get_position_when_unknown_then_none(store: Store) -> None:
    assert store.get_position("nope") is None


def test_used_condition_ids_when_some_opened_positions_then_only_those(store: Store) -> None:
    store.save_position(make_position("p-1", "c-used"))
    store.save_position(make_position("p-2", "c-closed", status=PositionStatus.CLOSED))
    wanted = ["c-used", "c-closed", "c-fresh"] + [f"c-{n}" for n in range(1200)]
    assert store.used_condition_ids(wanted) == {"c-used", "c-closed"}
    assert store.used_condition_ids([]) == set()


# --- account and settings ---------------------------------------------------------------------------


def test_load_account_when_saved_then_values_as_text(store: Store) -> None:
    assert store.load_account() == {}
    store.save_account(balance=D("10000.00"), realized_pnl=D("-1.5"), closed=3)
    store.save_account(balance=D("9998.50"))
    assert store.load_account() == {"balance": "9998.50", "realized_pnl": "-1.5", "closed": "3"}


def test_get_setting_when_set_then_latest_value(store: Store) -> None:
    assert store.get_setting("trading_state") is None
    store.set_setting("trading_state", "HALTED")
    store.set_setting("trading_state", "ACTIVE")
    assert store.get_setting("trading_state") == "ACTIVE"


def test_trading_state_when_never_saved_then_active_with_no_reason(store: Store) -> None:
    assert store.load_trading_state() is TradingState.ACTIVE
    assert store.load_trading_reason() == ""


def test_trading_state_when_saved_then_state_and_reason_together(store: Store) -> None:
    store.save_trading_state(TradingState.HALTED, "KILL_SWITCH: daily loss")
    assert store.load_trading_state() is TradingState.HALTED
    assert store.load_trading_reason() == "KILL_SWITCH: daily loss"


def test_durable_status_when_empty_then_initial_balance_and_nothing_armed(store: Store) -> None:
    assert store.durable_status(D("10000")) == {
        "conditions": [], "positions": [], "balance": "10000", "realized_pnl": "0", "fees_paid": "0",
        "trading_state": "ACTIVE",
    }


def test_durable_status_when_state_saved_then_as_json_values(store: Store) -> None:
    condition, position = make_condition(), make_position(condition_id="c-other")
    store.save_condition(condition, 1)
    store.save_position(position)
    store.save_account(balance=D("9990.5"), realized_pnl=D("-9.5"), fees_paid=D("0.5"))
    store.save_trading_state(TradingState.REDUCING, "requested")

    status = store.durable_status(D("10000"))

    assert json.loads(json.dumps(status)) == status
    assert status["conditions"] == [jsonable(condition)]
    assert status["positions"] == [jsonable(position)]
    assert (status["balance"], status["realized_pnl"], status["fees_paid"]) == ("9990.5", "-9.5", "0.5")
    assert status["trading_state"] == "REDUCING"


# --- orders -------------------------------------------------------------------------------------------


def test_load_orders_when_filtered_by_status_then_only_matching_in_creation_order(
    store: Store,
) -> None:
    store.save_order(make_order("z-E", created_ns=1))
    store.save_order(make_order("a-E", created_ns=2, status=OrderStatus.ACCEPTED))
    store.save_order(make_order("m-E", created_ns=3, status=OrderStatus.FILLED))
    store.save_order(make_order("b-E", created_ns=4, status=OrderStatus.REJECTED))
    open_ = store.load_orders([OrderStatus.SUBMITTING, OrderStatus.ACCEPTED])
    assert [r.client_order_id for r in open_] == ["z-E", "a-E"]
    assert [r.client_order_id for r in store.load_orders([OrderStatus.FILLED])] == ["m-E"]
    assert [r.client_order_id for r in store.load_orders()] == ["z-E", "a-E", "m-E", "b-E"]
    assert store.load_orders([]) == []


def test_save_order_when_outcome_applied_then_status_column_follows(store: Store) -> None:
    store.save_order(make_order("p1-E"))
    store.save_order(make_order("p1-E").apply_fill(make_fill(price=D("42021"))))
    assert store.load_orders([OrderStatus.SUBMITTING]) == []
    record = store.get_order("p1-E")
    assert record is not None and record.average_fill_price == D("42021")


def test_get_order_when_engine_ids_then_round_trip(store: Store) -> None:
    coid = entry_order_id(position_id_for("c-" + "x" * 62))
    store.save_order(make_order(coid))
    assert store.get_order(coid) == make_order(coid)
    assert store.get_order("missing") is None


# --- events -----------------------------------------------------------------------------------------------


def test_store_when_opened_then_database_in_wal_mode(store: Store) -> None:
    (mode,) = store.db.execute_sql("PRAGMA journal_mode").fetchone()
    assert mode.lower() == "wal"


def test_store_when_path_in_missing_folder_then_folder_created(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "engine.db"
    opened = Store(path)
    try:
        opened.save_account(balance=1)
    finally:
        opened.close()
    assert path.is_file()


def test_second_store_when_same_file_then_sees_the_data(store: Store) -> None:
    store.save_condition(make_condition("c-1"), 1, live=True)
    store.save_position(make_position())
    store.save_account(balance=D("123.45"))
    store.save_order(make_order())
    other = Store(store.path)
    try:
        [(seq, condition, live)] = other.load_conditions()
        assert (seq, live) == (1, True)
        assert_identical(condition, make_condition("c-1"))
        assert other.load_positions() == [make_position()]
        assert other.load_account() == {"balance": "123.45"}
        assert other.get_order("p1-E") == make_order()
        other.set_setting("from", "other")
    finally:
        other.close()
    assert store.get_setting("from") == "other"


def test_store_when_reopened_after_close_then_data_survives(tmp_path: Path) -> None:
    path = tmp_path / "engine.db"
    first = Store(path)
    first.save_position(make_position())
    first.close()
    second = Store(path)
    try:
        assert second.get_position("p-1") == make_position()
    finally:
        second.close()


OLD_VENUE_TABLE = "venue_orders"  # the previous paper venue's ledger, in stores of older versions


def table_names(path: Path) -> set[str]:
    with closing(sqlite3.connect(path)) as db:
        return {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def test_a_new_store_has_no_table_of_the_previous_paper_venue(tmp_path: Path) -> None:
    Store(tmp_path / "engine.db").close()
    names = table_names(tmp_path / "engine.db")
    assert {"orders", "fills", "positions"} <= names
    assert OLD_VENUE_TABLE not in names


def test_a_store_of_an_older_version_keeps_the_old_venue_table_unused(tmp_path: Path) -> None:
    path = tmp_path / "engine.db"
    Store(path).close()
    with closing(sqlite3.connect(path)) as db, db:
        db.execute(f"CREATE TABLE {OLD_VENUE_TABLE} (client_order_id VARCHAR(36) PRIMARY KEY, venue VARCHAR, "
                   "data TEXT)")
        db.execute(f"INSERT INTO {OLD_VENUE_TABLE} VALUES ('p1-E', 'paper', '{{}}')")
    reopened = Store(path)
    try:
        reopened.save_position(make_position())
        assert reopened.get_position("p-1") == make_position()
    finally:
        reopened.close()
    with closing(sqlite3.connect(path)) as db:
        assert db.execute(f"SELECT client_order_id FROM {OLD_VENUE_TABLE}").fetchall() == [("p1-E",)]
