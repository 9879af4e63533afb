"""state/reconcile.py: the engine against the venue's account, and the policy (no threads)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from state.account import AccountSnapshot, HeldPosition
from state.order import Fill, VenueOrder
from state.reconcile import (
    BALANCE_TOLERANCE,
    Difference,
    DifferenceKind,
    EngineOrder,
    EnginePosition,
    EngineView,
    balance_difference,
    cash_asset_of,
    client_ids_named,
    compare,
    decide,
    missing_fills,
    recurring,
    start_cash,
)
from state.types import Liquidity, OrderStatus, Side

D = Decimal
K = DifferenceKind


def fill(trade_id: str, coid: str, qty: str = "1", ts_ms: int = 1_000) -> Fill:
    return Fill(trade_id=trade_id, client_order_id=coid, venue_order_id="v-" + coid, quantity=D(qty),
                price=D("100"), fee=D("0.1"), fee_currency="USDT", liquidity=Liquidity.TAKER, ts_ms=ts_ms)


def venue_order(coid: str, coin: str = "BTC", side: Side = Side.BUY, qty: str = "1", filled: str = "0",
                fills: tuple[Fill, ...] = ()) -> VenueOrder:
    status = OrderStatus.PARTIALLY_FILLED if D(filled) > 0 else OrderStatus.ACCEPTED
    return VenueOrder(client_order_id=coid, venue_order_id="v-" + coid, coin=coin, side=side, quantity=D(qty),
                      status=status, filled_quantity=D(filled), fills=fills)


def order(coid: str, coin: str = "BTC", status: OrderStatus = OrderStatus.ACCEPTED, qty: str = "1",
          filled: str = "0", trade_ids: frozenset[str] = frozenset(), side: Side = Side.BUY) -> EngineOrder:
    return EngineOrder(client_order_id=coid, coin=coin, side=side, quantity=D(qty), filled=D(filled),
                       status=status, trade_ids=trade_ids)


def view(positions: dict[str, tuple[Side, str]] | None = None, orders: list[EngineOrder] | None = None,
         spot: bool = False) -> EngineView:
    held = {coin: EnginePosition(coin=coin, side=side, quantity=D(q)) for coin, (side, q) in (positions or {}).items()}
    return EngineView(positions=held, orders={o.client_order_id: o for o in orders or []}, spot=spot)


def snapshot(positions: dict[str, tuple[Side, str]] | None = None, open_orders: tuple[VenueOrder, ...] = (),
             fills: tuple[Fill, ...] = ()) -> AccountSnapshot:
    held = tuple(HeldPosition(coin=coin, side=side, quantity=D(q)) for coin, (side, q) in (positions or {}).items())
    return AccountSnapshot(taken_ms=5_000, positions=held, open_orders=open_orders, fills=fills, fills_since_ms=0)


def kinds(differences: list[Difference]) -> list[tuple[DifferenceKind, str]]:
    return [(d.kind, d.coin) for d in differences]


# --- agreement ---------------------------------------------------------------------------------------

def test_an_engine_that_agrees_with_the_venue_has_no_difference() -> None:
    engine = view({"BTC": (Side.BUY, "0.5")}, [order("p1-X1", side=Side.SELL, qty="0.5"),
                                                order("p0-E", status=OrderStatus.FILLED, trade_ids=frozenset({"t1"}))])
    venue = snapshot({"BTC": (Side.BUY, "0.5")}, (venue_order("p1-X1", side=Side.SELL, qty="0.5"),),
                     (fill("t1", "p0-E"),))
    assert compare(engine, venue) == []
    assert missing_fills(engine, venue) == []


def test_orders_in_flight_are_never_missing() -> None:
    engine = view(orders=[order("a-E", status=OrderStatus.SUBMITTING), order("b-E", status=OrderStatus.UNKNOWN)])
    assert compare(engine, snapshot()) == []


# --- orders ---------------------------------------------------------------------------------------------

def test_an_order_placed_by_hand_is_an_unknown_order() -> None:
    [difference] = compare(view(), snapshot(open_orders=(venue_order("web_123", coin="ETH", qty="2"),)))
    assert difference.kind is K.UNKNOWN_ORDER and difference.coin == "ETH"
    assert difference.client_order_id == "web_123" and difference.venue_quantity == D(2)
    assert "web_123" in difference.message and "never recorded" in difference.message


def test_an_order_final_here_and_working_there_is_unknown_too() -> None:
    engine = view(orders=[order("p-E", status=OrderStatus.CANCELED)])
    [difference] = compare(engine, snapshot(open_orders=(venue_order("p-E"),)))
    assert difference.kind is K.UNKNOWN_ORDER and "CANCELED" in difference.message


def test_a_working_order_the_venue_does_not_list_is_missing() -> None:
    engine = view(orders=[order("p-S", coin="SOL", status=OrderStatus.PARTIALLY_FILLED, qty="3", filled="1")])
    [difference] = compare(engine, snapshot())
    assert (difference.kind, difference.coin, difference.client_order_id) == (K.MISSING_ORDER, "SOL", "p-S")
    assert difference.engine_quantity == D(3)


# --- positions -------------------------------------------------------------------------------------------

def test_a_position_opened_by_hand_is_unknown() -> None:
    [difference] = compare(view(), snapshot({"ETH": (Side.SELL, "4")}))
    assert difference.kind is K.UNKNOWN_POSITION and difference.coin == "ETH"
    assert (difference.venue_side, difference.venue_quantity, difference.engine_quantity) == (Side.SELL, D(4), D(0))
    assert "short 4" in difference.message


@pytest.mark.parametrize(("mine", "theirs"), [
    ((Side.BUY, "1"), (Side.BUY, "0.7")),
    ((Side.BUY, "1"), (Side.SELL, "1")),
    ((Side.BUY, "1"), None),
])
def test_a_position_of_another_size_or_side_is_a_size_mismatch(mine: tuple[Side, str],
                                                                theirs: tuple[Side, str] | None) -> None:
    [difference] = compare(view({"BTC": mine}), snapshot({"BTC": theirs} if theirs else None))
    assert difference.kind is K.SIZE_MISMATCH and difference.coin == "BTC"
    assert difference.engine_quantity == D(1)
    assert difference.venue_quantity == (D(theirs[1]) if theirs else D(0))


def test_spot_a_balance_above_the_engine_position_agrees_and_one_below_does_not() -> None:
    assert compare(view({"BTC": (Side.BUY, "1")}, spot=True), snapshot({"BTC": (Side.BUY, "1.25")})) == []
    assert compare(view(spot=True), snapshot({"BNB": (Side.BUY, "3")})) == []  # the account's own holdings
    [short] = compare(view({"BTC": (Side.BUY, "1")}, spot=True), snapshot({"BTC": (Side.BUY, "0.4")}))
    assert short.kind is K.SIZE_MISMATCH and "balance" in short.message
    [gone] = compare(view({"BTC": (Side.BUY, "1")}, spot=True), snapshot())
    assert gone.kind is K.SIZE_MISMATCH and gone.venue_quantity == D(0)


def test_the_view_nets_the_sniper_positions_per_coin() -> None:
    from datetime import datetime

    from state.models import Position
    from state.types import Direction, PositionStatus

    def position(pid: str, coin: str, direction: Direction, qty: str, status: PositionStatus) -> Position:
        return Position(id=pid, coin=coin, direction=direction, size_usd=D(100), condition_id="c" + pid,
                        strategy_id="s", reasoning="", stop_loss_pct=D("0.01"), take_profit_pct=D("0.02"),
                        status=status, entry_price=D(100) if D(qty) else None,
                        entry_time=datetime(2026, 1, 1) if D(qty) else None, quantity=D(qty))

    engine = EngineView.of([position("1", "BTC", Direction.LONG, "2", PositionStatus.OPEN),
                            position("2", "BTC", Direction.SHORT, "0.5", PositionStatus.CLOSING),
                            position("3", "ETH", Direction.LONG, "0", PositionStatus.PENDING),
                            position("4", "SOL", Direction.SHORT, "3", PositionStatus.OPEN)], [])
    assert engine.positions == {"BTC": EnginePosition(coin="BTC", side=Side.BUY, quantity=D("1.5")),
                                "SOL": EnginePosition(coin="SOL", side=Side.SELL, quantity=D(3))}


# --- fills -----------------------------------------------------------------------------------------------

def test_a_fill_of_an_order_never_recorded_is_unknown() -> None:
    [difference] = compare(view(), snapshot(fills=(fill("t9", "web_9"),)))
    assert difference.kind is K.UNKNOWN_FILL and difference.trade_id == "t9"
    assert "web_9" in difference.message


def test_a_missing_fill_of_a_working_order_is_to_apply_and_of_a_final_one_is_a_difference() -> None:
    engine = view({"BTC": (Side.BUY, "1")}, [
        order("w-E", status=OrderStatus.PARTIALLY_FILLED, qty="2", filled="1", trade_ids=frozenset({"t1"})),
        order("f-E", status=OrderStatus.FILLED, filled="1", trade_ids=frozenset({"t3"})),
    ])
    venue = snapshot({"BTC": (Side.BUY, "1")},
                     (venue_order("w-E", qty="2", filled="1.5", fills=(fill("t1", "w-E"), fill("t2", "w-E", "0.5"))),),
                     (fill("t4", "f-E", ts_ms=900), fill("t2", "w-E", "0.5")))
    assert [f.trade_id for f in missing_fills(engine, venue)] == ["t2"]
    [difference] = compare(engine, venue)
    assert (difference.kind, difference.coin, difference.trade_id) == (K.MISSING_FILL, "BTC", "t4")


def test_client_ids_named_by_a_snapshot() -> None:
    venue = snapshot(open_orders=(venue_order("a"),), fills=(fill("t", "b"),))
    assert client_ids_named(venue) == {"a", "b"}


# --- policy -------------------------------------------------------------------------------------------------

def _all_kinds() -> list[Difference]:
    return [Difference(kind=kind, coin=coin, message=f"{coin} {kind.value}")
            for kind, coin in ((K.UNKNOWN_ORDER, "ETH"), (K.UNKNOWN_POSITION, "SOL"), (K.SIZE_MISMATCH, "BTC"),
                               (K.MISSING_ORDER, "XRP"), (K.UNKNOWN_FILL, "ADA"), (K.MISSING_FILL, "DOT"))]


def test_report_blocks_unknown_and_mismatched_coins_and_never_halts() -> None:
    decision = decide(_all_kinds(), "report")
    assert not decision.halt
    assert decision.blocked == {"ETH": "UNKNOWN_ORDER: ETH UNKNOWN_ORDER",
                                "SOL": "UNKNOWN_POSITION: SOL UNKNOWN_POSITION",
                                "BTC": "SIZE_MISMATCH: BTC SIZE_MISMATCH", "DOT": "MISSING_FILL: DOT MISSING_FILL"}


def test_halt_halts_on_unknown_orders_and_positions_and_still_blocks_a_size_mismatch() -> None:
    decision = decide(_all_kinds(), "halt")
    assert decision.halt
    assert decision.halt_because == ("UNKNOWN_ORDER: ETH UNKNOWN_ORDER", "UNKNOWN_POSITION: SOL UNKNOWN_POSITION")
    assert set(decision.blocked) == {"BTC", "DOT"}
    assert not decide([d for d in _all_kinds() if d.kind is K.SIZE_MISMATCH], "halt").halt


def test_decide_refuses_an_unknown_policy() -> None:
    with pytest.raises(ValueError, match="on_unknown"):
        decide([], "ignore")


# --- the periodic rule ---------------------------------------------------------------------------------

def test_a_difference_is_reported_once_after_two_consecutive_checks() -> None:
    race = Difference(kind=K.UNKNOWN_ORDER, coin="BTC", message="placed a moment ago", client_order_id="p-E")
    lasting = Difference(kind=K.SIZE_MISMATCH, coin="ETH", message="1 vs 2")
    report, seen, reported = recurring(frozenset(), [race, lasting])
    assert report == []
    report, seen, reported = recurring(seen, [lasting])  # the race resolved itself
    assert report == [lasting]
    moved = Difference(kind=K.SIZE_MISMATCH, coin="ETH", message="1 vs 3")  # same key, other numbers
    report, seen, reported = recurring(seen, [moved], reported)
    assert report == []  # not again while it lasts
    report, seen, reported = recurring(seen, [], reported)
    assert report == [] and reported == frozenset()
    report, seen, reported = recurring(seen, [lasting], reported)
    assert report == []
    report, seen, reported = recurring(seen, [lasting], reported)
    assert report == [lasting]  # gone and back: new again


def test_the_fills_window_starts_at_the_older_of_the_latest_fill_and_the_oldest_working_order() -> None:
    from actors.venue_reconcile import FILL_WINDOW_MARGIN_MS, fills_window
    from state.order import OrderRecord
    from state.types import OrderIntent

    def record(created_ms: int) -> OrderRecord:
        return OrderRecord(client_order_id=f"p{created_ms}-E", position_id="p", coin="BTC", side=Side.BUY,
                           quantity=D(1), intent=OrderIntent.ENTRY, reference_price=D(100), reference_ts_ms=1,
                           created_ns=created_ms * 1_000_000)

    assert fills_window(None, []) is None
    assert fills_window(500_000, []) == 500_000 - FILL_WINDOW_MARGIN_MS
    assert fills_window(500_000, [record(400_000), record(450_000)]) == 400_000 - FILL_WINDOW_MARGIN_MS
    assert fills_window(None, [record(450_000)]) == 450_000 - FILL_WINDOW_MARGIN_MS
    assert fills_window(10, []) == 0


def test_the_printed_report_shows_the_reconciliation_and_the_blocked_coins() -> None:
    from state.report import _reconciliation_lines

    assert _reconciliation_lines({}) == []
    lines = _reconciliation_lines({"reconciliation": {
        "differences": [{"kind": "SIZE_MISMATCH"}], "fills_applied": ["t1"],
        "blocked": {"BTC": "SIZE_MISMATCH: BTC: the engine holds long 1, the venue long 0.5"}}})
    assert lines == ["  reconciliation: 1 difference(s), 1 fill(s) applied | blocked: BTC",
                     "    BTC: SIZE_MISMATCH: BTC: the engine holds long 1, the venue long 0.5"]


def test_the_store_knows_the_time_of_its_latest_fill(tmp_path) -> None:
    from state.store import Store

    store = Store(tmp_path / "engine.db")
    try:
        with store.connection():
            assert store.latest_fill_ms() is None
            for trade_id, ts_ms in (("t1", 5_000), ("t2", 90_000), ("t3", 12_000)):  # stored out of time order
                store.save_fill(fill(trade_id, "p-E", ts_ms=ts_ms))
            assert store.latest_fill_ms() == 90_000
    finally:
        store.close()


# --- the cash balance -------------------------------------------------------------------------------------

def cash_view(cash: str | None, positions: dict[str, tuple[Side, str]] | None = None, spot: bool = False,
              asset: str = "USDT") -> EngineView:
    engine = view(positions, spot=spot)
    return EngineView(positions=engine.positions, orders=engine.orders, spot=spot,
                      cash=None if cash is None else D(cash), cash_asset=asset)


def with_balances(balances: dict[str, str], positions: dict[str, tuple[Side, str]] | None = None) -> AccountSnapshot:
    base = snapshot(positions)
    return AccountSnapshot(taken_ms=base.taken_ms, balances={a: D(v) for a, v in balances.items()},
                           positions=base.positions)


def test_balances_within_the_tolerance_agree_and_one_beyond_it_is_a_balance_difference() -> None:
    assert BALANCE_TOLERANCE == D("0.005")
    assert balance_difference(D("500"), D("500"), "USDT") is None
    assert balance_difference(D("500"), D("502.5"), "USDT") is None, "0.5 % of the larger balance is tolerated"
    assert balance_difference(D("502.5"), D("500"), "USDT") is None
    found = balance_difference(D("500"), D("502.52"), "USDT")
    assert found is not None and found.kind is K.BALANCE and found.coin == "USDT"
    assert (found.engine_quantity, found.venue_quantity) == (D("500"), D("502.52"))
    assert found.key == ("BALANCE", "USDT", "")
    assert "the venue's balance is 502.52, the engine's cash 500 (+2.52, more than 0.5% apart" in found.message
    withdrawn = balance_difference(D("10000"), D("500"), "USDT")
    assert withdrawn is not None and "(-9500," in withdrawn.message
    assert balance_difference(D("500"), D("501"), "USDT", tolerance=D("0.001")) is not None
    assert balance_difference(D("500"), D("500.4"), "USDT", tolerance=D("0.001")) is None
    assert balance_difference(D("500"), D("500.01"), "USDT", tolerance=D(0)) is not None
    with pytest.raises(ValueError, match="tolerance"):
        balance_difference(D("500"), D("500"), "USDT", tolerance=D("-0.1"))


def test_compare_reports_the_cash_balance_last_and_only_when_the_view_has_the_engines_cash() -> None:
    venue = with_balances({"USDT": "480", "BNB": "1"})
    assert compare(cash_view(None), venue) == [], "no cash in the view (the periodic check): not compared"
    assert compare(cash_view("481"), venue) == []
    engine = cash_view("500", {"BTC": (Side.BUY, "1")})
    (position, balance) = compare(engine, with_balances({"USDT": "480"}))
    assert (position.kind, balance.kind) == (K.SIZE_MISMATCH, K.BALANCE), "positions first, the balance last"
    assert balance.coin == "USDT" and balance.venue_quantity == D("480")
    (missing,) = compare(cash_view("500"), with_balances({"BNB": "3"}))
    assert missing.kind is K.BALANCE and missing.venue_quantity == D(0), "no USDT at all is a balance of 0"


def test_a_balance_difference_is_reported_and_never_blocks_nor_halts() -> None:
    differences = compare(cash_view("10000"), with_balances({"USDT": "500"}))
    assert kinds(differences) == [(K.BALANCE, "USDT")]
    for on_unknown in ("report", "halt"):
        decision = decide(differences, on_unknown)
        assert decision.blocked == {} and not decision.halt


def test_spot_compares_the_quote_balance_only_while_the_engine_holds_nothing() -> None:
    spent = with_balances({"USDT": "100", "BTC": "0.01"}, {"BTC": (Side.BUY, "0.01")})
    assert compare(cash_view("500", {"BTC": (Side.BUY, "0.01")}, spot=True), spent) == [], \
        "the quote asset was spent on the coin the engine holds"
    assert kinds(compare(cash_view("500", spot=True), with_balances({"USDT": "100"}))) == [(K.BALANCE, "USDT")]


def test_the_view_of_the_engine_carries_its_cash_when_asked() -> None:
    plain = EngineView.of([], [])
    assert plain.cash is None and plain.cash_asset == ""
    given = EngineView.of([], [], cash=D("500"), cash_asset="USDT")
    assert (given.cash, given.cash_asset, given.balance_tolerance) == (D("500"), "USDT", BALANCE_TOLERANCE)


@pytest.mark.parametrize(("symbols", "asset"), [
    ({"BTC": "BTCUSDT"}, "USDT"),
    ({"BTC": "BTCUSDT", "ETH": "ETHUSDT"}, "USDT"),
    ({"BTC": "BTCUSDC"}, "USDC"),
    ({"BTC": "BTC/USDT:USDT"}, "USDT"),
    ({"1000PEPE": "1000PEPEUSDT"}, "USDT"),
])
def test_the_cash_asset_is_read_from_the_exchange_symbols(symbols, asset) -> None:
    assert cash_asset_of(symbols) == asset


@pytest.mark.parametrize(("symbols", "problem"), [
    ({"BTC": "BTCUSDT", "ETH": "ETHUSDC"}, "quoted in USDC, USDT: one engine keeps its cash in one asset"),
    ({"BTC": "XBTUSD"}, "BTC: the cash asset cannot be read from the exchange symbol 'XBTUSD'"),
    ({"BTC": "BTC"}, "BTC: the cash asset cannot be read"),
    ({}, "quoted in nothing"),
])
def test_a_cash_asset_that_cannot_be_read_from_the_symbols_is_a_value_error_naming_why(symbols, problem) -> None:
    with pytest.raises(ValueError) as caught:
        cash_asset_of(symbols)
    assert problem in str(caught.value)


def test_the_starting_cash_is_the_accounts_balance_of_the_asset_and_none_of_it_is_refused() -> None:
    assert start_cash({"USDT": D("500"), "BNB": D("2")}, "USDT") == D("500")
    with pytest.raises(ValueError) as missing:
        start_cash({"BNB": D("2")}, "USDT")
    assert "the account holds no USDT" in str(missing.value) and "holds BNB 2" in str(missing.value)
    assert "fund it with USDT first" in str(missing.value)
    with pytest.raises(ValueError, match="the account holds 0 USDT"):
        start_cash({"USDT": D("0")}, "USDT")
    with pytest.raises(ValueError, match="holds nothing"):
        start_cash({}, "USDT")
