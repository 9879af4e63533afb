"""adapters/console/status.py: the command line's status line, formatted from plain answers
(no engine, no thread, no clock)."""

from __future__ import annotations

from decimal import Decimal

from adapters.console.status import status_line
from state.models import SniperSnapshot
from tests.actors.helpers import open_position

D = Decimal


def snapshot(**overrides) -> SniperSnapshot:
    values = {"conditions": (), "positions": (open_position(),), "balance": D("9999.75"),
              "realized_pnl": D("-1.234")}
    values.update(overrides)
    return SniperSnapshot(**values)


def test_the_first_line_counts_its_rate_from_the_start_and_later_ones_from_the_previous_line():
    rates: dict[str, float] = {}
    feed = {"ticks": 100, "source": {"percent": 12.345}, "top_of_book": {"BTC": {"bid": "99", "ask": "101"}}}
    prices = {"BTC": (D("100"), 1), "ETH": (D("3000.5"), 1)}

    first = status_line(snapshot=snapshot(), feed=feed, trading="ACTIVE", prices=prices, source="replay",
                        simulated=False, now=20.0, started_at=10.0, previous=rates)
    second = status_line(snapshot=snapshot(), feed={**feed, "ticks": 150, "finished": True}, trading="REDUCING",
                         prices=prices, source="replay", simulated=False, now=25.0, started_at=10.0, previous=rates)

    assert first == ("feed replay 12.3% | ticks 100 (10.0/s) | armed 0 | open 1 | balance 9999.75 | "
                     "realized -1.23 | BTC 100 (99/101), ETH 3000.5")
    assert second.startswith("feed replay 12.3% finished | ticks 150 (10.0/s) |")
    assert "| realized -1.23 | trading REDUCING | BTC 100" in second
    assert rates == {"at": 25.0, "ticks": 150.0}


def test_a_live_source_shows_its_connection_bad_frames_rest_fallback_and_stale_coins():
    feed = {"ticks": 5, "stale": ["ETH"],
            "source": {"state": "CONNECTED", "reconnects": 2, "bad_frames": {"total": 3},
                       "rest_fallback": {"active": True}}}

    line = status_line(snapshot=snapshot(positions=()), feed=feed, trading="ACTIVE", prices={}, source="binance",
                       simulated=True, now=1.0, started_at=None)

    assert line.startswith("feed binance (SIMULATED market) CONNECTED, 2 reconnect(s), 3 bad frame(s), "
                           "REST fallback | ticks 5 (")
    assert "| open 0 |" in line and line.endswith("| STALE ETH (no new entries) | ")


# --- a live venue -----------------------------------------------------------------------------------

from state.account import StreamState, VenueStartup, VenueStatus  # noqa: E402

from adapters.console.status import live_banner, venue_text  # noqa: E402


def test_a_live_venue_leads_the_line_with_its_account_kind_stream_ban_and_halt():
    venue = VenueStatus(name="binanceusdm", live=True, exchange="binanceusdm", market="usdm", testnet=True,
                        stream=StreamState.UP)
    line = status_line(snapshot=snapshot(), feed={"ticks": 0}, trading="ACTIVE", prices={}, source="binance",
                       simulated=False, now=1.0, started_at=0.0, venue=venue)
    assert line.startswith("venue binanceusdm usdm TESTNET stream up | feed binance | ")

    troubled = VenueStatus(name="binanceusdm", live=True, exchange="binanceusdm", market="usdm", testnet=False,
                           stream=StreamState.DOWN, polling=2, banned_until_ms=1_700_000_000_000,
                           halted="keys refused")
    assert venue_text(troubled) == ("venue binanceusdm usdm LIVE (REAL MONEY) stream down (polling 2 order(s)) | "
                                    "BANNED until 22:13:20 UTC (no new entries) | HALTED: keys refused")
    assert "BANNED" not in venue_text(troubled, now_ms=1_700_000_000_000)


def test_a_paper_venue_changes_nothing_on_the_line():
    paper = VenueStatus(name="paper", live=False)
    line = status_line(snapshot=snapshot(), feed={"ticks": 0}, trading="ACTIVE", prices={}, source="sim",
                       simulated=True, now=1.0, started_at=0.0, venue=paper)
    assert line.startswith("feed sim (SIMULATED market) |")


def test_the_banner_makes_real_money_unmistakable_and_names_only_the_variables():
    startup = VenueStartup(exchange="binanceusdm", market="usdm", testnet=False, server_time_offset_ms=-12,
                           position_mode="one-way", balances={"USDT": Decimal("1234.5")}, leverage={"BTC": 2},
                           margin_mode={"BTC": "isolated"}, notes=("hedge mode off",))
    banner = live_banner(startup, key_env="SNIPER_API_KEY", secret_env="SNIPER_API_SECRET")
    lines = banner.splitlines()
    assert lines[0] == lines[-1] == "!" * 72
    assert "LIVE TRADING WITH REAL MONEY on binanceusdm usdm" in lines[1]
    assert "leverage BTC 2x isolated" in banner and "balances USDT 1234.5" in banner and "hedge mode off" in banner
    assert "keys from $SNIPER_API_KEY / $SNIPER_API_SECRET" in banner

    testnet = live_banner(VenueStartup(exchange="bybit", market="linear", testnet=True, server_time_offset_ms=0,
                                       position_mode="one-way"), key_env="K", secret_env="S")
    assert "TESTNET session on bybit linear" in testnet and "REAL MONEY" not in testnet
