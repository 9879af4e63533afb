"""state/journal_store.py: the journal tables on a temporary SQLite file, opened by path and by a
``sqlite:///`` URL (no threads, no actors)."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import peewee
import pytest

from state.journal_store import (
    POSTGRES_DRIVER_HINT,
    EventRow,
    JournalBatch,
    JournalDriverMissing,
    JournalStore,
    masked_url,
)
from state.report import (
    DailyRow,
    EquitySample,
    Mark,
    RUN_TOTAL_KEYS,
    OrderRow,
    TradeRow,
    daily_rows,
    max_drawdown_pct,
)

D = Decimal
DAY1 = 1_709_294_400_000_000_000  # 2024-03-01 12:00:00 UTC
HOUR = 3_600_000_000_000
DAY = 24 * HOUR


@pytest.fixture(params=["path", "url"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[JournalStore]:
    file = tmp_path / "data" / "journal.db"
    opened = JournalStore(file if request.param == "path" else f"sqlite:///{file}")
    try:
        yield opened
    finally:
        opened.close()


def trade(position_id: str = "p1", *, status: str = "CLOSED", coin: str = "BTC", run_id: str = "r1",
          pnl: Any = "7.0", fees: Any = "0.5", opened: int | None = DAY1, closed: int | None = DAY1 + HOUR,
          **overrides: Any) -> TradeRow:
    is_closed = status == "CLOSED"
    values: dict[str, Any] = dict(
        position_id=position_id, condition_id=f"c-{position_id}", strategy_id="manual", coin=coin,
        direction="LONG", status=status, entry_price=D("100.10"), entry_time=datetime(2024, 3, 1, 12, tzinfo=timezone.utc),
        exit_price=D("101.5") if is_closed else None,
        exit_time=datetime(2024, 3, 1, 13, tzinfo=timezone.utc) if is_closed else None,
        quantity=D("5.000"), size_usd=D("500"), stop_loss_price=D("98"), take_profit_price=D("101.5"),
        exit_reason="TAKE_PROFIT" if is_closed else None, pnl=D(str(pnl)) if is_closed else None,
        pnl_pct=D("0.014") if is_closed else None, fees=D(str(fees)), unrealized_pnl=D(0), venue="paper",
        entry_order_id=f"{position_id}-E", exit_order_id=f"{position_id}-X1" if is_closed else None,
        reasoning="test", run_id=run_id, opened_ts_ns=opened, closed_ts_ns=closed if status != "OPEN" else None,
        updated_ts_ns=closed or opened or DAY1,
    )
    values.update(overrides)
    return TradeRow(**values)


def order(client_order_id: str = "p1-E", *, status: str = "FILLED", run_id: str = "r1", slippage: Any = "2.5",
          ts_ns: int = DAY1) -> OrderRow:
    return OrderRow(
        client_order_id=client_order_id, position_id=client_order_id.split("-")[0], coin="BTC", side="BUY",
        intent="ENTRY", quantity=D("5"), reference_price=D("100"), status=status,
        fill_price=D("100.025") if status == "FILLED" else None, fee=D("0.25") if status == "FILLED" else None,
        venue="paper", slippage_bps=D(str(slippage)) if status == "FILLED" else None, ts_ns=ts_ns, run_id=run_id,
    )


def event(kind: str = "InvariantViolated", ts_ns: int = DAY1, **data: Any) -> EventRow:
    return EventRow(ts_ns=ts_ns, kind=kind, correlation_id="c-1", msg_id="m-1", run_id="r1",
                    data=json.dumps(data, sort_keys=True))


def sample(ts_ns: int, equity: Any, *, kind: str = "MARK", run_id: str = "r1") -> EquitySample:
    return EquitySample(ts_ns=ts_ns, run_id=run_id, kind=kind, position_id=None, balance=D(str(equity)),
                        unrealized_pnl=D(0), equity=D(str(equity)))


def test_open_when_given_a_path_or_a_sqlite_url_then_a_wal_file_with_the_journal_tables(store: JournalStore):
    tables = set(store.db.get_tables())
    (mode,) = store.db.execute_sql("PRAGMA journal_mode").fetchone()

    assert {"trades", "orders", "daily_pnl", "equity", "events"} <= tables
    assert mode == "wal"
    assert Path(store.name.removeprefix("sqlite:///")).is_file()


def test_open_when_the_url_is_postgresql_without_its_driver_then_a_clear_error():
    if importlib.util.find_spec("psycopg2") is not None:
        pytest.skip("psycopg2 is installed here: the driver-missing path cannot be shown")
    with pytest.raises(JournalDriverMissing) as caught:
        JournalStore("postgresql://trader:secret@localhost:5432/journal")

    assert str(caught.value) == POSTGRES_DRIVER_HINT
    assert isinstance(caught.value, ImportError)
    assert "secret" not in str(caught.value)


@pytest.mark.parametrize("url", ["mysql://u@h/db", "sqlite:///:memory:", "sqlite://"])
def test_open_when_the_url_is_unsupported_or_in_memory_then_value_error(url: str):
    with pytest.raises(ValueError):
        JournalStore(url)


def test_masked_url_when_password_given_then_hidden():
    assert masked_url("postgresql://u:pw@h:5432/db") == "postgresql://u:***@h:5432/db"
    assert masked_url("sqlite:///x.db") == "sqlite:///x.db"


def test_write_when_rows_upserted_then_the_latest_version_wins_and_decimals_stay_exact(store: JournalStore):
    opened = trade(status="OPEN", pnl=None)
    store.write(JournalBatch(trades=(opened,), orders=(order(status="REQUESTED"),)))
    store.write(JournalBatch(trades=(trade(),), orders=(order(),)))

    (row,) = store.trades()
    (filled,) = store.orders()

    assert (row["status"], row["pnl"], row["quantity"], row["entry_price"]) == ("CLOSED", "7.0", "5.000", "100.10")
    assert row["exit_time"] == "2024-03-01T13:00:00+00:00"
    assert (filled["status"], filled["fill_price"], filled["slippage_bps"]) == ("FILLED", "100.025", "2.5")
    assert store.load_trade("p1") == trade(), "a row reads back as the same value"
    assert store.load_order("p1-E") == order()
    assert store.load_trade("nope") is None


def test_write_when_one_row_is_bad_then_nothing_of_the_batch_is_written(store: JournalStore):
    bad = replace(order("p2-E"), status=None)  # NOT NULL: the whole transaction rolls back

    with pytest.raises(peewee.IntegrityError):
        store.write(JournalBatch(events=(event(),), trades=(trade(),), orders=(bad,)))

    assert store.events() == [] and store.trades() == [] and store.orders() == []


def test_write_when_a_big_batch_then_every_row_is_written(store: JournalStore):
    events = tuple(event(ts_ns=DAY1 + i, n=i) for i in range(1200))
    trades = tuple(trade(f"p{i}") for i in range(120))

    store.write(JournalBatch(events=events, trades=trades))

    assert [e["data"]["n"] for e in store.events()] == list(range(1200))
    assert len(store.trades()) == 120


def test_events_when_read_then_msg_id_in_its_column_and_data_parsed(store: JournalStore):
    store.write(JournalBatch(events=(event("A", x="1.50"), event("B"), event("A", x="2"))))

    rows = store.events("A")

    assert [r["data"] for r in rows] == [{"x": "1.50"}, {"x": "2"}]
    assert rows[0] == {"ts_ns": DAY1, "kind": "A", "correlation_id": "c-1", "msg_id": "m-1", "run_id": "r1",
                       "data": {"x": "1.50"}}
    assert store.latest_ts_ns() == DAY1


def test_trades_when_filtered_then_by_coin_run_status_and_engine_days(store: JournalStore):
    store.write(JournalBatch(
        events=(event(ts_ns=DAY1 + 10 * DAY),),  # the latest engine time: a replayed day, not today
        trades=(
            trade("p1", coin="BTC", run_id="r1", opened=DAY1, closed=DAY1 + HOUR),
            trade("p2", coin="ETH", run_id="r2", opened=DAY1 + 8 * DAY, closed=DAY1 + 9 * DAY),
            trade("p3", coin="ETH", run_id="r2", status="OPEN", opened=DAY1 + 9 * DAY),
            trade("p4", coin="BTC", run_id="r2", status="REJECTED", opened=None, closed=DAY1 + 2 * DAY),
            trade("p5", coin="BTC", run_id="r2", opened=DAY1 + 5 * DAY, closed=DAY1 + 7 * DAY + 1),
        ),
    ))

    def ids(**filters: Any) -> list[str]:
        return [row["position_id"] for row in store.trades(**filters)]

    assert ids() == ["p1", "p4", "p5", "p2", "p3"], "oldest first (open time, else close time)"
    assert ids(coin="eth") == ["p2", "p3"]
    assert ids(run_id="r1") == ["p1"]
    assert ids(status="rejected") == ["p4"]
    assert ids(days=3) == ["p5", "p2", "p3"], "opened or closed within 3 days of the latest engine time"
    assert ids(days=10, status="CLOSED") == ["p1", "p5", "p2"]
    with pytest.raises(ValueError, match="status"):
        store.trades(status="WON")
    with pytest.raises(ValueError, match="days"):
        store.trades(days=-1)


def test_daily_when_filtered_by_days_then_the_last_engine_days(store: JournalStore):
    days = tuple(DailyRow(date=f"2024-03-0{n}", trades=n, max_drawdown_pct=D("1.2500"), kill_switch=n == 2)
                 for n in (1, 2, 3))
    store.write(JournalBatch(events=(event(ts_ns=DAY1 + 2 * DAY),), days=days))
    store.write(JournalBatch(days=(replace(days[2], trades=7),)))

    assert [(d["date"], d["trades"]) for d in store.daily()] == [("2024-03-01", 1), ("2024-03-02", 2), ("2024-03-03", 7)]
    assert [d["date"] for d in store.daily(days=2)] == ["2024-03-02", "2024-03-03"]
    assert store.daily()[1]["kill_switch"] is True
    assert store.daily()[0]["max_drawdown_pct"] == "1.2500"
    assert store.load_day("2024-03-03") == replace(days[2], trades=7)


def test_orders_when_filtered_by_run_then_only_that_run(store: JournalStore):
    store.write(JournalBatch(orders=(order("p1-E", run_id="r1"), order("p2-E", run_id="r2", ts_ns=DAY1 + 1))))

    assert [o["client_order_id"] for o in store.orders()] == ["p1-E", "p2-E"]
    assert [o["client_order_id"] for o in store.orders(run_id="r2")] == ["p2-E"]


def test_last_mark_and_open_trades_when_read_then_what_a_restart_needs(store: JournalStore):
    store.write(JournalBatch(
        trades=(trade("p1", status="OPEN", unrealized_pnl=D("3")), trade("p2")),
        equity=(sample(DAY1, "10000"), sample(DAY1 + 1, "10003")), ))
    store.write(JournalBatch(equity=(sample(DAY1 + 2, "10010", kind="CLOSE"),)))

    assert store.last_mark() == Mark(D("10003"), D("0")), "the latest AccountMarked, not a close sample"
    assert [t.position_id for t in store.load_open_trades()] == ["p1"]
    assert store.load_open_trades()[0].equity_share == D("3.5")


def test_run_totals_when_asked_then_they_agree_with_the_tables(store: JournalStore):
    store.write(JournalBatch(
        trades=(
            trade("p1", pnl="12.34", fees="0.51"), trade("p2", pnl="-4.5", fees="0.49"),
            trade("p3", pnl="0", fees="0.5"), trade("p4", pnl="99", run_id="other"),
            trade("p5", status="REJECTED", pnl=None, fees="0"), trade("p6", status="OPEN", fees="0.25"),
        ),
        orders=(order("p1-E", slippage="1.5"), order("p1-X1", slippage="-0.5"), order("p9-E", status="DENIED"),
                order("p4-E", slippage="50", run_id="other")),
        equity=(sample(DAY1, "10100"), sample(DAY1 + 1, "9999", kind="CLOSE"), sample(DAY1 + 2, "10020"),
                sample(DAY1 + 3, "1", run_id="other")),
    ))

    totals = store.run_totals("r1", "10000")

    closed = [t for t in store.trades(run_id="r1") if t["status"] == "CLOSED"]
    assert totals["total_trades"] == len(closed) == 3
    assert D(totals["realized_pnl_usd"]) == sum(D(t["pnl"]) for t in closed) == D("7.84")
    fills = [o for o in store.orders(run_id="r1") if o["status"] == "FILLED"]
    assert D(totals["fees_paid_usd"]) == sum(D(o["fee"]) for o in fills) == D("0.50"), "every fill's fee"
    assert (totals["wins"], totals["losses"]) == (1, 2)
    assert totals["slippage_avg_bps"] == "0.5000"
    curve = [D("10000")] + [D(s["equity"]) for s in store.equity(run_id="r1")]
    assert totals["max_drawdown_pct"] == str(max_drawdown_pct(curve)) == "1.0000"
    assert json.loads(json.dumps(totals)) == totals, "JSON-ready"


def test_totals_when_no_run_given_then_every_run_and_the_runs_in_the_order_they_appeared(store: JournalStore):
    store.write(JournalBatch(
        events=(replace(event(ts_ns=DAY1), run_id="r2"), event(ts_ns=DAY1 + 1), replace(event(), run_id="r2")),
        trades=(trade("p1", pnl="12.34", fees="0.50"), trade("p2", pnl="-4.5", fees="0.50", run_id="r2"),
                trade("p3", status="OPEN", fees="0.25", run_id="r2")),
        orders=(order("p1-E"), order("p1-X1"), order("p2-E"), order("p2-X1", run_id="r2"),
                order("p3-E", run_id="r2", slippage="-1")),
        equity=(sample(DAY1, "10100"), sample(DAY1 + 1, "9999", run_id="r2")),
    ))

    every = store.totals("10000")
    one = store.totals("10000", ["r2"])

    assert store.run_ids() == ["r2", "r1"]
    assert (every["total_trades"], every["wins"], every["losses"]) == (2, 1, 1)
    assert every["realized_pnl_usd"] == "7.84" and every["gross_pnl_usd"] == "8.84"
    assert every["fees_paid_usd"] == "1.25", "five fills at 0.25: the open position's entry too"
    assert every["slippage_avg_bps"] == "1.8000" and every["max_drawdown_pct"] == "1.0000", "10100 -> 9999"
    assert (one["total_trades"], one["fees_paid_usd"], one["gross_pnl_usd"]) == (1, "0.50", "-4.00")
    assert store.run_totals("r2", "10000") == {k: one[k] for k in RUN_TOTAL_KEYS}
    with pytest.raises(ValueError, match="run_ids"):
        store.totals("10000", [])


def test_daily_rows_reference_when_built_from_the_tables_then_equal_to_stored_rows(store: JournalStore):
    """A sanity check of the helper the actor tests use: rows written are rows read."""
    rows = daily_rows(marks=[(DAY1, "10000", "0")], closes=[(DAY1, "1", "0.5")])
    store.write(JournalBatch(days=tuple(rows)))

    assert [store.load_day(r.date) for r in rows] == rows
