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
    """Lifecycle of an order (``state/order.py`` holds the transition table)."""

    SUBMITTING = "SUBMITTING"  # submitted: intent recorded, the venue's answer not yet known
    ACCEPTED = "ACCEPTED"  # the venue holds it (resting, or about to fill)
    PARTIALLY_FILLED = "PARTIALLY_FILLED"
    FILLED = "FILLED"
    CANCELED = "CANCELED"  # by request, or IOC/FOK remainder; fills before it stay
    REJECTED = "REJECTED"  # refused by the venue, or never sent (risk, bad fill)
    EXPIRED = "EXPIRED"  # by the venue: time in force, post-only that would take, GTD
    UNKNOWN = "UNKNOWN"  # the outcome could not be learned (timeout): ask the venue, never resend


class OrderType(StrEnum):
    MARKET = "MARKET"
    LIMIT = "LIMIT"
    STOP_MARKET = "STOP_MARKET"  # triggers on the last price, then fills as a market order
    STOP_LIMIT = "STOP_LIMIT"  # triggers on the last price, then rests as a limit order


class TimeInForce(StrEnum):
    GTC = "GTC"  # good till canceled
    IOC = "IOC"  # immediate or cancel: what cannot fill at once is canceled
    FOK = "FOK"  # fill or kill: fills whole at once, or not at all (EXPIRED)


class Liquidity(StrEnum):
    MAKER = "MAKER"
    TAKER = "TAKER"


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


# The largest magnitude any price, quantity or amount may have. Decimal arithmetic runs at 28
# significant digits; a number this size still rounds to an 8-decimal step without exceeding
# them, and no real price, quantity or balance comes near it. A larger one (1e308, '1e1000',
# 10**400) is refused at the door instead of raising ``InvalidOperation`` deep in an actor.
MAX_MAGNITUDE = Decimal(10) ** 18
# Bounds a trade condition's price and size must keep (far beyond any real market).
MAX_PRICE = Decimal(10) ** 12
MAX_SIZE_USD = Decimal(10) ** 12
_MAX_TEXT = 100  # characters of a number given as text


def _shown(value: Any) -> str:
    """A short ``repr`` for error messages (10**400 must not print 400 digits)."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**20:
        return f"an integer of {len(str(abs(value)))} digits"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def to_decimal(value: Any, field: str) -> Decimal:
    """Convert int, float, str or Decimal to a finite ``Decimal`` of magnitude at most
    ``MAX_MAGNITUDE``.

    Floats go through their shortest ``repr`` so ``0.1`` becomes ``Decimal("0.1")``,
    not the binary expansion. Booleans are refused: ``True`` is not a price. NaN, infinity
    and numbers too large to compute with (``1e308``, ``"1e1000"``, ``10**400``) are
    ``ValueError`` naming the field.
    """
    if isinstance(value, bool):
        raise ValueError(f"{field}: expected a number, got {value!r}")
    if isinstance(value, Decimal):
        number = value
    elif isinstance(value, int):
        if abs(value) > MAX_MAGNITUDE:  # compare before converting: 10**4300 cannot even print
            raise ValueError(f"{field}: too large to be a price, quantity or amount, got {_shown(value)}")
        number = Decimal(value)
    elif isinstance(value, float):
        number = Decimal(repr(value))
    elif isinstance(value, str):
        if len(value) > _MAX_TEXT:
            raise ValueError(f"{field}: not a number: {_shown(value)}")
        try:
            number = Decimal(value.strip())
        except InvalidOperation:
            raise ValueError(f"{field}: not a number: {value!r}") from None
    else:
        raise ValueError(f"{field}: expected a number, got {type(value).__name__} {_shown(value)}")
    if not number.is_finite():
        raise ValueError(f"{field}: must be a finite number, got {value!r}")
    if abs(number) > MAX_MAGNITUDE:
        raise ValueError(f"{field}: too large to be a price, quantity or amount, got {_shown(value)}")
    return number


def positive_decimal(value: Any, field: str, maximum: Decimal | None = None) -> Decimal:
    """A number greater than 0 (and at most ``maximum`` when given)."""
    number = to_decimal(value, field)
    if number <= 0:
        raise ValueError(f"{field}: must be greater than 0, got {_shown(value)}")
    if maximum is not None and number > maximum:
        raise ValueError(f"{field}: at most {maximum:,} is accepted, got {_shown(value)}")
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


EARLIEST = datetime(1970, 1, 2, tzinfo=timezone.utc)
LATEST = datetime(9000, 1, 1, tzinfo=timezone.utc)


def datetime_value(value: Any, field: str) -> datetime:
    """Accept a datetime (naive = local time, or aware) or an ISO-8601 string, between 1970-01-02
    and 9000-01-01: engine time is nanoseconds since the epoch, and ``datetime.min`` or
    ``datetime.max`` cannot be converted to it (or back, in local time) without overflowing."""
    moment: datetime | None = None
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.strip())
        except ValueError:
            pass
    if moment is None:
        raise ValueError(f"{field}: expected a datetime or ISO-8601 string, got {_shown(value)}")
    try:
        ns = epoch_ns(moment)
    except (ValueError, OverflowError, OSError):
        ns = None
    if ns is None or not epoch_ns(EARLIEST) <= ns <= epoch_ns(LATEST):
        raise ValueError(
            f"{field}: must be between {EARLIEST.date().isoformat()} and {LATEST.date().isoformat()}, "
            f"got {_shown(value)}"
        )
    return moment


def whole_number(value: Any, field: str) -> int:
    """An ``int`` (or its decimal text, e.g. from a REPL); booleans, floats and fractions are
    a ``ValueError`` naming the field."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ValueError(f"{field}: expected a whole number, got {_shown(value)}")
    try:
        number = int(value.strip()) if isinstance(value, str) else value
    except ValueError:
        raise ValueError(f"{field}: expected a whole number, got {_shown(value)}") from None
    if abs(number) > 10**12:
        raise ValueError(f"{field}: expected a whole number of at most 10**12, got {_shown(value)}")
    return number


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
