"""BybitPrivateStream against a local Bybit private websocket (tests/support/ws_server.py with a
responder that behaves like Bybit's: it checks the auth signature and its expiry, acknowledges
the subscription only after a good login, answers pings, and refuses a bad key with the
request echoed, key included, as Bybit does). The test then pushes order and execution frames.

Every wait is on a condition with a bound; nothing sleeps.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import queue
import threading
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import pytest

from adapters.net.backoff import Backoff
from adapters.venues.bybit_private import BybitPrivateStream, PrivateMessage
from state.account import HeldPosition
from state.order import Fill, OrderUpdate
from state.secrets import Credentials
from state.types import Liquidity, OrderStatus, Side
from tests.conftest import LogCapture
from tests.support.ws_server import ReplayServer

WAIT = 15.0  # generous: the machine is shared
KEY = "FAKEKEY-bybit-7e3d91"
SECRET = "FAKESECRET-bybit-55aa0c41f2"
COINS = {"BTCUSDT": "BTC", "ETHUSDT": "ETH"}
COID = "p0123456789abcdef012-E"


class FakeBybitPrivate:
    """Bybit's private endpoint as far as the stream sees it; ``server`` is the ReplayServer
    (``push``, ``drop_clients``, ``connections``)."""

    def __init__(self, key: str = KEY, secret: str = SECRET, *, ack: bool = True,
                 refuse_topics: bool = False) -> None:
        self.server = ReplayServer()
        self.key, self.secret = key, secret
        self.ack = ack
        self.refuse_topics = refuse_topics
        self.logins: list[tuple[bool, int]] = []  # (valid, expires) per auth message
        self.subscriptions: list[list[str]] = []
        self.pings = 0
        self._authed = False
        self._handled = 0
        self._changed = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="fake-bybit", daemon=True)

    def __enter__(self) -> FakeBybitPrivate:
        self.server.start()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self.server.stop()
        self._thread.join(5)

    @property
    def url(self) -> str:
        return self.server.url

    def push(self, payload: dict[str, Any]) -> None:
        assert self.server.push(json.dumps(payload)) == 1, "no client connected"

    def wait_until(self, predicate: Callable[[FakeBybitPrivate], bool], timeout: float = WAIT) -> bool:
        deadline = time.monotonic() + timeout
        with self._changed:
            while not predicate(self):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._changed.wait(min(remaining, 0.1))  # also re-checks what changes elsewhere
            return True

    def _loop(self) -> None:
        while not self._stop.is_set():
            if not self.server.wait_until(lambda s: len(s.received) > self._handled or self._stop.is_set(), 0.5):
                continue
            for text in self.server.received[self._handled:]:
                self._handled += 1
                self._answer(json.loads(text))
                with self._changed:
                    self._changed.notify_all()

    def _answer(self, message: dict[str, Any]) -> None:
        op = message.get("op")
        if op == "auth":
            key, expires, signature = message["args"]
            expected = hmac.new(self.secret.encode(), f"GET/realtime{expires}".encode(), hashlib.sha256).hexdigest()
            valid = key == self.key and signature == expected and expires > time.time() * 1000
            with self._changed:
                self.logins.append((valid, expires))
            self._authed = valid
            if valid:
                self.server.push(json.dumps({"op": "auth", "success": True, "retCode": 0, "retMsg": "",
                                             "connId": "c-1"}))
            else:  # Bybit echoes the request: its args hold the key
                self.server.push(json.dumps({"success": False, "ret_msg": "error:USVC1111", "conn_id": "c-1",
                                             "request": message}))
        elif op == "subscribe":
            with self._changed:
                self.subscriptions.append(list(message["args"]))
            if not self._authed or self.refuse_topics:
                text = "Request not authorized" if not self._authed else f"Invalid topic: {message['args'][0]}"
                self.server.push(json.dumps({"success": False, "ret_msg": text, "conn_id": "c-1",
                                             "op": "subscribe"}))
            elif self.ack:
                self.server.push(json.dumps({"success": True, "ret_msg": "", "conn_id": "c-1", "op": "subscribe"}))
        elif op == "ping":
            with self._changed:
                self.pings += 1
            self.server.push(json.dumps({"req_id": "", "op": "pong", "args": [str(int(time.time() * 1000))],
                                         "conn_id": "c-1"}))


class Recorder:
    """What the stream hands its callbacks, from its thread."""

    def __init__(self) -> None:
        self.events: queue.Queue[Any] = queue.Queue()
        self.states: queue.Queue[tuple[bool, str]] = queue.Queue()
        self.accounts: queue.Queue[PrivateMessage] = queue.Queue()

    def on_event(self, event: Any) -> None:
        self.events.put(event)

    def on_state(self, up: bool, why: str) -> None:
        self.states.put((up, why))

    def on_account(self, message: PrivateMessage) -> None:
        self.accounts.put(message)

    def state(self) -> tuple[bool, str]:
        try:
            return self.states.get(timeout=WAIT)
        except queue.Empty:
            raise AssertionError(f"no state change within {WAIT}s") from None

    def event(self) -> Any:
        try:
            return self.events.get(timeout=WAIT)
        except queue.Empty:
            raise AssertionError(f"no event within {WAIT}s") from None


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def make_stream(recorder: Recorder) -> Iterator[Callable[..., BybitPrivateStream]]:
    streams: list[BybitPrivateStream] = []

    def factory(url: str, key: str = KEY, secret: str = SECRET, **options: Any) -> BybitPrivateStream:
        settings: dict[str, Any] = {"coins": COINS, "category": "linear", "ping_interval_s": 0.2,
                                    "silence_timeout_s": 10.0, "on_account": recorder.on_account,
                                    "backoff": Backoff(first_s=0.05, factor=2.0, cap_s=0.2, jitter=0.0)}
        settings.update(options)
        stream = BybitPrivateStream(url, Credentials(key=key, secret=secret), **settings)
        streams.append(stream)
        stream.start(recorder.on_event, recorder.on_state)
        return stream

    yield factory
    for stream in streams:
        stream.stop()


def order_frame(status: str, cum: str = "0", **changes: Any) -> dict[str, Any]:
    row = {"category": "linear", "symbol": "BTCUSDT", "orderId": "oid-1", "orderLinkId": COID, "side": "Buy",
           "orderType": "Market", "qty": "0.010", "timeInForce": "IOC", "orderStatus": status,
           "cancelType": "UNKNOWN", "rejectReason": "EC_NoError", "cumExecQty": cum,
           "createdTime": "1700000000000", "updatedTime": "1700000001000"}
    row.update(changes)
    return {"id": "m-1", "topic": "order", "creationTime": 1700000001001, "data": [row]}


def execution_frame(exec_id: str, qty: str, **changes: Any) -> dict[str, Any]:
    row = {"category": "linear", "symbol": "BTCUSDT", "execId": exec_id, "orderId": "oid-1", "orderLinkId": COID,
           "side": "Buy", "execPrice": "30000.5", "execQty": qty, "execFee": "0.066", "feeCurrency": "USDT",
           "execType": "Trade", "isMaker": False, "execTime": "1700000002000"}
    row.update(changes)
    return {"id": "m-2", "topic": "execution", "creationTime": 1700000002001, "data": [row]}


def fill(exec_id: str, qty: str) -> Fill:
    return Fill(trade_id=exec_id, client_order_id=COID, venue_order_id="oid-1", quantity=Decimal(qty),
                price=Decimal("30000.5"), fee=Decimal("0.066"), fee_currency="USDT", liquidity=Liquidity.TAKER,
                ts_ms=1700000002000)


def test_logs_in_subscribes_then_delivers_fills_updates_and_positions(make_stream: Callable[..., BybitPrivateStream],
                                                                       recorder: Recorder) -> None:
    with FakeBybitPrivate() as fake:
        stream = make_stream(fake.url)
        assert recorder.state() == (True, "authenticated and subscribed")
        assert fake.logins and fake.logins[0][0], "the login must carry a valid, unexpired signature"
        assert fake.subscriptions == [["order", "execution", "position", "wallet"]]
        fake.push(order_frame("New"))
        assert recorder.event() == OrderUpdate(client_order_id=COID, venue_order_id="oid-1",
                                               status=OrderStatus.ACCEPTED, ts_ms=1700000001000)
        fake.push(execution_frame("t-1", "0.010"))
        assert recorder.event() == fill("t-1", "0.010")
        fake.push(execution_frame("t-x", "1", symbol="XRPUSDT"))  # not ours: ignored
        fake.push({"topic": "position", "creationTime": 1700000003000, "data": [
            {"category": "linear", "symbol": "BTCUSDT", "side": "Buy", "size": "0.010", "entryPrice": "30000.5"}]})
        account = recorder.accounts.get(timeout=WAIT)
        assert account.positions == (HeldPosition(coin="BTC", side=Side.BUY, quantity=Decimal("0.010"),
                                                  entry_price=Decimal("30000.5")),)
        assert stream.positions() == {"BTC": account.positions[0]}
        assert recorder.events.empty(), "the XRPUSDT execution must not reach on_event"
        assert fake.wait_until(lambda f: f.pings >= 1), "the stream sends Bybit's {op: ping}"
        stats = stream.stats()
        assert stats["up"] and stats["authenticated"] and stats["subscribed"] and stats["ignored"] == 1
        assert stats["fills"] == 1 and stats["updates"] == 1 and stats["auth_failed"] is None


def test_a_final_update_waits_for_the_fills_its_row_announces(make_stream: Callable[..., BybitPrivateStream],
                                                               recorder: Recorder) -> None:
    with FakeBybitPrivate() as fake:
        stream = make_stream(fake.url)
        assert recorder.state()[0] is True
        # Bybit sends the IOC's cancel (4 of 10 filled) before the two executions of it.
        fake.push(order_frame("Cancelled", "0.004"))
        fake.push(execution_frame("t-1", "0.001"))
        fake.push(execution_frame("t-1", "0.001"))  # the same trade twice counts once
        fake.push(execution_frame("t-2", "0.003"))
        assert recorder.event() == fill("t-1", "0.001")
        assert recorder.event() == fill("t-1", "0.001")  # delivered again: the Executor dedupes by trade id
        assert recorder.event() == fill("t-2", "0.003")
        assert recorder.event() == OrderUpdate(client_order_id=COID, venue_order_id="oid-1",
                                               status=OrderStatus.CANCELED, ts_ms=1700000001000, reason="CANCELED")
        assert stream.stats()["held"] == 1 and stream.stats()["held_now"] == 0
        # Fills first, then the cancel: nothing held.
        fake.push(execution_frame("t-3", "0.002", orderId="oid-2"))
        fake.push(order_frame("Cancelled", "0.002", orderId="oid-2"))
        assert recorder.event().trade_id == "t-3"
        assert recorder.event().status is OrderStatus.CANCELED
        assert stream.stats()["held"] == 1


def test_a_drop_reconnects_and_logs_in_again(make_stream: Callable[..., BybitPrivateStream],
                                             recorder: Recorder) -> None:
    with FakeBybitPrivate() as fake:
        stream = make_stream(fake.url)
        assert recorder.state()[0] is True
        fake.push(order_frame("Cancelled", "0.004"))  # held: its fills have not come
        assert fake.wait_until(lambda f: stream.stats()["held_now"] == 1)
        assert fake.server.drop_clients() == 1
        up, why = recorder.state()
        assert up is False and why.startswith("connection lost") and why.count("connection lost") == 1, why
        assert recorder.state() == (True, "authenticated and subscribed")
        assert fake.server.connections == 2
        assert [valid for valid, _ in fake.logins] == [True, True]
        assert len(fake.subscriptions) == 2
        stats = stream.stats()
        assert stats["held_dropped"] == 1 and stats["held_now"] == 0, "REST polling settles a held update"
        assert stats["logins"] == 2 and stats["ups"] == 2 and stats["downs"] == 1
        fake.push(execution_frame("t-9", "0.004"))
        assert recorder.event() == fill("t-9", "0.004")
        assert recorder.events.empty()  # the dropped cancel was not delivered


def test_a_refused_key_is_reported_once_and_not_retried(make_stream: Callable[..., BybitPrivateStream],
                                                        recorder: Recorder, logs: LogCapture) -> None:
    with FakeBybitPrivate() as fake:
        bad_key, bad_secret = "FAKEKEY-refused-91c2", "FAKESECRET-refused-0d7e"
        stream = make_stream(fake.url, key=bad_key, secret=bad_secret)
        up, why = recorder.state()
        assert up is False and why == "AUTH_FAILED: error:USVC1111"
        assert fake.wait_until(lambda f: not stream.stats()["running"]), "the stream must stop after a refusal"
        assert fake.server.connections == 1 and len(fake.logins) == 1
        assert stream.stats()["auth_failed"] == "AUTH_FAILED: error:USVC1111"
        assert recorder.states.empty()
        assert logs.wait_for("BYBIT_PRIVATE_AUTH_FAILED")
        text = logs.text() + repr(stream.stats())
        for secret in (bad_key, bad_secret):
            assert secret not in text


def test_the_login_expires_on_the_clock_given(make_stream: Callable[..., BybitPrivateStream],
                                              recorder: Recorder) -> None:
    with FakeBybitPrivate() as fake:
        late_ms = int(time.time() * 1000) - 60_000  # a local clock a minute behind the venue's
        make_stream(fake.url, wall_ms=lambda: late_ms)
        up, why = recorder.state()
        assert up is False and why.startswith("AUTH_FAILED")
        assert fake.logins == [(False, late_ms + 10_000)]


def test_a_failing_callback_does_not_end_the_stream(make_stream: Callable[..., BybitPrivateStream],
                                                    recorder: Recorder, logs: LogCapture) -> None:
    with FakeBybitPrivate() as fake:
        failures = iter([True])

        def on_event(event: Any) -> None:
            if next(failures, False):
                raise RuntimeError("sink broke")
            recorder.on_event(event)

        stream = BybitPrivateStream(fake.url, Credentials(key=KEY, secret=SECRET), coins=COINS, category="linear",
                                    ping_interval_s=0.2, silence_timeout_s=10.0)
        try:
            stream.start(on_event, recorder.on_state)
            assert recorder.state()[0] is True
            fake.push(execution_frame("t-lost", "0.001"))
            fake.push(execution_frame("t-next", "0.001"))
            assert recorder.event().trade_id == "t-next"
            assert logs.wait_for("BYBIT_PRIVATE_CALLBACK_FAILED: RuntimeError: sink broke")
            assert stream.stats()["up"]
        finally:
            stream.stop()


def test_up_only_after_both_the_login_and_the_subscription(make_stream: Callable[..., BybitPrivateStream],
                                                           recorder: Recorder) -> None:
    with FakeBybitPrivate(ack=False) as fake:
        stream = make_stream(fake.url)
        assert fake.wait_until(lambda f: stream.stats()["authenticated"] and len(f.subscriptions) == 1)
        assert recorder.states.empty() and stream.stats()["up"] is False
        fake.push({"success": True, "ret_msg": "", "conn_id": "c-1", "op": "subscribe"})
        assert recorder.state() == (True, "authenticated and subscribed")


def test_a_refused_subscription_keeps_the_stream_down(make_stream: Callable[..., BybitPrivateStream],
                                                      recorder: Recorder) -> None:
    with FakeBybitPrivate(refuse_topics=True) as fake:
        stream = make_stream(fake.url)
        up, why = recorder.state()
        assert up is False and why == "SUBSCRIBE_FAILED: Invalid topic: order"
        stats = stream.stats()
        assert stats["running"] and not stats["up"] and stats["subscribe_failed"] == why


def test_spot_subscribes_without_positions(make_stream: Callable[..., BybitPrivateStream], recorder: Recorder) -> None:
    with FakeBybitPrivate() as fake:
        make_stream(fake.url, category="spot")
        assert recorder.state()[0] is True
        assert fake.subscriptions == [["order", "execution", "wallet"]]
        fake.push(execution_frame("t-s", "0.5", category="spot", feeCurrency="BTC", execFee="0.0005"))
        event = recorder.event()
        assert isinstance(event, Fill) and event.fee_currency == "BTC" and event.fee == Decimal("0.0005")


def test_bad_arguments_are_refused_without_showing_the_key() -> None:
    credentials = Credentials(key=KEY, secret=SECRET)
    good: dict[str, Any] = {"coins": COINS, "category": "linear", "ping_interval_s": 20, "silence_timeout_s": 60}
    for url, changes in (("http://127.0.0.1:1/", {}), ("ws://127.0.0.1:1/", {"category": "inverse"}),
                         ("ws://127.0.0.1:1/", {"coins": {}}), ("ws://127.0.0.1:1/", {"ping_interval_s": 0}),
                         ("ws://127.0.0.1:1/", {"silence_timeout_s": -1})):
        with pytest.raises(ValueError) as raised:
            BybitPrivateStream(url, credentials, **{**good, **changes})
        assert KEY not in str(raised.value) and SECRET not in str(raised.value)
    with pytest.raises(ValueError, match="credentials") as raised:
        BybitPrivateStream("ws://127.0.0.1:1/", Credentials(key=KEY, secret=""), **good)
    assert KEY not in str(raised.value)
