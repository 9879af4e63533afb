"""state/session.py: a session's identity built from its config, and how two identities differ."""

from __future__ import annotations

import dataclasses

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from state.config import parse_config
from state.session import (
    FileFingerprint,
    ReplayAlreadyComplete,
    SessionIdentity,
    SessionMismatch,
    canonical,
    describe,
    differences,
    from_json,
    identity_from_config,
    to_json,
)

BTC_FILE = FileFingerprint(coin="BTC", path="/data/btc.csv", size=1000, sha256="a" * 64)


def replay(**sections: dict[str, Any]) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "feed": {"source": "replay", "symbols": ["BTC"], "files": [{"coin": "BTC", "path": "/data/btc.csv"}],
                 "bar_seconds": 60},
        "strategist": {"strategies": ["breakout"], "breakout": {"lookback_bars": 5}},
    }
    for name, values in sections.items():
        raw.setdefault(name, {}).update(values)
    return raw


def identity(raw: dict[str, Any], files: tuple[FileFingerprint, ...] = (BTC_FILE,)) -> SessionIdentity:
    return identity_from_config(parse_config(raw), files)


# --- what an identity holds ------------------------------------------------------------------------


def test_identity_when_sim_then_kind_only() -> None:
    sim = identity({"feed": {"source": "sim"}, "strategist": {"strategies": ["breakout"]}})
    assert sim == SessionIdentity(source="sim", mode="paper", venue="paper", market="", files=(), settings={})


def test_identity_when_live_feed_then_names_the_market() -> None:
    assert identity({"feed": {"source": "binance"}}).market == "binance usdm"
    assert identity({"feed": {"source": "binance", "market": "spot"}}).market == "binance spot"
    assert identity({"feed": {"source": "bybit"}}).market == "bybit linear"


def test_identity_when_replay_then_files_and_every_setting_that_changes_the_result() -> None:
    replayed = identity(replay())
    assert replayed.source == "replay" and replayed.files == (BTC_FILE,)
    settings = replayed.settings
    assert settings["feed.bar_seconds"] == "60"
    assert settings["feed.symbols"] == "[BTC]"
    assert settings["strategist.strategies"] == "[breakout]"
    assert settings["strategist.breakout.lookback_bars"] == "5"
    assert settings["paper.taker_fee"] == "0.0005" and settings["paper.slippage_bps"] == "5"
    assert settings["paper.initial_balance"] == "10000"
    assert settings["sniper.max_positions"] == "5" and settings["risk.max_daily_loss_pct"] == "0.05"
    assert settings["markets.BTC.tick_size"] == "0.01"
    assert settings["session.on_stop"] == "keep" and settings["engine.clock"] == "auto"
    assert not any(key.startswith(("supervisor.", "journal.")) for key in settings)
    assert "feed.speed" not in settings, "a replay gives the same journal at any speed"


def test_identity_when_only_the_speed_or_the_supervisor_differs_then_the_same_replay() -> None:
    base = identity(replay(feed={"speed": "max"}))
    paced = identity(replay(feed={"speed": "600x"}, supervisor={"max_restarts": 9}, engine={"log_level": "DEBUG"}))
    assert differences(base, paced) == []


def test_canonical_when_numbers_equal_by_value_then_same_text() -> None:
    assert canonical(Decimal("0.10")) == canonical(0.1) == canonical("0.1") == "0.1"
    assert canonical(Decimal("1E+3")) == canonical(1000) == canonical(1000.0) == "1000"
    assert canonical(True) == "true"
    assert canonical({"b": 1, "a": [1, 2.50]}) == "{a = [1, 2.5], b = 1}"


# --- differences --------------------------------------------------------------------------------


def test_differences_when_another_kind_of_session_then_only_the_kind_is_named() -> None:
    sim = identity({"feed": {"source": "sim"}})
    assert differences(sim, identity(replay())) == ["source: stored sim, now replay"]


def test_differences_when_the_same_path_holds_other_bytes_then_says_so() -> None:
    changed = FileFingerprint(coin="BTC", path="/data/btc.csv", size=1004, sha256="b" * 64)
    (line,) = differences(identity(replay()), identity(replay(), (changed,)))
    assert line == ("feed.files[1] BTC: same path /data/btc.csv, different content: stored 1000 bytes sha256 "
                    "aaaaaaaaaaaa, now 1004 bytes sha256 bbbbbbbbbbbb")


def test_differences_when_a_file_moved_with_the_same_content_then_the_same_replay() -> None:
    moved = FileFingerprint(coin="BTC", path="/elsewhere/btc.csv", size=1000, sha256="a" * 64)
    assert differences(identity(replay()), identity(replay(), (moved,))) == []


def test_differences_when_another_file_or_one_more_then_each_named() -> None:
    other = FileFingerprint(coin="BTC", path="/data/other.csv", size=5, sha256="c" * 64)
    eth = FileFingerprint(coin="ETH", path="/data/eth.csv", size=7, sha256="d" * 64)
    found = differences(identity(replay()), identity(replay(), (other, eth)))
    assert found == [
        "feed.files: stored 1 file(s), now 2",
        "feed.files[1] BTC: stored /data/btc.csv (1000 bytes, sha256 aaaaaaaaaaaa), "
        "now /data/other.csv (5 bytes, sha256 cccccccccccc)",
        "feed.files[2] ETH: stored (not set), now /data/eth.csv (7 bytes, sha256 dddddddddddd)",
    ]


def test_differences_when_strategy_settings_change_then_field_by_field() -> None:
    before = identity(replay())
    after = identity(replay(strategist={"strategies": ["breakout"], "breakout": {"lookback_bars": 6,
                                                                                "stop_loss_pct": 0.01}},
                            paper={"taker_fee": 0.001}, feed={"bar_seconds": 5}))
    assert differences(before, after) == [
        "feed.bar_seconds: stored 60, now 5",
        "paper.taker_fee: stored 0.0005, now 0.001",
        "strategist.breakout.lookback_bars: stored 5, now 6",
        "strategist.breakout.stop_loss_pct: stored (not set), now 0.01",
    ]


def test_differences_when_risk_sniper_or_market_rules_change_then_named() -> None:
    found = differences(identity(replay()), identity(replay(risk={"max_position_usd": 50},
                                                            sniper={"max_positions": 1},
                                                            markets={"BTC": {"tick_size": "0.1"}})))
    assert found == ["markets.BTC.tick_size: stored 0.01, now 0.1", "risk.max_position_usd: stored 1000, now 50",
                     "sniper.max_positions: stored 5, now 1"]


def test_differences_when_a_later_version_added_a_setting_at_its_default_then_the_same_replay() -> None:
    now = identity(replay())
    older = dataclasses.replace(now, settings={k: v for k, v in now.settings.items()
                                               if k not in ("paper.fill_model", "paper.maker_fee")})
    assert differences(older, now) == [], "a folder of the version before keeps its replay"
    changed = identity(replay(paper={"fill_model": "traded_volume"}))
    assert differences(older, changed) == ["paper.fill_model: stored (not set), now traded_volume"]
    assert differences(to_and_from_json(older), now) == []


def to_and_from_json(identity_: SessionIdentity) -> SessionIdentity:
    return from_json(to_json(identity_))


def test_differences_when_a_paper_session_changes_its_strategies_then_the_same_session() -> None:
    before = identity({"feed": {"source": "sim", "symbols": ["BTC"]}})
    after = identity({"feed": {"source": "sim", "symbols": ["BTC", "ETH"], "seed": 3},
                      "strategist": {"strategies": ["breakout"]}, "risk": {"max_position_usd": 5}})
    assert differences(before, after) == [], "an account goes on across restarts"


# --- persistence and messages --------------------------------------------------------------------


def test_json_round_trip_gives_the_same_identity() -> None:
    replayed = identity(replay())
    assert from_json(to_json(replayed)) == replayed


@pytest.mark.parametrize("text, problem", [
    ("not json", "not JSON"),
    ("[1]", "expected an object"),
    ('{"version": 99}', "version 99 is not 1"),
    ('{"version": 1, "source": "sim"}', "malformed"),
])
def test_from_json_when_unreadable_then_value_error_naming_it(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        from_json(text)


def test_session_mismatch_names_both_ways_out() -> None:
    sim, replayed = identity({"feed": {"source": "sim"}}), identity(replay())
    error = SessionMismatch(Path("/var/x"), sim, replayed, differences(sim, replayed))
    text = str(error)
    assert "data_dir /var/x holds the state of another session (a sim paper session)" in text
    assert "this one is a replay paper session of BTC (btc.csv)" in text
    assert "  source: stored sim, now replay" in text
    assert "--data-dir" in text and "--fresh" in text and "/var/x/archive/<UTC timestamp>/" in text


def test_replay_already_complete_points_at_the_report_of_the_run_that_finished_it() -> None:
    done = ReplayAlreadyComplete(Path("/var/r"), {"run_id": "20261205T000000Z-abc123", "ended_at": "t"})
    assert done.report_path == Path("/var/r/runs/20261205T000000Z-abc123/summary.json")
    assert "already complete" in str(done) and "--fresh" in str(done)


def test_describe_names_source_market_and_files() -> None:
    assert describe(identity({"feed": {"source": "bybit", "market": "spot"}})) == "a bybit paper session on bybit spot"


# --- live sessions: one account per folder -------------------------------------------------------------


def live(**venue: Any) -> dict[str, Any]:
    return {"engine": {"mode": "live"}, "feed": {"source": "binance"}, "venue": venue}


def test_identity_when_live_then_names_the_exchange_and_testnet_or_live() -> None:
    assert identity(live()) == SessionIdentity(source="binance", mode="live", venue="binanceusdm testnet",
                                               market="binance usdm")
    assert identity(live(testnet=False)).venue == "binanceusdm live"
    assert identity({"feed": {"source": "binance"}}).venue == "paper", "paper on live data keeps its identity"
    assert describe(identity(live())) == "a binance live session trading binanceusdm testnet on binance usdm"


def test_a_paper_folder_in_live_mode_and_the_reverse_are_refused_saying_why() -> None:
    paper, real = identity({"feed": {"source": "binance"}}), identity(live())
    for stored, now in ((paper, real), (real, paper)):
        found = differences(stored, now)
        assert f"mode: stored {stored.mode}, now {now.mode}" in found
        text = str(SessionMismatch(Path("/var/x"), stored, now, found))
        assert "Never mix paper positions with a real account" in text


def test_a_testnet_folder_on_the_real_account_is_refused_saying_why() -> None:
    testnet, real = identity(live()), identity(live(testnet=False))
    found = differences(testnet, real)
    assert found == ["venue: stored binanceusdm testnet, now binanceusdm live"]
    text = str(SessionMismatch(Path("/var/x"), testnet, real, found))
    assert "Never mix two accounts" in text


def test_a_live_session_goes_on_whatever_its_venue_settings() -> None:
    assert differences(identity(live()), identity(live(default_leverage=3, on_unknown="halt"))) == []
