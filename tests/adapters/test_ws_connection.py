"""WsConnection against the local ReplayServer (tests/support/ws_server.py): frames in order,
resubscription, drops, silence, an unreachable server, keepalive both ways, prompt stops and
planned reconnects. Every wait is on a condition with a timeout; nothing sleeps to synchronize.
"""

from __future__ import annotations

import random
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from adapters.net.backoff import Backoff
from adapters.net.ws_connection import WsConnection
from tests.support.ws_server import ReplayServer

WAIT = 5.0  # the bound on every wait


class Inbox:
    """An ``on_text`` that records what it gets (and raises for texts ``fail`` picks)."""

    def __init__(self, fail: Callable[[str], bool] | None = None) -> None:
        self.texts: list[str] = []
        self.stamps: list[int] = []
        self._fail = fail
        self._changed = threading.Condition()

    def __call__(self, text: str, received_ns: int) -> None:
        with self._changed:
            self.texts.append(text)
            self.stamps.append(received_ns)
            self._changed.notify_all()
        if self._fail is not None and self._fail(text):
            raise RuntimeError(f"parser choked on {text}")

    def wait_for(self, predicate: Callable[[list[str]], bool], timeout: float = WAIT) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: predicate(self.texts), timeout)

    def wait_count(self, count: int, timeout: float = WAIT) -> bool:
        return self.wait_for(lambda texts: len(texts) >= count, timeout)


class States:
    """An ``on_state`` that records every change."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, dict[str, Any]]] = []
        self._changed = threading.Condition()

    def __call__(self, state: str, info: dict[str, Any]) -> None:
        with self._changed:
            self.seen.append((state, info))
            self._changed.notify_all()

    def wait_for(self, predicate: Callable[[list[tuple[str, dict[str, Any]]]], bool], timeout: float = WAIT) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: predicate(self.seen), timeout)

    def count(self, state: str) -> int:
        with self._changed:
            return sum(1 for seen, _ in self.seen if seen == state)

    def wait_count(self, state: str, count: int, timeout: float = WAIT) -> bool:
        return self.wait_for(lambda seen: sum(1 for s, _ in seen if s == state) >= count, timeout)

    def delays(self) -> list[float]:
        with self._changed:
            return [info["delay"] for state, info in self.seen if state == "backoff"]

    def names(self) -> list[str]:
        with self._changed:
            return [state for state, _ in self.seen]


def fast_backoff(**overrides: Any) -> Backoff:
    settings: dict[str, Any] = {"first_s": 0.05, "cap_s": 0.2, "rng": random.Random(7)}
    settings.update(overrides)
    return Backoff(**settings)


def dead_url() -> str:
    """A URL on which nothing listens (a port the OS just handed out and took back)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"ws://127.0.0.1:{port}/"


@pytest.fixture
def servers() -> Iterator[Callable[..., ReplayServer]]:
    started: list[ReplayServer] = []

    def make(frames: list[str] | None = None, **options: Any) -> ReplayServer:
        server = ReplayServer(frames, **options).start()
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()


@pytest.fixture
def connect() -> Iterator[Callable[..., WsConnection]]:
    """Builds and starts connections (defaults: a fast backoff, no pings); stops them all after
    the test and checks each thread really ended."""
    made: list[WsConnection] = []

    def make(url: Any, inbox: Inbox | None = None, **options: Any) -> WsConnection:
        options.setdefault("backoff", fast_backoff())
        options.setdefault("ping_interval_s", None)
        connection = WsConnection("test", url, on_text=inbox if inbox is not None else Inbox(), **options)
        made.append(connection)
        connection.start()
        return connection

    yield make
    for connection in made:
        connection.stop()
    assert not any(connection.running for connection in made)


def wait_stats(connection: WsConnection, inbox: Inbox, server: ReplayServer,
               predicate: Callable[[dict[str, Any]], bool]) -> bool:
    """Check ``predicate`` on the connection's counters once every frame the server sent before
    has been read: the server pushes a marker behind them and the test waits for the marker."""
    marker = f"marker-{time.monotonic_ns()}"
    server.push(marker)
    return inbox.wait_for(lambda texts: marker in texts) and predicate(connection.stats())


# --- frames -------------------------------------------------------------------------------------

def test_connects_and_delivers_every_frame_in_order_with_its_receipt_time(servers, connect, logs) -> None:
    frames = [f'{{"n":{i}}}' for i in range(50)]
    server = servers(frames)
    inbox, states = Inbox(), States()
    before = time.time_ns()
    connection = connect(server.url, inbox, on_state=states)

    assert inbox.wait_count(50)
    assert inbox.texts == frames
    assert all(before <= stamp <= time.time_ns() for stamp in inbox.stamps)
    stats = connection.stats()
    assert (stats["state"], stats["connected"], stats["connects"], stats["reconnects"]) == ("open", True, 1, 0)
    assert stats["frames"] == 50 and stats["errors"] == 0
    assert stats["last_frame_ns"] == inbox.stamps[-1]
    assert states.names() == ["connecting", "open"]
    assert logs.wait_for(f"INFO feed WS_CONNECTED: ws://127.0.0.1:{server.port} (0 subscription message(s), "
                         "connect #1) [test]")


def test_binary_frames_are_counted_and_ignored(servers, connect) -> None:
    server = servers()
    inbox = Inbox()
    connection = connect(server.url, inbox)
    assert server.wait_for_connections(1, WAIT)
    server.push_binary(b"\x00\x01")
    server.push("text")
    assert inbox.wait_count(1)
    assert inbox.texts == ["text"]
    assert connection.stats()["binary_ignored"] == 1


def test_subscribe_is_sent_on_connect_and_again_after_a_reconnect(servers, connect) -> None:
    server = servers()
    calls = []

    def subscribe() -> list[str]:
        calls.append(len(calls) + 1)
        return [f'{{"op":"subscribe","id":{calls[-1]},"args":["trade.BTCUSDT"]}}', '{"op":"subscribe","args":["x"]}']

    connect(server.url, subscribe=subscribe)
    assert server.wait_for_received(2, WAIT)
    server.drop_clients()
    assert server.wait_for_received(4, WAIT)
    assert server.received == [
        '{"op":"subscribe","id":1,"args":["trade.BTCUSDT"]}', '{"op":"subscribe","args":["x"]}',
        '{"op":"subscribe","id":2,"args":["trade.BTCUSDT"]}', '{"op":"subscribe","args":["x"]}',
    ]
    assert server.connections == 2


def test_a_drop_mid_stream_reconnects_fast_and_continues_without_repeating_a_frame(servers, connect, logs) -> None:
    frames = [f"frame-{i}" for i in range(80)]
    server = servers(frames, pace_s=0.003)
    inbox, states = Inbox(), States()
    connect(server.url, inbox, on_state=states)

    assert inbox.wait_count(15)
    assert states.wait_count("open", 1)
    dropped_at = len(states.seen)
    assert server.drop_clients() == 1
    assert inbox.wait_count(80)
    assert inbox.texts == frames  # the server went on after its last frame; nothing twice, nothing lost
    after = states.names()[dropped_at:]
    assert after[:3] == ["backoff", "connecting", "open"]  # the first attempt after the drop succeeded
    assert all(0 < delay <= 0.2 * 1.2 for delay in states.delays())
    assert server.connections == 2
    assert logs.wait_for("WS_DISCONNECTED: connection lost")
    assert logs.wait_for("WS_RECONNECT_IN: 0.")
    assert "(attempt 1) [test]" in logs.text()


def test_a_reset_connection_is_reconnected_and_never_delivers_a_frame_twice(servers, connect) -> None:
    frames = [f"{i:03d}" for i in range(60)]
    server = servers(frames[:30], pace_s=0.002)
    inbox = Inbox()
    connection = connect(server.url, inbox)

    assert inbox.wait_count(10)
    server.drop_clients(reset=True)  # a TCP RST may lose what was in flight, never duplicate it
    server.extend(frames[30:])  # so the stream surely goes on after the reset
    assert inbox.wait_for(lambda texts: frames[-1] in texts)
    assert inbox.texts == sorted(set(inbox.texts))
    assert connection.stats()["connects"] == 2


def test_a_close_frame_from_the_server_is_a_disconnect_with_its_code(servers, connect) -> None:
    server = servers()
    states = States()
    connect(server.url, on_state=states)
    assert states.wait_count("open", 1)
    server.close_clients(1001, "going away")
    assert states.wait_count("open", 2)
    reason = next(info["reason"] for state, info in states.seen if state == "backoff")
    assert reason == "closed by the server (code 1001: going away)"


# --- silence ------------------------------------------------------------------------------------

def test_a_silent_connection_is_closed_and_reopened_and_frames_flow_again(servers, connect, logs) -> None:
    server = servers()
    inbox, states = Inbox(), States()
    connection = connect(server.url, inbox, on_state=states, silence_timeout_s=0.5, ping_interval_s=0.1)
    assert server.wait_for_connections(1, WAIT)
    server.push("before")
    assert inbox.wait_count(1)

    server.pause()  # open but mute: no frames, not even pongs
    assert states.wait_for(lambda seen: any(s == "backoff" and info["reason"].startswith("silent")
                                            for s, info in seen))
    assert logs.wait_for("WS_SILENT: no frame for 0.")
    server.resume()
    assert server.wait_for_connections(2, WAIT)
    assert states.wait_count("open", 2)
    server.push("after")
    assert inbox.wait_for(lambda texts: "after" in texts)
    stats = connection.stats()
    assert stats["reconnects"] >= 1 and stats["connects"] >= 2
    assert server.pings  # the client kept pinging the mute server


def test_answered_pings_keep_an_idle_connection_alive(servers, connect) -> None:
    server = servers()
    inbox = Inbox()
    # A silence limit a loaded machine cannot miss by scheduling alone (a 0.3 s limit failed under
    # load), and pings ten times as often: thirty pings take about 4.5 s, well past the limit, so
    # only the pongs can have kept the connection open.
    connection = connect(server.url, inbox, silence_timeout_s=1.5, ping_interval_s=0.15)
    assert server.wait_until(lambda s: len(s.pings) >= 30, 60)
    assert wait_stats(connection, inbox, server, lambda stats: stats["connects"] == 1 and stats["reconnects"] == 0)


def test_time_spent_in_on_text_is_not_silence(servers, connect) -> None:
    server = servers()
    release = threading.Event()
    seen: list[str] = []
    arrived = threading.Condition()

    def on_text(text: str, received_ns: int) -> None:
        with arrived:
            seen.append(text)
            arrived.notify_all()
        if text == "slow":
            release.wait(0.6)  # a sink applying back-pressure for twice the silence limit

    connection = WsConnection("test", server.url, on_text=on_text, silence_timeout_s=0.3, ping_interval_s=None,
                              backoff=fast_backoff())
    connection.start()
    try:
        assert server.wait_for_connections(1, WAIT)
        server.push("slow")
        server.push("queued behind it")
        with arrived:
            assert arrived.wait_for(lambda: "queued behind it" in seen, WAIT)
        stats = connection.stats()
        assert (stats["connects"], stats["reconnects"]) == (1, 0)
    finally:
        release.set()
        connection.stop()


# --- keepalive ----------------------------------------------------------------------------------

def test_websocket_pings_are_sent_and_answered_both_ways(servers, connect) -> None:
    server = servers()
    inbox = Inbox()
    connection = connect(server.url, inbox, ping_interval_s=0.05, ping_payload=lambda: '{"op":"ping"}')

    # client -> server: websocket pings and the application-level ping text, on the same beat
    assert server.wait_until(lambda s: len(s.pings) >= 3 and s.received.count('{"op":"ping"}') >= 3, WAIT)
    # the server answered each ping before reading the next one: two pongs at least are back
    assert wait_stats(connection, inbox, server,
                      lambda stats: stats["pongs_received"] >= 2 and stats["pings_sent"] >= 3)

    # server -> client (Binance pings and drops a client that does not pong with the payload)
    server.ping_clients(b"hb-1")
    assert server.wait_until(lambda s: b"hb-1" in s.pongs, WAIT)
    assert wait_stats(connection, inbox, server, lambda stats: stats["pings_received"] >= 1)


def test_a_ping_payload_of_none_sends_no_text(servers, connect) -> None:
    server = servers()
    connect(server.url, ping_interval_s=0.05, ping_payload=lambda: None)
    assert server.wait_until(lambda s: len(s.pings) >= 3, WAIT)
    assert server.received == []


# --- failures and backoff -------------------------------------------------------------------------

def test_an_unreachable_server_gets_growing_delays_and_stop_is_still_prompt(connect, logs) -> None:
    states = States()
    connection = connect(dead_url(), on_state=states,
                         backoff=Backoff(first_s=0.02, factor=2.0, cap_s=0.16, jitter=0.0))
    assert states.wait_count("backoff", 5)
    assert states.delays()[:5] == pytest.approx([0.02, 0.04, 0.08, 0.16, 0.16])
    attempts = [info["attempt"] for state, info in states.seen if state == "backoff"]
    assert attempts[:5] == [1, 2, 3, 4, 5]
    assert logs.wait_for("WS_CONNECT_FAILED: connect failed: ConnectionRefusedError")
    assert logs.wait_for("WS_RECONNECT_IN: 0.16s (attempt 5) [test]")

    started = time.monotonic()
    connection.stop()
    assert time.monotonic() - started < 2.0
    stats = connection.stats()
    assert stats["connects"] == 0 and stats["connect_failures"] >= 5 and stats["state"] == "stopped"
    assert states.names()[-1] == "stopped"


def test_the_backoff_keeps_growing_while_connections_die_at_once_and_resets_after_a_healthy_one(
        servers, connect) -> None:
    frames = [f"f{i}" for i in range(10)]  # 10 text frames make a connection healthy
    server = servers()
    states, inbox = States(), Inbox()
    connect(server.url, inbox, on_state=states, backoff=Backoff(first_s=0.02, factor=2.0, cap_s=1.0, jitter=0.0))
    for number in (1, 2, 3):
        assert server.wait_for_connections(number, WAIT)
        server.drop_clients()
    assert server.wait_for_connections(4, WAIT)
    assert states.delays() == pytest.approx([0.02, 0.04, 0.08])

    server.extend(frames)
    assert inbox.wait_count(10)
    server.drop_clients()
    assert states.wait_count("backoff", 4)
    assert states.delays()[3] == pytest.approx(0.02)
    assert [info["attempt"] for state, info in states.seen if state == "backoff"] == [1, 2, 3, 1]


def test_a_connection_open_long_enough_with_a_frame_resets_the_backoff(servers, connect) -> None:
    server = servers()
    urls = iter([dead_url(), dead_url()])
    states, inbox = States(), Inbox()
    connect(lambda: next(urls, server.url), inbox, on_state=states, ping_interval_s=0.05,
            healthy_after_s=0.2, healthy_after_frames=1000,
            backoff=Backoff(first_s=0.02, factor=2.0, cap_s=1.0, jitter=0.0))
    assert server.wait_for_connections(1, WAIT)
    assert states.delays() == pytest.approx([0.02, 0.04])
    server.push("one frame")
    assert inbox.wait_count(1)
    # pings leave at least 0.05 s apart and health is checked just before each one: the fifth
    # ping after the frame leaves 0.2 s or more after it, so after the connection became healthy
    pings = len(server.pings)
    assert server.wait_until(lambda s: len(s.pings) >= pings + 5, WAIT)
    server.drop_clients()
    assert states.wait_count("backoff", 3)
    assert states.delays()[2] == pytest.approx(0.02)
    assert [info["attempt"] for state, info in states.seen if state == "backoff"] == [1, 2, 1]


def test_on_text_raising_is_logged_and_counted_and_the_stream_goes_on(servers, connect, logs) -> None:
    server = servers(["a", "boom", "c"])
    inbox = Inbox(fail=lambda text: text == "boom")
    connection = connect(server.url, inbox)
    assert inbox.wait_count(3)
    server.push("d")
    assert inbox.wait_for(lambda texts: "d" in texts)
    assert inbox.texts == ["a", "boom", "c", "d"]
    stats = connection.stats()
    assert (stats["errors"], stats["frames"], stats["connects"], stats["state"]) == (1, 4, 1, "open")
    assert logs.wait_for("WS_ON_TEXT_FAILED: RuntimeError: parser choked on boom")


def test_the_url_callable_is_asked_at_every_attempt(servers, connect) -> None:
    first, second = servers(), servers()
    urls = iter([dead_url(), first.url, second.url])
    states = States()
    connect(lambda: next(urls), on_state=states, subscribe=lambda: ["sub"])
    assert first.wait_for_received(1, WAIT)
    first.drop_clients()
    assert second.wait_for_received(1, WAIT)
    assert (first.connections, second.connections) == (1, 1)
    assert states.names()[:3] == ["connecting", "backoff", "connecting"]  # the dead URL failed first


# --- stopping -----------------------------------------------------------------------------------

def test_stop_during_a_backoff_wait_returns_at_once(connect) -> None:
    states = States()
    connection = connect(dead_url(), on_state=states, backoff=Backoff(first_s=30.0, cap_s=60.0))
    assert states.wait_count("backoff", 1)
    started = time.monotonic()
    connection.stop()
    assert time.monotonic() - started < 2.0
    assert not connection.running
    assert states.names()[-1] == "stopped"
    connection.stop()  # idempotent


def test_stop_during_a_blocked_read_returns_at_once(servers, connect) -> None:
    server = servers()
    states = States()
    connection = connect(server.url, on_state=states)  # no pings, no frames: the read blocks
    assert states.wait_count("open", 1)
    started = time.monotonic()
    connection.stop()
    assert time.monotonic() - started < 2.0
    assert connection.stats()["connected"] is False
    assert states.names() == ["connecting", "open", "stopped"]


def test_stop_during_a_handshake_that_never_completes_returns_at_once(connect) -> None:
    with socket.socket() as listener:  # accepts TCP connections, never answers the upgrade
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        listener.settimeout(WAIT)
        connection = connect(f"ws://127.0.0.1:{listener.getsockname()[1]}/", open_timeout_s=30.0)
        accepted, _ = listener.accept()
        with accepted:
            started = time.monotonic()
            connection.stop()
            assert time.monotonic() - started < 2.0
            assert connection.stats()["connects"] == 0


def test_stop_from_inside_on_text_ends_the_connection(servers, connect) -> None:
    server = servers(["one", "two", "three"])
    holder: dict[str, WsConnection] = {}
    seen: list[str] = []
    done = threading.Event()

    def on_text(text: str, received_ns: int) -> None:
        seen.append(text)
        holder["connection"].stop()
        done.set()

    connection = WsConnection("test", server.url, on_text=on_text, ping_interval_s=None)
    holder["connection"] = connection
    connection.start()
    assert done.wait(WAIT)
    connection.stop()
    assert not connection.running
    assert seen == ["one"]


def test_stop_before_start_and_start_twice_are_harmless(servers) -> None:
    server = servers()
    connection = WsConnection("test", server.url, on_text=Inbox(), ping_interval_s=None)
    connection.stop()
    connection.start()
    connection.start()
    assert server.wait_for_connections(1, WAIT)
    connection.stop()
    assert server.connections == 1
    assert connection.state == "stopped"


# --- planned reconnects -----------------------------------------------------------------------------

def test_max_lifetime_triggers_a_planned_reconnect_without_backoff(servers, connect, logs) -> None:
    server = servers()
    states = States()
    connection = connect(server.url, on_state=states, subscribe=lambda: ["sub"], max_lifetime_s=0.3,
                         backoff=Backoff(first_s=30.0, cap_s=60.0))  # a backoff wait would blow the bound
    assert server.wait_for_connections(2, 2.0)
    assert server.wait_for_received(2, WAIT)  # resubscribed
    assert logs.wait_for("WS_PLANNED_RECONNECT: max lifetime 0.3s reached [test]")
    assert "backoff" not in states.names()
    assert connection.stats()["reconnects"] >= 1


def test_a_requested_reconnect_is_a_handover(servers, connect, logs) -> None:
    server = servers([f"f{i:04d}" for i in range(2000)], pace_s=0.002, live=True)
    inbox, states = Inbox(), States()
    connection = connect(server.url, inbox, on_state=states, backoff=Backoff(first_s=30.0, cap_s=60.0))
    assert inbox.wait_count(5)
    connection.reconnect("subscriptions changed")
    assert logs.wait_for("WS_PLANNED_RECONNECT: reconnect requested: subscriptions changed [test]")
    assert logs.wait_for("WS_HANDOVER: connect #2 took over after")
    assert states.names() == ["connecting", "open"]  # the stream was never reported down
    stats = connection.stats()
    assert (stats["connects"], stats["reconnects"], stats["handovers"], stats["handover_failures"]) == (2, 1, 1, 0)
    assert stats["last_reason"] == "reconnect requested: subscriptions changed"


# --- handovers (make-before-break) --------------------------------------------------------------

def first_copies(texts: list[str]) -> list[str]:
    """``texts`` with every repeat left out (the first copy of each kept, in place)."""
    seen: set[str] = set()
    return [text for text in texts if not (text in seen or seen.add(text))]  # type: ignore[func-returns-value]


def step_backs(texts: list[str]) -> int:
    """How often a text is smaller than the one before (texts that sort in stream order)."""
    return sum(1 for before, after in zip(texts, texts[1:]) if after < before)


def hanging_listener() -> socket.socket:
    """A TCP listener that accepts and never answers a websocket upgrade."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    listener.settimeout(WAIT)
    return listener


def test_planned_reconnects_hand_over_without_losing_a_frame(servers, connect, logs) -> None:
    frames = [f"f{i:04d}" for i in range(600)]
    server = servers(frames, pace_s=0.002, live=True)  # goes on whether anyone listens or not
    inbox, states = Inbox(), States()
    connection = connect(server.url, inbox, on_state=states, subscribe=lambda: ["sub"], max_lifetime_s=0.25,
                         backoff=Backoff(first_s=30.0, cap_s=60.0))  # a backoff wait would blow the bounds
    assert logs.wait_for("WS_HANDOVER: connect #3 took over after")
    # read at once: the next handover is due only max_lifetime_s after connect #3 opened
    stats = connection.stats()
    assert (stats["connects"], stats["reconnects"], stats["handovers"], stats["handover_failures"]) == (3, 2, 2, 0)
    assert inbox.wait_for(lambda texts: frames[-1] in texts, timeout=WAIT)
    connection.stop()

    texts = list(inbox.texts)
    assert first_copies(texts) == frames  # nothing lost, in stream order
    stats = connection.stats()
    assert stats["frames"] == len(texts) > len(set(texts))  # overlap frames came twice ...
    assert step_backs(texts) <= stats["handovers"]  # ... once per handover at most, right after it
    assert server.peak_clients == 2  # the new connection was open before the old one closed
    assert server.missed == 0  # every frame went out to a connection
    assert server.received == ["sub"] * server.connections  # every connection subscribed
    assert states.names() == ["connecting", "open", "stopped"]  # never down, no backoff
    assert logs.wait_for("WS_PLANNED_RECONNECT: max lifetime 0.25s reached [test]")
    assert logs.wait_for("WS_HANDOVER: connect #2 took over after")
    assert "WS_DISCONNECTED" not in logs.text() and "WS_HANDOVER_FAILED" not in logs.text()


def test_a_handover_whose_connect_fails_keeps_the_old_connection_and_retries_after_the_backoff(
        servers, connect, logs) -> None:
    frames = [f"f{i:04d}" for i in range(500)]
    server = servers(frames, pace_s=0.002, live=True)
    refused, reachable = dead_url(), threading.Event()
    urls = iter([server.url])
    inbox, states = Inbox(), States()
    connection = connect(lambda: next(urls, server.url if reachable.is_set() else refused), inbox, on_state=states,
                         max_lifetime_s=0.2, backoff=Backoff(first_s=0.05, cap_s=0.05, jitter=0.0))
    assert logs.wait_for("WS_HANDOVER_FAILED: connect failed: ConnectionRefusedError")
    assert "keeping the old connection, next try in 0.05s [test]" in logs.text()
    during = len(inbox.texts)
    assert inbox.wait_count(during + 20)  # the old connection goes on delivering ...
    assert server.connections == 1  # ... and it is the only one
    reachable.set()
    assert logs.wait_for("WS_HANDOVER: connect #2 took over")  # a later try succeeded
    stats = connection.stats()  # at once: the next handover is due max_lifetime_s later
    assert stats["handover_failures"] >= 1 and stats["connect_failures"] == stats["handover_failures"]
    assert (stats["connects"], stats["handovers"]) == (2, 1) and server.connections == 2
    assert stats["reconnects"] == stats["handovers"] + stats["handover_failures"]
    assert inbox.wait_for(lambda texts: frames[-1] in texts)
    connection.stop()

    assert first_copies(list(inbox.texts)) == frames  # nothing lost across all of it
    assert states.names() == ["connecting", "open", "stopped"]


def test_a_new_connection_that_shows_nothing_is_closed_and_the_handover_tried_again(servers, connect, logs) -> None:
    frames = [f"f{i:04d}" for i in range(800)]
    server, mute = servers(frames, pace_s=0.002, live=True), servers()  # mute: accepts, never sends
    urls = iter([server.url, mute.url])
    inbox, states = Inbox(), States()
    connection = connect(lambda: next(urls, server.url), inbox, on_state=states, subscribe=lambda: ["sub"],
                         max_lifetime_s=0.2, handover_timeout_s=1.0, backoff=Backoff(first_s=0.05, cap_s=0.05))
    assert mute.wait_for_received(1, WAIT)  # the new connection is open and subscribed ...
    during = len(inbox.texts)
    assert inbox.wait_count(during + 20)  # ... and the old one is read on meanwhile (40 ms of frames)
    assert mute.clients == 1
    assert logs.wait_for("WS_HANDOVER_FAILED: no frame on the new connection within 1s; keeping the old "
                         "connection")
    assert mute.wait_until(lambda s: s.clients == 0, WAIT)  # the new one was closed
    assert logs.wait_for("WS_HANDOVER: connect #3 took over")
    stats = connection.stats()  # at once: the next handover is due max_lifetime_s later
    assert (stats["connects"], stats["handovers"], stats["handover_failures"], stats["connect_failures"]) == (
        3, 1, 1, 0)
    assert inbox.wait_for(lambda texts: frames[-1] in texts)
    connection.stop()

    assert first_copies(list(inbox.texts)) == frames
    assert states.names() == ["connecting", "open", "stopped"]


def test_an_old_connection_lost_during_the_overlap_leaves_the_new_one_reading(servers, connect, logs) -> None:
    old, new = servers(), servers()
    urls = iter([old.url, new.url])
    inbox, states = Inbox(), States()
    connection = connect(lambda: next(urls), inbox, on_state=states, subscribe=lambda: ["sub"],
                         handover_timeout_s=30.0, backoff=Backoff(first_s=30.0, cap_s=60.0))
    assert old.wait_for_received(1, WAIT)
    connection.reconnect("test")
    assert new.wait_for_received(1, WAIT)  # in the overlap: the new one shows nothing yet
    old.push("last of the old")
    old.drop_clients()
    assert logs.wait_for("(the old connection, during a handover: connect #2 goes on) [test]")
    new.push("first of the new")
    assert inbox.wait_for(lambda texts: "first of the new" in texts)
    assert inbox.texts == ["last of the old", "first of the new"]
    stats = connection.stats()
    assert (stats["connects"], stats["handovers"], stats["state"]) == (2, 1, "open")
    assert states.names() == ["connecting", "open"]


def test_stop_while_the_new_connection_shows_nothing_yet_returns_at_once(servers, connect) -> None:
    server, mute = servers([f"f{i:04d}" for i in range(3000)], pace_s=0.002), servers()
    urls = iter([server.url, mute.url])
    inbox = Inbox()
    connection = connect(lambda: next(urls), inbox, subscribe=lambda: ["sub"], handover_timeout_s=30.0)
    assert inbox.wait_count(3)
    connection.reconnect("test")
    assert mute.wait_for_received(1, WAIT)  # both connections open, the overlap waits for the new one
    started = time.monotonic()
    connection.stop()
    assert time.monotonic() - started < 1.0
    assert not connection.running
    assert server.wait_until(lambda s: s.clients == 0, WAIT) and mute.wait_until(lambda s: s.clients == 0, WAIT)
    assert connection.stats()["handovers"] == 0


def test_stop_while_the_new_connection_is_in_its_handshake_returns_at_once(servers, connect) -> None:
    server = servers([f"f{i:04d}" for i in range(3000)], pace_s=0.002)
    with hanging_listener() as listener:
        urls = iter([server.url, f"ws://127.0.0.1:{listener.getsockname()[1]}/"])
        inbox = Inbox()
        connection = connect(lambda: next(urls), inbox, open_timeout_s=30.0)
        assert inbox.wait_count(3)
        connection.reconnect("test")
        accepted, _ = listener.accept()  # the new connection waits for its 101 that never comes
        with accepted:
            started = time.monotonic()
            connection.stop()
            assert time.monotonic() - started < 1.0
            assert not connection.running
            assert server.wait_until(lambda s: s.clients == 0, WAIT)
            assert connection.stats()["connects"] == 1


# --- construction --------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("url", "options", "field"),
    [
        ("http://example.com/", {}, "url"),
        ("not a url", {}, "url"),
        ("ws://127.0.0.1:1/", {"ping_interval_s": 0}, "ping_interval_s"),
        ("ws://127.0.0.1:1/", {"silence_timeout_s": -1}, "silence_timeout_s"),
        ("ws://127.0.0.1:1/", {"open_timeout_s": None}, "open_timeout_s"),
        ("ws://127.0.0.1:1/", {"max_lifetime_s": float("inf")}, "max_lifetime_s"),
        ("ws://127.0.0.1:1/", {"handover_timeout_s": 0}, "handover_timeout_s"),
        ("ws://127.0.0.1:1/", {"handover_timeout_s": None}, "handover_timeout_s"),
    ],
)
def test_bad_settings_are_refused_naming_the_argument(url: str, options: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        WsConnection("test", url, on_text=Inbox(), **options)
