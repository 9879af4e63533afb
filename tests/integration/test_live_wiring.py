"""Live mode wired end to end with a scripted live venue (``tests/support/fake_venue.FakeLiveVenue``
injected through ``build_engine(venue=...)``; market rules from a local HTTP server speaking
Binance USD-M): the venue connects before any actor starts, a refusal stops the start with
nothing started, a 418 stops new entries until the ban is lifted, refused keys halt the session
with exit code 6, and the venue shows in the status, the report and ``--status``."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import run
from actors.bus import JOURNAL
from adapters.errors import AuthenticationFailed, TemporaryError, UnsupportedAccount
from run import EXIT_VENUE_HALTED, Engine, VenueStartError, build_engine
from state.messages import OrderDenied, PositionOpened
from state.order import NoticeKind
from state.store import Store
from state.types import TradingState
from tests.conftest import WAIT, condition
from tests.support.fake_venue import FakeLiveVenue
from tests.support.http_server import LocalHttpServer
from tests.support.usdm_info import usdm_exchange_info
from tests.support.quiet_source import QuietSource


@pytest.fixture
def rest() -> Iterator[LocalHttpServer]:
    with LocalHttpServer() as server:
        server.route("/fapi/v1/exchangeInfo", usdm_exchange_info())
        yield server


def live_config(rest: LocalHttpServer, **venue: Any) -> dict[str, Any]:
    return {
        "engine": {"mode": "live", "sweep_interval_s": 0.2},
        "feed": {"source": "binance", "symbols": ["BTC"], "rest_url": rest.url, "give_up_after_s": 0,
                 "stale_after_s": 3600},
        "venue": {"testnet": True, **venue},
        "strategist": {"strategies": []},
        "supervisor": {"backoff_s": [0.0, 0.05, 0.1], "poll_interval_s": 0.05},
    }


def live_engine(rest: LocalHttpServer, tmp_path: Path, venue: FakeLiveVenue, **settings: Any) -> Engine:
    return build_engine(live_config(rest, **settings), data_dir=tmp_path / "data", venue=venue, source=QuietSource())


class Seen:
    """The messages of some kinds the Journal receives (a bus tap), waited on with a bound."""

    def __init__(self, engine: Engine, *kinds: type) -> None:
        self.kinds = kinds
        self.items: list[Any] = []
        self._changed = threading.Condition()
        engine.bus.add_tap(self._tap)

    def _tap(self, role: str, message: Any) -> None:
        if role == JOURNAL and isinstance(message, self.kinds):
            with self._changed:
                self.items.append(message)
                self._changed.notify_all()

    def wait_for(self, kind: type, count: int = 1) -> list[Any]:
        deadline = time.monotonic() + WAIT
        with self._changed:
            while len(found := [m for m in self.items if isinstance(m, kind)]) < count:
                remaining = deadline - time.monotonic()
                assert remaining > 0, f"fewer than {count} {kind.__name__} within {WAIT}s: {self.items}"
                self._changed.wait(remaining)
            return found


def wait_until(check: Any, what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not check():
        assert time.monotonic() < deadline, f"not within {WAIT}s: {what}"
        time.sleep(0.01)  # polling an actor's answer: no event to wait on


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def trade_once(engine: Engine, trigger: str) -> None:
    """Arm a LONG above ``trigger`` and push a tick through it."""
    engine.sniper.add_condition(condition(trigger=trigger, size=100))
    engine.push_tick("BTC", str(int(trigger) + 10), now_ms())


def test_a_ban_stops_new_entries_with_its_reason_and_trading_resumes_once_it_is_lifted(rest, tmp_path, logs):
    venue = FakeLiveVenue()
    engine = live_engine(rest, tmp_path, venue).start()
    seen = Seen(engine, OrderDenied, PositionOpened)
    try:
        assert venue.connects == 1 and venue.binds == 1
        engine.push_tick("BTC", "42000", now_ms())
        until = now_ms() + 3_600_000
        venue.notice(NoticeKind.BANNED, "HTTP 418: IP banned until further notice", until)
        wait_until(lambda: engine.risk_gate.ask("stats")["venue_banned"], "the RiskGate knows of the ban")
        assert "BANNED until" in run._status_line(engine)

        trade_once(engine, "42010")
        (denied,) = seen.wait_for(OrderDenied)
        assert denied.reason.startswith("VENUE_BANNED until ") and denied.reason.endswith(" UTC")
        assert venue.submits == [], "no entry may reach a banned venue"

        venue.notice(NoticeKind.BAN_LIFTED, "first request after the ban succeeded")
        wait_until(lambda: not engine.risk_gate.ask("stats")["venue_banned"], "the ban is lifted")
        trade_once(engine, "42030")
        (opened,) = seen.wait_for(PositionOpened)
        assert venue.submits == [opened.position.id + "-E"]
        assert engine.risk_gate.trading_state() == "ACTIVE"
        assert logs.wait_for("VENUE_BANNED: no new entry until")
        line = run._status_line(engine)
        assert "venue binanceusdm usdm TESTNET stream up" in line and "BANNED" not in line
        report = engine.shutdown()
    finally:
        engine.stop()
    assert venue.closes == 1, "Engine.stop closes a live venue"
    assert report["mode"] == "live"
    assert report["venue"]["status"]["exchange"] == "binanceusdm"
    assert report["venue"]["startup"]["position_mode"] == "one-way"
    assert not (tmp_path / "data" / "venue.db").exists(), "a live session has no paper venue book"
    text = run._report_text(report)
    assert "TESTNET on binanceusdm" in text and "venue: stream up" in text


def test_keys_refused_while_running_halt_trading_and_end_the_session_with_exit_code_6(rest, tmp_path):
    venue = FakeLiveVenue()
    engine = live_engine(rest, tmp_path, venue).start()
    try:
        venue.notice(NoticeKind.AUTH_FAILED, "keys refused: binanceusdm -2015 Invalid API-key, IP, or permissions")
        assert engine.venue_halted.wait(WAIT)
        wait_until(lambda: engine.risk_gate.trading_state() == "HALTED", "trading halted")
        code, reason = run._session_outcome(engine, "stop requested")
        assert run._session_over(engine, threading.Event())
        report = engine.shutdown(code, reason)
    finally:
        engine.stop()
    assert code == EXIT_VENUE_HALTED == 6
    assert reason == "VENUE_HALTED: keys refused: binanceusdm -2015 Invalid API-key, IP, or permissions"
    assert report["exit_code"] == 6 and report["end_reason"] == reason
    assert report["trading_state"] == "HALTED"
    assert run._outcome(engine, code) == 6


@pytest.mark.parametrize(("error", "cause"), [
    (AuthenticationFailed("binanceusdm -2015 Invalid API-key, IP, or permissions for action"), "refused the API keys"),
    (UnsupportedAccount("hedge mode (dualSidePosition) is on; switch the account to one-way mode"),
     "is set up in a way the engine does not trade: hedge mode"),
    (TemporaryError("connection refused"), "cannot be reached: connection refused"),
])
def test_a_connect_that_fails_stops_the_start_before_any_actor_and_says_why(rest, tmp_path, error, cause):
    venue = FakeLiveVenue(connect_error=error)
    engine = live_engine(rest, tmp_path, venue)
    with pytest.raises(VenueStartError) as caught:
        engine.start()
    assert cause in str(caught.value) and str(caught.value).endswith("nothing was started")
    assert "binanceusdm testnet" in str(caught.value)
    assert all(engine.supervisor.current_ref(role) is None for role in run.ROLES), "no actor may have started"
    assert venue.binds == 0 and venue.closes == 1
    assert not engine.folder_lock.held
    again = live_engine(rest, tmp_path, FakeLiveVenue())  # the folder is free and usable again
    again.start().shutdown()


def test_a_halt_for_refused_keys_is_lifted_when_the_next_start_connects(rest, tmp_path, logs):
    engine = live_engine(rest, tmp_path, FakeLiveVenue()).start()
    venue = engine.venue
    assert isinstance(venue, FakeLiveVenue)
    venue.notice(NoticeKind.AUTH_FAILED, "keys refused")
    wait_until(lambda: engine.risk_gate.trading_state() == "HALTED", "trading halted")
    engine.shutdown(EXIT_VENUE_HALTED, engine.venue_halt_reason)

    again = live_engine(rest, tmp_path, FakeLiveVenue()).start()
    try:
        assert again.risk_gate.trading_state() == "ACTIVE"
        assert logs.wait_for("VENUE_HALT_LIFTED")
    finally:
        again.shutdown()


def test_a_kill_switch_halt_is_not_lifted_by_a_connect(rest, tmp_path):
    engine = live_engine(rest, tmp_path, FakeLiveVenue()).start()
    engine.risk_gate.halt("KILL_SWITCH: requested")
    engine.shutdown()
    again = live_engine(rest, tmp_path, FakeLiveVenue()).start()
    try:
        assert again.risk_gate.trading_state() == "HALTED"
    finally:
        again.shutdown()


def test_paper_and_live_never_share_a_folder(rest, tmp_path):
    paper = {**live_config(rest), "engine": {"mode": "paper"}}
    build_engine(paper, data_dir=tmp_path / "data", source=QuietSource()).stop()
    with pytest.raises(run.SessionMismatch, match="Never mix paper positions with a real account"):
        live_engine(rest, tmp_path, FakeLiveVenue())

    live_engine(rest, tmp_path / "live", FakeLiveVenue()).stop()
    with pytest.raises(run.SessionMismatch, match="mode: stored live, now paper"):
        build_engine(paper, data_dir=tmp_path / "live" / "data", source=QuietSource())
    with pytest.raises(run.SessionMismatch, match="venue: stored binanceusdm testnet, now binanceusdm live"):
        live_engine(rest, tmp_path / "live", FakeLiveVenue(testnet=False), testnet=False)


def test_status_shows_the_live_venue_from_the_last_report_without_any_network(rest, tmp_path, capsys):
    engine = live_engine(rest, tmp_path, FakeLiveVenue()).start()
    engine.shutdown()
    rest.stop()  # nothing to reach any more

    config = tmp_path / "live.toml"
    config.write_text('[engine]\nmode = "live"\n[feed]\nsource = "binance"\nsymbols = ["BTC"]\n'
                      '[strategist]\nstrategies = []\n')
    assert run.main(["--config", str(config), "--data-dir", str(tmp_path / "data"), "--status"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["identity"]["mode"] == "live"
    assert status["identity"]["venue"] == "binanceusdm testnet"
    assert status["venue"]["status"]["testnet"] is True
    assert status["venue"]["startup"]["exchange"] == "binanceusdm"
    assert status["venue"]["run_id"] == engine.run_id


def test_the_halted_state_is_persisted_in_the_store(rest, tmp_path):
    engine = live_engine(rest, tmp_path, FakeLiveVenue()).start()
    venue = engine.venue
    assert isinstance(venue, FakeLiveVenue)
    venue.notice(NoticeKind.AUTH_FAILED, "keys refused")
    wait_until(lambda: engine.risk_gate.trading_state() == "HALTED", "trading halted")
    engine.shutdown(EXIT_VENUE_HALTED, engine.venue_halt_reason)
    store = Store(tmp_path / "data" / "engine.db")
    try:
        assert store.load_trading_state() is TradingState.HALTED
        assert store.load_trading_reason() == "VENUE_HALTED: keys refused"
    finally:
        store.close()


def test_the_report_never_holds_the_key_or_the_secret_whatever_text_it_quotes(rest, tmp_path):
    from state.secrets import Credentials

    key, secret = "FakeKey7q9Zx4Lm2Np8Rt6", "FakeSecret5Hj8Kl2Mn4Pq6"
    venue = FakeLiveVenue()
    engine = live_engine(rest, tmp_path, venue)
    engine.credentials = Credentials(key=key, secret=secret)  # as a live session that built its own venue
    engine.bus.set_outbox(run._guarded_outbox(run.StoreOutbox(engine.store, engine.run_id), engine.secrets()))
    engine.start()
    try:
        venue.notice(NoticeKind.AUTH_FAILED, f"keys refused: apiKey {key} signed with {secret}")
        assert engine.venue_halted.wait(WAIT)
        code, reason = run._session_outcome(engine, "stop requested")
        report = engine.shutdown(code, reason)
    finally:
        engine.stop()
    assert reason == "VENUE_HALTED: keys refused: apiKey *** signed with ***"
    assert report["venue"]["status"]["halted"] == "keys refused: apiKey *** signed with ***"
    text = json.dumps(report) + (tmp_path / "data" / "runs" / engine.run_id / "summary.json").read_text()
    assert key not in text and secret not in text
    # The journal (its database, fed by the outbox) holds the alert masked. (engine.db keeps the
    # RiskGate's halt reason as the venue worded it: that a venue never quotes a key is its contract.)
    journal = tmp_path / "data" / "journal.db"
    journal_bytes = b"".join(p.read_bytes() for p in journal.parent.glob("journal.db*"))
    assert b"apiKey *** signed with ***" in journal_bytes, "the alert is journaled (masked), so this test can fail"
    assert key.encode() not in journal_bytes and secret.encode() not in journal_bytes
