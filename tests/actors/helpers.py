"""Shared builders for the per-actor threaded tests: a rig that starts the actor under test on a
probe bus and always stops it, plus small message and model builders with sane defaults."""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import pykka

from state.messages import OrderFilled, OrderRequest, Request
from state.models import Position
from state.store import Store
from state.types import OrderIntent, PositionStatus, Side
from tests.conftest import WAIT, ProbeBus


class ActorRig:
    """The actor under test on a ``ProbeBus``: ``start`` it (registered under its role),
    ``ask`` it, and ``close`` stops every actor it started (also a dead one is fine)."""

    def __init__(self, pb: ProbeBus, tmp_path: Path) -> None:
        self.pb = pb
        self._tmp_path = tmp_path
        self._store: Store | None = None
        self.refs: list[pykka.ActorRef[Any]] = []
        self.ref: pykka.ActorRef[Any] | None = None

    @property
    def store(self) -> Store:
        if self._store is None:
            self._store = Store(self._tmp_path / "engine.db")
        return self._store

    def start(self, actor_class: type, *, register: bool = True, clock: Any = None,
              **deps: Any) -> pykka.ActorRef[Any]:
        ref = actor_class.start(bus=self.pb.bus, clock=clock or self.pb.clock, **deps)
        self.refs.append(ref)
        self.ref = ref
        if register:
            self.pb.bus.register(actor_class.role, ref)
        return ref

    def ask(self, name: str, *args: Any, ref: pykka.ActorRef[Any] | None = None) -> Any:
        target = ref or self.ref
        assert target is not None, "no actor started"
        return target.ask(Request(name=name, args=args), timeout=WAIT)

    def stop(self, ref: pykka.ActorRef[Any] | None = None) -> None:
        target = ref or self.ref
        if target is not None and target.is_alive():
            target.stop(block=True, timeout=WAIT)

    def close(self) -> None:
        for ref in self.refs:
            if ref.is_alive():
                ref.stop(block=True, timeout=WAIT)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def order_request(
    client_order_id: str = "p0001-E",
    *,
    position_id: str = "p0001",
    coin: str = "BTC",
    side: Side | str = Side.BUY,
    quantity: Any = "0.01",
    intent: OrderIntent | str = OrderIntent.ENTRY,
    reference_price: Any = "42000",
    reference_ts_ms: int | None = None,
) -> OrderRequest:
    return OrderRequest(
        client_order_id=client_order_id,
        position_id=position_id,
        coin=coin,
        side=side,
        quantity=Decimal(str(quantity)),
        intent=intent,
        reference_price=Decimal(str(reference_price)),
        reference_ts_ms=reference_ts_ms if reference_ts_ms is not None else now_ms(),
    )


def exit_request(client_order_id: str = "p0001-X1", **overrides: Any) -> OrderRequest:
    overrides.setdefault("side", Side.SELL)
    return order_request(client_order_id, intent=OrderIntent.EXIT, **overrides)


def order_filled(order: OrderRequest, *, trade_id: str, ts_init_ns: int = 1,
                 correlation_id: str | None = "c-1", fill_price: Any = None,
                 fee: Any = "0") -> OrderFilled:
    return OrderFilled(
        ts_init_ns=ts_init_ns,
        correlation_id=correlation_id,
        order=order,
        venue_order_id="v-" + order.client_order_id,
        trade_id=trade_id,
        fill_price=Decimal(str(fill_price)) if fill_price is not None else order.reference_price,
        fill_quantity=order.quantity, cumulative_quantity=order.quantity,
        fee=Decimal(str(fee)),
        ts_event_ms=order.reference_ts_ms,
    )


def open_position(
    position_id: str = "p0001",
    *,
    coin: str = "BTC",
    size_usd: Any = "500",
    entry_price: Any = "100",
    quantity: Any = "5",
    condition_id: str = "c-0001",
) -> Position:
    """An OPEN LONG position with its stop below and target above the entry."""
    entry = Decimal(str(entry_price))
    return Position(
        id=position_id,
        coin=coin,
        direction="LONG",
        size_usd=Decimal(str(size_usd)),
        condition_id=condition_id,
        strategy_id="manual",
        reasoning="",
        stop_loss_pct=Decimal("0.02"),
        take_profit_pct=Decimal("0.015"),
        status=PositionStatus.OPEN,
        entry_price=entry,
        quantity=Decimal(str(quantity)),
        stop_loss_price=entry * Decimal("0.98"),
        take_profit_price=entry * Decimal("1.015"),
    )


def closed_position(position_id: str = "p0001", **kwargs: Any) -> Position:
    return replace(open_position(position_id, **kwargs), status=PositionStatus.CLOSED,
                   exit_price=Decimal("101"), realized_pnl=Decimal("5"))


class FailureNotices:
    """The supervisor's side of ``on_failure_notice``: records ``(role, error)`` and lets a test
    wait for the notice. pykka sets ``actor_stopped`` *before* ``on_failure`` runs, so a test
    that checks what ``on_failure`` did must wait for the notice, which comes last."""

    def __init__(self) -> None:
        self.notices: list[tuple[str, BaseException | None]] = []
        self._arrived = threading.Event()

    def __call__(self, role: str, ref: Any, error: BaseException | None) -> None:
        self.notices.append((role, error))
        self._arrived.set()

    def wait(self, timeout: float = WAIT) -> bool:
        return self._arrived.wait(timeout)
