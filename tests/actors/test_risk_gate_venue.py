"""The RiskGate and the venue's alerts (``VenueAlert``, from a live venue's ``VenueNotice``):
a ban stops new entries until it ends or is lifted, exits always pass; keys refused halt trading."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from actors.bus import EXECUTOR, JOURNAL, RISK_GATE, SNIPER
from actors.risk_gate import BAN_KEY, RiskGate, utc_text
from state.messages import (
    ExecuteOrder,
    OrderDenied,
    SetTradingState,
    SubmitOrder,
    TradingStateChanged,
    VenueAlert,
)
from state.order import NoticeKind
from state.types import TradingState
from tests.actors.helpers import ActorRig, exit_request, order_request


@pytest.fixture
def rig(probe_bus_for, tmp_path) -> Iterator[ActorRig]:
    rig = ActorRig(probe_bus_for(RISK_GATE), tmp_path)
    yield rig
    rig.close()


@pytest.fixture
def gate(rig) -> Any:
    ref = rig.start(RiskGate, store=rig.store)
    assert rig.pb.wait_for(TradingStateChanged, SNIPER).state is TradingState.ACTIVE
    return ref


def now_ms(rig: ActorRig) -> int:
    return rig.pb.clock.now_ns() // 1_000_000


def alert(rig: ActorRig, kind: NoticeKind, message: str = "test", until_ms: int | None = None) -> None:
    rig.pb.bus.publish(VenueAlert(ts_init_ns=rig.pb.clock.now_ns(), kind=kind.value, message=message,
                               until_ms=until_ms))


def submit(rig: ActorRig, order: Any) -> None:
    rig.pb.bus.send(SubmitOrder(ts_init_ns=rig.pb.clock.now_ns(), correlation_id="c-1", order=order))


def test_a_ban_denies_new_entries_naming_its_end_and_lets_exits_pass(rig, gate):
    until = now_ms(rig) + 120_000
    alert(rig, NoticeKind.BANNED, "HTTP 418: IP banned", until)

    submit(rig, order_request("p0001-E"))
    denied = rig.pb.wait_for(OrderDenied, JOURNAL)
    submit(rig, exit_request("p0002-X1", position_id="p0002"))
    passed = rig.pb.wait_for(ExecuteOrder, EXECUTOR)

    assert denied.order.client_order_id == "p0001-E"
    assert denied.reason == f"VENUE_BANNED until {utc_text(until)}"
    assert denied.reason.endswith(" UTC")
    assert passed.order.client_order_id == "p0002-X1", "an exit must go out during a ban"
    assert rig.ask("stats")["venue_banned_until_ms"] == until
    assert rig.ask("trading_state") == "ACTIVE", "a ban is no halt"


def test_entries_pass_again_once_the_ban_has_ended_by_the_engine_clock(rig, gate):
    alert(rig, NoticeKind.BANNED, "HTTP 418", now_ms(rig) + 60_000)
    submit(rig, order_request("p0001-E"))
    rig.pb.wait_for(OrderDenied, JOURNAL)

    rig.pb.clock.advance(60)  # exactly at the end: lifted
    submit(rig, order_request("p0002-E", position_id="p0002"))
    passed = rig.pb.wait_for(ExecuteOrder, EXECUTOR)

    assert passed.order.client_order_id == "p0002-E"
    assert rig.ask("stats")["venue_banned"] is False
    assert rig.store.get_setting(BAN_KEY) == ""


def test_entries_pass_again_when_the_venue_says_the_ban_is_lifted(rig, gate):
    alert(rig, NoticeKind.BANNED, "HTTP 429 without an end")  # no until: until lifted
    submit(rig, order_request("p0001-E"))
    denied = rig.pb.wait_for(OrderDenied, JOURNAL)
    rig.pb.clock.advance(3600)
    submit(rig, order_request("p0002-E", position_id="p0002"))
    still = rig.pb.wait_for(OrderDenied, JOURNAL)

    alert(rig, NoticeKind.BAN_LIFTED, "first request after the ban succeeded")
    submit(rig, order_request("p0003-E", position_id="p0003"))
    passed = rig.pb.wait_for(ExecuteOrder, EXECUTOR)

    assert denied.reason == still.reason == "VENUE_BANNED until it is lifted"
    assert passed.order.client_order_id == "p0003-E"
    assert rig.ask("stats")["denied"] == 2


def test_a_ban_survives_a_restart_of_the_gate_until_its_end(rig, gate):
    until = now_ms(rig) + 30_000
    alert(rig, NoticeKind.BANNED, "HTTP 418", until)
    rig.pb.drain()
    rig.stop()
    rig.start(RiskGate, store=rig.store)
    rig.pb.wait_for(TradingStateChanged, SNIPER)

    submit(rig, order_request("p0001-E"))
    denied = rig.pb.wait_for(OrderDenied, JOURNAL)

    assert denied.reason == f"VENUE_BANNED until {utc_text(until)}"


def test_keys_refused_while_running_halt_trading_with_the_venues_message(rig, gate):
    alert(rig, NoticeKind.AUTH_FAILED, "keys refused: binanceusdm -2015 Invalid API-key, IP, or permissions")

    changed = rig.pb.wait_for(TradingStateChanged, SNIPER, where=lambda m: m.state is TradingState.HALTED)
    submit(rig, order_request("p0001-E"))
    denied = rig.pb.wait_for(OrderDenied, JOURNAL)
    submit(rig, exit_request("p0002-X1", position_id="p0002"))
    passed = rig.pb.wait_for(ExecuteOrder, EXECUTOR)

    assert changed.reason == "VENUE_HALTED: keys refused: binanceusdm -2015 Invalid API-key, IP, or permissions"
    assert rig.store.load_trading_state() is TradingState.HALTED
    assert "HALTED" in denied.reason
    assert passed.order.client_order_id == "p0002-X1"


def test_stream_news_changes_nothing(rig, gate):
    alert(rig, NoticeKind.STREAM_DOWN, "user-data stream lost")
    alert(rig, NoticeKind.STREAM_UP, "user-data stream back")
    submit(rig, order_request("p0001-E"))

    assert rig.pb.wait_for(ExecuteOrder, EXECUTOR).order.client_order_id == "p0001-E"
    assert rig.ask("trading_state") == "ACTIVE"


def test_keys_refused_after_a_kill_switch_halt_keep_the_kill_switchs_reason(rig, gate):
    rig.pb.bus.send(SetTradingState(ts_init_ns=rig.pb.clock.now_ns(), state=TradingState.HALTED,
                                    reason="KILL_SWITCH: daily loss"))
    rig.pb.wait_for(TradingStateChanged, SNIPER, where=lambda m: m.state is TradingState.HALTED)
    alert(rig, NoticeKind.AUTH_FAILED, "keys refused")
    rig.pb.drain()

    assert rig.store.load_trading_reason() == "KILL_SWITCH: daily loss"
    assert rig.ask("stats")["reason"] == "KILL_SWITCH: daily loss"
