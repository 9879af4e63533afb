"""A live session counts in the account's own money: its cash, start equity, sizing, exposure
limit and kill switch start from the venue's balance of the cash asset at connect, not from
``[paper] initial_balance`` (a scripted ``FakeLiveVenue`` with the balances as its argument,
market rules from a local HTTP server; and one session against the local Binance exchange).

- a fresh folder starts with the account's USDT as cash and start equity; a risk_pct size, the
  Sniper's exposure limit and the kill switch follow it (a 6 % loss of a 500 USDT account trips
  a 5 % daily limit, the same loss against 10,000 does not);
- an account without the cash asset refuses the start before any actor runs (VenueStartError:
  exit 2 on the command line), naming the asset;
- a restart goes on with the store's cash; a venue balance that differs is reported (BALANCE:
  log, journal, report, --status) and trading goes on.
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

import run
from run import Engine, VenueStartError, build_engine
from state.messages import PositionOpened, VenueReconciled
from state.reconcile import DifferenceKind
from state.store import Store
from tests.conftest import WAIT, condition
from tests.integration.test_live_wiring import QuietSource, Seen, live_config, now_ms, rest  # noqa: F401 (fixture)
from tests.support.fake_venue import FakeLiveVenue
from tests.support.http_server import LocalHttpServer

D = Decimal
RISK = {"max_position_usd": 10000, "max_stop_loss_pct": 0.5, "max_daily_loss_pct": 0.05, "max_drawdown_pct": 0,
        "mark_report_ms": 0}  # every mark reported: the loss is seen at the tick that makes it


def live(rest: LocalHttpServer, data_dir: Path, venue: FakeLiveVenue, **sections: dict[str, Any]) -> Engine:
    """A live engine (not started) on ``data_dir``; ``[paper] initial_balance`` stays 10,000."""
    config = live_config(rest)
    for name, values in sections.items():
        config[name] = {**config.get(name, {}), **values}
    config["paper"] = {"initial_balance": 10000}
    return build_engine(config, data_dir=data_dir, venue=venue, source=QuietSource())


def stored_balance(data_dir: Path) -> str:
    store = Store(data_dir / "engine.db")
    try:
        return store.load_account()["balance"]
    finally:
        store.close()


def test_a_fresh_live_folder_starts_with_the_accounts_usdt_as_cash_and_sizes_from_it(rest, tmp_path):
    venue = FakeLiveVenue(balances={"USDT": D("500"), "BNB": D("1.5")})
    engine = live(rest, tmp_path / "data", venue, risk={"sizing": "risk_pct", "risk_per_trade_pct": 0.01}).start()
    try:
        snapshot = engine.sniper.snapshot()
        assert (snapshot.balance, snapshot.equity) == (D("500"), D("500"))
        assert engine.initial_balance == engine.start_equity == D("500") and engine.cash_asset == "USDT"
        stats = engine.risk_gate.ask("stats")
        assert (stats["equity"], stats["day_start_equity"], stats["peak_equity"]) == ("500", "500", "500")
        sized = engine.risk_gate.ask("vet", condition(stop="0.02", size=100))
        assert sized.position_size_usd == D("250.00"), "1 % of 500 at a 2 % stop, not of 10,000"
        assert engine.reconciliation is not None
        assert engine.reconciliation["differences"] == []
        assert engine.reconciliation["cash"] == {"asset": "USDT", "engine": "500", "venue": "500"}
        report = engine.shutdown()
    finally:
        engine.stop()
    assert stored_balance(tmp_path / "data") == "500", "the store's account is seeded with the account's USDT"
    assert report["start_equity"] == "500" and report["start_balance"] == "500"
    assert report["resumed_account"] is False
    assert report["venue"]["cash_at_start"] == {"asset": "USDT", "venue": "500", "engine": "500",
                                                "run_id": engine.run_id, "seeded": True}
    assert "USDT at start: account 500.00, engine 500.00" in run._report_text(report)


def test_the_sniper_exposure_limit_follows_the_account(rest, tmp_path, logs):
    venue = FakeLiveVenue(balances={"USDT": D("500")})  # max_exposure_pct 0.10: 50 USD, not 1,000
    engine = live(rest, tmp_path / "data", venue).start()
    try:
        engine.sniper.add_condition(condition(trigger="42000", size=100))
        engine.push_tick("BTC", "42010", now_ms())
        assert engine.wait_idle(WAIT)
        assert logs.wait_for("POSITION_LIMIT_EXCEEDED: max_exposure_pct: 0 open or pending + 100 new would exceed "
                             "50.0")
        assert venue.submits == [] and engine.sniper.snapshot().positions == ()
    finally:
        engine.shutdown()


@pytest.mark.parametrize(("usdt", "trips"), [("500", True), ("10000", False)])
def test_the_kill_switch_counts_the_loss_against_the_accounts_balance(rest, tmp_path, usdt, trips):
    venue = FakeLiveVenue(balances={"USDT": D(usdt)})
    engine = live(rest, tmp_path / "data", venue, risk=RISK, sniper={"max_exposure_pct": 1}).start()
    try:
        engine.sniper.add_condition(condition(trigger="42000", size=300, stop="0.2", target="0.5"))
        engine.push_tick("BTC", "41990", now_ms())
        engine.push_tick("BTC", "42010", now_ms())
        assert engine.wait_idle(WAIT)
        (opened,) = engine.sniper.snapshot().positions
        assert opened.status.value == "OPEN"
        for price in ("40000", "38000", "37000"):  # 28 to 35 USD lost: 5.7 to 7 % of 500, 0.35 % of 10,000
            engine.push_tick("BTC", price, now_ms())
        assert engine.wait_idle(WAIT)
        if trips:
            assert engine.killed.wait(WAIT), "a 7 % loss of a 500 USDT account must trip a 5 % daily limit"
            assert engine.kill_reason.startswith("KILL_SWITCH: daily loss ")
            assert engine.kill_reason.endswith("from 500.00) reached the limit 5.00%")
        else:
            assert not engine.killed.is_set()
            assert D(engine.risk_gate.ask("stats")["equity"]) < D("9970"), "the loss was seen"
            assert engine.risk_gate.trading_state() == "ACTIVE"
            assert engine.risk_gate.ask("stats")["day_start_equity"] == "10000"
    finally:
        engine.shutdown()


@pytest.mark.parametrize("balances", [{}, {"USDT": D("0")}, {"BNB": D("3")}], ids=["none", "zero", "other-asset"])
def test_an_account_without_the_cash_asset_refuses_a_fresh_start_before_any_actor(rest, tmp_path, balances):
    venue = FakeLiveVenue(balances=balances)
    engine = live(rest, tmp_path / "data", venue)
    with pytest.raises(VenueStartError) as caught:
        engine.start()
    text = str(caught.value)
    assert "binanceusdm testnet: the account holds" in text and "USDT" in text
    assert "fund it with USDT first" in text and text.endswith("nothing was started")
    assert all(engine.supervisor.current_ref(role) is None for role in run.ROLES), "no actor may have started"
    assert venue.binds == 0 and venue.closes == 1 and not engine.folder_lock.held
    funded = live(rest, tmp_path / "data", FakeLiveVenue(balances={"USDT": D("800")})).start()
    try:
        assert funded.sniper.snapshot().balance == D("800")
    finally:
        funded.shutdown()


def test_the_cash_asset_the_venue_names_wins_over_the_symbols(rest, tmp_path):
    venue = FakeLiveVenue(balances={"USDT": D("500"), "USDC": D("700")}, cash_asset="USDC")
    engine = live(rest, tmp_path / "data", venue).start()
    try:
        assert engine.cash_asset == "USDC" and engine.sniper.snapshot().balance == D("700")
    finally:
        engine.shutdown()


def test_a_restart_keeps_the_stores_cash_and_reports_a_venue_balance_that_differs(rest, tmp_path, logs, capsys):
    data_dir = tmp_path / "data"
    live(rest, data_dir, FakeLiveVenue(balances={"USDT": D("500")})).start().shutdown()

    venue = FakeLiveVenue(balances={"USDT": D("620")})  # a deposit by hand, unseen by the engine
    engine = live(rest, data_dir, venue)
    seen = Seen(engine, VenueReconciled, PositionOpened)
    engine.start()
    try:
        assert engine.sniper.snapshot().balance == D("500"), "the store's cash is the engine's ledger"
        assert engine.risk_gate.ask("stats")["day_start_equity"] == "500", "the engine's equity stays the reference"
        (reconciled,) = seen.wait_for(VenueReconciled)
        (balance,) = reconciled.differences
        assert balance.kind is DifferenceKind.BALANCE and balance.coin == "USDT"
        assert (balance.engine_quantity, balance.venue_quantity) == (D("500"), D("620"))
        assert reconciled.blocked == {} and not reconciled.halted
        assert logs.wait_for("RECONCILE_BALANCE: USDT: the venue's balance is 620, the engine's cash 500 (+120")
        assert engine.risk_gate.ask("blocked_coins") == {}
        engine.sniper.add_condition(condition(trigger="42000", size=50))
        engine.push_tick("BTC", "42010", now_ms())
        seen.wait_for(PositionOpened)  # the difference never blocks trading
        report = engine.shutdown()
    finally:
        engine.stop()
    assert [d["kind"] for d in report["reconciliation"]["differences"]] == ["BALANCE"]
    assert report["reconciliation"]["blocked"] == {}
    assert report["venue"]["cash_at_start"] == {"asset": "USDT", "venue": "620", "engine": "500",
                                                "run_id": engine.run_id, "seeded": False}
    text = run._report_text(report)
    assert "USDT at start: account 620.00, engine 500.00" in text
    assert "BALANCE (reported, not blocking): USDT: the venue's balance is 620" in text

    config = tmp_path / "live.toml"
    config.write_text('[engine]\nmode = "live"\n[feed]\nsource = "binance"\nsymbols = ["BTC"]\n'
                      '[strategist]\nstrategies = []\n')
    capsys.readouterr()
    assert run.main(["--config", str(config), "--data-dir", str(data_dir), "--status"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["venue_cash_at_start"] == {"asset": "USDT", "venue": "620", "engine": "500",
                                             "run_id": engine.run_id, "seeded": False}
    assert status["venue"]["cash_at_start"]["venue"] == "620"
    assert D(status["balance"]) < D("500"), "the engine's cash: 500 less the fee of the trade"


def test_against_the_local_exchange_the_engines_cash_is_the_accounts_usdt(tmp_path, monkeypatch):
    from tests.support.local_binance import LocalBinance

    key, secret = "balance-key-visible-7a21", "balance-secret-visible-c04e"
    monkeypatch.setenv("SNIPER_API_KEY", key)
    monkeypatch.setenv("SNIPER_API_SECRET", secret)
    with LocalBinance(key, secret, balances={"USDT": D("750.5")}) as local:
        local.feed_trade("BTCUSDT", D("60000"), "0.5")
        config = {
            "engine": {"mode": "live"},
            "feed": {"source": "binance", "symbols": ["BTC"], "url": local.market_ws_url, "rest_url": local.rest_url,
                     "stale_after_s": 3600, "silence_timeout_s": 60, "rest_fallback_after_s": 3600},
            "venue": {"rest_url": local.rest_url, "ws_url": local.user_ws_url, "reconcile_every_s": 0,
                      "timeout_s": 2, "poll_s": 0.2, "silence_timeout_s": 5},
            "strategist": {"strategies": []},
            "paper": {"initial_balance": 10000},
        }
        engine = build_engine(config, data_dir=tmp_path / "live").start()
        try:
            assert engine.venue_startup is not None and engine.venue_startup.cash_asset == "USDT", \
                "the settle asset of the ccxt market BTC/USDT:USDT"
            snapshot = engine.sniper.snapshot()
            assert snapshot.balance == snapshot.equity == engine.start_equity == D("750.5")
            assert D(engine.risk_gate.ask("stats")["day_start_equity"]) == D("750.5")
            assert engine.reconciliation is not None and engine.reconciliation["differences"] == []
        finally:
            report = engine.shutdown()
    assert D(report["venue"]["cash_at_start"]["venue"]) == D(report["start_equity"]) == D("750.5")
