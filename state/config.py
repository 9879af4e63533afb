"""Configuration: ``config.toml`` read with ``tomllib`` and validated into frozen dataclasses.

Every problem is collected before anything starts and reported at once as
``section.key: problem``; unknown sections and keys get a "did you mean". Secrets never live
in this file: keys for live venues are read from environment variables named here.
"""

from __future__ import annotations

import difflib
import math
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal
from pathlib import Path
from typing import Any

from state.market import MarketRules, default_rules
from state.rules import PositionLimits
from state.secrets import mask_url
from state.tick_guard import TickGuardSettings
from state.types import coin_symbol, to_decimal

LIVE_SOURCES = ("binance", "bybit")


class ConfigError(ValueError):
    """One or more configuration problems, each as ``section.key: problem`` (credentials of
    any URL quoted in a problem masked: the text is printed)."""

    def __init__(self, problems: list[str], source: str = "config") -> None:
        problems = [mask_url(problem) for problem in problems]
        self.problems = problems
        self.source = source
        listing = "\n".join(f"  {problem}" for problem in problems)
        super().__init__(f"{source}: {len(problems)} problem(s)\n{listing}")


@dataclass(frozen=True, slots=True, kw_only=True)
class EngineConfig:
    data_dir: Path | None = None  # None: var/<config file name without .toml>/ beside the config file
    mode: str = "paper"
    clock: str = "auto"  # auto: tick time for manual/replay sources, wall time otherwise
    log_level: str = "INFO"
    sweep_interval_s: float = 1.0  # expiry sweep and other periodic checks


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplayFile:
    coin: str
    path: Path


@dataclass(frozen=True, slots=True, kw_only=True)
class FeedConfig:
    source: str = "sim"
    symbols: tuple[str, ...] = ("BTC", "ETH", "SOL")
    files: tuple[ReplayFile, ...] = ()
    speed: str = "max"
    bar_seconds: int = 60
    seed: int = 7
    ticks_per_second: float = 4.0  # sim: per symbol
    stale_after_s: float = 15.0  # live sources (and sim): a coin silent this long is stale
    # live sources (binance, bybit)
    market: str = ""  # binance: usdm | spot (default usdm); bybit: linear | spot (default linear)
    url: str = ""  # websocket endpoint; empty: the exchange's public one
    symbol_map: Mapping[str, str] = field(default_factory=dict)  # coin -> exchange symbol; default COIN+USDT
    trades: str = "trade"  # binance: trade | aggTrade
    reconnect_first_s: float = 1.0
    reconnect_max_s: float = 60.0
    ping_interval_s: float = 20.0
    silence_timeout_s: float = 30.0  # no frame at all this long: the connection is dropped and reopened
    max_connection_age_s: float = 84_600.0  # reconnect before Binance's 24-hour cut
    rest_fallback_after_s: float = 10.0  # stream down this long: poll last prices over REST
    rest_poll_s: float = 1.0
    rest_url: str = ""  # REST endpoint; empty: the exchange's public one
    # nothing at all received (no trade, no quote, no REST price) this long after start: the
    # session ends with exit code 4 (FEED_GAVE_UP); 0 waits forever
    give_up_after_s: float = 300.0
    # exchange: tick size, steps and minimums from the venue at start (live sources' default);
    # config: from [markets] and the defaults (sim, replay and manual always)
    market_rules: str = ""
    # bad market data, refused at the Feed (state/tick_guard.py)
    max_jump_pct: Decimal = Decimal("0.10")  # a tick this far from the last accepted price is rejected...
    jump_confirm_ticks: int = 3  # ...unless this many consecutive agreeing ticks confirm the move
    max_clock_skew_s: float = 300.0  # wall clock: a tick stamped further ahead or behind is rejected
    max_tick_gap_s: float = 86_400.0  # tick clock: a tick this far past the latest accepted one is rejected

    def tick_guard(self) -> TickGuardSettings:
        return TickGuardSettings(max_jump_pct=self.max_jump_pct, confirm_ticks=self.jump_confirm_ticks,
                                 max_clock_skew_s=self.max_clock_skew_s, max_tick_gap_s=self.max_tick_gap_s)

    @property
    def live(self) -> bool:
        return self.source in LIVE_SOURCES

    def rules_from_exchange(self) -> bool:
        return self.live and self.market_rules != "config"

    def market_kind(self) -> str:
        if self.market:
            return self.market
        return "usdm" if self.source == "binance" else "linear"

    def market_category(self) -> str:
        """``"spot"`` or ``"perp"`` (usdm, linear; sim, replay and manual count as perp): which
        of the paper venue's fee rates apply."""
        return "spot" if self.market_kind() == "spot" else "perp"


@dataclass(frozen=True, slots=True, kw_only=True)
class PaperConfig:
    """The paper venue (``state/matching.py``). Fees are rates on the notional, by market
    category: ``maker_fee``/``taker_fee`` for perpetuals (sim and replay count as perp), and for
    spot too unless ``maker_fee_spot``/``taker_fee_spot`` say otherwise; a negative maker fee is
    a rebate."""

    initial_balance: Decimal = Decimal("10000")
    slippage_bps: Decimal = Decimal("5")
    taker_fee: Decimal = Decimal("0.0005")
    maker_fee: Decimal = Decimal("0.0002")
    taker_fee_spot: Decimal | None = None  # None: taker_fee
    maker_fee_spot: Decimal | None = None  # None: maker_fee
    fill_model: str = "full"  # full: a touched resting order fills whole | traded_volume
    quote_max_age_s: float = 5.0  # a top-of-book quote this old no longer gives the mid; 0: never priced from quotes
    max_price_age_s: float = 60.0

    def fee_rates(self, category: str) -> tuple[Decimal, Decimal]:
        """``(maker, taker)`` of a market category, ``"perp"`` or ``"spot"``."""
        if category == "spot":
            maker = self.maker_fee if self.maker_fee_spot is None else self.maker_fee_spot
            taker = self.taker_fee if self.taker_fee_spot is None else self.taker_fee_spot
            return maker, taker
        if category == "perp":
            return self.maker_fee, self.taker_fee
        raise ValueError(f"market category must be 'perp' or 'spot', not {category!r}")


VENUE_EXCHANGES = ("binanceusdm", "binance", "bybit")

# The exchanges' testnet public endpoints, (source, market) -> (websocket base, REST base): a live
# session on a testnet watches the testnet's own market, whose prices are not the real one's.
TESTNET_MARKET_DATA = {
    ("binance", "usdm"): ("wss://fstream.binancefuture.com", "https://testnet.binancefuture.com"),
    ("binance", "spot"): ("wss://stream.testnet.binance.vision", "https://testnet.binance.vision"),
    ("bybit", "linear"): ("wss://stream-testnet.bybit.com/v5/public/linear", "https://api-testnet.bybit.com"),
    ("bybit", "spot"): ("wss://stream-testnet.bybit.com/v5/public/spot", "https://api-testnet.bybit.com"),
}


def testnet_market_data(feed: FeedConfig) -> FeedConfig:
    """``feed`` with its websocket and REST endpoints on the venue's testnet where ``[feed]`` left
    them to their defaults: orders on a testnet fill at the testnet's prices, so its conditions
    must trigger on them too (an explicit ``url`` / ``rest_url`` is kept)."""
    endpoints = TESTNET_MARKET_DATA.get((feed.source, feed.market_kind()))
    if endpoints is None:
        return feed
    ws, rest = endpoints
    return replace(feed, url=feed.url or ws, rest_url=feed.rest_url or rest)


@dataclass(frozen=True, slots=True, kw_only=True)
class VenueConfig:
    """The live venue (``[engine] mode = "live"``; unused in paper mode). ``exchange`` is the
    ccxt id: ``binanceusdm`` (Binance USD-M futures), ``binance`` (Binance spot) or ``bybit``
    (v5; ``market`` ``linear`` or ``spot``). Empty ``exchange``/``market`` follow the live
    feed (``[feed] source``/``market``), which must name the same venue and market. Keys are
    read from the environment variables *named* by ``key_env``/``secret_env``; the values never
    appear in a file. ``testnet`` (ccxt sandbox mode) is on unless turned off. ``rest_url`` /
    ``ws_url``: every REST request / the private stream go to this base instead (a local
    gateway, a test exchange). Derivatives only: ``margin_mode`` and ``leverage`` (per coin,
    else ``default_leverage``) are checked and set at start. ``on_unknown``: what to do with an
    order or position on the venue that the engine's store does not know (opened by hand):
    ``report`` it and leave the coin alone, or ``halt``. ``reconcile_every_s``: how often the
    open orders and positions are compared with the engine's while running (0: never)."""

    exchange: str = ""
    market: str = ""
    testnet: bool = True
    key_env: str = "SNIPER_API_KEY"
    secret_env: str = "SNIPER_API_SECRET"
    rest_url: str = ""
    ws_url: str = ""
    margin_mode: str = "isolated"
    default_leverage: int = 1
    leverage: Mapping[str, int] = field(default_factory=dict)
    on_unknown: str = "report"
    reconcile_every_s: float = 60.0
    recv_window_ms: int = 5000
    timeout_s: float = 10.0  # one REST request; past it a submit is AMBIGUOUS (asked by client id)
    poll_s: float = 1.0  # orders in flight polled over REST this often while the private stream is down
    ping_interval_s: float = 20.0
    silence_timeout_s: float = 60.0  # private stream: no frame at all this long, reconnect
    listen_key_keepalive_s: float = 1800.0  # Binance: the listen key is kept alive this often (it lapses at 60 min)

    def exchange_for(self, feed: FeedConfig) -> str:
        """The ccxt id: ``exchange``, else the live feed's venue."""
        if self.exchange:
            return self.exchange
        if feed.source == "binance":
            return "binance" if feed.market_kind() == "spot" else "binanceusdm"
        return feed.source

    def market_for(self, feed: FeedConfig) -> str:
        """``usdm``, ``spot`` or ``linear``: ``market``, else the exchange's only one, else the feed's."""
        exchange = self.exchange_for(feed)
        if exchange == "binanceusdm":
            return "usdm"
        if exchange == "binance":
            return "spot"
        return self.market or feed.market_kind()

    def leverage_for(self, coin: str) -> int:
        return self.leverage.get(coin, self.default_leverage)


@dataclass(frozen=True, slots=True, kw_only=True)
class SupervisorConfig:
    max_restarts: int = 3
    within_s: float = 60.0
    backoff_s: tuple[float, ...] = (0.05, 0.25, 1.0)
    poll_interval_s: float = 0.1
    ping_interval_s: float = 2.0
    ping_timeout_s: float = 10.0


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionConfig:
    on_stop: str = "keep"  # keep | flatten: what a graceful stop does with open positions
    settle_timeout_s: float = 5.0  # how long a stop waits for orders in flight


@dataclass(frozen=True, slots=True, kw_only=True)
class RiskConfig:
    """The RiskGate's rules. Sizing ``fixed_usd`` keeps the condition's size (capped at
    ``max_position_usd``); ``risk_pct`` sizes so that hitting the stop loses
    ``risk_per_trade_pct`` of equity. The kill switch trips at ``max_daily_loss_pct`` below
    the day's starting equity or ``max_drawdown_pct`` below the equity peak; the Sniper reports
    equity on every fill and, while marks change, at most every ``mark_report_ms`` of engine
    time (0: on every changed mark)."""

    sizing: str = "fixed_usd"
    max_position_usd: Decimal = Decimal("1000")
    risk_per_trade_pct: Decimal = Decimal("0.01")
    max_stop_loss_pct: Decimal = Decimal("0.20")
    max_take_profit_pct: Decimal = Decimal("1.0")
    max_trigger_distance_pct: Decimal = Decimal("0.20")  # from the last price, when known
    max_daily_loss_pct: Decimal = Decimal("0.05")  # kill switch; 0 turns it off
    max_drawdown_pct: Decimal = Decimal("0.20")  # kill switch from the equity peak; 0 turns it off
    mark_report_ms: int = 1000  # the Sniper reports marked equity at most this often (engine time)
    # On a tick clock: "exact" holds the Sniper's ticks after each equity report until the
    # RiskGate answered, so a replay's trip closes at the tripping tick every time (a replay is
    # about 2.3x slower); "fast" does not wait (a trip closes a few ticks later at max speed).
    replay_trips: str = "fast"


@dataclass(frozen=True, slots=True, kw_only=True)
class JournalConfig:
    url: str = ""  # empty: SQLite <data_dir>/journal.db; else e.g. postgresql://user@host/db


@dataclass(frozen=True, slots=True, kw_only=True)
class StrategistConfig:
    strategies: tuple[str, ...] = ()
    settings: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    engine: EngineConfig = field(default_factory=EngineConfig)
    feed: FeedConfig = field(default_factory=FeedConfig)
    paper: PaperConfig = field(default_factory=PaperConfig)
    sniper: PositionLimits = field(default_factory=PositionLimits)
    supervisor: SupervisorConfig = field(default_factory=SupervisorConfig)
    session: SessionConfig = field(default_factory=SessionConfig)
    strategist: StrategistConfig = field(default_factory=StrategistConfig)
    risk: RiskConfig = field(default_factory=RiskConfig)
    journal: JournalConfig = field(default_factory=JournalConfig)
    venue: VenueConfig = field(default_factory=VenueConfig)
    markets: Mapping[str, MarketRules] = field(default_factory=dict)

    @property
    def live(self) -> bool:
        """Trading a real account (``[engine] mode = "live"``)."""
        return self.engine.mode == "live"

    def market(self, coin: str) -> MarketRules:
        return self.markets.get(coin) or default_rules(coin)


# --- the schema ----------------------------------------------------------------------------------

Parser = Callable[[Any], Any]


def _choice(*allowed: str) -> Parser:
    def parse(value: Any) -> str:
        if not isinstance(value, str) or value not in allowed:
            raise ValueError(f"must be one of {', '.join(repr(a) for a in allowed)}, not {value!r}")
        return value

    return parse


def _number(*, minimum: float | None = None, maximum: float | None = None,
            integer: bool = False, above: float | None = None) -> Parser:
    def parse(value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"must be a number, not {value!r}")
        if integer and not isinstance(value, int):
            raise ValueError(f"must be a whole number, not {value!r}")
        if not math.isfinite(value):
            raise ValueError(f"must be a finite number, not {value!r}")
        if minimum is not None and value < minimum:
            raise ValueError(f"must be at least {minimum}, not {value!r}")
        if above is not None and value <= above:
            raise ValueError(f"must be greater than {above}, not {value!r}")
        if maximum is not None and value > maximum:
            raise ValueError(f"must be at most {maximum}, not {value!r}")
        return value

    return parse


def _decimal(*, minimum: Decimal | None = None, maximum: Decimal | None = None,
             above: Decimal | None = None) -> Parser:
    def parse(value: Any) -> Decimal:
        try:
            number = to_decimal(value, "value")
        except ValueError:
            raise ValueError(f"must be a number, not {value!r}") from None
        if minimum is not None and number < minimum:
            raise ValueError(f"must be at least {minimum}, not {value!r}")
        if above is not None and number <= above:
            raise ValueError(f"must be greater than {above}, not {value!r}")
        if maximum is not None and number > maximum:
            raise ValueError(f"must be at most {maximum}, not {value!r}")
        return number

    return parse


def _text(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"must be a non-empty string, not {value!r}")
    return value


def _symbols(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise ValueError(f"must be a non-empty list of coin symbols, not {value!r}")
    coins = []
    for item in value:
        try:
            coins.append(coin_symbol(item))
        except ValueError:
            raise ValueError(f"{item!r} is not a coin symbol such as 'BTC'") from None
    if len(set(coins)) != len(coins):
        raise ValueError(f"lists a coin twice: {value!r}")
    return tuple(coins)


def _names(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ValueError(f"must be a list of names, not {value!r}")
    return tuple(value)


def _seconds_list(value: Any) -> tuple[float, ...]:
    if (
        not isinstance(value, list)
        or not value
        or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0 for v in value)
    ):
        raise ValueError(f"must be a non-empty list of seconds >= 0, not {value!r}")
    return tuple(float(v) for v in value)


def _speed(value: Any) -> str:
    if isinstance(value, str) and (
        value in ("max", "realtime")
        or (value.endswith("x") and _is_positive_number(value[:-1]))
    ):
        return value
    raise ValueError(f"must be 'realtime', 'max' or '<N>x' such as '10x', not {value!r}")


def _is_positive_number(text: str) -> bool:
    try:
        return float(text) > 0
    except ValueError:
        return False


def _ws_url(value: Any) -> str:
    if not isinstance(value, str) or (value and not value.startswith(("ws://", "wss://"))):
        raise ValueError(f"must be a websocket URL such as 'wss://fstream.binance.com', not {value!r}")
    return value.rstrip("/")


def _http_url(value: Any) -> str:
    if not isinstance(value, str) or (value and not value.startswith(("http://", "https://"))):
        raise ValueError(f"must be an http(s) URL such as 'https://fapi.binance.com', not {value!r}")
    return value.rstrip("/")


def _symbol_map(value: Any) -> dict[str, str]:
    if not isinstance(value, dict) or not all(isinstance(v, str) and v.strip() for v in value.values()):
        raise ValueError(f"must be a table of coin = \"EXCHANGESYMBOL\", not {value!r}")
    try:
        return {coin_symbol(coin): symbol.strip().upper() for coin, symbol in value.items()}
    except ValueError:
        raise ValueError(f"has a key that is not a coin symbol: {value!r}") from None


def _boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"must be true or false, not {value!r}")
    return value


def _env_name(value: Any) -> str:
    """The *name* of an environment variable (never the key itself): capitals, digits and
    ``_``, as environment variables are conventionally named. An API key pasted here by mistake
    (mixed case) is refused without being echoed: the error would otherwise print it."""
    if not isinstance(value, str) or not value or len(value) > 64 or not (value[0].isupper() or value[0] == "_") \
            or not all(("A" <= char <= "Z") or char.isdigit() or char == "_" for char in value):
        raise ValueError("must be the name of an environment variable in capitals, such as 'SNIPER_API_KEY' "
                         "(the key itself never goes in the config file)")
    return value


def _leverage_map(value: Any) -> dict[str, int]:
    if not isinstance(value, dict):
        raise ValueError(f"must be a table of coin = leverage, such as {{ BTC = 3 }}, not {value!r}")
    leverage: dict[str, int] = {}
    for coin, number in value.items():
        try:
            symbol = coin_symbol(coin)
        except ValueError:
            raise ValueError(f"{coin!r} is not a coin symbol") from None
        if isinstance(number, bool) or not isinstance(number, int) or not 1 <= number <= 125:
            raise ValueError(f"{symbol}: leverage must be a whole number from 1 to 125, not {number!r}")
        leverage[symbol] = number
    return leverage


def _journal_url(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"must be a database URL such as 'postgresql://user@host/db', not {value!r}")
    if value and not value.startswith(("sqlite:///", "postgresql://", "postgres://", "postgresext://")):
        raise ValueError(f"must start with sqlite:/// or postgresql://, not {value!r}")
    return value


def _files(value: Any) -> tuple[ReplayFile, ...]:
    if not isinstance(value, list):
        raise ValueError(f"must be a list of {{ coin = ..., path = ... }} tables, not {value!r}")
    files = []
    for number, item in enumerate(value, start=1):
        if not isinstance(item, dict) or set(item) != {"coin", "path"}:
            raise ValueError(f"entry {number} must have exactly the keys coin and path, not {item!r}")
        try:
            coin = coin_symbol(item["coin"])
        except ValueError:
            raise ValueError(f"entry {number}: coin {item['coin']!r} is not a coin symbol") from None
        files.append(ReplayFile(coin=coin, path=Path(_text(item["path"]))))
    return tuple(files)


SCHEMA: dict[str, dict[str, Parser]] = {
    "engine": {
        "data_dir": _text,
        "mode": _choice("paper", "live"),
        "clock": _choice("auto", "wall", "tick"),
        "log_level": _choice("TRACE", "DEBUG", "INFO", "SUCCESS", "WARNING", "ERROR"),
        "sweep_interval_s": _number(above=0),
    },
    "feed": {
        "source": _choice("sim", "replay", "manual", *LIVE_SOURCES),
        "symbols": _symbols,
        "files": _files,
        "speed": _speed,
        "bar_seconds": _number(integer=True, minimum=1),
        "seed": _number(integer=True),
        "ticks_per_second": _number(above=0, maximum=1000),
        "stale_after_s": _number(above=0, maximum=3600),
        "market": _choice("usdm", "spot", "linear"),
        "url": _ws_url,
        "symbol_map": _symbol_map,
        "trades": _choice("trade", "aggTrade"),
        "reconnect_first_s": _number(above=0, maximum=60),
        "reconnect_max_s": _number(above=0, maximum=3600),
        "ping_interval_s": _number(above=0, maximum=600),
        "silence_timeout_s": _number(above=0, maximum=3600),
        "max_connection_age_s": _number(minimum=60),
        "rest_fallback_after_s": _number(above=0),
        "rest_poll_s": _number(minimum=0.05),
        "rest_url": _http_url,
        "give_up_after_s": _number(minimum=0),
        "market_rules": _choice("exchange", "config"),
        "max_jump_pct": _decimal(above=Decimal(0), maximum=Decimal(100)),
        "jump_confirm_ticks": _number(integer=True, minimum=1, maximum=1000),
        "max_clock_skew_s": _number(above=0),
        "max_tick_gap_s": _number(above=0),
    },
    "paper": {
        "initial_balance": _decimal(above=Decimal(0)),
        "slippage_bps": _decimal(minimum=Decimal(0), maximum=Decimal(1000)),
        "taker_fee": _decimal(minimum=Decimal(0), maximum=Decimal("0.1")),
        "maker_fee": _decimal(minimum=Decimal("-0.01"), maximum=Decimal("0.1")),
        "taker_fee_spot": _decimal(minimum=Decimal(0), maximum=Decimal("0.1")),
        "maker_fee_spot": _decimal(minimum=Decimal("-0.01"), maximum=Decimal("0.1")),
        "fill_model": _choice("full", "traded_volume"),
        "quote_max_age_s": _number(minimum=0, maximum=3600),
        "max_price_age_s": _number(above=0),
    },
    "sniper": {
        "max_positions": _number(integer=True, minimum=1),
        "max_per_coin": _number(integer=True, minimum=1),
        "max_exposure_pct": _decimal(above=Decimal(0), maximum=Decimal(1)),
    },
    "supervisor": {
        "max_restarts": _number(integer=True, minimum=0),
        "within_s": _number(above=0),
        "backoff_s": _seconds_list,
        "poll_interval_s": _number(above=0, maximum=5),
        "ping_interval_s": _number(above=0),
        "ping_timeout_s": _number(above=0),
    },
    "session": {"on_stop": _choice("keep", "flatten"), "settle_timeout_s": _number(minimum=0, maximum=300)},
    "strategist": {"strategies": _names},
    "risk": {
        "sizing": _choice("fixed_usd", "risk_pct"),
        "max_position_usd": _decimal(above=Decimal(0)),
        "risk_per_trade_pct": _decimal(above=Decimal(0), maximum=Decimal("0.5")),
        "max_stop_loss_pct": _decimal(above=Decimal(0), maximum=Decimal("0.99")),
        "max_take_profit_pct": _decimal(above=Decimal(0)),
        "max_trigger_distance_pct": _decimal(above=Decimal(0)),
        "max_daily_loss_pct": _decimal(minimum=Decimal(0), maximum=Decimal(1)),
        "max_drawdown_pct": _decimal(minimum=Decimal(0), maximum=Decimal(1)),
        "mark_report_ms": _number(integer=True, minimum=0, maximum=60_000),
        "replay_trips": _choice("fast", "exact"),
    },
    "journal": {"url": _journal_url},
    "venue": {
        "exchange": _choice(*VENUE_EXCHANGES),
        "market": _choice("usdm", "spot", "linear"),
        "testnet": _boolean,
        "key_env": _env_name,
        "secret_env": _env_name,
        "rest_url": _http_url,
        "ws_url": _ws_url,
        "margin_mode": _choice("isolated", "cross"),
        "default_leverage": _number(integer=True, minimum=1, maximum=125),
        "leverage": _leverage_map,
        "on_unknown": _choice("report", "halt"),
        "reconcile_every_s": _number(minimum=0),
        "recv_window_ms": _number(integer=True, minimum=1, maximum=60_000),
        "timeout_s": _number(above=0, maximum=120),
        "poll_s": _number(minimum=0.1, maximum=60),
        "ping_interval_s": _number(above=0, maximum=600),
        "silence_timeout_s": _number(above=0, maximum=3600),
        "listen_key_keepalive_s": _number(minimum=60, maximum=3300),
    },
}
MARKET_KEYS = ("tick_size", "qty_step", "min_notional", "min_qty")
SECTIONS = (*SCHEMA, "markets")


def _did_you_mean(name: str, candidates: list[str] | tuple[str, ...]) -> str:
    close = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def load_config(path: str | Path) -> Config:
    """Read and validate a TOML file; raises ``ConfigError`` listing every problem."""
    file = Path(path)
    try:
        with file.open("rb") as handle:
            raw = tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError([f"file not found: {file}"], str(file)) from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError([f"not valid TOML: {error}"], str(file)) from None
    return parse_config(raw, source=str(file))


def parse_config(raw: Mapping[str, Any], source: str = "config") -> Config:
    """Validate a mapping shaped like ``config.toml``; raises ``ConfigError``."""
    problems: list[str] = []
    values: dict[str, dict[str, Any]] = {}
    for section, content in raw.items():
        if section not in SECTIONS:
            problems.append(f"{section}: unknown section{_did_you_mean(section, SECTIONS)}")
            continue
        if not isinstance(content, dict):
            problems.append(f"{section}: must be a table, not {content!r}")
            continue
        if section == "markets":
            continue
        schema = SCHEMA[section]
        parsed: dict[str, Any] = {}
        strategy_tables: dict[str, Any] = {}
        for key, value in content.items():
            if section == "strategist" and isinstance(value, dict):
                strategy_tables[key] = dict(value)
                continue
            parser = schema.get(key)
            if parser is None:
                problems.append(f"{section}.{key}: unknown key{_did_you_mean(key, tuple(schema))}")
                continue
            try:
                parsed[key] = parser(value)
            except ValueError as error:
                problems.append(f"{section}.{key}: {error}")
        if strategy_tables:
            parsed["settings"] = strategy_tables
        values[section] = parsed

    markets = _parse_markets(raw.get("markets", {}), problems)
    feed = values.get("feed", {})
    if feed.get("source") == "replay" and not feed.get("files"):
        problems.append("feed.files: the replay source needs at least one file")
    market = feed.get("market")
    if market and feed.get("source") in LIVE_SOURCES:
        allowed = ("usdm", "spot") if feed.get("source") == "binance" else ("linear", "spot")
        if market not in allowed:
            problems.append(f"feed.market: {feed['source']} offers {' or '.join(allowed)}, not {market!r}")
    if feed.get("market_rules") == "exchange" and feed.get("source", "sim") not in LIVE_SOURCES:
        problems.append(f"feed.market_rules: 'exchange' needs a live source ({', '.join(LIVE_SOURCES)}); "
                        f"{feed.get('source', 'sim')} takes them from [markets]")
    _check_paper_fees(values.get("paper", {}), problems)
    _check_live(values.get("engine", {}), feed, values.get("venue", {}), problems)
    _check_strategies(values.get("strategist", {}), feed, problems)
    config: Config | None = None
    if not problems:
        try:
            config = _build(values, markets)
        except ValueError as error:
            problems.append(str(error))
    if problems or config is None:
        raise ConfigError(problems, source)
    return config


def _check_paper_fees(paper: dict[str, Any], problems: list[str]) -> None:
    """A maker rebate larger than the taker fee would pay for trading with oneself."""
    defaults = PaperConfig()
    maker = paper.get("maker_fee", defaults.maker_fee)
    taker = paper.get("taker_fee", defaults.taker_fee)
    pairs = [("maker_fee", maker, "taker_fee", taker),
             ("maker_fee_spot", paper.get("maker_fee_spot", maker), "taker_fee_spot", paper.get("taker_fee_spot", taker))]
    for maker_key, maker_rate, taker_key, taker_rate in pairs:
        if maker_rate + taker_rate < 0:
            problems.append(f"paper.{maker_key}: a rebate of {-maker_rate} is larger than the {taker_key} "
                            f"{taker_rate}: a round trip would earn money")
            return


def _check_live(engine: dict[str, Any], feed: dict[str, Any], venue: dict[str, Any], problems: list[str]) -> None:
    """Live mode trades the venue whose market data it watches: the feed must be that venue's
    live stream, on the same market, with the venue's own market rules."""
    key_env, secret_env = venue.get("key_env", "SNIPER_API_KEY"), venue.get("secret_env", "SNIPER_API_SECRET")
    if key_env == secret_env:
        problems.append(f"venue.secret_env: the same variable as venue.key_env ({key_env}); the key and the "
                        "secret are two values")
    if engine.get("mode", "paper") != "live":
        return
    source = feed.get("source", "sim")
    if source not in LIVE_SOURCES:
        problems.append(f"engine.mode: live trading needs live market data ([feed] source = "
                        f"{' or '.join(repr(name) for name in LIVE_SOURCES)}), not {source!r}")
        return
    if feed.get("market_rules") == "config":
        problems.append("feed.market_rules: live trading sizes and rounds by the venue's own rules; "
                        "'config' is for paper sessions only")
    settings = VenueConfig(**{key: venue[key] for key in ("exchange", "market") if key in venue})
    feed_config = FeedConfig(source=source, market=feed.get("market", ""))
    exchange = settings.exchange_for(feed_config)
    feed_exchange = VenueConfig().exchange_for(feed_config)
    if exchange != feed_exchange:
        problems.append(f"venue.exchange: {exchange!r} is not the venue of the feed ({source}, market "
                        f"{feed_config.market_kind()!r}: {feed_exchange!r})")
        return
    market = settings.market_for(feed_config)
    if exchange == "bybit" and market not in ("linear", "spot"):
        problems.append(f"venue.market: bybit offers linear or spot, not {market!r}")
    elif market != feed_config.market_kind():
        problems.append(f"venue.market: {market!r} is not the feed's market {feed_config.market_kind()!r}")


def _check_strategies(strategist: dict[str, Any], feed: dict[str, Any], problems: list[str]) -> None:
    """Build every configured strategy once, so its settings problems surface now."""
    from state.strategies import StrategyContext, StrategySettingsError, build_strategy

    names = strategist.get("strategies", ())
    settings = strategist.get("settings", {})
    for name in settings:
        if name not in names:
            problems.append(f"strategist.{name}: settings for a strategy that is not in "
                            f"strategist.strategies{_did_you_mean(name, tuple(names))}")
    context = StrategyContext(bar_seconds=feed.get("bar_seconds", 60), symbols=feed.get("symbols", ()))
    for name in names:
        try:
            build_strategy(name, settings.get(name, {}), context)
        except StrategySettingsError as error:
            problems.extend(f"strategist.{name}.{problem}" for problem in error.problems)
        except ValueError as error:
            problems.append(f"strategist.strategies: {error}")


def _parse_markets(raw: Any, problems: list[str]) -> dict[str, MarketRules]:
    markets: dict[str, MarketRules] = {}
    if not isinstance(raw, dict):
        return markets
    for coin, table in raw.items():
        where = f"markets.{coin}"
        try:
            symbol = coin_symbol(coin)
        except ValueError:
            problems.append(f"{where}: {coin!r} is not a coin symbol such as 'BTC'")
            continue
        if not isinstance(table, dict):
            problems.append(f"{where}: must be a table, not {table!r}")
            continue
        overrides: dict[str, Any] = {}
        for key, value in table.items():
            if key not in MARKET_KEYS:
                problems.append(f"{where}.{key}: unknown key{_did_you_mean(key, MARKET_KEYS)}")
                continue
            try:
                overrides[key] = to_decimal(value, key)
            except ValueError:
                problems.append(f"{where}.{key}: must be a number such as \"0.01\", not {value!r}")
        try:
            markets[symbol] = default_rules(symbol, overrides)
        except ValueError as error:
            problems.append(f"{where}.{error}")
    return markets


def _build(values: dict[str, dict[str, Any]], markets: dict[str, MarketRules]) -> Config:
    engine = dict(values.get("engine", {}))
    if "data_dir" in engine:
        engine["data_dir"] = Path(engine["data_dir"])
    feed = values.get("feed", {})
    paper = values.get("paper", {})
    sniper = values.get("sniper", {})
    supervisor = values.get("supervisor", {})
    feed_config = FeedConfig(**feed)
    venue = VenueConfig(**values.get("venue", {}))
    if engine.get("mode") == "live" and venue.testnet:
        feed_config = testnet_market_data(feed_config)
    return Config(
        engine=EngineConfig(**engine),
        feed=feed_config,
        paper=PaperConfig(**paper),
        sniper=PositionLimits(
            max_positions=sniper.get("max_positions", 5),
            max_per_coin=sniper.get("max_per_coin", 1),
            max_exposure_pct=sniper.get("max_exposure_pct", Decimal("0.10")),
        ),
        supervisor=SupervisorConfig(**supervisor),
        session=SessionConfig(**values.get("session", {})),
        strategist=StrategistConfig(**values.get("strategist", {})),
        risk=RiskConfig(**values.get("risk", {})),
        journal=JournalConfig(**values.get("journal", {})),
        venue=venue,
        markets=markets,
    )
