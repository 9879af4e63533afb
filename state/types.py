"""Value types shared by the whole domain: enums, identifiers and number/time parsing.

Everything here is pure standard library. Parsing functions raise ``ValueError`` with a
message that names the field and the offending value, so a bad condition typed at the REPL
or sent by a strategy says exactly what was wrong.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Any


class Direction(StrEnum):
    LONG = "LONG"
    SHORT = "SHORT"


class TriggerType(StrEnum):
    ABOVE = "ABOVE"
    BELOW = "BELOW"


class Side(StrEnum):
    BUY = "BUY"
    SELL = "SELL"


class OrderIntent(StrEnum):
    """Why an order exists: it opens a position or it reduces one."""

    ENTRY = "ENTRY"
    EXIT = "EXIT"


class PositionStatus(StrEnum):
    PENDING = "PENDING"
    OPEN = "OPEN"
    CLOSING = "CLOSING"
    CLOSED = "CLOSED"


class OrderStatus(StrEnum):
    """Lifecycle of an order record kept by the Executor."""

    SUBMITTING = "SUBMITTING"  # intent recorded, venue outcome not yet known
    ACCEPTED = "ACCEPTED"
    FILLED = "FILLED"
    REJECTED = "REJECTED"
    CANCELED = "CANCELED"


class TradingState(StrEnum):
    ACTIVE = "ACTIVE"
    REDUCING = "REDUCING"  # only orders that reduce a position pass
    HALTED = "HALTED"  # no entries; exits still pass


class ExitReason(StrEnum):
    STOP_LOSS = "STOP_LOSS"
    TAKE_PROFIT = "TAKE_PROFIT"
    MANUAL = "MANUAL"
    TIME_STOP = "TIME_STOP"
    END_OF_DAY = "END_OF_DAY"
    TRAILING_STOP = "TRAILING_STOP"
    FLATTEN = "FLATTEN"
    ENTRY_REJECTED = "ENTRY_REJECTED"


_CLIENT_ORDER_ID = re.compile(r"^[A-Za-z0-9_-]{1,36}$")
_COIN = re.compile(r"^[A-Z0-9]{1,20}$")
_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")


def parse_enum(enum_type: type[StrEnum], value: Any, field: str) -> Any:
    """Accept an enum member or its name in any case; anything else is a ``ValueError``."""
    if isinstance(value, enum_type):
        return value
    if isinstance(value, str):
        try:
            return enum_type(value.strip().upper())
        except ValueError:
            pass
    allowed = "|".join(member.value for member in enum_type)
    raise ValueError(f"{field}: must be one of {allowed}, got {value!r}")


def to_decimal(value: Any, field: str) -> Decimal:
    """Convert int, float, str or Decimal to a finite ``Decimal``.

    Floats go through their shortest ``repr`` so ``0.1`` becomes ``Decimal("0.1")``,
    not the binary expansion. Booleans are refused: ``True`` is not a price.
    """
    if isinstance(value, bool):
        raise ValueError(f"{field}: expected a number, got {value!r}")
    if isinstance(value, Decimal):
        number = value
    elif isinstance(value, int):
        number = Decimal(value)
    elif isinstance(value, float):
        number = Decimal(repr(value))
    elif isinstance(value, str):
        try:
            number = Decimal(value.strip())
        except InvalidOperation:
            raise ValueError(f"{field}: not a number: {value!r}") from None
    else:
        raise ValueError(f"{field}: expected a number, got {type(value).__name__} {value!r}")
    if not number.is_finite():
        raise ValueError(f"{field}: must be a finite number, got {value!r}")
    return number


def positive_decimal(value: Any, field: str) -> Decimal:
    number = to_decimal(value, field)
    if number <= 0:
        raise ValueError(f"{field}: must be greater than 0, got {value!r}")
    return number


def non_negative_decimal(value: Any, field: str) -> Decimal:
    number = to_decimal(value, field)
    if number < 0:
        raise ValueError(f"{field}: must not be negative, got {value!r}")
    return number


def fraction(value: Any, field: str) -> Decimal:
    """A share strictly between 0 and 1, e.g. ``0.02`` for 2 %."""
    number = to_decimal(value, field)
    if not Decimal(0) < number < Decimal(1):
        raise ValueError(
            f"{field}: must be a fraction between 0 and 1 (0.02 means 2 %), got {value!r}"
        )
    return number


def coin_symbol(value: Any, field: str = "coin") -> str:
    if not isinstance(value, str) or not _COIN.match(value.strip().upper()):
        raise ValueError(f"{field}: must be a coin symbol such as 'BTC', got {value!r}")
    return value.strip().upper()


def identifier(value: Any, field: str) -> str:
    if not isinstance(value, str) or not _ID.match(value):
        raise ValueError(
            f"{field}: must be 1-64 characters of letters, digits, '_', '-', '.' or ':', "
            f"got {value!r}"
        )
    return value


def client_order_id(value: Any, field: str = "client_order_id") -> str:
    if not isinstance(value, str) or not _CLIENT_ORDER_ID.match(value):
        raise ValueError(f"{field}: must be 1-36 characters of [A-Za-z0-9_-], got {value!r}")
    return value


def datetime_value(value: Any, field: str) -> datetime:
    """Accept a datetime (naive = local time, or aware) or an ISO-8601 string."""
    if isinstance(value, datetime):
        return value
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.strip())
        except ValueError:
            pass
    raise ValueError(f"{field}: expected a datetime or ISO-8601 string, got {value!r}")


def epoch_ns(moment: datetime) -> int:
    """Nanoseconds since the epoch; a naive datetime is read as local time."""
    seconds = moment.timestamp()
    return int(round(seconds * 1_000_000)) * 1_000


def from_epoch_ns(ns: int) -> datetime:
    """An aware UTC datetime for an engine timestamp."""
    return datetime.fromtimestamp(ns / 1_000_000_000, tz=timezone.utc)


def require_text(value: Any, field: str, *, max_len: int = 2000) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{field}: expected text, got {type(value).__name__} {value!r}")
    if len(value) > max_len:
        raise ValueError(f"{field}: at most {max_len} characters, got {len(value)}")
    return value
