"""state/models.py: TradeCondition validation, the Position state machine and order ids."""

from __future__ import annotations

import dataclasses
import itertools
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest

from state.fsm import InvalidTransition
from state.models import (
    POSITION_TRANSITIONS,
    Position,
    PositionTrigger,
    TradeCondition,
    entry_order_id,
    exit_order_id,
    position_id_for,
)
from state.types import Direction, PositionStatus, TriggerType, client_order_id

CREATED = datetime(2024, 3, 1, 12, 0, 0)


def make_condition(**overrides: Any) -> TradeCondition:
    fields: dict[str, Any] = dict(
        id="c-1",
        coin="SOL",
        direction="LONG",
        trigger_price="142.50",
        trigger_type="ABOVE",
        stop_loss_pct="0.02",
        take_profit_pct="0.015",
        position_size_usd=500,
        created_at=CREATED,
    )
    fields.update(overrides)
    return TradeCondition(**fields)


def make_position(**overrides: Any) -> Position:
    fields: dict[str, Any] = dict(
        id="p-1",
        coin="BTC",
        direction=Direction.LONG,
        size_usd=Decimal("1000"),
        condition_id="c-1",
        strategy_id="manual",
        reasoning="",
        stop_loss_pct=Decimal("0.02"),
        take_profit_pct=Decimal("0.03"),
    )
    fields.update(overrides)
    return Position(**fields)


def open_fields(direction: Direction = Direction.LONG) -> dict[str, Any]:
    if direction is Direction.LONG:
        stop, target = Decimal("41160"), Decimal("43260")
    else:
        stop, target = Decimal("42840"), Decimal("40740")
    return dict(
        direction=direction,
        entry_price=Decimal("42000"),
        quantity=Decimal("0.02380"),
        stop_loss_price=stop,
        take_profit_price=target,
        entry_time=datetime(2024, 3, 1, 12, 5),
    )


# --- TradeCondition: accepted input ---------------------------------------------------------


def test_condition_when_valid_strings_then_parsed_into_enums_and_decimals() -> None:
    condition = make_condition(coin="sol", direction="long", trigger_type="above")
    assert condition.coin == "SOL"
    assert condition.direction is Direction.LONG
    assert condition.trigger_type is TriggerType.ABOVE
    assert condition.trigger_price == Decimal("142.50")
    assert condition.stop_loss_pct == Decimal("0.02")
    assert condition.take_profit_pct == Decimal("0.015")
    assert condition.position_size_usd == Decimal(500)


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("trigger_price", 142, "142"),
        ("trigger_price", 142.5, "142.5"),
        ("trigger_price", "142.50", "142.50"),
        ("stop_loss_pct", 0.02, "0.02"),
        ("take_profit_pct", 0.1, "0.1"),
        ("position_size_usd", 500, "500"),
        ("position_size_usd", "499.99", "499.99"),
    ],
)
def test_condition_when_number_given_as_int_float_or_str_then_held_as_exact_decimal(
    name: str, value: object, expected: str
) -> None:
    held = getattr(make_condition(**{name: value}), name)
    assert type(held) is Decimal
    assert str(held) == expected


def test_condition_when_created_at_omitted_then_defaults_to_now() -> None:
    before = datetime.now()
    condition = TradeCondition(
        coin="BTC",
        direction="LONG",
        trigger_price=1,
        trigger_type="ABOVE",
        stop_loss_pct="0.01",
        take_profit_pct="0.01",
        position_size_usd=10,
    )
    after = datetime.now()
    assert before <= condition.created_at <= after


def test_condition_when_id_omitted_then_each_gets_a_distinct_valid_id() -> None:
    kwargs: dict[str, Any] = dict(
        coin="BTC", direction="LONG", trigger_price=1, trigger_type="ABOVE",
        stop_loss_pct="0.01", take_profit_pct="0.01", position_size_usd=10,
    )
    first, second = TradeCondition(**kwargs), TradeCondition(**kwargs)
    assert first.id != second.id


def test_condition_when_valid_until_after_created_at_then_accepted() -> None:
    condition = make_condition(valid_until=CREATED + timedelta(hours=1))
    assert condition.valid_until == CREATED + timedelta(hours=1)
    assert condition.valid_until_ns is not None


def test_condition_when_valid_until_omitted_then_no_deadline() -> None:
    assert make_condition().valid_until_ns is None


@pytest.mark.parametrize("delta", [timedelta(0), timedelta(seconds=-1), timedelta(days=-1)])
def test_condition_when_valid_until_not_after_created_at_then_value_error(
    delta: timedelta,
) -> None:
    with pytest.raises(ValueError, match=r"^valid_until: must be after created_at"):
        make_condition(valid_until=CREATED + delta)


def test_condition_when_datetimes_aware_then_accepted() -> None:
    created = datetime(2024, 3, 1, 12, tzinfo=timezone.utc)
    condition = make_condition(created_at=created, valid_until=created + timedelta(minutes=5))
    assert condition.created_at.tzinfo is not None


def test_condition_when_datetimes_are_iso_strings_then_parsed() -> None:
    condition = make_condition(
        created_at="2024-03-01T12:00:00+00:00", valid_until="2024-03-01T13:00:00+00:00"
    )
    assert condition.created_at == datetime(2024, 3, 1, 12, tzinfo=timezone.utc)
    assert isinstance(condition.valid_until, datetime)


def test_condition_when_naive_created_and_aware_valid_until_then_compared_as_instants(
    local_utc_plus_3: timezone,
) -> None:
    # 12:00 local (UTC+3) is 09:00 UTC: 10:00 UTC is later although its wall clock is earlier.
    created_local = datetime(2024, 3, 1, 12, 0)
    deadline = datetime(2024, 3, 1, 10, 0, tzinfo=timezone.utc)
    accepted = make_condition(created_at=created_local, valid_until=deadline)
    assert accepted.valid_until_ns == int(deadline.timestamp()) * 10**9
    with pytest.raises(ValueError, match=r"^valid_until"):
        make_condition(
            created_at=created_local, valid_until=datetime(2024, 3, 1, 8, 30, tzinfo=timezone.utc)
        )


def test_condition_when_aware_created_and_naive_valid_until_then_compared_as_instants(
    local_utc_plus_3: timezone,
) -> None:
    created = datetime(2024, 3, 1, 10, 0, tzinfo=timezone.utc)  # 13:00 local
    make_condition(created_at=created, valid_until=datetime(2024, 3, 1, 13, 30))
    with pytest.raises(ValueError, match=r"^valid_until"):
        make_condition(created_at=created, valid_until=datetime(2024, 3, 1, 12, 30))


# --- TradeCondition: every field refused with its name --------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("id", ""),
        ("id", "has space"),
        ("id", "x" * 65),
        ("coin", "SOL/USDT"),
        ("coin", ""),
        ("direction", "UP"),
        ("direction", None),
        ("trigger_type", "CROSS"),
        ("trigger_price", 0),
        ("trigger_price", -1),
        ("trigger_price", "abc"),
        ("trigger_price", float("nan")),
        ("trigger_price", True),
        ("stop_loss_pct", 0),
        ("stop_loss_pct", 1),
        ("stop_loss_pct", "2"),
        ("stop_loss_pct", "-0.02"),
        ("take_profit_pct", 0),
        ("take_profit_pct", -0.1),
        ("take_profit_pct", "Infinity"),
        ("position_size_usd", 0),
        ("position_size_usd", "-500"),
        ("position_size_usd", None),
        ("strategy_id", ""),
        ("strategy_id", "bad id!"),
        ("reasoning", None),
        ("reasoning", "x" * 2001),
        ("created_at", "yesterday"),
        ("created_at", 1_700_000_000),
        ("valid_until", "tomorrow"),
        ("require_cross", "yes"),
        ("require_cross", 1),
    ],
)
def test_condition_when_field_invalid_then_value_error_names_that_field(
    field: str, value: object
) -> None:
    with pytest.raises(ValueError, match=rf"^{field}:"):
        make_condition(**{field: value})


def test_condition_when_short_take_profit_is_100_pct_or_more_then_refused() -> None:
    with pytest.raises(ValueError, match=r"^take_profit_pct: a SHORT"):
        make_condition(direction="SHORT", trigger_type="BELOW", take_profit_pct=1)
    with pytest.raises(ValueError, match=r"^take_profit_pct"):
        make_condition(direction="SHORT", trigger_type="BELOW", take_profit_pct="1.5")


def test_condition_when_long_take_profit_is_100_pct_or_more_then_accepted() -> None:
    assert make_condition(take_profit_pct=2).take_profit_pct == Decimal(2)


def test_condition_when_short_take_profit_below_100_pct_then_accepted() -> None:
    condition = make_condition(direction="SHORT", take_profit_pct="0.99")
    assert condition.take_profit_pct == Decimal("0.99")


@pytest.mark.parametrize("name", ["trigger_price", "coin", "id", "valid_until"])
def test_condition_when_field_assigned_then_frozen_error(name: str) -> None:
    condition = make_condition()
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(condition, name, getattr(condition, name))


def test_condition_when_replaced_with_bad_value_then_validated_again() -> None:
    with pytest.raises(ValueError, match=r"^trigger_price"):
        dataclasses.replace(make_condition(), trigger_price=-3)


# --- Position: the transition table ---------------------------------------------------------

ALLOWED_POSITION_TRANSITIONS = {
    (PositionStatus.PENDING, PositionTrigger.ENTRY_FILLED): PositionStatus.OPEN,
    (PositionStatus.PENDING, PositionTrigger.ENTRY_FAILED): PositionStatus.CLOSED,
    (PositionStatus.PENDING, PositionTrigger.EXIT_SUBMITTED): PositionStatus.CLOSING,  # a resting entry, canceled
    (PositionStatus.CLOSING, PositionTrigger.ENTRY_FAILED): PositionStatus.CLOSED,  # ... having filled nothing
    (PositionStatus.OPEN, PositionTrigger.EXIT_SUBMITTED): PositionStatus.CLOSING,
    (PositionStatus.CLOSING, PositionTrigger.EXIT_FAILED): PositionStatus.OPEN,
    (PositionStatus.CLOSING, PositionTrigger.EXIT_FILLED): PositionStatus.CLOSED,
}
ALL_POSITION_PAIRS = list(itertools.product(PositionStatus, PositionTrigger))
FORBIDDEN_POSITION_PAIRS = [p for p in ALL_POSITION_PAIRS if p not in ALLOWED_POSITION_TRANSITIONS]


def test_position_table_when_listed_then_holds_exactly_the_allowed_transitions() -> None:
    assert dict(POSITION_TRANSITIONS.items()) == ALLOWED_POSITION_TRANSITIONS


@pytest.mark.parametrize(
    ("state", "trigger", "expected"),
    [(s, t, n) for (s, t), n in ALLOWED_POSITION_TRANSITIONS.items()],
    ids=lambda v: getattr(v, "value", v),
)
def test_position_table_when_allowed_trigger_then_next_state(
    state: PositionStatus, trigger: PositionTrigger, expected: PositionStatus
) -> None:
    assert POSITION_TRANSITIONS.allows(state, trigger)
    assert POSITION_TRANSITIONS.next_state(state, trigger) is expected


@pytest.mark.parametrize(
    ("state", "trigger"), FORBIDDEN_POSITION_PAIRS, ids=lambda v: getattr(v, "value", v)
)
def test_position_table_when_trigger_not_allowed_then_invalid_transition(
    state: PositionStatus, trigger: PositionTrigger
) -> None:
    assert not POSITION_TRANSITIONS.allows(state, trigger)
    with pytest.raises(InvalidTransition, match=rf"{state.value} -> {trigger.value}"):
        POSITION_TRANSITIONS.next_state(state, trigger)


def test_invalid_transition_when_raised_then_is_a_value_error() -> None:
    assert issubclass(InvalidTransition, ValueError)


def test_position_transition_when_full_lifecycle_then_pending_open_closing_open_closing_closed() -> None:
    pending = make_position(pending_order_id="p-1-E")
    opened = pending.transition(PositionTrigger.ENTRY_FILLED, **open_fields(), pending_order_id=None)
    assert opened.status is PositionStatus.OPEN
    closing = opened.transition(PositionTrigger.EXIT_SUBMITTED, pending_order_id="p-1-X1")
    assert closing.status is PositionStatus.CLOSING
    reopened = closing.transition(PositionTrigger.EXIT_FAILED, pending_order_id=None)
    assert reopened.status is PositionStatus.OPEN
    closed = reopened.transition(PositionTrigger.EXIT_SUBMITTED).transition(
        PositionTrigger.EXIT_FILLED, exit_price=Decimal("43260"), realized_pnl=Decimal("30")
    )
    assert closed.status is PositionStatus.CLOSED
    assert not closed.is_active
    assert pending.status is PositionStatus.PENDING  # snapshots are never mutated


def test_position_transition_when_entry_fails_then_closed_without_entry() -> None:
    closed = make_position().transition(PositionTrigger.ENTRY_FAILED, exit_reason="ENTRY_REJECTED")
    assert closed.status is PositionStatus.CLOSED
    assert closed.entry_price is None


@pytest.mark.parametrize("trigger", list(PositionTrigger))
def test_position_transition_when_closed_then_every_trigger_is_invalid(
    trigger: PositionTrigger,
) -> None:
    closed = make_position().transition(PositionTrigger.ENTRY_FAILED)
    with pytest.raises(InvalidTransition):
        closed.transition(trigger)


def test_position_transition_when_entry_filled_without_entry_price_then_value_error() -> None:
    with pytest.raises(ValueError, match=r"^entry_price"):
        make_position().transition(PositionTrigger.ENTRY_FILLED)


def test_position_status_when_assigned_directly_then_frozen_error() -> None:
    position = make_position()
    with pytest.raises(dataclasses.FrozenInstanceError):
        position.status = PositionStatus.OPEN  # type: ignore[misc]


# --- Position: exit levels on the right side ------------------------------------------------


@pytest.mark.parametrize("direction", [Direction.LONG, Direction.SHORT])
def test_position_when_open_with_levels_on_the_right_side_then_accepted(
    direction: Direction,
) -> None:
    position = make_position(status="OPEN", **open_fields(direction))
    assert position.status is PositionStatus.OPEN
    assert position.exposure_usd == Decimal("42000") * Decimal("0.02380")


@pytest.mark.parametrize(
    ("direction", "stop"),
    [
        (Direction.LONG, "42000"),
        (Direction.LONG, "42500"),
        (Direction.SHORT, "42000"),
        (Direction.SHORT, "41000"),
    ],
)
@pytest.mark.parametrize("status", [PositionStatus.OPEN, PositionStatus.CLOSING])
def test_position_when_stop_on_or_past_the_wrong_side_of_entry_then_value_error(
    direction: Direction, stop: str, status: PositionStatus
) -> None:
    fields = open_fields(direction) | {"stop_loss_price": Decimal(stop)}
    with pytest.raises(ValueError, match=r"^stop_loss_price"):
        make_position(status=status, **fields)


@pytest.mark.parametrize(
    ("direction", "target"),
    [(Direction.LONG, "42000"), (Direction.LONG, "41000"), (Direction.SHORT, "43000")],
)
def test_position_when_target_on_the_wrong_side_of_entry_then_value_error(
    direction: Direction, target: str
) -> None:
    fields = open_fields(direction) | {"take_profit_price": Decimal(target)}
    with pytest.raises(ValueError, match=r"^take_profit_price"):
        make_position(status="OPEN", **fields)


def test_position_when_open_with_zero_quantity_then_value_error() -> None:
    with pytest.raises(ValueError, match=r"^entry_price: an OPEN position"):
        make_position(status="OPEN", **(open_fields() | {"quantity": 0}))


@pytest.mark.parametrize(
    ("field", "value"),
    [("size_usd", 0), ("coin", "BTC/USDT"), ("direction", "FLAT"), ("status", "GONE"),
     ("entry_price", -1), ("quantity", -1), ("fees_paid", "x")],
)
def test_position_when_field_invalid_then_value_error_names_that_field(
    field: str, value: object
) -> None:
    with pytest.raises(ValueError, match=rf"^{field}:"):
        make_position(**{field: value})


def test_position_exposure_when_pending_then_requested_size() -> None:
    assert make_position(size_usd=750).exposure_usd == Decimal(750)


# --- ids ---------------------------------------------------------------------------------------


def test_position_id_for_when_same_condition_id_then_same_position_id() -> None:
    assert position_id_for("c-abc") == position_id_for("c-abc")


def test_position_id_for_when_different_condition_ids_then_different_position_ids() -> None:
    ids = {position_id_for(f"c-{n}") for n in range(1000)}
    assert len(ids) == 1000


@pytest.mark.parametrize(
    "condition_id",
    ["c", "c-0123456789abcdef", "strategy.alpha:BTC:2024-03-01T12:00:00", "x" * 64,
     "A" * 63 + ":"],
)
def test_order_ids_when_condition_id_up_to_64_chars_then_valid_client_order_ids(
    condition_id: str,
) -> None:
    position_id = position_id_for(condition_id)
    assert len(position_id) <= 20
    assert client_order_id(entry_order_id(position_id)) == entry_order_id(position_id)
    for attempt in (1, 9, 10, 999):
        assert client_order_id(exit_order_id(position_id, attempt))


def test_order_ids_when_built_then_entry_and_each_exit_attempt_distinct() -> None:
    position_id = position_id_for("c-1")
    ids = {entry_order_id(position_id)} | {exit_order_id(position_id, n) for n in range(1, 50)}
    assert len(ids) == 50
