"""A live session that cannot get any data says so and exits 4 instead of waiting forever.

Only local endpoints: a port where nothing listens (every websocket connect and every REST call
is refused), or the local websocket server accepting the connection and sending nothing.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from run import EXIT_FEED_GAVE_UP, build_engine
from tests.support.ws_server import ReplayServer

ROOT = Path(__file__).resolve().parents[2]
WAIT = 20.0


def closed_port_url() -> str:
    """A ``ws://127.0.0.1:<port>`` where nothing listens (a server started and stopped)."""
    server = ReplayServer()
    server.start()
    url = server.url
    server.stop()
    return url


def test_the_cli_gives_up_on_a_source_that_cannot_connect_and_exits_4_with_the_reason(tmp_path):
    plain = closed_port_url()
    rest_url = "http://" + plain.removeprefix("ws://").split("/", 1)[0]
    url = plain.replace("ws://", "ws://trader:s3cret@", 1)  # credentials are never printed
    config = tmp_path / "live.toml"
    config.write_text(
        '[feed]\nsource = "binance"\nsymbols = ["BTC"]\n'
        f'url = "{url}"\nrest_url = "{rest_url}"\n'
        "reconnect_first_s = 0.05\nreconnect_max_s = 0.2\nrest_fallback_after_s = 0.5\nrest_poll_s = 0.1\n"
        "give_up_after_s = 1.5\n"
        '[strategist]\nstrategies = []\n')
    data_dir = tmp_path / "data"
    result = subprocess.run(
        [sys.executable, str(ROOT / "run.py"), "--config", str(config), "--data-dir", str(data_dir),
         "--status-every", "0.5"],
        capture_output=True, text=True, timeout=90, cwd=tmp_path, stdin=subprocess.DEVNULL,
    )
    assert result.returncode == EXIT_FEED_GAVE_UP == 4, f"{result.stdout}\n{result.stderr}"
    assert "FEED_GAVE_UP: binance received nothing (no trade, no quote)" in result.stderr, result.stderr
    assert "ENGINE_STOPPED: exit code 4" in result.stderr
    # the report says why, with what was tried
    assert "ended by FEED_GAVE_UP: binance received nothing in" in result.stdout, result.stdout
    assert "connect attempt(s) to ws://***@127.0.0.1:" in result.stdout
    assert "s3cret" not in result.stdout + result.stderr
    assert "failed)" in result.stdout and "Connection refused" in result.stdout
    assert "feed: reconnects " in result.stdout
    [summary] = (data_dir / "runs").glob("*/summary.json")
    report = json.loads(summary.read_text())
    assert report["exit_code"] == 4 and report["ticks"] == 0
    assert report["end_reason"].startswith("FEED_GAVE_UP: binance received nothing in ")
    assert report["reconnects"] >= 1


def test_an_open_connection_that_never_sends_data_gives_up_too(tmp_path):
    """The server accepts and answers pings, but no trade or quote ever comes."""
    with ReplayServer() as server:
        engine = build_engine({
            "feed": {"source": "binance", "symbols": ["BTC", "ETH"], "url": server.url, "market_rules": "config",
                     "reconnect_first_s": 0.05, "reconnect_max_s": 0.2, "rest_fallback_after_s": 3600,
                     "give_up_after_s": 3.0},
            "strategist": {"strategies": []},
        }, data_dir=tmp_path / "data")
        engine.start()
        try:
            assert server.wait_for_connections(1, timeout=WAIT)
            assert engine.gave_up.wait(WAIT)
            assert engine.gave_up_reason.startswith("FEED_GAVE_UP: binance received nothing in ")
            assert "(1 opened, 0 failed)" in engine.gave_up_reason, engine.gave_up_reason
            assert "REST fallback: not started yet" in engine.gave_up_reason
        finally:
            engine.shutdown(EXIT_FEED_GAVE_UP, engine.gave_up_reason or "test")
        assert engine.report is not None and engine.report["exit_code"] == 4

