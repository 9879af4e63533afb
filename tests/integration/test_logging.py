"""Crashes are never silent: stdlib logging (pykka, ccxt, peewee, websocket) lands in loguru."""

from __future__ import annotations

import logging

import pytest

from adapters.console.logs import intercept_stdlib_logging


@pytest.mark.parametrize("name", ["pykka", "ccxt", "peewee", "websocket"])
def test_stdlib_logger_records_are_forwarded_into_loguru(logs, name):
    intercept_stdlib_logging()
    logging.getLogger(name).error("something broke in %s", name)
    assert logs.wait_for(f"ERROR {name} something broke in {name}")


def test_an_actor_crash_is_logged_with_its_traceback(engine, logs):
    engine.inject_crash("journal", reason="poison for the log test")
    assert engine.wait_for_restart("journal", 1, timeout=5)
    assert logs.wait_for("ACTOR_CRASHED: journal")
    assert "InjectedCrash" in logs.text() or logs.wait_for("InjectedCrash")
