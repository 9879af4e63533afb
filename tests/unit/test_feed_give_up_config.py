"""``[feed] give_up_after_s`` is validated like the other feed keys; the report's feed line."""

from __future__ import annotations

from typing import Any

import pytest

from state.config import ConfigError, parse_config
from state.report import format_report


def test_give_up_after_s_defaults_to_five_minutes_and_zero_turns_it_off():
    assert parse_config({"feed": {"source": "binance"}}).feed.give_up_after_s == 300
    assert parse_config({"feed": {"source": "bybit", "give_up_after_s": 0}}).feed.give_up_after_s == 0
    assert parse_config({"feed": {"source": "binance", "give_up_after_s": 1.5}}).feed.give_up_after_s == 1.5


@pytest.mark.parametrize(("value", "problem"), [
    (-1, "feed.give_up_after_s: must be at least 0, not -1"),
    ("5m", "feed.give_up_after_s: must be a number, not '5m'"),
    (True, "feed.give_up_after_s: must be a number, not True"),
])
def test_a_bad_give_up_after_s_is_named(value, problem):
    with pytest.raises(ConfigError) as raised:
        parse_config({"feed": {"source": "binance", "give_up_after_s": value}})
    assert raised.value.problems == [problem]


def test_a_misspelled_give_up_key_gets_a_did_you_mean():
    with pytest.raises(ConfigError) as raised:
        parse_config({"feed": {"source": "binance", "give_up_after": 60}})
    assert raised.value.problems == ["feed.give_up_after: unknown key (did you mean 'give_up_after_s'?)"]


def _report(**overrides: Any) -> dict[str, Any]:
    report = {
        "run_id": "20261121T100000Z-abc123", "source": "binance", "simulated": False, "duration_s": 60.0,
        "ticks": 10, "end_reason": "SIGINT", "total_trades": 0, "wins": 0, "losses": 0,
        "realized_pnl_usd": "0", "fees_paid_usd": "0", "slippage_avg_bps": "0", "max_drawdown_pct": "0",
        "start_equity": "10000", "end_equity": "10000", "open_positions_at_end": 0, "on_stop": "keep",
        "restarts": 0, "trading_state": "ACTIVE", "data_dir": "/tmp/var",
        "reconnects": 3, "stale_periods": 2, "bad_frames": 1,
    }
    report.update(overrides)
    return report


def test_a_live_session_report_says_reconnects_stale_periods_and_bad_frames():
    lines = format_report(_report()).splitlines()
    assert "  feed: reconnects 3 | stale periods 2 | bad frames 1 | rejected ticks 0" in lines
    clean = format_report(_report(reconnects=0, stale_periods=0, bad_frames=0)).splitlines()
    assert "  feed: reconnects 0 | stale periods 0 | bad frames 0 | rejected ticks 0" in clean


def test_other_sources_show_the_feed_line_only_when_something_happened():
    quiet = format_report(_report(source="replay", reconnects=0, stale_periods=0, bad_frames=0))
    assert "feed:" not in quiet
    assert "feed:" not in format_report(_report(source="replay", reconnects=None, stale_periods=None,
                                                bad_frames=None))
    stale = format_report(_report(source="sim", reconnects=0, stale_periods=1, bad_frames=0))
    assert "  feed: reconnects 0 | stale periods 1 | bad frames 0 | rejected ticks 0" in stale.splitlines()


def test_rejected_ticks_show_on_the_feed_line_with_their_kinds():
    report = _report(source="replay", reconnects=0, stale_periods=0, bad_frames=0,
                     rejected_ticks={"total": 3, "by_kind": {"jump": 2, "off_grid": 1}})
    assert ("  feed: reconnects 0 | stale periods 0 | bad frames 0 | rejected ticks 3 (jump 2, off_grid 1)"
            in format_report(report).splitlines())
