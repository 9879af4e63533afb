"""state/secrets.py: credentials in URLs are masked, everything else is left as it was."""

from __future__ import annotations

import pytest

from state.secrets import mask_url

SECRET = "hunter2-SECRET"


@pytest.mark.parametrize(("text", "masked"), [
    (f"postgresql://trader:{SECRET}@db.example:5432/journal", "postgresql://trader:***@db.example:5432/journal"),
    (f"ws://u:{SECRET}@127.0.0.1:9443/stream?streams=btcusdt@trade",
     "ws://u:***@127.0.0.1:9443/stream?streams=btcusdt@trade"),
    (f"connect failed: ConnectionRefusedError: refused (ws://u:{SECRET}@127.0.0.1:1)",
     "connect failed: ConnectionRefusedError: refused (ws://u:***@127.0.0.1:1)"),
    (f"binanceusdm GET http://u:{SECRET}@127.0.0.1:5/fapi/v1/exchangeInfo", "binanceusdm GET http://u:***@127.0.0.1:5/fapi/v1/exchangeInfo"),
    ("postgresql://u:p@ss:w@rd@h/db", "postgresql://u:***@h/db"),  # unencoded "@" and ":" in it
    ("postgresql://u:hun%40ter2@h/db", "postgresql://u:***@h/db"),
    (f"'ws://a:{SECRET}@h', 'ws://b:{SECRET}@k'", "'ws://a:***@h', 'ws://b:***@k'"),
    (f"wss://h/ws?token={SECRET}&x=1", "wss://h/ws?token=***&x=1"),
    (f"postgresql://u@h/db?sslmode=require&password={SECRET}", "postgresql://u@h/db?sslmode=require&password=***"),
    (f"https://h/api?apiKey={SECRET}", "https://h/api?apiKey=***"),
])
def test_credentials_are_masked(text: str, masked: str) -> None:
    assert mask_url(text) == masked
    assert SECRET not in mask_url(text)


@pytest.mark.parametrize("text", [
    "wss://fstream.binance.com/stream?streams=btcusdt@trade/btcusdt@bookTicker",
    "postgresql://trader@db:5432/journal",
    "http://127.0.0.1:8080/path@x",
    "ws://u:@h:1",
    "sqlite:////var/journal.db",
    "WS_CONNECTED: ws://127.0.0.1:9443 (1 subscription message(s), connect #1)",
    "price 42000.5 qty=0.01 key",
    "",
])
def test_text_without_credentials_is_unchanged(text: str) -> None:
    assert mask_url(text) == text


def test_masking_is_idempotent_and_takes_any_value() -> None:
    once = mask_url(f"ws://u:{SECRET}@h")
    assert mask_url(once) == once == "ws://u:***@h"
    assert mask_url(42) == "42"
