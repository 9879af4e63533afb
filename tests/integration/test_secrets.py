"""Credentials in configured URLs never leave the process: not in a log line, not on stdout or
stderr, not in any file under the data folder.

A real ``run.py`` session on a live feed whose websocket and REST URLs carry a recognizable
password, both pointing at closed local ports, runs until it has logged a failed connect
(``WS_CONNECT_FAILED``), unreadable market rules (``MARKET_RULES_UNAVAILABLE``) and a failed
REST fallback poll (``REST_FALLBACK_ERROR``), each of which names the URL; then it is stopped
with SIGTERM and writes its report. A journal URL with a password is checked the same way.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SECRET = "hunter2-SECRET"
LOG_WAIT = 60.0  # generous: a loaded machine starts a Python process slowly


def closed_port() -> int:
    """A local port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def files_containing(folder: Path, needle: bytes) -> list[str]:
    return [str(p) for p in folder.rglob("*") if p.is_file() and needle in p.read_bytes()]


def wait_for_codes(log: Path, codes: tuple[str, ...], process: subprocess.Popen[str]) -> str:
    deadline = time.monotonic() + LOG_WAIT
    text = ""
    while time.monotonic() < deadline and process.poll() is None:
        text = log.read_text() if log.is_file() else ""
        if all(code in text for code in codes):
            return text
        time.sleep(0.1)  # polling a file another process writes: no event to wait on
    pytest.fail(f"not all of {codes} logged within {LOG_WAIT}s (exit {process.poll()}):\n{text[-3000:]}")


def test_a_live_session_never_prints_logs_or_stores_the_urls_passwords(tmp_path: Path) -> None:
    ws_url = f"ws://trader:{SECRET}@127.0.0.1:{closed_port()}"
    rest_url = f"http://trader:{SECRET}@127.0.0.1:{closed_port()}"
    config = tmp_path / "live.toml"
    config.write_text(
        '[feed]\nsource = "binance"\nmarket = "usdm"\nsymbols = ["BTC"]\n'
        f'url = "{ws_url}"\nrest_url = "{rest_url}"\n'
        "reconnect_first_s = 0.05\nreconnect_max_s = 0.2\nrest_fallback_after_s = 0.2\nrest_poll_s = 0.1\n"
        '[strategist]\nstrategies = []\n'
    )
    data = tmp_path / "data"
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "run.py"), "--config", str(config), "--data-dir", str(data),
         "--status-every", "0.5"],
        cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        logged = wait_for_codes(data / "logs" / "engine.jsonl",
                                ("WS_CONNECT_FAILED", "MARKET_RULES_UNAVAILABLE", "REST_FALLBACK_ERROR"), process)
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=LOG_WAIT)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()

    assert process.returncode == 0, stderr[-3000:]
    assert "trader:***@127.0.0.1" in logged, "the URLs are logged (masked), so this test can fail"
    assert "SESSION_REPORT" in (data / "logs" / "engine.jsonl").read_text()
    assert SECRET not in stdout
    assert SECRET not in stderr
    assert files_containing(data, SECRET.encode()) == []


def test_a_journal_url_with_a_password_is_never_printed(tmp_path: Path) -> None:
    url = f"postgresql://trader:{SECRET}@127.0.0.1:{closed_port()}/journal"
    bad_scheme = f"mysql://trader:{SECRET}@127.0.0.1:1/journal"
    for journal_url in (url, bad_scheme):
        config = tmp_path / "journal.toml"
        config.write_text(f'[feed]\nsource = "manual"\nsymbols = ["BTC"]\n[journal]\nurl = "{journal_url}"\n')
        data = tmp_path / "data"
        result = subprocess.run(
            [sys.executable, str(ROOT / "run.py"), "--config", str(config), "--data-dir", str(data), "--duration", "1"],
            cwd=ROOT, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=LOG_WAIT,
        )
        assert result.returncode == 2, result.stderr[-3000:]  # no driver, no server, or a bad scheme
        assert "journal.url" in result.stderr
        assert SECRET not in result.stdout + result.stderr
        if data.exists():
            assert files_containing(data, SECRET.encode()) == []
    assert "mysql://trader:***@127.0.0.1:1/journal" in result.stderr

