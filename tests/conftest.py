"""Shared fixtures: engines on temporary data dirs, a probe bus for per-actor tests, log capture,
and an autouse guard that fails a test which leaves actors running.

No fixture sleeps to synchronize: waits are on events and conditions, each with a timeout.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pykka
import pytest
from loguru import logger

from actors.bus import ROLES, Bus
from adapters.clock import FakeClock
from adapters.console.logs import configure_logging
from run import Engine, build_engine
from state.models import TradeCondition

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
WAIT = 5.0  # seconds: the bound on every wait in the suite


@pytest.fixture(scope="session", autouse=True)
def _quiet_logging() -> None:
    configure_logging("WARNING", None)


@pytest.fixture(autouse=True)
def _no_leaked_actors() -> Iterator[None]:
    yield
    leaked = pykka.ActorRegistry.get_all()
    if leaked:
        pykka.ActorRegistry.stop_all(block=True, timeout=5)
        pytest.fail(f"test left actors running: {[str(ref) for ref in leaked]}")


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data not present at {SHARED_DATA}")
    return SHARED_DATA


# --- log capture ------------------------------------------------------------------------------

class LogCapture:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)

    def write(self, message: Any) -> None:
        with self._changed:
            self.lines.append(str(message).rstrip())
            self._changed.notify_all()

    def text(self) -> str:
        with self._lock:
            return "\n".join(self.lines)

    def wait_for(self, needle: str, timeout: float = WAIT) -> bool:
        deadline = time.monotonic() + timeout
        with self._changed:
            while not any(needle in line for line in self.lines):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._changed.wait(remaining)
            return True


@pytest.fixture
def logs() -> Iterator[LogCapture]:
    capture = LogCapture()
    sink = logger.add(capture.write, level="DEBUG", format="{level} {extra[actor]} {message}")
    yield capture
    logger.remove(sink)


# --- engines ----------------------------------------------------------------------------------

def manual_config(**sections: dict[str, Any]) -> dict[str, Any]:
    """A config for the manual feed with no slippage (exact numbers in assertions)."""
    config: dict[str, Any] = {
        "engine": {"sweep_interval_s": 0.2},
        "feed": {"source": "manual", "symbols": ["BTC", "ETH", "SOL"]},
        "paper": {"initial_balance": 10000, "slippage_bps": 0, "taker_fee": 0.0005},
        "supervisor": {"backoff_s": [0.0, 0.05, 0.1], "poll_interval_s": 0.05},
    }
    for name, values in sections.items():
        config.setdefault(name, {}).update(values)
    return config


@pytest.fixture
def make_engine(tmp_path: Path) -> Iterator[Callable[..., Engine]]:
    engines: list[Engine] = []

    def factory(data_dir: Path | None = None, start: bool = True, **sections: dict[str, Any]) -> Engine:
        engine = build_engine(manual_config(**sections), data_dir=data_dir or tmp_path / "data")
        engines.append(engine)
        return engine.start() if start else engine

    yield factory
    for engine in engines:
        engine.stop()


@pytest.fixture
def engine(make_engine: Callable[..., Engine]) -> Engine:
    return make_engine()


def condition(
    coin: str = "BTC",
    direction: str = "LONG",
    trigger: Any = 42000,
    trigger_type: str | None = None,
    stop: Any = "0.02",
    target: Any = "0.015",
    size: Any = 500,
    valid_for: timedelta | None = timedelta(hours=1),
    **extra: Any,
) -> TradeCondition:
    """A condition with the usual defaults: LONG fires ABOVE, SHORT fires BELOW."""
    if trigger_type is None:
        trigger_type = "ABOVE" if direction == "LONG" else "BELOW"
    return TradeCondition(
        coin=coin,
        direction=direction,
        trigger_price=trigger,
        trigger_type=trigger_type,
        stop_loss_pct=stop,
        take_profit_pct=target,
        position_size_usd=size,
        valid_until=None if valid_for is None else datetime.now() + valid_for,
        **extra,
    )


class TickClockStamps:
    """Increasing millisecond timestamps starting at the current wall time."""

    def __init__(self) -> None:
        self._now = time.time_ns() // 1_000_000

    def __call__(self, step_ms: int = 1) -> int:
        self._now += step_ms
        return self._now


@pytest.fixture
def ts() -> TickClockStamps:
    return TickClockStamps()


# --- per-actor tests: a real bus whose other roles are probes -----------------------------------

class Probe(pykka.ThreadingActor):
    """Stands in for a role: records every message it receives."""

    def __init__(self, role: str, bus: Bus, inbox: queue.Queue[tuple[str, Any]]) -> None:
        super().__init__()
        self.role = role
        self.bus = bus
        self.inbox = inbox

    def on_receive(self, message: Any) -> Any:
        if type(message).__name__ == "Request":
            return self.role
        self.inbox.put((self.role, message))
        self.bus.message_done(self.role)
        return None


@dataclass
class ProbeBus:
    bus: Bus
    inbox: queue.Queue[tuple[str, Any]]
    clock: FakeClock
    seen: list[tuple[str, Any]]

    def wait_for(self, kind: type, role: str | None = None, timeout: float = WAIT,
                 where: Callable[[Any], bool] | None = None) -> Any:
        """The first message of ``kind`` (to ``role``) not yet returned; fails after timeout."""
        deadline = time.monotonic() + timeout
        for index, (to, message) in enumerate(self.seen):
            if isinstance(message, kind) and (role is None or to == role) and (where is None or where(message)):
                del self.seen[index]
                return message
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no {kind.__name__} for {role or 'any role'} within {timeout}s; "
                                     f"seen: {[type(m).__name__ for _, m in self.seen]}")
            try:
                to, message = self.inbox.get(timeout=remaining)
            except queue.Empty:
                continue
            if isinstance(message, kind) and (role is None or to == role) and (where is None or where(message)):
                return message
            self.seen.append((to, message))

    def drain(self, timeout: float = WAIT) -> list[tuple[str, Any]]:
        assert self.bus.wait_idle(timeout), f"bus not idle: {self.bus.outstanding()}"
        while True:
            try:
                self.seen.append(self.inbox.get_nowait())
            except queue.Empty:
                return list(self.seen)

    def messages(self, kind: type, role: str | None = None) -> list[Any]:
        self.drain()
        return [m for to, m in self.seen if isinstance(m, kind) and (role is None or to == role)]


@pytest.fixture
def probe_bus_for() -> Iterator[Callable[[str], ProbeBus]]:
    """``probe_bus_for("sniper")``: a bus with every role but the sniper played by a probe."""
    refs: list[pykka.ActorRef[Any]] = []

    def factory(role_under_test: str) -> ProbeBus:
        bus = Bus(ROLES)
        inbox: queue.Queue[tuple[str, Any]] = queue.Queue()
        for role in ROLES:
            if role != role_under_test:
                ref = Probe.start(role, bus, inbox)
                refs.append(ref)
                bus.register(role, ref)
        return ProbeBus(bus=bus, inbox=inbox, clock=FakeClock(time.time_ns()), seen=[])

    yield factory
    for ref in refs:
        ref.stop(block=True, timeout=WAIT)


def dec(value: Any) -> Decimal:
    return Decimal(str(value))
