"""adapters/venues/paper.py PaperVenue: the VenuePort of the paper venue, its events, idempotency,
its durable book (state/venue_store.py) and its [paper] configuration. Thread-free: the venue
calls its sink on the caller's thread."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

import adapters.venues.paper as paper_module
from adapters.clock import FakeClock
from adapters.data_folder import archive_contents
from adapters.errors import AmbiguousOutcome, InvalidOrder, PriceUnavailable
from adapters.venues.paper import PaperExchange, PaperVenue, matching_settings
from state.config import ConfigError, PaperConfig, parse_config
from state.market import default_rules
from state.matching import FeeSchedule, FillModel, MatchingSettings, venue_order_id
from state.messages import OrderRequest
from state.order import Fill, OrderUpdate
from state.types import Direction, Liquidity, OrderIntent, OrderStatus, OrderType, Side
from state.venue_store import VenueStore, VenueStoreMismatch

D = Decimal
NOW_MS = 1_700_000_000_000


def order(cid: str = "p0001-E", *, side: Side = Side.BUY, price: Any = "42000.05", quantity: Any = "0.01",
          intent: OrderIntent | None = None, ts_ms: int = NOW_MS, **kwargs: Any) -> OrderRequest:
    if intent is None:
        intent = OrderIntent.ENTRY if side is Side.BUY else OrderIntent.EXIT
    return OrderRequest(client_order_id=cid, position_id=cid.split("-")[0], coin="BTC", side=side,
                        quantity=D(str(quantity)), intent=intent, reference_price=D(str(price)),
                        reference_ts_ms=ts_ms, **kwargs)


def resting_buy(cid: str, quantity: Any, price: Any, **kwargs: Any) -> OrderRequest:
    return order(cid, price="42000", quantity=quantity, order_type=OrderType.LIMIT, limit_price=D(str(price)),
                 **kwargs)


class Sink(list):
    def __call__(self, event: Any) -> None:
        self.append(event)

    def kinds(self) -> list[str]:
        return [e.status.value if isinstance(e, OrderUpdate) else "FILL" for e in self]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOW_MS * 1_000_000)


@pytest.fixture
def stores() -> Iterator[list[VenueStore]]:
    opened: list[VenueStore] = []
    yield opened
    for store in opened:
        store.close()


def venue(clock: FakeClock, *, ledger: Any = None, slippage: Any = "0", maker: Any = "0", taker: Any = "0",
          model: FillModel = FillModel.FULL) -> tuple[PaperVenue, Sink]:
    settings = MatchingSettings(slippage_bps=D(str(slippage)), fees=FeeSchedule(maker=D(str(maker)), taker=D(str(taker))),
                                fill_model=model)
    v = PaperVenue(clock=clock, markets=default_rules, settings=settings, initial_balance=D("10000"), ledger=ledger)
    sink = Sink()
    v.bind(sink)
    return v, sink


def open_store(stores: list[VenueStore], path: Path, owner: str | None = "engine-1") -> VenueStore:
    store = VenueStore(path, owner=owner)
    stores.append(store)
    return store


# --- the default behaves as the old venue -------------------------------------------------------------


@pytest.mark.parametrize(("side", "price", "quantity", "slippage"), [
    (Side.BUY, "42000.05", "0.02", "5"), (Side.SELL, "42000.05", "0.02", "5"),
    (Side.BUY, "0.12345", "100", "30"), (Side.SELL, "3001.999", "1.5", "0"),
])
def test_a_market_order_without_quote_fills_exactly_as_the_old_paper_exchange(clock, side, price, quantity,
                                                                                slippage) -> None:
    old = PaperExchange(clock=clock, markets=default_rules, slippage_bps=D(slippage), taker_fee_rate=D("0.0005"))
    new, sink = venue(clock, slippage=slippage, taker="0.0005", maker="0.0002")
    request = order(side=side, price=price, quantity=quantity, intent=OrderIntent.ENTRY)

    report = old.submit_order(request)
    new.submit(request)

    accepted, fill = sink
    assert isinstance(accepted, OrderUpdate) and accepted.status is OrderStatus.ACCEPTED
    assert isinstance(fill, Fill)
    assert (fill.price, fill.quantity, fill.fee) == (report.fill_price, report.fill_quantity, report.fee)
    assert (fill.trade_id, fill.venue_order_id, fill.ts_ms) == (report.trade_id, report.venue_order_id, report.ts_ms)
    assert fill.liquidity is Liquidity.TAKER and fill.fee_currency == "USDT"
    assert new.fetch_order(request.client_order_id).status is OrderStatus.FILLED


def test_a_stale_reference_is_refused_as_before_and_remembered(clock) -> None:
    v, sink = venue(clock)
    clock.advance(61)
    with pytest.raises(PriceUnavailable, match="PRICE_UNAVAILABLE"):
        v.submit(order())
    with pytest.raises(PriceUnavailable, match="PRICE_UNAVAILABLE"):
        v.submit(order())  # the same refusal, not a new attempt
    assert sink == []
    known = v.fetch_order("p0001-E")
    assert known.status is OrderStatus.REJECTED and "PRICE_UNAVAILABLE" in known.reason


# --- the port -------------------------------------------------------------------------------------


def test_seed_check_a_client_id_submitted_five_times_is_one_order(clock) -> None:
    v, sink = venue(clock)
    for _ in range(5):
        v.submit(order())
    assert sink.kinds() == ["ACCEPTED", "FILL"]
    assert v.submissions["p0001-E"] == 5
    assert len(v.fetch_order("p0001-E").fills) == 1
    assert v.placed_order_ids() == ["p0001-E"]


def test_resubmitting_a_resting_order_never_places_a_second_one(clock) -> None:
    v, sink = venue(clock)
    for _ in range(5):
        v.submit(resting_buy("l-1", "0.01", "41000"))
    assert sink.kinds() == ["ACCEPTED"]
    assert [o.client_order_id for o in v.open_orders()] == ["l-1"]


def test_events_come_in_order_accepted_fills_then_the_final_update(clock) -> None:
    v, sink = venue(clock, model=FillModel.TRADED_VOLUME)
    v.observe_quote("BTC", D("41999.99"), D("5"), D("42000.01"), D("0.004"), NOW_MS)
    v.submit(order("i-1", quantity="0.01", order_type=OrderType.LIMIT, limit_price=D("42000.05"),
                   time_in_force="IOC"))
    assert sink.kinds() == ["ACCEPTED", "FILL", "CANCELED"]
    assert sink[1].quantity == D("0.004")
    assert v.fetch_order("i-1").filled_quantity == D("0.004")


def test_cancel_a_resting_order_then_cancel_again_and_an_unknown_id(clock) -> None:
    v, sink = venue(clock)
    v.submit(resting_buy("l-1", "0.01", "41000"))
    v.cancel("l-1")
    assert sink.kinds() == ["ACCEPTED", "CANCELED"]
    assert v.open_orders() == [] and v.fetch_order("l-1").status is OrderStatus.CANCELED
    with pytest.raises(InvalidOrder, match="ORDER_FINAL: l-1 is already CANCELED"):
        v.cancel("l-1")
    with pytest.raises(InvalidOrder, match="UNKNOWN_ORDER"):
        v.cancel("never-1")
    assert v.fetch_order("never-1") is None


def test_reduce_only_refusal_raises_and_is_remembered(clock) -> None:
    v, sink = venue(clock)
    with pytest.raises(InvalidOrder, match="REDUCE_ONLY") as refused:
        v.submit(order("x-1", side=Side.SELL))
    assert not isinstance(refused.value, PriceUnavailable)
    assert v.fetch_order("x-1").status is OrderStatus.REJECTED
    assert sink == []


def test_open_orders_by_coin_and_fetch_with_every_fill(clock) -> None:
    v, sink = venue(clock, model=FillModel.TRADED_VOLUME)
    v.submit(resting_buy("a-1", "1", "41000"))
    v.submit(resting_buy("b-1", "1", "40000"))
    v.observe_trade("BTC", D("41000"), D("0.25"), NOW_MS + 1)
    v.observe_trade("BTC", D("40999"), D("0.25"), NOW_MS + 2)

    assert [o.client_order_id for o in v.open_orders("BTC")] == ["a-1", "b-1"]
    assert v.open_orders("ETH") == []
    fetched = v.fetch_order("a-1")
    assert fetched.status is OrderStatus.PARTIALLY_FILLED and fetched.filled_quantity == D("0.5")
    assert [f.trade_id for f in fetched.fills] == [venue_order_id("a-1") + "-1", venue_order_id("a-1") + "-2"]


def test_the_venue_refuses_to_work_unbound(clock) -> None:
    v = PaperVenue(clock=clock, markets=default_rules)
    with pytest.raises(RuntimeError, match="PAPER_UNBOUND"):
        v.submit(order())
    v.observe_trade("BTC", D("1"), D("1"), NOW_MS)  # no working order: nothing to lose


def test_balance_is_initial_plus_realized_minus_fees_with_a_rebate(clock) -> None:
    v, sink = venue(clock, maker="-0.0002", taker="0.0005")
    v.submit(order("e-1", price="100", quantity="1"))
    v.submit(order("x-1", side=Side.SELL, price="100", quantity="1", order_type=OrderType.LIMIT,
                   limit_price=D("110.00"), post_only=True))
    v.observe_trade("BTC", D("110.00"), D("5"), NOW_MS + 5)
    (long,) = v.positions()
    assert long.side is Direction.LONG and long.quantity == 0 and long.realized_pnl == D("10")
    assert v.balance() == D("10000") + D("10") - D("0.05") + D("0.022")


# --- durability -----------------------------------------------------------------------------------


def test_after_a_kill_the_reopened_venue_still_has_the_resting_order_its_fills_and_fills_the_rest(
        clock, stores, tmp_path) -> None:
    path = tmp_path / "venue.db"
    v, sink = venue(clock, ledger=open_store(stores, path), model=FillModel.TRADED_VOLUME, maker="-0.0002")
    v.submit(order("e-1", price="42000", quantity="0.5"))
    v.submit(resting_buy("l-1", "1", "41000"))
    v.observe_trade("BTC", D("41000"), D("0.3"), NOW_MS + 10)
    assert sink.kinds() == ["ACCEPTED", "FILL", "ACCEPTED", "FILL"]
    del v  # kill -9: nothing closed, nothing flushed beyond what each call committed

    reopened, sink2 = venue(clock, ledger=open_store(stores, path), model=FillModel.TRADED_VOLUME, maker="-0.0002")
    (resting,) = reopened.open_orders()
    assert resting.client_order_id == "l-1" and resting.status is OrderStatus.PARTIALLY_FILLED
    assert resting.filled_quantity == D("0.3") and len(resting.fills) == 1
    assert reopened.positions()[0].quantity == D("0.8")

    reopened.submit(resting_buy("l-1", "1", "41000"))  # the engine resubmits after its restart
    reopened.observe_trade("BTC", D("40990"), D("5"), NOW_MS + 20)
    assert sink2.kinds() == ["FILL"]
    assert (sink2[0].quantity, sink2[0].trade_id) == (D("0.7"), venue_order_id("l-1") + "-2")
    assert sink2[0].fee < 0
    final = reopened.fetch_order("l-1")
    assert final.status is OrderStatus.FILLED and [f.quantity for f in final.fills] == [D("0.3"), D("0.7")]
    assert reopened.placed_order_ids() == ["e-1", "l-1"]


KILLED_VENUE = textwrap.dedent("""
    import os, signal, sys
    from decimal import Decimal as D
    from adapters.clock import FakeClock
    from adapters.venues.paper import PaperVenue
    from state.market import default_rules
    from state.matching import FillModel, MatchingSettings
    from state.messages import OrderRequest
    from state.venue_store import VenueStore

    NOW_MS = 1_700_000_000_000
    venue = PaperVenue(clock=FakeClock(NOW_MS * 1_000_000), markets=default_rules,
                       settings=MatchingSettings(fill_model=FillModel.TRADED_VOLUME),
                       ledger=VenueStore(sys.argv[1], owner="engine-1"))
    venue.bind(lambda event: None)
    venue.submit(OrderRequest(client_order_id="l-1", position_id="l", coin="BTC", side="BUY", quantity=D("1"),
                              intent="ENTRY", reference_price=D("42000"), reference_ts_ms=NOW_MS,
                              order_type="LIMIT", limit_price=D("41000")))
    venue.observe_trade("BTC", D("41000"), D("0.3"), NOW_MS + 10)
    os.kill(os.getpid(), signal.SIGKILL)
""")


def test_a_venue_killed_with_sigkill_comes_back_with_its_resting_order_and_partial_fill(
        clock, stores, tmp_path) -> None:
    path = tmp_path / "venue.db"
    killed = subprocess.run([sys.executable, "-c", KILLED_VENUE, str(path)], cwd=Path(__file__).parents[2],
                            capture_output=True, text=True, timeout=60)
    assert killed.returncode == -signal.SIGKILL, killed.stderr

    reopened, sink = venue(clock, ledger=open_store(stores, path), model=FillModel.TRADED_VOLUME)
    (resting,) = reopened.open_orders("BTC")
    assert (resting.client_order_id, resting.status, resting.filled_quantity) == (
        "l-1", OrderStatus.PARTIALLY_FILLED, D("0.3"))
    reopened.observe_trade("BTC", D("40999"), D("2"), NOW_MS + 20)
    assert [(f.quantity, f.trade_id) for f in sink] == [(D("0.7"), venue_order_id("l-1") + "-2")]


def test_the_write_precedes_the_report(clock, stores, tmp_path) -> None:
    path = tmp_path / "venue.db"
    store = open_store(stores, path)
    seen: list[Any] = []

    def sink(event: Any) -> None:  # what the ledger holds when the event is reported
        seen.append(store.load_order("l-1"))

    v = PaperVenue(clock=clock, markets=default_rules, ledger=store)
    v.bind(sink)
    v.submit(resting_buy("l-1", "1", "41000"))
    (loaded,) = seen
    assert loaded is not None and loaded[0].status is OrderStatus.ACCEPTED


def test_memory_holds_working_orders_and_a_bounded_recent_set(clock, stores, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(paper_module, "RECENT_ORDERS", 5)
    v, sink = venue(clock, ledger=open_store(stores, tmp_path / "venue.db"))
    v.submit(resting_buy("rest-1", "0.01", "41000"))
    for n in range(20):
        v.submit(order(f"m{n}-E", quantity="0.01"))
    assert v.orders_in_memory == 6  # one working + five recent

    old = v.fetch_order("m0-E")  # read back from the ledger
    assert old is not None and old.status is OrderStatus.FILLED and len(old.fills) == 1
    v.submit(order("m0-E", quantity="0.01"))
    assert sink.kinds().count("FILL") == 20, "an old id is still never filled twice"


def test_a_failed_write_reports_nothing_and_leaves_memory_as_the_ledger(clock, stores, tmp_path) -> None:
    store = open_store(stores, tmp_path / "venue.db")
    v, sink = venue(clock, ledger=store)
    v.submit(resting_buy("l-1", "1", "41000"))

    def broken(*args: Any) -> None:
        raise OSError("disk full")

    store.record = broken  # type: ignore[method-assign]
    with pytest.raises(AmbiguousOutcome, match="PAPER_LEDGER_FAILED"):
        v.observe_trade("BTC", D("40000"), D("5"), NOW_MS + 5)
    assert sink.kinds() == ["ACCEPTED"]
    assert v.fetch_order("l-1").status is OrderStatus.ACCEPTED and v.positions() == []


def test_a_venue_book_of_another_engine_store_is_refused(stores, tmp_path) -> None:
    open_store(stores, tmp_path / "venue.db", owner="engine-1")
    with pytest.raises(VenueStoreMismatch, match="another engine store"):
        VenueStore(tmp_path / "venue.db", owner="engine-2")


def test_fresh_archives_the_venue_book_with_the_store(stores, tmp_path) -> None:
    store = open_store(stores, tmp_path / "venue.db")
    store.close()
    (tmp_path / "engine.db").write_bytes(b"")
    archived = archive_contents(tmp_path)
    assert archived is not None and (archived / "venue.db").exists()
    assert not (tmp_path / "venue.db").exists()


# --- [paper] configuration ------------------------------------------------------------------------


def test_paper_config_defaults_keep_the_taker_fee_and_fill_whole() -> None:
    paper = parse_config({}).paper
    assert paper.fill_model == "full" and paper.taker_fee == D("0.0005") and paper.maker_fee == D("0.0002")
    settings = matching_settings(paper, "perp")
    assert settings.fees == FeeSchedule(maker=D("0.0002"), taker=D("0.0005"))
    assert settings.fill_model is FillModel.FULL and settings.max_price_age_ms == 60_000


def test_paper_fees_by_market_category() -> None:
    config = parse_config({"paper": {"maker_fee": -0.0002, "taker_fee": 0.0004, "taker_fee_spot": 0.001,
                                     "fill_model": "traded_volume", "quote_max_age_s": 2},
                           "feed": {"source": "binance", "market": "spot"}})
    assert config.feed.market_category() == "spot"
    assert config.paper.fee_rates("spot") == (D("-0.0002"), D("0.001"))
    assert config.paper.fee_rates("perp") == (D("-0.0002"), D("0.0004"))
    settings = matching_settings(config.paper, config.feed.market_category())
    assert settings.fill_model is FillModel.TRADED_VOLUME and settings.quote_max_age_ms == 2000
    assert parse_config({"feed": {"source": "replay", "files": [{"coin": "BTC", "path": "x.csv"}]}}) \
        .feed.market_category() == "perp"
    with pytest.raises(ValueError, match="category"):
        PaperConfig().fee_rates("options")


@pytest.mark.parametrize(("paper", "problem"), [
    ({"fill_model": "partial"}, "paper.fill_model: must be one of 'full', 'traded_volume'"),
    ({"maker_fee": "abc"}, "paper.maker_fee: must be a number"),
    ({"maker_fee": -0.02}, "paper.maker_fee: must be at least -0.01"),
    ({"taker_fee_spot": -0.001}, "paper.taker_fee_spot: must be at least 0"),
    ({"quote_max_age_s": 0}, "paper.quote_max_age_s: must be greater than 0"),
    ({"maker_fee": -0.001, "taker_fee": 0.0005}, "paper.maker_fee: a rebate of 0.001 is larger than the taker_fee"),
    ({"maker_fee_spot": -0.001}, "paper.maker_fee_spot: a rebate of 0.001 is larger than the taker_fee_spot"),
    ({"fil_model": "full"}, "paper.fil_model: unknown key (did you mean 'fill_model'?)"),
])
def test_bad_paper_settings_name_the_key(paper, problem) -> None:
    with pytest.raises(ConfigError) as error:
        parse_config({"paper": paper})
    assert any(p.startswith(problem) for p in error.value.problems), error.value.problems
