"""state/config.py: config.toml parsed into frozen dataclasses, every problem reported at once."""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path

import pytest

from state.config import Config, ConfigError, load_config, parse_config
from state.market import default_rules
from state.rules import PositionLimits

REPO_CONFIG = Path(__file__).resolve().parents[2] / "config.toml"
PROBLEM_FORMAT = re.compile(r"^[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*: \S")


def problems_of(raw: dict) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(raw)
    return caught.value.problems


# --- defaults and the shipped file -------------------------------------------------------------


def test_parse_config_when_empty_then_all_defaults() -> None:
    config = parse_config({})
    assert config == Config()
    assert config.engine.mode == "paper"
    assert config.feed.source == "sim"
    assert config.paper.initial_balance == Decimal("10000")
    assert config.paper.taker_fee == Decimal("0.0005")
    assert config.sniper == PositionLimits()
    assert config.markets == {}


def test_market_when_coin_not_configured_then_default_rules() -> None:
    assert parse_config({}).market("ETH") == default_rules("ETH")


def test_load_config_when_repository_config_toml_then_loads() -> None:
    config = load_config(REPO_CONFIG)
    assert config.engine.mode == "paper"
    assert config.feed.source == "sim"
    assert config.feed.symbols == ("BTC", "ETH", "SOL")
    assert config.sniper.max_exposure_pct == Decimal("0.1")
    assert config.supervisor.backoff_s == (0.05, 0.25, 1.0)
    assert config.market("BTC").tick_size == Decimal("0.01")


def test_load_config_when_decimals_written_as_toml_floats_then_exact() -> None:
    config = load_config(REPO_CONFIG)
    assert str(config.paper.taker_fee) == "0.0005"
    assert isinstance(config.sniper.max_exposure_pct, Decimal)


# --- problems ---------------------------------------------------------------------------------------


def test_parse_config_when_several_mistakes_then_every_one_is_reported_at_once() -> None:
    problems = problems_of(
        {
            "sniperr": {"max_positions": 3},
            "sniper": {"max_positons": 3},
            "feed": {"source": "nope"},
            "paper": {"taker_fee": -1},
        }
    )
    assert len(problems) == 4, problems
    by_key = {p.split(":", 1)[0]: p for p in problems}
    assert set(by_key) == {"sniperr", "sniper.max_positons", "feed.source", "paper.taker_fee"}
    assert "did you mean 'sniper'" in by_key["sniperr"]
    assert "did you mean 'max_positions'" in by_key["sniper.max_positons"]
    assert "'nope'" in by_key["feed.source"]
    assert "-1" in by_key["paper.taker_fee"]
    for problem in problems:
        assert PROBLEM_FORMAT.match(problem), problem


def test_parse_config_when_several_mistakes_in_one_section_then_each_reported() -> None:
    problems = problems_of(
        {"sniper": {"max_positons": 3, "max_per_coin": 0, "max_exposure_pct": "lots"}}
    )
    assert [p.split(":", 1)[0] for p in problems] == [
        "sniper.max_positons", "sniper.max_per_coin", "sniper.max_exposure_pct"
    ]


def test_config_error_when_raised_then_message_lists_each_problem_and_source() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"feed": {"source": "nope"}, "paper": {"taker_fee": -1}}, source="my.toml")
    text = str(caught.value)
    assert text.startswith("my.toml: 2 problem(s)")
    assert "feed.source" in text and "paper.taker_fee" in text
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ({"engine": {"mode": "live"}}, "engine.mode"),
        ({"engine": {"log_level": "LOUD"}}, "engine.log_level"),
        ({"engine": {"sweep_interval_s": 0}}, "engine.sweep_interval_s"),
        ({"engine": {"data_dir": ""}}, "engine.data_dir"),
        ({"feed": {"symbols": []}}, "feed.symbols"),
        ({"feed": {"symbols": ["BTC", "btc"]}}, "feed.symbols"),
        ({"feed": {"symbols": ["BTC/USDT"]}}, "feed.symbols"),
        ({"feed": {"speed": "fast"}}, "feed.speed"),
        ({"feed": {"bar_seconds": 1.5}}, "feed.bar_seconds"),
        ({"feed": {"ticks_per_second": 5000}}, "feed.ticks_per_second"),
        ({"feed": {"files": [{"coin": "BTC"}]}}, "feed.files"),
        ({"paper": {"initial_balance": 0}}, "paper.initial_balance"),
        ({"paper": {"slippage_bps": "lots"}}, "paper.slippage_bps"),
        ({"sniper": {"max_positions": 0}}, "sniper.max_positions"),
        ({"sniper": {"max_positions": True}}, "sniper.max_positions"),
        ({"sniper": {"max_exposure_pct": 1.5}}, "sniper.max_exposure_pct"),
        ({"supervisor": {"backoff_s": [-1]}}, "supervisor.backoff_s"),
        ({"session": {"on_stop": "panic"}}, "session.on_stop"),
        ({"strategist": {"strategies": "sma"}}, "strategist.strategies"),
        ({"engine": "not a table"}, "engine"),
    ],
)
def test_parse_config_when_bad_value_then_problem_names_section_and_key(raw: dict, key: str) -> None:
    problems = problems_of(raw)
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"{key}: "), problems


def test_parse_config_when_replay_without_files_then_problem_names_feed_files() -> None:
    assert problems_of({"feed": {"source": "replay"}}) == [
        "feed.files: the replay source needs at least one file"
    ]


def test_parse_config_when_replay_without_files_and_another_mistake_then_both_reported() -> None:
    problems = problems_of({"feed": {"source": "replay"}, "paper": {"taker_fee": -1}})
    assert {p.split(":", 1)[0] for p in problems} == {"feed.files", "paper.taker_fee"}


def test_load_config_when_float_setting_is_nan_then_problem(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text("[engine]\nsweep_interval_s = nan\n")
    problems: list[str] = []
    try:
        load_config(path)
    except ConfigError as error:
        problems = error.problems
    assert [p.split(":", 1)[0] for p in problems] == ["engine.sweep_interval_s"]


# --- markets ------------------------------------------------------------------------------------------


def test_parse_config_when_markets_btc_overrides_then_merged_with_defaults() -> None:
    config = parse_config({"markets": {"BTC": {"tick_size": "0.1", "min_notional": 10}}})
    btc = config.market("BTC")
    assert btc.tick_size == Decimal("0.1")
    assert btc.min_notional == Decimal("10")
    assert btc.qty_step == default_rules("BTC").qty_step
    assert config.market("ETH") == default_rules("ETH")


def test_parse_config_when_markets_coin_lowercase_then_stored_under_symbol() -> None:
    config = parse_config({"markets": {"sol": {"tick_size": "0.01"}}})
    assert config.market("SOL").tick_size == Decimal("0.01")


@pytest.mark.parametrize(
    ("table", "key", "hint"),
    [
        ({"tick": "0.1"}, "markets.BTC.tick", "did you mean 'tick_size'"),
        ({"tick_size": "wide"}, "markets.BTC.tick_size", "must be a number"),
        ({"tick_size": "0"}, "markets.BTC.tick_size", "greater than 0"),
    ],
)
def test_parse_config_when_markets_entry_bad_then_problem_names_market_key(
    table: dict, key: str, hint: str
) -> None:
    problems = problems_of({"markets": {"BTC": table}})
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"{key}: ")
    assert hint in problems[0]


def test_parse_config_when_markets_coin_is_a_pair_then_problem() -> None:
    problems = problems_of({"markets": {"BTC/USDT": {"tick_size": "0.1"}}})
    assert problems[0].startswith("markets.BTC/USDT: ")


# --- files -------------------------------------------------------------------------------------------


def test_load_config_when_file_missing_then_config_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as caught:
        load_config(missing)
    assert caught.value.problems == [f"file not found: {missing}"]


def test_load_config_when_invalid_toml_then_config_error(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text("[engine\nmode = 'paper'\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert len(caught.value.problems) == 1
    assert caught.value.problems[0].startswith("not valid TOML")


def test_load_config_when_file_has_mistakes_then_source_is_the_path(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('[feed]\nsource = "nope"\n')
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.source == str(path)
    assert caught.value.problems[0].startswith("feed.source: ")


def test_parse_config_when_strategist_has_strategy_tables_then_kept_as_settings() -> None:
    config = parse_config({"strategist": {"strategies": ["breakout"], "breakout": {"lookback_bars": 5}}})
    assert config.strategist.strategies == ("breakout",)
    assert config.strategist.settings == {"breakout": {"lookback_bars": 5}}


def test_parse_config_when_strategy_settings_are_wrong_then_each_key_is_named() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"strategist": {
            "strategies": ["breakout", "nosuch"],
            "breakout": {"lookback_bars": 0, "stop_loss_pct": 2, "sizee": 1},
            "other": {"x": 1},
        }})
    problems = caught.value.problems
    assert any(p.startswith("strategist.breakout.lookback_bars: must be a whole number") for p in problems)
    assert any(p.startswith("strategist.breakout.stop_loss_pct: must be between 0 and 1") for p in problems)
    assert any(p.startswith("strategist.breakout.sizee: unknown key") for p in problems)
    assert any(p.startswith("strategist.strategies: unknown strategy 'nosuch'") for p in problems)
    assert any(p.startswith("strategist.other: settings for a strategy that is not in") for p in problems)


def test_parse_config_when_the_breakout_entry_plan_is_wrong_then_the_key_is_named() -> None:
    problems = problems_of({"strategist": {"strategies": ["breakout"],
                                           "breakout": {"entry_type": "limit", "entry_offset_pct": 0.001}}})

    assert problems == ["strategist.breakout.entry_timeout_s: a limit entry needs a time limit in seconds"]
    assert problems_of({"strategist": {"strategies": ["breakout"], "breakout": {"entry_type": "iceberg"}}}) == [
        "strategist.breakout.entry_type: must be one of MARKET|LIMIT, got 'iceberg'"]


def test_parse_config_when_the_breakout_entry_plan_is_right_then_kept_as_given() -> None:
    table = {"entry_type": "limit", "entry_offset_ticks": 1, "entry_timeout_s": 20, "entry_plan_b_pct": 0.0005}
    config = parse_config({"strategist": {"strategies": ["breakout"], "breakout": table}})

    assert config.strategist.settings == {"breakout": table}


def test_parse_config_when_risk_and_journal_are_wrong_then_both_are_reported() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"risk": {"sizing": "kelly", "max_daily_loss_pct": 3}, "journal": {"url": "mysql://x"}})
    problems = caught.value.problems
    assert any(p.startswith("risk.sizing: must be one of") for p in problems)
    assert any(p.startswith("risk.max_daily_loss_pct: must be at most 1") for p in problems)
    assert any(p.startswith("journal.url: must start with sqlite:/// or postgresql://") for p in problems)


def test_parse_config_reads_the_drawdown_limit_and_the_mark_report_interval() -> None:
    risk = parse_config({"risk": {"max_drawdown_pct": 0.1, "mark_report_ms": 250}}).risk

    assert (risk.max_drawdown_pct, risk.mark_report_ms) == (Decimal("0.1"), 250)


def test_parse_config_when_the_drawdown_limit_or_the_mark_report_interval_is_wrong_then_each_is_named() -> None:
    problems = problems_of({"risk": {"max_drawdown_pct": 1.5, "mark_report_ms": 0.5}})

    assert any(p.startswith("risk.max_drawdown_pct: must be at most 1") for p in problems), problems
    assert any(p.startswith("risk.mark_report_ms: must be a whole number") for p in problems), problems
    assert any(p.startswith("risk.mark_report_ms: must be at most 60000")
               for p in problems_of({"risk": {"mark_report_ms": 600_000}}))


def test_parse_config_when_live_source_then_market_rules_come_from_the_exchange_unless_config() -> None:
    assert parse_config({"feed": {"source": "binance"}}).feed.rules_from_exchange() is True
    assert parse_config({"feed": {"source": "bybit", "market_rules": "exchange"}}).feed.rules_from_exchange() is True
    assert parse_config({"feed": {"source": "binance", "market_rules": "config"}}).feed.rules_from_exchange() is False
    assert parse_config({"feed": {"source": "sim"}}).feed.rules_from_exchange() is False


def test_parse_config_when_market_rules_exchange_without_a_live_source_then_problem() -> None:
    assert problems_of({"feed": {"source": "replay", "files": [{"coin": "BTC", "path": "x.csv"}],
                                 "market_rules": "exchange"}}) == [
        "feed.market_rules: 'exchange' needs a live source (binance, bybit); replay takes them from [markets]"]
    assert problems_of({"feed": {"market_rules": "venue"}}) == [
        "feed.market_rules: must be one of 'exchange', 'config', not 'venue'"]


def test_parse_config_when_markets_sets_min_qty_then_kept() -> None:
    config = parse_config({"markets": {"SOL": {"min_qty": "0.1"}}})
    assert config.market("SOL").min_qty == Decimal("0.1")


# --- [feed] checks on market data (state/tick_guard.py) ------------------------------------------

def test_feed_tick_guard_defaults_and_settings() -> None:
    guard = parse_config({}).feed.tick_guard()
    assert (guard.max_jump_pct, guard.confirm_ticks, guard.max_clock_skew_s, guard.max_tick_gap_s) == (
        Decimal("0.10"), 3, 300.0, 86_400.0)
    feed = {"max_jump_pct": 0.25, "jump_confirm_ticks": 5, "max_clock_skew_s": 30, "max_tick_gap_s": 600}
    guard = parse_config({"feed": feed}).feed.tick_guard()
    assert (guard.max_jump_pct, guard.confirm_ticks, guard.max_clock_skew_s, guard.max_tick_gap_s) == (
        Decimal("0.25"), 5, 30, 600)


@pytest.mark.parametrize(("key", "value"), [
    ("max_jump_pct", 0), ("max_jump_pct", -0.1), ("max_jump_pct", "lots"), ("max_jump_pct", float("nan")),
    ("jump_confirm_ticks", 0), ("jump_confirm_ticks", 2.5), ("jump_confirm_ticks", True),
    ("max_clock_skew_s", 0), ("max_clock_skew_s", float("inf")), ("max_tick_gap_s", -1),
])
def test_feed_tick_guard_keys_are_validated(key: str, value: object) -> None:
    (problem,) = problems_of({"feed": {key: value}})
    assert problem.startswith(f"feed.{key}: ")


# --- live mode and [venue] ------------------------------------------------------------------------

LIVE_FEED = {"source": "binance", "symbols": ["BTC"]}


def test_parse_config_when_live_on_binance_then_the_venue_follows_the_feed_with_safe_defaults() -> None:
    config = parse_config({"engine": {"mode": "live"}, "feed": LIVE_FEED})

    assert config.live
    venue = config.venue
    assert venue.exchange_for(config.feed) == "binanceusdm" and venue.market_for(config.feed) == "usdm"
    assert venue.testnet is True, "testnet is the default: real money only when asked for"
    assert (venue.key_env, venue.secret_env) == ("SNIPER_API_KEY", "SNIPER_API_SECRET")
    assert venue.on_unknown == "report"
    assert venue.leverage_for("BTC") == 1


def test_parse_config_reads_every_venue_key() -> None:
    config = parse_config({"engine": {"mode": "live"}, "feed": {"source": "bybit", "symbols": ["BTC", "ETH"]},
                           "venue": {"exchange": "bybit", "market": "linear", "testnet": False, "key_env": "BYBIT_KEY",
                                     "secret_env": "BYBIT_SECRET", "rest_url": "http://127.0.0.1:9/",
                                     "ws_url": "ws://127.0.0.1:9", "margin_mode": "cross", "default_leverage": 2,
                                     "leverage": {"btc": 5}, "on_unknown": "halt", "reconcile_every_s": 0,
                                     "recv_window_ms": 10000, "timeout_s": 5, "poll_s": 0.5, "ping_interval_s": 10,
                                     "silence_timeout_s": 30, "listen_key_keepalive_s": 600}})
    venue = config.venue
    assert (venue.exchange, venue.market, venue.testnet) == ("bybit", "linear", False)
    assert (venue.key_env, venue.secret_env) == ("BYBIT_KEY", "BYBIT_SECRET")
    assert venue.rest_url == "http://127.0.0.1:9"
    assert venue.leverage_for("BTC") == 5 and venue.leverage_for("ETH") == 2
    assert (venue.margin_mode, venue.on_unknown, venue.reconcile_every_s) == ("cross", "halt", 0)


@pytest.mark.parametrize(("venue", "key"), [
    ({"exchange": "kraken"}, "venue.exchange"),
    ({"market": "coinm"}, "venue.market"),
    ({"testnet": "yes"}, "venue.testnet"),
    ({"rest_url": "ftp://x"}, "venue.rest_url"),
    ({"ws_url": "http://x"}, "venue.ws_url"),
    ({"margin_mode": "portfolio"}, "venue.margin_mode"),
    ({"default_leverage": 0}, "venue.default_leverage"),
    ({"default_leverage": 126}, "venue.default_leverage"),
    ({"leverage": {"BTC": 2.5}}, "venue.leverage"),
    ({"leverage": {"BTC/USDT": 2}}, "venue.leverage"),
    ({"on_unknown": "ignore"}, "venue.on_unknown"),
    ({"reconcile_every_s": -1}, "venue.reconcile_every_s"),
    ({"timeout_s": 0}, "venue.timeout_s"),
    ({"listen_key_keepalive_s": 3600}, "venue.listen_key_keepalive_s"),
    ({"testnett": True}, "venue.testnett"),
])
def test_parse_config_when_a_venue_value_is_bad_then_it_is_named(venue: dict, key: str) -> None:
    problems = problems_of({"engine": {"mode": "live"}, "feed": LIVE_FEED, "venue": venue})
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"{key}: "), problems


@pytest.mark.parametrize("name", ["", "my key", "SNIPER-KEY", "1KEY", "sniper_api_key",
                                  "Kx7fQ2pL9mZ4vB8nR3tY6wE1uI5oA0sD", 42])
def test_parse_config_when_key_env_is_not_a_variable_name_then_refused_without_echoing_it(name: object) -> None:
    for field in ("key_env", "secret_env"):
        problems = problems_of({"venue": {field: name}})
        assert len(problems) == 1 and problems[0].startswith(f"venue.{field}: must be the name of an environment "
                                                             "variable in capitals"), problems
        if isinstance(name, str) and name:
            assert name not in problems[0], "a key pasted here by mistake must not be printed"


def test_parse_config_when_key_env_and_secret_env_are_one_variable_then_refused() -> None:
    assert problems_of({"venue": {"key_env": "API", "secret_env": "API"}}) == [
        "venue.secret_env: the same variable as venue.key_env (API); the key and the secret are two values"]


@pytest.mark.parametrize("source", ["sim", "replay", "manual"])
def test_parse_config_when_live_without_live_market_data_then_refused(source: str) -> None:
    feed = {"source": source, **({"files": [{"coin": "BTC", "path": "x.csv"}]} if source == "replay" else {})}
    assert problems_of({"engine": {"mode": "live"}, "feed": feed}) == [
        f"engine.mode: live trading needs live market data ([feed] source = 'binance' or 'bybit'), not {source!r}"]


@pytest.mark.parametrize(("feed", "venue", "problem"), [
    ({"source": "binance"}, {"exchange": "bybit"},
     "venue.exchange: 'bybit' is not the venue of the feed (binance, market 'usdm': 'binanceusdm')"),
    ({"source": "binance", "market": "spot"}, {"exchange": "binanceusdm"},
     "venue.exchange: 'binanceusdm' is not the venue of the feed (binance, market 'spot': 'binance')"),
    ({"source": "bybit"}, {"market": "spot"}, "venue.market: 'spot' is not the feed's market 'linear'"),
    ({"source": "bybit"}, {"exchange": "bybit", "market": "usdm"}, "venue.market: bybit offers linear or spot, not 'usdm'"),
    ({"source": "binance", "market_rules": "config"}, {},
     "feed.market_rules: live trading sizes and rounds by the venue's own rules; 'config' is for paper sessions only"),
])
def test_parse_config_when_the_venue_is_not_the_feeds_then_refused(feed: dict, venue: dict, problem: str) -> None:
    assert problems_of({"engine": {"mode": "live"}, "feed": {"symbols": ["BTC"], **feed}, "venue": venue}) == [problem]


def test_parse_config_when_paper_then_the_venue_section_is_checked_but_not_the_feed_match() -> None:
    config = parse_config({"feed": {"source": "sim"}, "venue": {"exchange": "bybit", "testnet": False}})
    assert not config.live and config.venue.exchange == "bybit"


def test_the_repository_config_toml_documents_a_venue_section_that_parses_when_uncommented() -> None:
    text = REPO_CONFIG.read_text()
    assert "# [venue]" in text
    lines = text[text.index("# [venue]"):].splitlines()
    block = []
    for line in lines:
        if not line.startswith("#"):
            break
        block.append(line[2:] if line.startswith("# ") else line[1:])
    import tomllib

    raw = tomllib.loads("\n".join(block))
    config = parse_config({"engine": {"mode": "live"}, "feed": LIVE_FEED, **raw})
    assert config.venue.testnet is True
    assert config.venue.key_env == "SNIPER_API_KEY"


def test_a_live_session_on_a_testnet_watches_the_testnets_market_data():
    # Orders on a testnet fill at the testnet's prices: its conditions must trigger on them.
    usdm = parse_config({"engine": {"mode": "live"}, "feed": {"source": "binance"}})
    assert (usdm.feed.url, usdm.feed.rest_url) == ("wss://fstream.binancefuture.com",
                                                   "https://testnet.binancefuture.com")
    spot = parse_config({"engine": {"mode": "live"}, "feed": {"source": "binance", "market": "spot"}})
    assert (spot.feed.url, spot.feed.rest_url) == ("wss://stream.testnet.binance.vision",
                                                   "https://testnet.binance.vision")
    bybit = parse_config({"engine": {"mode": "live"}, "feed": {"source": "bybit", "url": "ws://127.0.0.1:9/x"}})
    assert (bybit.feed.url, bybit.feed.rest_url) == ("ws://127.0.0.1:9/x", "https://api-testnet.bybit.com")


def test_real_money_and_paper_sessions_keep_the_exchanges_public_market_data():
    real = parse_config({"engine": {"mode": "live"}, "feed": {"source": "binance"}, "venue": {"testnet": False}})
    paper = parse_config({"feed": {"source": "binance"}, "venue": {"testnet": True}})
    for config in (real, paper):
        assert (config.feed.url, config.feed.rest_url) == ("", "")
