"""CcxtVenue against the local Binance USD-M exchange (tests/support/local_binance): signed
REST checked as Binance does, the user-data websocket, matching on fed trades, faults.

The issue's faults, each a test: a submit that times out after the exchange accepted it ends
with exactly one order; a dropped user-data stream loses no fill; a duplicated fill is pushed
once; a 418 stops every request until the ban is over, then trading goes on; an invalid key
is refused with a clear message; hedge mode is refused.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from decimal import Decimal as D
from typing import Any

import pytest

from adapters.clock import WallClock
from adapters.errors import (
    AmbiguousOutcome,
    AuthenticationFailed,
    InsufficientFunds,
    InvalidOrder,
    RateLimited,
    UnsupportedAccount,
)
from adapters.net.rate_limit import TokenBucket
from adapters.venues.ccxt_venue import CcxtVenue
from state.account import StreamState
from state.market import MarketRules
from state.messages import OrderRequest
from state.order import NoticeKind
from state.secrets import Credentials
from state.types import OrderIntent, OrderStatus, OrderType, Side
from tests.conftest import WAIT, LogCapture
from tests.support.venue_sink import EventSink

local_binance = pytest.importorskip("tests.support.local_binance",
                                    reason="tests/support/local_binance (the local exchange) is not on this branch yet")

KEY, SECRET = "FAKEKEY-visible-123", "FAKESECRET-visible-456"
RULES = MarketRules(coin="BTC", tick_size=D("0.01"), qty_step=D("0.001"), min_notional=D("5"))


def order(coid: str, *, side: Side = Side.BUY, quantity: str = "0.010", intent: OrderIntent = OrderIntent.ENTRY,
          **extra: Any) -> OrderRequest:
    return OrderRequest(client_order_id=coid, position_id="p1", coin="BTC", side=side, quantity=D(quantity),
                        intent=intent, reference_price=D("30000"), reference_ts_ms=1, **extra)


@pytest.fixture
def local() -> Iterator[Any]:
    with local_binance.LocalBinance(KEY, SECRET) as exchange:
        exchange.feed_trade("BTCUSDT", "30000", "0.5")
        yield exchange
        exchange.faults.release_delayed()


@pytest.fixture
def make_venue(local: Any) -> Iterator[Callable[..., CcxtVenue]]:
    made: list[CcxtVenue] = []

    def factory(key: str = KEY, **kwargs: Any) -> CcxtVenue:
        settings: dict[str, Any] = {"timeout_s": 3.0, "poll_s": 0.1, "testnet": False, "leverage": {"BTC": 2}}
        settings.update(kwargs)
        venue = CcxtVenue("binanceusdm", "usdm", symbols={"BTC": "BTCUSDT"}, credentials=Credentials(key, SECRET),
                          limiter=TokenBucket(1000, 100), clock=WallClock(), markets=lambda coin: RULES,
                          rest_url=local.rest_url, ws_url=local.user_ws_url, **settings)
        made.append(venue)
        return venue

    yield factory
    for venue in made:
        venue.close()


def connected(make_venue: Callable[..., CcxtVenue], local: Any, **kwargs: Any) -> tuple[CcxtVenue, EventSink]:
    venue = make_venue(**kwargs)
    venue.connect()
    sink = EventSink()
    venue.bind(sink)
    assert local.wait_for_user_clients(1, WAIT)
    assert sink.wait(lambda: venue.status().stream is StreamState.UP)
    return venue, sink


def test_connect_against_signed_rest(make_venue: Any, local: Any) -> None:
    local.set_clock_offset(3000)  # the exchange's clock runs 3 s ahead: signed requests still pass
    venue = make_venue()
    startup = venue.connect()
    assert startup.position_mode == "one-way" and startup.leverage == {"BTC": 2}
    assert 2000 <= startup.server_time_offset_ms <= 4000
    assert startup.balances["USDT"] == D("10000")
    assert not local.unrouted, [r.path for r in local.unrouted]
    assert local.wait_for_user_clients(1, WAIT)


def test_submit_and_fill_through_the_stream(make_venue: Any, local: Any) -> None:
    venue, sink = connected(make_venue, local)
    venue.submit(order("p0000000000000000001-E"))
    assert sink.wait(lambda: sum((f.quantity for f in sink.fills("p0000000000000000001-E")), D(0)) == D("0.010"))
    (fill,) = sink.fills("p0000000000000000001-E")
    assert fill.price == D("30000") and fill.fee > 0
    assert local.position("BTCUSDT") == (D("0.010"), D("30000"))
    assert sink.wait(lambda: venue.in_flight() == {})
    # the exit is reduce-only and closes the position
    venue.submit(order("p0000000000000000001-X1", side=Side.SELL, intent=OrderIntent.EXIT))
    assert sink.wait(lambda: len(sink.fills("p0000000000000000001-X1")) == 1)
    assert local.position("BTCUSDT")[0] == 0
    assert local.requests("/fapi/v1/order", method="POST")[-1].params.get("reduceOnly") == "true"


def test_definite_refusals_carry_the_venues_reason(make_venue: Any, local: Any) -> None:
    venue, _ = connected(make_venue, local)
    local.reject_next("balance")
    with pytest.raises(InsufficientFunds, match="-2019"):
        venue.submit(order("p0000000000000000002-E"))
    local.reject_next("min_notional")
    with pytest.raises(InvalidOrder, match="-4164"):
        venue.submit(order("p0000000000000000003-E"))
    assert venue.in_flight() == {}


def test_ambiguous_submit_that_was_accepted_is_exactly_one_order(make_venue: Any, local: Any) -> None:
    venue, sink = connected(make_venue, local, timeout_s=1.5)
    local.accept_then_timeout()
    with pytest.raises(AmbiguousOutcome):
        venue.submit(order("p0000000000000000004-E"))
    found = venue.fetch_order("p0000000000000000004-E")
    assert found is not None and found.status is OrderStatus.FILLED and len(found.fills) == 1
    assert sink.wait(lambda: len(sink.fills("p0000000000000000004-E")) == 1)
    assert local.submissions("p0000000000000000004-E") == 1
    assert len(local.orders("BTCUSDT")) == 1
    assert local.position("BTCUSDT")[0] == D("0.010")


def test_dropped_user_stream_loses_no_fill(make_venue: Any, local: Any) -> None:
    venue, sink = connected(make_venue, local)
    venue.submit(order("p0000000000000000005-E", order_type=OrderType.LIMIT, limit_price=D("29990")))
    assert sink.wait(lambda: OrderStatus.ACCEPTED in sink.updates("p0000000000000000005-E"))
    local.drop_user_stream(refuse_s=60)
    assert sink.wait(lambda: NoticeKind.STREAM_DOWN in sink.notices())
    local.feed_trade("BTCUSDT", "29990", "0.004")  # fills part of the resting limit: the stream is down
    local.feed_trade("BTCUSDT", "29980", "0.5")  # and the rest
    assert sink.wait(lambda: sum((f.quantity for f in sink.fills("p0000000000000000005-E")), D(0)) == D("0.010"))
    local.allow_user_stream()
    assert sink.wait(lambda: NoticeKind.STREAM_UP in sink.notices(), timeout=2 * WAIT)
    trade_ids = [f.trade_id for f in sink.fills("p0000000000000000005-E")]
    assert len(trade_ids) == len(set(trade_ids)) == len(local.trades("BTCUSDT"))
    assert sink.wait(lambda: venue.in_flight() == {})


def test_duplicated_fill_is_pushed_once(make_venue: Any, local: Any) -> None:
    venue, sink = connected(make_venue, local)
    local.duplicate_events(10)
    venue.submit(order("p0000000000000000006-E"))
    assert sink.wait(lambda: len(sink.fills("p0000000000000000006-E")) == 1)
    assert sink.wait(lambda: venue.stats()["duplicates"] >= 1)
    assert len(sink.fills("p0000000000000000006-E")) == 1


def test_418_stops_every_request_until_lifted_then_trading_resumes(make_venue: Any, local: Any) -> None:
    venue, sink = connected(make_venue, local)
    until = local.ban(3.0)
    with pytest.raises(RateLimited):
        venue.submit(order("p0000000000000000007-E"))
    assert sink.wait(lambda: NoticeKind.BANNED in sink.notices())
    sent = len(local.requests())
    with pytest.raises(RateLimited, match="no request before"):
        venue.submit(order("p0000000000000000008-E"))
    assert len(local.requests()) == sent  # nothing went out while banned
    assert venue.status().banned_until_ms is not None and venue.status().banned_until_ms >= until - 1000
    assert sink.wait(lambda: NoticeKind.BAN_LIFTED in sink.notices(), timeout=2 * WAIT)
    venue.submit(order("p0000000000000000008-E"))
    assert sink.wait(lambda: len(sink.fills("p0000000000000000008-E")) == 1)


def test_invalid_key_is_refused_clearly(make_venue: Any, local: Any, logs: LogCapture) -> None:
    with pytest.raises(AuthenticationFailed) as refused:
        make_venue(key="FAKEKEY-wrong-000").connect()
    assert "-2015" in str(refused.value) and "API key was refused" in str(refused.value)
    for secret in ("FAKEKEY-wrong-000", SECRET, KEY):
        assert secret not in str(refused.value) and secret not in logs.text()


def test_hedge_mode_is_refused(make_venue: Any, local: Any) -> None:
    local.set_dual_side_position(True)
    with pytest.raises(UnsupportedAccount, match="hedge mode"):
        make_venue().connect()
    assert local.requests("/fapi/v1/order") == []


def test_expired_listen_key_is_renewed(make_venue: Any, local: Any) -> None:
    venue, sink = connected(make_venue, local)
    first = local.active_listen_key
    local.expire_listen_key()
    assert sink.wait(lambda: local.active_listen_key not in (None, first) and venue.status().stream is StreamState.UP,
                     timeout=2 * WAIT)
    venue.submit(order("p0000000000000000009-E"))
    assert sink.wait(lambda: len(sink.fills("p0000000000000000009-E")) == 1)


def test_account_snapshot(make_venue: Any, local: Any) -> None:
    venue, sink = connected(make_venue, local)
    since = int(time.time() * 1000) - 60_000
    venue.submit(order("p0000000000000000010-E"))
    venue.submit(order("p0000000000000000011-E", order_type=OrderType.LIMIT, limit_price=D("29000")))
    assert sink.wait(lambda: len(sink.fills("p0000000000000000010-E")) == 1)
    snapshot = venue.account(fills_since_ms=since)
    (held,) = snapshot.positions
    assert (held.coin, held.side, held.quantity) == ("BTC", Side.BUY, D("0.010"))
    assert [o.client_order_id for o in snapshot.open_orders] == ["p0000000000000000011-E"]
    assert [f.client_order_id for f in snapshot.fills] == ["p0000000000000000010-E"]
    assert snapshot.balances["USDT"] < D("10000")  # the fee was paid


# --- with the Executor: the port's contract as the engine consumes it ------------------------------

@pytest.fixture
def executor_rig(probe_bus_for: Any, tmp_path: Any) -> Iterator[Any]:
    from actors.bus import EXECUTOR
    from tests.actors.helpers import ActorRig

    rig = ActorRig(probe_bus_for(EXECUTOR), tmp_path)
    rig.pb.taken = []  # messages wait_filled took out of the probe's inbox
    yield rig
    rig.close()


def execute(rig: Any, request: OrderRequest) -> None:
    from state.messages import ExecuteOrder

    rig.pb.bus.send(ExecuteOrder(ts_init_ns=rig.pb.clock.now_ns(), correlation_id="c-1", order=request))


def filled_quantity(rig: Any, coid: str) -> D:
    """What the Sniper was told was filled of ``coid`` (every OrderFilled, awaited or not)."""
    from actors.bus import SNIPER
    from state.messages import OrderFilled

    rig.pb.drain()
    return sum((m.fill_quantity for to, m in rig.pb.seen + rig.pb.taken
                if to == SNIPER and isinstance(m, OrderFilled) and m.order.client_order_id == coid), D(0))


def wait_filled(rig: Any, coid: str, quantity: str, timeout: float = 2 * WAIT) -> None:
    """Wait until the Sniper has been told ``quantity`` of ``coid`` is filled."""
    from actors.bus import SNIPER
    from state.messages import OrderFilled

    while True:
        message = rig.pb.wait_for(OrderFilled, SNIPER, timeout=timeout,
                                  where=lambda m: m.order.client_order_id == coid)
        rig.pb.taken.append((SNIPER, message))
        if message.cumulative_quantity == D(quantity):
            return


def test_executor_ambiguous_submit_ends_with_one_order_and_the_position(executor_rig: Any, make_venue: Any,
                                                                        local: Any) -> None:
    from actors.executor import Executor

    venue = make_venue(timeout_s=1.5)
    venue.connect()
    executor_rig.start(Executor, store=executor_rig.store, venue=venue)
    local.accept_then_timeout()
    execute(executor_rig, order("p0000000000000000020-E"))
    wait_filled(executor_rig, "p0000000000000000020-E", "0.010")
    assert filled_quantity(executor_rig, "p0000000000000000020-E") == D("0.010")  # applied once
    assert local.submissions("p0000000000000000020-E") == 1 and len(local.orders("BTCUSDT")) == 1
    assert local.position("BTCUSDT")[0] == D("0.010")
    record = executor_rig.store.get_order("p0000000000000000020-E")
    assert record.status is OrderStatus.FILLED and record.submissions == 1


def test_executor_dropped_stream_and_duplicates_lose_and_add_nothing(executor_rig: Any, make_venue: Any,
                                                                     local: Any) -> None:
    from actors.bus import RISK_GATE
    from actors.executor import Executor
    from state.messages import VenueAlert

    venue = make_venue()
    venue.connect()
    executor_rig.start(Executor, store=executor_rig.store, venue=venue)
    assert local.wait_for_user_clients(1, WAIT)
    local.duplicate_events(50)
    local.partial_fills(2)
    execute(executor_rig, order("p0000000000000000021-E"))
    wait_filled(executor_rig, "p0000000000000000021-E", "0.010")
    local.drop_user_stream(refuse_s=60)
    executor_rig.pb.wait_for(VenueAlert, RISK_GATE, where=lambda m: m.kind == "STREAM_DOWN")
    execute(executor_rig, order("p0000000000000000022-E", order_type=OrderType.LIMIT, limit_price=D("29990")))
    local.feed_trade("BTCUSDT", "29980", "0.5")
    wait_filled(executor_rig, "p0000000000000000022-E", "0.010")
    assert filled_quantity(executor_rig, "p0000000000000000021-E") == D("0.010")
    assert filled_quantity(executor_rig, "p0000000000000000022-E") == D("0.010")
    assert local.position("BTCUSDT")[0] == D("0.020")
