"""Venue errors grouped by what the caller should do (the freqtrade idea, our names).

- ``InvalidOrder`` and its subclasses: the venue refused this order; do not retry it as is.
- ``TemporaryError`` / ``RateLimited``: nothing happened; try again later (reads only).
- ``AmbiguousOutcome``: the order may or may not exist at the venue; resolve it by querying
  its client order id, never by placing it again blindly.
- ``FatalExchangeError``: needs an operator (bad keys, account disabled).
"""

from __future__ import annotations


class ExchangeError(Exception):
    """Base of every error an exchange adapter raises."""


class InvalidOrder(ExchangeError):
    """The venue refused the order."""


class InsufficientFunds(InvalidOrder):
    pass


class PriceUnavailable(InvalidOrder):
    """No usable reference price (missing or older than the allowed age)."""


class OrderNotFound(ExchangeError):
    pass


class TemporaryError(ExchangeError):
    pass


class RateLimited(TemporaryError):
    pass


class AmbiguousOutcome(ExchangeError):
    """A submit whose outcome is unknown (timeout, dropped connection)."""


class FatalExchangeError(ExchangeError):
    pass
