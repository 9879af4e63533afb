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


# --- API keys: from the environment only, masked everywhere -------------------------------------

KEY, API_SECRET = "FakeKey7q9Zx4Lm2Np8", "FakeSecret5Hj8Kl2Mn4"


def test_load_credentials_reads_the_variables_the_venue_names() -> None:
    from state.config import VenueConfig
    from state.secrets import load_credentials

    venue = VenueConfig(key_env="MY_KEY", secret_env="MY_SECRET")
    credentials = load_credentials(venue, {"MY_KEY": f" {KEY}\n", "MY_SECRET": API_SECRET, "SNIPER_API_KEY": "other"})

    assert (credentials.key, credentials.secret) == (KEY, API_SECRET)
    assert (credentials.key_env, credentials.secret_env) == ("MY_KEY", "MY_SECRET")
    assert KEY not in repr(credentials) and API_SECRET not in str(credentials)


@pytest.mark.parametrize(("environ", "said"), [
    ({}, "(neither is set"),
    ({"SNIPER_API_KEY": "", "SNIPER_API_SECRET": "  "}, "(neither is set"),
    ({"SNIPER_API_KEY": KEY}, "($SNIPER_API_SECRET is not set"),
    ({"SNIPER_API_SECRET": API_SECRET}, "($SNIPER_API_KEY is not set"),
])
def test_load_credentials_when_a_value_is_missing_or_empty_then_the_variables_are_named(environ, said) -> None:
    from state.config import VenueConfig
    from state.secrets import MissingCredentials, load_credentials

    with pytest.raises(MissingCredentials) as caught:
        load_credentials(VenueConfig(), environ)

    text = str(caught.value)
    assert text.startswith("live mode needs the API key in $SNIPER_API_KEY and the secret in $SNIPER_API_SECRET ")
    assert said in text
    assert isinstance(caught.value, ValueError)
    assert KEY not in text and API_SECRET not in text


def test_redact_values_masks_each_literal_longest_first() -> None:
    from state.secrets import redact_values

    assert redact_values(f"k={KEY} s={API_SECRET} again {KEY}", (KEY, API_SECRET)) == "k=*** s=*** again ***"
    assert redact_values(f"{KEY}XYZ", (KEY, KEY + "XYZ")) == "***"
    assert redact_values("nothing here", (KEY, "")) == "nothing here"


def test_the_log_guard_masks_the_registered_key_and_secret_in_messages_and_exceptions() -> None:
    from loguru import logger

    from adapters.console.logs import configure_logging

    lines: list[str] = []
    configure_logging("DEBUG", None, console=False, secrets=(KEY, API_SECRET))
    sink = logger.add(lines.append, level="DEBUG", format="{message}")
    try:
        logger.info("signed with {} and {}", KEY, API_SECRET)
        try:
            raise RuntimeError(f"refused: apiKey={KEY} secret {API_SECRET}")
        except RuntimeError:
            logger.exception("VENUE_ERROR")
    finally:
        logger.remove(sink)
        configure_logging("WARNING", None)  # as tests/conftest.py sets it
    text = "".join(lines)
    assert "signed with *** and ***" in text
    assert "RuntimeError: refused: apiKey=*** secret ***" in text
    assert KEY not in text and API_SECRET not in text
