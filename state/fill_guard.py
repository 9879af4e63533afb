"""Sanity of a fill, pure: which fills may change a position or the balance.

A fill is *rejected* (the order is treated as refused, with the reason, never applied) when its
price is not a finite number greater than 0, is more than ``MAX_FILL_DEVIATION`` away from the
order's reference price (the price of the tick that caused the order: a market order does not
fill at half or twice the market), its quantity is not a finite number greater than 0 or is
above the ordered quantity, or its fee is not a finite number of at most the fill's notional.
The Executor checks every venue report with it and the Sniper every fill it is handed (also one
read back from an older folder), so no such number can reach the position state or the store.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from state.types import MAX_PRICE

MAX_FILL_DEVIATION = Decimal("0.5")  # of the reference price


def _number(value: Any) -> Decimal | None:
    return value if isinstance(value, Decimal) and value.is_finite() else None


def fill_problem(*, reference_price: Decimal, ordered_quantity: Decimal, fill_price: Any,
                 fill_quantity: Any, fee: Any = Decimal(0)) -> str | None:
    """Why this fill must not be applied, or ``None`` when it is sane."""
    price = _number(fill_price)
    if price is None or price <= 0 or price > MAX_PRICE:
        return f"fill price {fill_price!r} is not a finite number in (0, {MAX_PRICE:,}]"
    quantity = _number(fill_quantity)
    if quantity is None or quantity <= 0:
        return f"fill quantity {fill_quantity!r} is not a finite number greater than 0"
    if quantity > ordered_quantity:
        return f"fill quantity {quantity} is above the ordered {ordered_quantity}"
    if reference_price > 0 and abs(price - reference_price) > MAX_FILL_DEVIATION * reference_price:
        return (f"fill price {price} is more than {MAX_FILL_DEVIATION:.0%} away from the order's "
                f"reference price {reference_price}")
    fee_value = Decimal(0) if fee is None else _number(fee)
    if fee_value is None or abs(fee_value) > price * quantity:
        return f"fee {fee!r} is not a finite number of at most the notional {price * quantity}"
    return None
