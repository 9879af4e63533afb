"""Every numeric and datetime field of a TradeCondition refuses what cannot be represented, with a
``ValueError`` that names the field (never ``InvalidOperation``, ``OverflowError`` or a message
about year 0)."""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from state.models import TradeCondition
from state.types import to_decimal

BASE = dict(coin="BTC", direction="LONG", trigger_price=42000, trigger_type="ABOVE", stop_loss_pct="0.02",
            take_profit_pct="0.015", position_size_usd=500)
NUMERIC = ("trigger_price", "stop_loss_pct", "take_profit_pct", "position_size_usd")
UNREPRESENTABLE = [
    pytest.param(1e308, id="1e308"),
    pytest.param("1e1000", id="str-1e1000"),
    pytest.param(10**400, id="10**400"),
    pytest.param(Decimal("1e1000"), id="Decimal-1e1000"),
    pytest.param(math.nan, id="nan"),
    pytest.param("NaN", id="str-nan"),
    pytest.param(Decimal("sNaN"), id="sNaN"),
    pytest.param(math.inf, id="inf"),
    pytest.param("-Infinity", id="str-minus-inf"),
    pytest.param(True, id="bool"),
    pytest.param(None, id="None"),
    pytest.param([42000], id="list"),
    pytest.param(b"42000", id="bytes"),
    pytest.param("4" * 5000, id="5000-digit-text"),
]


@pytest.mark.parametrize("field", NUMERIC)
@pytest.mark.parametrize("value", UNREPRESENTABLE)
def test_every_numeric_field_refuses_what_cannot_be_represented_naming_the_field(field, value):
    with pytest.raises(ValueError, match=rf"^{field}: "):
        TradeCondition(**{**BASE, field: value})


@pytest.mark.parametrize(("field", "value"), [
    ("trigger_price", 10**12 + 1), ("position_size_usd", "1e13"), ("take_profit_pct", 101),
    ("trigger_price", 1e17),
])
def test_absurd_but_finite_values_are_refused_naming_the_field(field, value):
    with pytest.raises(ValueError, match=rf"^{field}: "):
        TradeCondition(**{**BASE, field: value})


def test_a_huge_integer_is_not_printed_in_full():
    with pytest.raises(ValueError) as raised:
        to_decimal(10**400, "position_size_usd")
    assert "an integer of 401 digits" in str(raised.value)


@pytest.mark.parametrize("field", ["valid_until", "created_at"])
@pytest.mark.parametrize("value", [
    pytest.param(datetime.min, id="min"),
    pytest.param(datetime.max, id="max"),
    pytest.param(datetime.min.replace(tzinfo=timezone.utc), id="min-aware"),
    pytest.param(datetime.max.replace(tzinfo=timezone.utc), id="max-aware"),
    pytest.param("0001-01-01T00:00:00", id="iso-year-1"),
    pytest.param(datetime(1969, 12, 31), id="before-1970"),
    pytest.param(42, id="int"),
    pytest.param("tomorrow", id="text"),
])
def test_extreme_or_wrong_datetimes_name_their_field(field, value):
    with pytest.raises(ValueError, match=rf"^{field}: "):
        TradeCondition(**{**BASE, field: value})


def test_naive_and_aware_datetimes_compare_by_the_instant():
    now = datetime.now()
    aware_later = (now + timedelta(hours=1)).astimezone(timezone.utc)
    condition = TradeCondition(**BASE, created_at=now, valid_until=aware_later)
    assert condition.valid_until == aware_later
    with pytest.raises(ValueError, match="^valid_until: must be after created_at"):
        TradeCondition(**BASE, created_at=now, valid_until=(now - timedelta(seconds=1)).astimezone(timezone.utc))
