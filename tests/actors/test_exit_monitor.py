"""The ExitMonitor as a threaded actor: every other role is a probe on a real bus."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from decimal import Decimal
from typing import Any

import pytest

from actors.bus import EXIT_MONITOR
from actors.exit_monitor import ExitMonitor
from state.messages import AdjustStop, ClosePosition, PositionChanged, PositionClosed, PositionOpened
from tests.actors.helpers import ActorRig, closed_position, open_position


@pytest.fixture
def rig(probe_bus_for, tmp_path) -> Iterator[ActorRig]:
    rig = ActorRig(probe_bus_for(EXIT_MONITOR), tmp_path)
    yield rig
    rig.close()


@pytest.fixture
def monitor(rig) -> Any:
    return rig.start(ExitMonitor)


def opened(rig: ActorRig, position_id: str, **kwargs: Any) -> None:
    position = open_position(position_id, **kwargs)
    rig.pb.bus.publish(PositionOpened(ts_init_ns=rig.pb.clock.now_ns(), correlation_id=position.condition_id,
                                      position=position))


def closed(rig: ActorRig, position_id: str) -> None:
    rig.pb.bus.publish(PositionClosed(ts_init_ns=rig.pb.clock.now_ns(), position=closed_position(position_id),
                                      balance=Decimal("10005")))


def test_answers_ping_with_its_role(rig, monitor):
    assert rig.ask("ping") == EXIT_MONITOR


def test_watches_nothing_before_any_position_event(rig, monitor):
    assert rig.ask("watched") == ()


def test_position_opened_events_add_positions_to_the_read_model_in_order(rig, monitor):
    opened(rig, "p0001")
    opened(rig, "p0002", coin="ETH")

    assert rig.ask("watched") == ("p0001", "p0002")


def test_position_closed_removes_only_that_position_from_the_read_model(rig, monitor):
    opened(rig, "p0001")
    opened(rig, "p0002")
    closed(rig, "p0001")

    assert rig.ask("watched") == ("p0002",)


def test_position_changed_keeps_the_position_watched_and_a_close_of_an_unknown_one_is_harmless(rig, monitor):
    opened(rig, "p0001")
    moved = replace(open_position("p0001"), stop_loss_price=Decimal("99"))
    rig.pb.bus.publish(PositionChanged(ts_init_ns=rig.pb.clock.now_ns(), position=moved, change="stop moved"))
    closed(rig, "p0404")

    assert rig.ask("watched") == ("p0001",)
    assert monitor.is_alive()


def test_position_events_alone_never_make_it_command_the_sniper(rig, monitor):
    opened(rig, "p0001")
    closed(rig, "p0001")

    assert rig.pb.messages(ClosePosition) == [] and rig.pb.messages(AdjustStop) == []
