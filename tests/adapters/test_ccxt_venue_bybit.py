"""CcxtVenue's Bybit v5 dialect with the real ccxt client against a local fake of Bybit's REST
answering the real payload samples (../shared/data/payloads/bybit), read by the Bybit helper's
parsers (adapters/venues/bybit_private.py). The private stream is replaced by a stub here: its
own tests are tests/adapters/test_bybit_private*.py."""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable, Iterator
from decimal import Decimal as D
from pathlib import Path
from typing import Any

import pytest

from adapters.clock import WallClock
from adapters.errors import AuthenticationFailed, OrderNotFound, UnsupportedAccount
from adapters.net.rate_limit import TokenBucket
from adapters.venues.ccxt_venue import CcxtVenue
from state.market import MarketRules
from state.messages import OrderRequest
from state.order import OrderUpdate, VenueEvent
from state.secrets import Credentials
from state.types import OrderIntent, OrderStatus, Side
from tests.support.http_server import LocalHttpServer, Request, Response

pytest.importorskip("adapters.venues.bybit_private",
                    reason="adapters/venues/bybit_private.py (the Bybit helper's parsers) is not on this branch yet")

KEY, SECRET = "FAKEKEY-visible-123", "FAKESECRET-visible-456"
RULES = MarketRules(coin="BTC", tick_size=D("0.5"), qty_step=D("0.001"), min_notional=D("5"))
COID = "test-order-001"  # the client id of the samples' executions


class StubStream:
    """A private stream that is up at once and stays so."""

    def __init__(self) -> None:
        self.started = False

    def start(self, on_event: Callable[[VenueEvent], None], on_state: Callable[[bool, str], None]) -> None:
        self.started = True
        on_state(True, "stub")

    def stop(self) -> None:
        self.started = False

    def stats(self) -> dict[str, Any]:
        return {}


def ok(result: Any) -> dict[str, Any]:
    return {"retCode": 0, "retMsg": "OK", "result": result, "retExtInfo": {}, "time": 1700000000000}


class FakeBybit:
    def __init__(self, http: LocalHttpServer, data: Path) -> None:
        def sample(name: str) -> dict[str, Any]:
            return json.loads((data / "payloads/bybit" / name).read_text())

        self.positions = sample("http_get_positions.json")
        self.account_info = sample("http_get_account_info.json")
        self.executions = sample("http_get_executions.json")
        history = sample("http_get_orders_history.json")
        row = copy.deepcopy(history["result"]["list"][0])
        executions = [r for r in self.executions["result"]["list"] if r["orderLinkId"] == COID]
        filled = sum(D(r["execQty"]) for r in executions)
        row.update(orderId=executions[0]["orderId"], orderLinkId=COID, symbol="BTCUSDT", qty=str(filled),
                   orderStatus="Filled", cumExecQty=str(filled), leavesQty="0", stopOrderType="")
        self.history = {COID: row}
        self.created: list[Request] = []
        routes: dict[str, Callable[[Request], Any]] = {
            "/v5/market/instruments-info": lambda r: sample("http_get_instruments_linear.json"),
            "/v5/market/time": lambda r: {**ok({"timeSecond": str(int(time.time())),
                                                "timeNano": str(time.time_ns())}), "time": int(time.time() * 1000)},
            "/v5/account/wallet-balance": lambda r: sample("http_get_wallet_balance.json"),
            "/v5/account/info": lambda r: self.account_info,
            "/v5/account/set-margin-mode": lambda r: ok({"reasons": []}),
            "/v5/position/list": lambda r: ok({**self.positions["result"], "list": [
                p for p in self.positions["result"]["list"] if p["symbol"] == r.param("symbol")]}),
            "/v5/position/set-leverage": lambda r: {"retCode": 110043, "retMsg": "leverage not modified",
                                                    "result": {}, "time": 1},
            "/v5/order/create": self.create,
            "/v5/order/realtime": lambda r: ok({"list": [], "nextPageCursor": "", "category": "linear"}),
            "/v5/order/history": lambda r: ok({"list": [self.history[c] for c in [r.param("orderLinkId")]
                                                        if c in self.history], "category": "linear"}),
            "/v5/execution/list": lambda r: ok({**self.executions["result"], "list": [
                e for e in self.executions["result"]["list"] if e["orderId"] == r.param("orderId")]}),
            "/v5/order/cancel": lambda r: {"retCode": 110001, "retMsg": "order not exists or too late to cancel",
                                           "result": {}, "time": 1},
        }
        for path, handler in routes.items():
            http.route(path, self.signed(handler))

    def signed(self, handler: Callable[[Request], Any]) -> Callable[[Request], Any]:
        def answer(request: Request) -> Any:
            if request.path.startswith("/v5/market/"):
                return handler(request)
            if request.headers.get("X-BAPI-API-KEY") != KEY:
                return Response({"retCode": 10003, "retMsg": "API key is invalid.", "result": {}, "time": 1},
                                status=401)
            return handler(request)
        return answer

    def create(self, request: Request) -> Any:
        self.created.append(request)
        return ok({"orderId": "bybit-order-1", "orderLinkId": json.loads(request.body)["orderLinkId"]})


@pytest.fixture
def rig(shared_data: Path) -> Iterator[tuple[LocalHttpServer, FakeBybit, Callable[..., CcxtVenue]]]:
    made: list[CcxtVenue] = []
    with LocalHttpServer() as http:
        fake = FakeBybit(http, shared_data)

        def factory(key: str = KEY, **kwargs: Any) -> CcxtVenue:
            kwargs.setdefault("stream_factory", lambda venue: StubStream())
            venue = CcxtVenue("bybit", "linear", symbols={"BTC": "BTCUSDT"}, credentials=Credentials(key, SECRET),
                              limiter=TokenBucket(1000, 100), clock=WallClock(), markets=lambda coin: RULES,
                              testnet=False, rest_url=http.url, leverage={"BTC": 10}, timeout_s=3.0, **kwargs)
            made.append(venue)
            return venue

        yield http, fake, factory
        for venue in made:
            venue.close()


def test_connect_sets_the_margin_mode_and_leverage(rig: Any) -> None:
    http, fake, make = rig
    startup = make().connect()
    assert startup.position_mode == "one-way" and startup.leverage == {"BTC": 10}
    assert startup.cash_asset == "USDT", "linear: the market's settle asset"
    assert [r.path for r in http.requests("/v5/account/set-margin-mode")] == ["/v5/account/set-margin-mode"]
    assert json.loads(http.requests("/v5/account/set-margin-mode")[0].body) == {"setMarginMode": "ISOLATED_MARGIN"}
    assert not http.unrouted, [r.path for r in http.unrouted]


def test_cross_margin_already_so_is_left_alone(rig: Any) -> None:
    http, fake, make = rig
    make(margin_mode="cross").connect()
    assert http.count("/v5/account/set-margin-mode") == 0


def test_hedge_mode_is_refused(rig: Any) -> None:
    http, fake, make = rig
    for row in fake.positions["result"]["list"]:
        row["positionIdx"] = 1
    with pytest.raises(UnsupportedAccount, match="hedge mode"):
        make().connect()


def test_invalid_key(rig: Any) -> None:
    http, fake, make = rig
    with pytest.raises(AuthenticationFailed, match="10003"):
        make(key="FAKEKEY-wrong-000").connect()


def test_submit_fetch_and_cancel(rig: Any) -> None:
    http, fake, make = rig
    venue = make()
    venue.connect()
    events: list[VenueEvent] = []
    venue.bind(events.append)
    venue.submit(OrderRequest(client_order_id="p0000000000000000001-X1", position_id="p", coin="BTC", side=Side.SELL,
                              quantity=D("0.100"), intent=OrderIntent.EXIT, reference_price=D("50000"),
                              reference_ts_ms=1))
    sent = json.loads(fake.created[0].body)
    assert {k: sent[k] for k in ("category", "symbol", "side", "orderType", "qty", "orderLinkId", "reduceOnly")} == {
        "category": "linear", "symbol": "BTCUSDT", "side": "Sell", "orderType": "Market", "qty": "0.1",
        "orderLinkId": "p0000000000000000001-X1", "reduceOnly": True}
    assert events == [OrderUpdate(client_order_id="p0000000000000000001-X1", venue_order_id="bybit-order-1",
                                  status=OrderStatus.ACCEPTED, ts_ms=1700000000000)]
    found = venue.fetch_order(COID)
    assert found is not None and found.status is OrderStatus.FILLED
    assert [f.trade_id for f in found.fills] == ["e0cbe81d-0f18-5866-9415-cf319b5dab3b"]
    assert found.fills[0].price == D("50000.00") and found.fills[0].fee == D("0.0150")
    assert venue.fetch_order("p-never-E") is None
    with pytest.raises(OrderNotFound, match="110001"):
        venue.cancel(COID)


def test_account(rig: Any) -> None:
    http, fake, make = rig
    venue = make()
    venue.connect()
    snapshot = venue.account()
    (held,) = snapshot.positions
    assert (held.coin, held.side, held.quantity, held.entry_price) == ("BTC", Side.BUY, D("0.5"), D("50000.00"))


# --- with the real BybitPrivateStream on a local Bybit private endpoint -----------------------------

@pytest.fixture
def private_ws() -> Iterator[Any]:
    from tests.adapters.test_bybit_private_stream import FakeBybitPrivate

    with FakeBybitPrivate(key=KEY, secret=SECRET) as fake:
        yield fake


def test_fills_from_the_private_stream(rig: Any, private_ws: Any) -> None:
    from tests.adapters.test_bybit_private_stream import COID as STREAM_COID
    from tests.adapters.test_bybit_private_stream import execution_frame, order_frame
    from tests.support.venue_sink import EventSink

    http, fake, make = rig
    venue = make(stream_factory=None, ws_url=private_ws.url)
    venue.connect()
    sink = EventSink()
    venue.bind(sink)
    assert venue.status().stream.value == "up"
    private_ws.push(order_frame("New"))
    private_ws.push(execution_frame("exec-1", "0.004"))
    assert sink.wait(lambda: len(sink.fills(STREAM_COID)) == 1)
    assert sink.fills(STREAM_COID)[0].quantity == D("0.004")


def test_a_refused_stream_login_refuses_the_start(rig: Any) -> None:
    from tests.adapters.test_bybit_private_stream import FakeBybitPrivate

    http, fake, make = rig
    with FakeBybitPrivate(key="another-key", secret="another-secret") as refusing:
        venue = make(stream_factory=None, ws_url=refusing.url)
        with pytest.raises(AuthenticationFailed, match="login was refused") as refused:
            venue.connect()
    assert KEY not in str(refused.value) and SECRET not in str(refused.value)
