"""state/journal_store.py and the order lifecycle: the ``fills`` and ``order_events`` tables, a
fill whose trade id is known writes nothing, the totals are sums of fills, and a journal made
before these tables existed still opens (no threads, no actors)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from state.journal_store import JournalBatch, JournalStore
from state.report import FillRow, OrderEventRow
from tests.unit.test_journal_store import DAY1, HOUR, order, trade

D = Decimal


@pytest.fixture
def store(tmp_path: Path) -> Iterator[JournalStore]:
    opened = JournalStore(tmp_path / "journal.db")
    yield opened
    opened.close()


def fill(trade_id: str, client_order_id: str, side: str, quantity: Any, price: Any, fee: Any, *,
         liquidity: str = "TAKER", run_id: str = "r1", ts_ns: int = DAY1) -> FillRow:
    return FillRow(trade_id=trade_id, client_order_id=client_order_id, position_id=client_order_id.split("-")[0],
                   coin="BTC", side=side, intent="ENTRY" if side == "BUY" else "EXIT", venue="paper",
                   venue_order_id=f"v-{client_order_id}", price=D(str(price)), quantity=D(str(quantity)),
                   fee=D(str(fee)), fee_currency="USDT", liquidity=liquidity, cumulative_quantity=D(str(quantity)),
                   ts_event_ms=ts_ns // 1_000_000, ts_ns=ts_ns, run_id=run_id)


def test_a_fill_whose_trade_id_is_known_writes_nothing_and_reads_back_as_written(store: JournalStore):
    first = fill("t1", "p1-E", "BUY", "5", "100", "0.25")
    store.write(JournalBatch(fills=(first,)))
    store.write(JournalBatch(fills=(fill("t1", "p1-E", "BUY", "9", "1", "9"), fill("t2", "p1-E", "BUY", 1, 2, 0))))

    assert store.load_fill("t1") == first
    assert [f.trade_id for f in store.load_fills("p1-E")] == ["t1", "t2"]
    assert [(f["trade_id"], f["quantity"], f["fee"]) for f in store.fills()] == [("t1", "5", "0.25"), ("t2", "1", "0")]
    assert store.fills(client_order_id="p2-E") == [] and store.load_fill("t9") is None


def test_order_events_are_appended_in_order_and_filtered_by_order(store: JournalStore):
    rows = tuple(OrderEventRow(client_order_id=cid, position_id=cid[:2], event=event, status=event, message="M",
                               ts_ns=DAY1 + n, run_id="r1")
                 for n, (cid, event) in enumerate([("p1-E", "REQUESTED"), ("p2-E", "REQUESTED"),
                                                   ("p1-E", "ACCEPTED")]))
    store.write(JournalBatch(order_events=rows))

    assert [(e["client_order_id"], e["event"]) for e in store.order_events()] == [
        ("p1-E", "REQUESTED"), ("p2-E", "REQUESTED"), ("p1-E", "ACCEPTED")]
    assert [e["event"] for e in store.order_events("p1-E")] == ["REQUESTED", "ACCEPTED"]


def test_totals_are_sums_of_fills_by_run_and_results_of_the_closed_trades_fills_of_any_run(store: JournalStore):
    # p1 opened in run r1 (entry fee 0.25) and closed in r2 (exit fee 0.2525): net 5 x 1 - 0.5025.
    store.write(JournalBatch(
        trades=(trade("p1", pnl="4.4975", fees="0.5025", run_id="r2"),),
        orders=(order("p1-E"), order("p1-X1", run_id="r2")),
        fills=(fill("t1", "p1-E", "BUY", 5, 100, "0.25", run_id="r1"),
               fill("t2", "p1-X1", "SELL", 5, 101, "0.2525", run_id="r2", ts_ns=DAY1 + HOUR)),
    ))

    second = store.totals("10000", ["r2"])
    every = store.totals("10000")

    assert (second["realized_pnl_usd"], second["gross_pnl_usd"], second["fees_paid_usd"]) == ("4.4975", "5", "0.2525")
    assert (every["fees_paid_usd"], every["fees_taker_usd"], every["fees_maker_usd"]) == ("0.5025", "0.5025", "0")
    assert every["fill_mismatches"] == [] and every["orders_by_status"]["filled"] == 2


def test_a_journal_made_before_fills_were_kept_opens_with_its_rows_and_gets_the_new_tables(tmp_path: Path):
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as db:  # the orders table as the previous version made it
        db.execute(
            "CREATE TABLE orders (client_order_id VARCHAR(36) PRIMARY KEY, position_id VARCHAR(64), coin VARCHAR(20), "
            "side VARCHAR(4), intent VARCHAR(8), quantity TEXT NOT NULL, reference_price TEXT NOT NULL, "
            "status VARCHAR(16), fill_price TEXT, fill_quantity TEXT, fee TEXT, venue VARCHAR(64), "
            "venue_order_id VARCHAR(128), trade_id VARCHAR(128), reason TEXT, slippage_bps TEXT, "
            "correlation_id VARCHAR(64), ts_ns BIGINT, run_id VARCHAR(64))")
        db.execute("INSERT INTO orders VALUES ('p1-E','p1','BTC','BUY','ENTRY','5','100','FILLED','100.025','5',"
                   "'0.25','paper','v-1','t-1',NULL,'2.5',NULL,?, 'r1')", (DAY1,))
    db.close()

    store = JournalStore(path)
    try:
        assert {"fills", "order_events", "trades", "events"} <= set(store.db.get_tables())
        assert "orders.order_type" in store.added_columns and "orders.created_ts_ns" in store.added_columns
        old = store.load_order("p1-E")
        assert old is not None and (old.status, old.fee, old.order_type, old.created_ts_ns) == (
            "FILLED", D("0.25"), None, None)
        totals = store.totals("10000")
        assert totals["fees_paid_usd"] == "0.25", "an order filled before fills were kept counts its row's fee"
    finally:
        store.close()
    again = JournalStore(path)
    try:
        assert again.added_columns == [], "opened again: nothing left to add"
    finally:
        again.close()
