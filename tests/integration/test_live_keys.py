"""A live session's API key and secret come from the environment only, and appear nowhere: not on
stdout or stderr, not in a log file, a report, ``--status``, or any file of the data folder.

Real ``run.py`` children: without keys the start stops before the data folder is made (exit 2,
naming the variables); with a recognizable fake key and secret and a venue (a local HTTP server)
that answers Binance's ``-2015`` invalid-key error, the start stops before any actor (exit 2,
saying the keys were refused) and neither value is anywhere.

The second test drives the real ``adapters.venues.ccxt_venue.CcxtVenue`` (written in parallel
on another branch): it skips, saying so, only while that module is missing.
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.support.http_server import LocalHttpServer, Request
from tests.support.usdm_info import usdm_exchange_info

ROOT = Path(__file__).resolve().parents[2]
KEY = "FakeKey7q9Zx4Lm2Np8Rt6Vw3Yb5Cd1Ef0Gh"
SECRET = "FakeSecret5Hj8Kl2Mn4Pq6Rs9Tu1Vw3Xy7Za"
CHILD_WAIT = 90.0  # generous: a loaded machine starts a Python process slowly
INVALID_KEY = {"code": -2015, "msg": "Invalid API-key, IP, or permissions for action."}


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def live_toml(path: Path, rest_url: str, **venue: str) -> Path:
    extra = "".join(f'{key} = "{value}"\n' for key, value in venue.items())
    path.write_text(
        '[engine]\nmode = "live"\n'
        f'[feed]\nsource = "binance"\nmarket = "usdm"\nsymbols = ["BTC"]\nurl = "ws://127.0.0.1:{closed_port()}"\n'
        f'rest_url = "{rest_url}"\n'
        f'[venue]\nrest_url = "{rest_url}"\nws_url = "ws://127.0.0.1:{closed_port()}"\n{extra}'
        '[strategist]\nstrategies = []\n'
    )
    return path


def run_child(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(ROOT / "run.py"), *args], cwd=ROOT, env=env,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=CHILD_WAIT)


def environment(**values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("SNIPER_API_KEY", "SNIPER_API_SECRET")}
    env.update(values)
    return env


def files_containing(folder: Path, needle: bytes) -> list[str]:
    return [str(p) for p in folder.rglob("*") if p.is_file() and needle in p.read_bytes()]


@pytest.mark.parametrize(("env", "said"), [
    ({}, "(neither is set"),
    ({"SNIPER_API_KEY": KEY}, "($SNIPER_API_SECRET is not set"),
    ({"SNIPER_API_KEY": KEY, "SNIPER_API_SECRET": ""}, "($SNIPER_API_SECRET is not set"),
])
def test_live_mode_without_keys_stops_before_anything_is_made_naming_the_variables(tmp_path, env, said):
    config = live_toml(tmp_path / "live.toml", f"http://127.0.0.1:{closed_port()}")
    data = tmp_path / "data"

    result = run_child("--config", str(config), "--data-dir", str(data), env=environment(**env))

    assert result.returncode == 2, result.stderr[-3000:]
    assert "live mode needs the API key in $SNIPER_API_KEY and the secret in $SNIPER_API_SECRET" in result.stderr
    assert said in result.stderr
    assert KEY not in result.stdout + result.stderr
    assert not data.exists(), "nothing may be made before the keys are known"


def refuse_keys(server: LocalHttpServer) -> None:
    """Every path but the public market rules and server time answers Binance's invalid-key
    error (HTTP 401, code -2015), as a venue does for a key it does not know."""
    server.route("/fapi/v1/exchangeInfo", usdm_exchange_info())
    server.route("/fapi/v1/time", lambda _request: {"serverTime": time.time_ns() // 1_000_000})
    original = server._answer

    def answer(request: Request) -> tuple[Any, bytes, dict[str, str], float]:
        status, body, headers, delay = original(request)
        if status == 404:
            return 401, json.dumps(INVALID_KEY).encode(), {"Content-Type": "application/json"}, 0.0
        return status, body, headers, delay

    server._answer = answer  # type: ignore[method-assign]


@pytest.mark.skipif(importlib.util.find_spec("adapters.venues.ccxt_venue") is None,
                    reason="adapters.venues.ccxt_venue not present (the live venue is built on another branch)")
def test_keys_the_venue_refuses_stop_the_start_and_neither_key_nor_secret_appears_anywhere(tmp_path):
    with LocalHttpServer() as server:
        refuse_keys(server)
        config = live_toml(tmp_path / "live.toml", server.url)
        data = tmp_path / "data"
        env = environment(SNIPER_API_KEY=KEY, SNIPER_API_SECRET=SECRET)

        result = run_child("--config", str(config), "--data-dir", str(data), "--status-every", "0.5", env=env)
        status = run_child("--config", str(config), "--data-dir", str(data), "--status", env=env)
        sent_key = [r for r in server.requests() if r.headers.get("X-MBX-APIKEY") == KEY]

    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-3000:]
    assert "refused the API keys from $SNIPER_API_KEY / $SNIPER_API_SECRET" in result.stderr
    assert "nothing was started" in result.stderr
    assert sent_key, "the key went to the venue (so a leak would be possible and this test can fail)"
    assert "VENUE_REFUSED" in (data / "logs" / "engine.jsonl").read_text()
    assert status.returncode == 0, status.stderr[-3000:]
    for text in (result.stdout, result.stderr, status.stdout, status.stderr):
        assert KEY not in text and SECRET not in text
    for value in (KEY, SECRET):
        assert files_containing(data, value.encode()) == []
