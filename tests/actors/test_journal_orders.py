"""The Journal's record of the order lifecycle (a threaded actor on a probe bus, a real SQLite
journal): every order with its state history (``order_events``) and every fill (``fills``, once
per trade id), told in the order the Sniper, the RiskGate and the Executor send them, directly
and through the engine store's outbox across a restart."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from actors.bus import JOURNAL
from actors.journal import Journal
from state.journal_store import JournalStore
from state.messages import (
    CancelOrder,
    ExecuteOrder,
    OrderAccepted,
    OrderCanceled,
    OrderExpired,
    OrderFilled,
    OrderRequest,
    SubmitOrder,
)
from state.store import Store
from state.types import Liquidity, OrderIntent, OrderType
from tests.actors.helpers import ActorRig
from tests.actors.test_journal import DAY1, RUN, SECOND

D = Decimal
CID = "p1-E"


@pytest.fixture
def rig(probe_bus_for, tmp_path) -> Iterator[ActorRig]:
    rig = ActorRig(probe_bus_for(JOURNAL), tmp_path)
    yield rig
    rig.close()


@pytest.fixture
def store(tmp_path) -> Iterator[JournalStore]:
    opened = JournalStore(tmp_path / "journal.db")
    yield opened
    opened.close()


def limit_order(quantity: Any = "10", limit: Any = "99.5", *, post_only: bool = False) -> OrderRequest:
    return OrderRequest(
        client_order_id=CID, position_id="p1", coin="BTC", side="BUY", quantity=D(str(quantity)),
        intent=OrderIntent.ENTRY, reference_price=D("100"), reference_ts_ms=DAY1 // 1_000_000,
        order_type=OrderType.LIMIT, limit_price=D(str(limit)), post_only=post_only,
    )


def a_fill(order: OrderRequest, trade_id: str, quantity: Any, price: Any, fee: Any, cumulative: Any, ts_ns: int,
           liquidity: Liquidity = Liquidity.MAKER) -> OrderFilled:
    return OrderFilled(
        ts_init_ns=ts_ns, correlation_id="c-p1", order=order, venue_order_id="v-1", trade_id=trade_id,
        fill_price=D(str(price)), fill_quantity=D(str(quantity)), fee=D(str(fee)), ts_event_ms=ts_ns // 1_000_000,
        cumulative_quantity=D(str(cumulative)), liquidity=liquidity, venue="paper",
    )


class Orders:
    """One order's life, told on the bus as the engine's actors send it (``via``: the bus's
    ``send``/``publish``, or the outbox as run ``run_id`` when given one)."""

    def __init__(self, rig: ActorRig, outbox: Store | None = None, run_id: str = "decider") -> None:
        self.rig, self.outbox, self.run_id = rig, outbox, run_id

    def tell(self, message: Any) -> None:
        if self.outbox is not None:
            self.outbox.append_outbox(self.run_id, message)
        elif isinstance(message, (SubmitOrder, ExecuteOrder, CancelOrder)):
            self.rig.pb.bus.send(message)
        else:
            self.rig.pb.bus.publish(message)

    def submit(self, order: OrderRequest, ts_ns: int) -> None:
        self.tell(SubmitOrder(ts_init_ns=ts_ns, correlation_id="c-p1", order=order))
        self.tell(ExecuteOrder(ts_init_ns=ts_ns, correlation_id="c-p1", order=order))
        self.tell(OrderAccepted(ts_init_ns=ts_ns, correlation_id="c-p1", order=order, venue_order_id="v-1"))

    def three_of_ten_then_canceled(self, order: OrderRequest) -> None:
        """Accepted, filled 1 then 2 (maker, one rebate), a cancel asked, canceled with 3 filled."""
        self.submit(order, DAY1)
        self.tell(a_fill(order, "t1", "1", "99.5", "-0.0199", "1", DAY1 + SECOND))
        self.tell(a_fill(order, "t2", "2", "99.4", "0.0397", "3", DAY1 + 2 * SECOND))
        self.tell(CancelOrder(ts_init_ns=DAY1 + 3 * SECOND, correlation_id="c-p1", client_order_id=CID,
                              reason="PLAN_B: too far"))
        self.tell(OrderCanceled(ts_init_ns=DAY1 + 4 * SECOND, correlation_id="c-p1", order=order,
                                venue_order_id="v-1", filled_quantity=D("3"), reason="PLAN_B: too far"))


def history(rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [(r["event"], r["status"], r["message"], r["trade_id"], r["quantity"], r["reason"]) for r in rows]


def test_a_partial_fill_then_a_cancel_gives_one_fill_row_per_trade_and_the_history_in_order(rig, store):
    rig.start(Journal, journal_store=store, run_id=RUN)
    order = limit_order()
    Orders(rig).three_of_ten_then_canceled(order)

    (row,) = rig.ask("orders")
    fills = rig.ask("fills")
    events = rig.ask("order_events")

    assert [(f["trade_id"], f["quantity"], f["price"], f["fee"], f["liquidity"], f["cumulative_quantity"])
            for f in fills] == [("t1", "1", "99.5", "-0.0199", "MAKER", "1"), ("t2", "2", "99.4", "0.0397", "MAKER", "3")]
    assert {(f["client_order_id"], f["position_id"], f["side"], f["fee_currency"], f["run_id"]) for f in fills} == {
        (CID, "p1", "BUY", "USDT", RUN)}
    assert (row["status"], row["fill_quantity"], row["fee"], row["reason"]) == ("CANCELED", "3", "0.0198",
                                                                                 "PLAN_B: too far")
    assert D(row["fill_price"]) == (D("99.5") + 2 * D("99.4")) / 3, "the average price of its fills"
    assert (row["order_type"], row["time_in_force"], row["limit_price"], row["stop_price"]) == ("LIMIT", "GTC",
                                                                                                "99.5", None)
    assert (row["post_only"], row["reduce_only"], row["quantity"]) == (False, False, "10")
    assert (row["created_ts_ns"], row["ts_ns"], row["trade_id"]) == (DAY1, DAY1 + 4 * SECOND, "t2")
    assert history(events) == [
        ("REQUESTED", "REQUESTED", "SubmitOrder", None, None, None),
        ("SUBMITTED", "SUBMITTED", "ExecuteOrder", None, None, None),
        ("ACCEPTED", "ACCEPTED", "OrderAccepted", None, None, None),
        ("FILL", "PARTIALLY_FILLED", "OrderFilled", "t1", "1", None),
        ("FILL", "PARTIALLY_FILLED", "OrderFilled", "t2", "2", None),
        ("CANCEL_REQUESTED", "PARTIALLY_FILLED", "CancelOrder", None, None, "PLAN_B: too far"),
        ("CANCELED", "CANCELED", "OrderCanceled", None, None, "PLAN_B: too far"),
    ]
    assert [e["ts_ns"] for e in events] == [DAY1, DAY1, DAY1, DAY1 + SECOND, DAY1 + 2 * SECOND, DAY1 + 3 * SECOND,
                                             DAY1 + 4 * SECOND]


def test_a_fill_re_sent_with_a_known_trade_id_writes_no_fill_no_history_and_leaves_the_order_as_it_was(rig, store):
    rig.start(Journal, journal_store=store, run_id=RUN)
    order = limit_order("3")
    orders = Orders(rig)
    orders.submit(order, DAY1)
    orders.tell(a_fill(order, "t1", "1", "99.5", "0.01", "1", DAY1 + SECOND))
    before = (rig.ask("orders"), rig.ask("fills"), rig.ask("order_events"))
    # The Executor's reconciliation after a restart tells the same trade again, later.
    orders.tell(a_fill(order, "t1", "1", "99.5", "0.01", "1", DAY1 + 9 * SECOND))

    assert (rig.ask("orders"), rig.ask("fills"), rig.ask("order_events")) == before
    assert rig.ask("stats")["duplicate_fills"] == 1
    assert len(rig.ask("events", "OrderFilled")) == 2, "the message itself is an events row, as every message"
    orders.tell(a_fill(order, "t2", "2", "99.5", "0.02", "3", DAY1 + 10 * SECOND))
    (row,) = rig.ask("orders")
    assert (row["status"], row["fill_quantity"], row["fill_price"], row["fee"]) == ("FILLED", "3", "99.5", "0.03")


def test_an_expired_post_only_order_and_a_late_fill_keep_their_final_status(rig, store):
    rig.start(Journal, journal_store=store, run_id=RUN)
    order = limit_order("1", post_only=True)
    orders = Orders(rig)
    orders.submit(order, DAY1)
    orders.tell(OrderExpired(ts_init_ns=DAY1 + 1, correlation_id="c-p1", order=order, venue_order_id="v-1",
                             filled_quantity=D(0), reason="POST_ONLY_WOULD_TAKE"))
    orders.tell(CancelOrder(ts_init_ns=DAY1 + 2, correlation_id="c-p1", client_order_id=CID))
    orders.tell(OrderAccepted(ts_init_ns=DAY1 + 3, correlation_id="c-p1", order=order, venue_order_id="v-1"))

    (row,) = rig.ask("orders")
    assert (row["status"], row["reason"], row["fill_quantity"], row["ts_ns"]) == ("EXPIRED", "POST_ONLY_WOULD_TAKE",
                                                                                   None, DAY1 + 1)
    assert [e["event"] for e in rig.ask("order_events")] == ["REQUESTED", "SUBMITTED", "ACCEPTED", "EXPIRED"]


def test_a_market_order_filled_whole_is_one_fill_and_its_row_as_before(rig, store):
    rig.start(Journal, journal_store=store, run_id=RUN)
    order = OrderRequest(client_order_id=CID, position_id="p1", coin="BTC", side="BUY", quantity=D("0.5"),
                         intent=OrderIntent.ENTRY, reference_price=D("100"), reference_ts_ms=DAY1 // 1_000_000)
    orders = Orders(rig)
    orders.tell(SubmitOrder(ts_init_ns=DAY1, correlation_id="c-p1", order=order))
    orders.tell(a_fill(order, "t1", "0.5", "100.02", "0.025005", "0.5", DAY1, Liquidity.TAKER))

    (row,) = rig.ask("orders")
    assert (row["status"], row["fill_price"], row["fill_quantity"], row["fee"], row["slippage_bps"]) == (
        "FILLED", "100.02", "0.5", "0.025005", "2.0000")
    assert [(e["event"], e["status"]) for e in rig.ask("order_events")] == [("REQUESTED", "REQUESTED"),
                                                                            ("FILL", "FILLED")]
    totals = rig.ask("totals", "10000", None)
    assert (totals["fees_paid_usd"], totals["fees_taker_usd"], totals["fees_maker_usd"]) == ("0.025005", "0.025005",
                                                                                             "0")
    assert totals["orders_by_status"]["filled"] == 1


def test_after_a_restart_the_re_sent_lifecycle_is_recorded_once(rig, store, tmp_path):
    outbox = Store(tmp_path / "engine.db")
    try:
        order = limit_order()
        killed = Orders(rig, outbox, "killed-run")
        killed.three_of_ten_then_canceled(order)
        first = rig.start(Journal, journal_store=store, run_id="journal-1", outbox=outbox)
        reference = (rig.ask("orders"), rig.ask("fills"), rig.ask("order_events"))
        rig.stop(first)
        rig.start(Journal, journal_store=store, run_id="journal-2", outbox=outbox)
        assert rig.ask("ping") == JOURNAL
        # The restarted process re-does the end of what the killed one did, exactly as it was.
        Orders(rig, outbox, "restarted-run").three_of_ten_then_canceled(order)

        assert (rig.ask("orders"), rig.ask("fills"), rig.ask("order_events")) == reference
        assert {f["run_id"] for f in reference[1]} == {"killed-run"}
        assert rig.ask("stats")["duplicates"] == 7, "every message of it"
    finally:
        outbox.close()
