"""The RiskGate's coins blocked by the reconciliation with a live venue (``BlockCoins``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from actors.bus import EXECUTOR, RISK_GATE, SNIPER
from actors.risk_gate import BLOCKED_KEY, RiskGate
from state.messages import BlockCoins, ExecuteOrder, OrderDenied, OrderRequest, SubmitOrder, TradingStateChanged
from tests.actors.helpers import ActorRig, exit_request, order_request

WHY = "SIZE_MISMATCH: ETH: the engine holds long 1, the venue long 0.4"


@pytest.fixture
def rig(probe_bus_for, tmp_path) -> Iterator[ActorRig]:
    rig = ActorRig(probe_bus_for(RISK_GATE), tmp_path)
    yield rig
    rig.close()


@pytest.fixture
def gate(rig) -> Any:
    ref = rig.start(RiskGate, store=rig.store)
    rig.pb.wait_for(TradingStateChanged, SNIPER)
    return ref


def submit(rig: ActorRig, order: OrderRequest) -> None:
    rig.pb.bus.send(SubmitOrder(ts_init_ns=rig.pb.clock.now_ns(), correlation_id="c-1", order=order))


def block(rig: ActorRig, coins: dict[str, str], replace: bool = True) -> None:
    rig.pb.bus.send(BlockCoins(ts_init_ns=rig.pb.clock.now_ns(), coins=coins, replace=replace))


def test_a_blocked_coin_takes_no_entry_and_says_why(rig, gate):
    block(rig, {"ETH": WHY})
    submit(rig, order_request("p0001-E", coin="ETH"))

    denied = rig.pb.wait_for(OrderDenied, SNIPER)

    assert denied.order.client_order_id == "p0001-E"
    assert denied.reason == f"RECONCILE_MISMATCH: {WHY}"
    assert rig.pb.messages(ExecuteOrder) == []
    assert rig.ask("blocked_coins") == {"ETH": WHY}


def test_exits_and_other_coins_pass_a_block(rig, gate):
    block(rig, {"ETH": WHY})
    submit(rig, exit_request("p0002-X1", coin="ETH"))
    submit(rig, order_request("p0003-E", coin="BTC"))

    assert rig.pb.wait_for(ExecuteOrder, EXECUTOR).order.client_order_id == "p0002-X1"
    assert rig.pb.wait_for(ExecuteOrder, EXECUTOR).order.client_order_id == "p0003-E"
    assert rig.pb.messages(OrderDenied) == []


def test_blocks_are_persisted_so_a_restarted_gate_keeps_them(rig, gate):
    block(rig, {"ETH": WHY})
    assert rig.ask("blocked_coins") == {"ETH": WHY}  # handled (asks queue behind the command)
    rig.stop(gate)

    successor = rig.start(RiskGate, store=rig.store)
    rig.pb.wait_for(TradingStateChanged, SNIPER)
    submit(rig, order_request("p0004-E", coin="ETH"))

    assert rig.pb.wait_for(OrderDenied, SNIPER).reason == f"RECONCILE_MISMATCH: {WHY}"
    assert rig.ask("blocked_coins", ref=successor) == {"ETH": WHY}


def test_a_replacing_block_frees_the_coins_it_leaves_out_and_an_adding_one_keeps_them(rig, gate):
    block(rig, {"ETH": WHY, "SOL": "UNKNOWN_POSITION: SOL"})
    block(rig, {"SOL": "UNKNOWN_POSITION: SOL"})
    assert rig.ask("blocked_coins") == {"SOL": "UNKNOWN_POSITION: SOL"}
    block(rig, {"ETH": WHY}, replace=False)
    assert rig.ask("blocked_coins") == {"SOL": "UNKNOWN_POSITION: SOL", "ETH": WHY}

    submit(rig, order_request("p0005-E", coin="BTC"))
    assert rig.pb.wait_for(ExecuteOrder, EXECUTOR).order.client_order_id == "p0005-E"


def test_an_operator_unblocks_a_coin_and_unblocking_a_free_one_is_a_value_error(rig, gate):
    block(rig, {"ETH": WHY})

    assert rig.ask("unblock_coin", "ETH", "checked the account") == {}
    submit(rig, order_request("p0006-E", coin="ETH"))
    assert rig.pb.wait_for(ExecuteOrder, EXECUTOR).order.client_order_id == "p0006-E"
    with pytest.raises(ValueError, match="not blocked"):
        rig.ask("unblock_coin", "ETH")
    assert rig.store.get_setting(BLOCKED_KEY) == "{}"


@pytest.mark.parametrize("text", ["not json", "[1, 2]", '{"ETH": 3}'])
def test_a_damaged_stored_block_is_an_error_naming_the_setting(text):
    from actors.risk_gate import _load_blocked

    with pytest.raises(ValueError, match=BLOCKED_KEY):
        _load_blocked(text)
    assert _load_blocked(None) == {}
