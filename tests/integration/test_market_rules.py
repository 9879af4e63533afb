"""A live paper session takes its market rules from the venue, before any actor starts: the
real USD-M exchangeInfo served by a local HTTP server, read through ccxt."""

from __future__ import annotations

import gzip
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from run import build_engine
from state.config import ConfigError
from state.models import TradeCondition
from tests.support.http_server import LocalHttpServer
from tests.support.ws_server import ReplayServer

ROOT = Path(__file__).resolve().parents[2]
USDM_INFO = "payloads/binance-live-rest/binance-usdm_fapi_v1_exchangeInfo_2021-07-22.json.gz"


@pytest.fixture
def rest(shared_data: Path) -> Iterator[LocalHttpServer]:
    server = LocalHttpServer().start()
    with gzip.open(shared_data / USDM_INFO, "rt") as handle:
        server.route("/fapi/v1/exchangeInfo", handle.read())
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def nowhere() -> str:
    """A websocket URL where nothing listens: the stream stays down, which these tests ignore."""
    closed = ReplayServer()
    closed.start()
    url = closed.url
    closed.stop()
    return url


def live_config(rest: LocalHttpServer, url: str, **feed: Any) -> dict[str, Any]:
    return {
        "feed": {"source": "binance", "symbols": ["BTC"], "url": url, "rest_url": rest.url,
                 "rest_fallback_after_s": 3600, "reconnect_first_s": 0.05, "reconnect_max_s": 0.2, **feed},
        "strategist": {"strategies": []},
        "markets": {"BTC": {"qty_step": "0.00001"}},  # ignored: the venue's rules apply
    }


def test_the_venues_rules_size_the_orders_and_are_in_the_report(rest, nowhere, tmp_path) -> None:
    engine = build_engine(live_config(rest, nowhere), data_dir=tmp_path).start()
    try:
        assert engine.market("BTC").qty_step == Decimal("0.001")
        tiny = TradeCondition(coin="BTC", direction="LONG", trigger_price="40000", trigger_type="ABOVE",
                              stop_loss_pct="0.01", take_profit_pct="0.01", position_size_usd="20",
                              valid_until=datetime.now() + timedelta(hours=1))
        with pytest.raises(ValueError, match=r"buys 0\.000 BTC at 40000: rounds to no quantity at all "
                                             r"\(quantity step 0\.001, minimum notional 5\)"):
            engine.propose_and_wait(tiny)
    finally:
        report = engine.shutdown()
    assert report["market_rules"] == {"from": "binance", "BTC": {
        "coin": "BTC", "tick_size": "0.01", "qty_step": "0.001", "min_notional": "5", "min_qty": "0.001"}}


def test_a_coin_the_venue_does_not_list_stops_the_start_before_any_actor(rest, nowhere, tmp_path) -> None:
    engine = build_engine(live_config(rest, nowhere, symbols=["BTC", "NOPE"]), data_dir=tmp_path)
    with pytest.raises(ConfigError, match=r"feed.symbols: not a market on binanceusdm: NOPE \(NOPE/USDT:USDT\)"):
        engine.start()
    assert engine.supervisor.current_ref("sniper") is None


def test_the_command_line_says_which_coin_and_exits_2(rest, nowhere, tmp_path) -> None:
    config = tmp_path / "live.toml"
    config.write_text(f'[feed]\nsource = "binance"\nsymbols = ["BTC", "NOPE"]\nurl = "{nowhere}"\n'
                      f'rest_url = "{rest.url}"\n[strategist]\nstrategies = []\n')
    result = subprocess.run([sys.executable, str(ROOT / "run.py"), "--config", str(config), "--data-dir",
                             str(tmp_path / "data"), "--duration", "5"], capture_output=True, text=True,
                            timeout=60, cwd=ROOT, stdin=subprocess.DEVNULL)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "feed.symbols: not a market on binanceusdm: NOPE (NOPE/USDT:USDT)" in result.stderr
    assert "ENGINE_STARTED" not in result.stderr


def test_a_venue_that_cannot_be_read_leaves_the_configured_rules_with_a_warning(rest, nowhere, tmp_path, logs) -> None:
    rest.fail("/fapi/v1/exchangeInfo", 503)
    engine = build_engine(live_config(rest, nowhere), data_dir=tmp_path).start()
    try:
        assert logs.wait_for("MARKET_RULES_UNAVAILABLE: binanceusdm: markets not loaded")
        assert engine.market("BTC").qty_step == Decimal("0.00001")
    finally:
        report = engine.shutdown()
    assert report["market_rules"] == {"from": "config (venue unreachable)"}
