"""Venue errors grouped by what the caller should do (the freqtrade idea, our names).

- ``InvalidOrder`` and its subclasses: the venue refused this order; do not retry it as is.
  ``InsufficientFunds`` (balance, margin), ``OrderNotFound`` (a cancel or query of an id the
  venue does not have, or one already final: Binance -2011 / -2013, Bybit 110001),
  ``PriceUnavailable`` (paper: no usable reference price).
- ``TemporaryError``: nothing happened; the request surely did not reach the venue (or was
  refused before it did anything). ``RateLimited`` (429, or the adapter's own gate while a
  ban lasts) and ``Banned`` (418: the IP is banned until ``until_ms``) are temporary errors
  that also say when to try again.
- ``AmbiguousOutcome``: the order may or may not exist at the venue; resolve it by querying
  its client order id, never by placing it again blindly.
- ``FatalExchangeError``: needs an operator. ``AuthenticationFailed`` (keys refused, expired,
  without trading permission, IP not whitelisted) and ``UnsupportedAccount`` (an account in a
  mode the engine does not trade, such as Binance hedge mode). Their text names the cause and
  never contains a key or a secret.
"""

from __future__ import annotations


class ExchangeError(Exception):
    """Base of every error an exchange adapter raises."""


class InvalidOrder(ExchangeError):
    """The venue refused the order (its text is the venue's reason, e.g. ``-1013 Filter failure:
    MIN_NOTIONAL``)."""


class InsufficientFunds(InvalidOrder):
    pass


class PriceUnavailable(InvalidOrder):
    """No usable reference price (missing or older than the allowed age)."""


class OrderNotFound(InvalidOrder):
    """The venue does not have this client order id (or no longer lets it be canceled)."""


class TemporaryError(ExchangeError):
    pass


class RateLimited(TemporaryError):
    """The venue said slow down (HTTP 429), or the adapter refuses to send while a ban lasts.
    ``retry_after_s``: the venue's ``Retry-After`` when it gave one."""

    def __init__(self, message: str, *, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class Banned(RateLimited):
    """HTTP 418: the IP is banned until ``until_ms`` (epoch ms, from ``Retry-After`` or the
    venue's message); no request may go out before."""

    def __init__(self, message: str, *, until_ms: int, retry_after_s: float | None = None) -> None:
        super().__init__(message, retry_after_s=retry_after_s)
        self.until_ms = until_ms


class AmbiguousOutcome(ExchangeError):
    """A submit whose outcome is unknown (timeout, dropped connection)."""


class FatalExchangeError(ExchangeError):
    pass


class AuthenticationFailed(FatalExchangeError):
    """The venue refused the credentials (invalid key or signature, no permission, IP not
    allowed). Trading halts; an operator must act."""


class UnsupportedAccount(FatalExchangeError):
    """The account is in a mode the engine does not trade (Binance hedge mode, a unified
    account setting it cannot handle); refused at start rather than traded."""
