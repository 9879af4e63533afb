"""Which currency a fill's fee is in, and what that does to a position (pure, no I/O).

A venue charges a fee in the quote currency (USD-M futures, the paper venue, a spot SELL), in the
traded coin itself (a spot BUY on Binance or Bybit, unless fees are paid in BNB), or in a third
currency (BNB). The engine's money is the quote currency, so:

- **QUOTE** (``fee_currency`` empty, or one of ``QUOTE_CURRENCIES``): the fee is money as it is.
- **BASE** (``fee_currency`` is the coin): the fee changes what the account holds of the coin
  (a BUY of ``q`` leaves ``q - fee``; a SELL of ``q`` takes ``q + fee``) and is worth ``fee x
  fill price`` in quote (exact Decimal).
- **OTHER** (anything else, e.g. BNB): the held quantity is the traded one; the fee cannot be
  valued without a price of that currency: it is kept with its currency and not counted in the
  quote fees or the PnL (``FEE_UNVALUED`` is logged once per currency by the Sniper).

A quote currency outside ``QUOTE_CURRENCIES`` (a pair quoted in EUR or BTC) is therefore OTHER:
loud (``FEE_UNVALUED``), never silently mixed into USD figures.
"""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum

from state.types import Side

ZERO = Decimal(0)

QUOTE_CURRENCIES = frozenset({"USDT", "USDC", "USD", "BUSD", "FDUSD", "TUSD", "USDP", "DAI"})


class FeeKind(StrEnum):
    QUOTE = "QUOTE"
    BASE = "BASE"
    OTHER = "OTHER"


def fee_kind(fee_currency: str | None, coin: str) -> FeeKind:
    """The kind of a fee in ``fee_currency`` on a fill of ``coin`` (see the module docstring)."""
    currency = (fee_currency or "").strip().upper()
    if not currency or currency in QUOTE_CURRENCIES:
        return FeeKind.QUOTE
    if currency == coin.strip().upper():
        return FeeKind.BASE
    return FeeKind.OTHER


def fee_in_quote(fee: Decimal, fee_currency: str | None, coin: str, price: Decimal) -> Decimal:
    """What the fee costs in quote currency: as it is (QUOTE), ``fee x price`` (BASE), 0 (OTHER:
    it cannot be valued here; see ``fee_kind``)."""
    kind = fee_kind(fee_currency, coin)
    if kind is FeeKind.QUOTE:
        return fee
    if kind is FeeKind.BASE:
        return fee * price
    return ZERO


def coin_moved(side: Side, quantity: Decimal, fee: Decimal, fee_currency: str | None, coin: str) -> Decimal:
    """How much of the coin a fill moved, for the position it belongs to: the traded
    ``quantity`` less a base-asset fee on a BUY (the account received ``quantity - fee``), plus
    it on a SELL (the account gave ``quantity + fee``); the traded quantity otherwise."""
    if fee_kind(fee_currency, coin) is not FeeKind.BASE:
        return quantity
    return quantity - fee if side is Side.BUY else quantity + fee
