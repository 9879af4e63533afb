"""What the websocket frame parsers share: decoding a frame and saying why it is bad, the checks
on prices, quantities and timestamps, the coin <-> symbol maps, and ``BadFrameLog``, which
counts bad frames and logs each kind once.

Pure and thread-agnostic, except ``BadFrameLog``, which takes a lock around its counters so
``summary()`` may be read from another thread than the one that records.

The checks raise ``FrameError(kind, detail)``; a parser catches it once per frame and turns it
into a ``FrameProblem``. Nothing here ever lets bad input raise out of a parser.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from loguru import logger

from adapters.feeds.stream_events import KINDS, FrameProblem
from state.types import MAX_MAGNITUDE

SAMPLE_CHARS = 200  # a problem's sample: the frame cut to this many characters
SUMMARY_EVERY = 1000  # after the first line of a kind, one summary line per this many of it

# Exchange timestamps are Unix milliseconds: 1973-03-03 .. 5138-11-16. A value outside means
# seconds, microseconds or nanoseconds were sent, or garbage.
TS_MS_MIN = 100_000_000_000
TS_MS_MAX = 100_000_000_000_000

_ZERO = Decimal(0)
_MAX = MAX_MAGNITUDE  # above it a number cannot be computed with (state/types.py): a bad value

# JSON numbers with a fraction become Decimal straight from their text, never a float; the
# exchanges send prices as strings anyway, so this hook costs nothing on their frames.
_decode = json.JSONDecoder(parse_float=Decimal).decode
loads = _decode  # the fast path: str in, JSON value out; raises on anything wrong (then use decode)


class FrameError(Exception):
    """Raised inside a parser for a frame it cannot use; ``kind`` is one of ``KINDS``."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(kind, detail)
        self.kind = kind
        self.detail = detail


# --- decoding --------------------------------------------------------------------------------

def frame_text(frame: Any) -> str:
    """The frame as text, for samples (bytes are decoded leniently)."""
    if type(frame) is str:
        return frame
    if isinstance(frame, (bytes, bytearray, memoryview)):
        return bytes(frame).decode("utf-8", errors="replace")
    return repr(frame)


def problem(kind: str, detail: str, frame: Any) -> FrameProblem:
    """A ``FrameProblem`` whose sample is the frame cut to ``SAMPLE_CHARS``."""
    return FrameProblem(kind=kind, detail=detail, sample=frame_text(frame)[:SAMPLE_CHARS])


def decode(frame: str | bytes) -> Any:
    """The frame's JSON value; raises ``FrameError`` (``malformed_json`` or ``truncated``)."""
    try:
        return _decode(frame)  # type: ignore[arg-type]
    except json.JSONDecodeError as err:
        raise _decode_error(err.doc, err) from None
    except TypeError:
        if isinstance(frame, (bytes, bytearray, memoryview)):
            try:
                text = bytes(frame).decode("utf-8")
            except UnicodeDecodeError as err:
                raise FrameError("malformed_json", f"not UTF-8 text: {err.reason}") from None
            return decode(text)
        raise FrameError("unexpected", f"frame is a {type(frame).__name__}, not text") from None
    except RecursionError:
        raise FrameError("malformed_json", "nested too deeply") from None


def _decode_error(text: str, err: json.JSONDecodeError) -> FrameError:
    """Tell a frame cut short (valid so far, then it just ends) from one that is garbage."""
    stripped = text.rstrip()
    if not stripped:
        return FrameError("malformed_json", "empty frame")
    if stripped[0] in "{[" and not err.msg.startswith("Extra data") and (
            err.pos >= len(stripped) or stripped[-1] not in "}]"):
        return FrameError("truncated", f"frame of {len(text)} chars ends early ({err.msg})")
    return FrameError("malformed_json", f"{err.msg} at char {err.pos}")


def missing(err: KeyError) -> FrameError:
    key = err.args[0] if err.args else "?"
    return FrameError("missing_field", f"missing field {key!r}")


# --- values ----------------------------------------------------------------------------------

def _number(value: Any) -> Decimal:
    kind = type(value)
    if kind is str:
        return Decimal(value)
    if kind is Decimal or kind is int:
        return Decimal(value)
    raise TypeError


def price(value: Any, field: str) -> Decimal:
    """A positive, finite price from the exchange's string."""
    try:
        number = Decimal(value) if type(value) is str else _number(value)
        if _ZERO < number <= _MAX:  # a NaN raises InvalidOperation here
            return number
    except (InvalidOperation, TypeError, ValueError):
        pass
    raise FrameError("bad_value", f"{field}: {value!r} is not a positive price")


def quantity(value: Any, field: str) -> Decimal:
    """A finite quantity >= 0 from the exchange's string."""
    try:
        number = Decimal(value) if type(value) is str else _number(value)
        if _ZERO <= number <= _MAX:
            return number
    except (InvalidOperation, TypeError, ValueError):
        pass
    raise FrameError("bad_value", f"{field}: {value!r} is not a quantity >= 0")


def timestamp_ms(value: Any, field: str) -> int:
    """A Unix timestamp in milliseconds (an int within ``TS_MS_MIN``..``TS_MS_MAX``)."""
    if type(value) is int and TS_MS_MIN < value < TS_MS_MAX:
        return value
    raise FrameError("bad_value", f"{field}: {value!r} is not a timestamp in ms")


def sequence(value: Any, field: str, what: str = "a sequence number") -> int | None:
    """An optional venue sequence (an int >= 0), ``None`` when absent."""
    if value is None or (type(value) is int and value >= 0):
        return value
    raise FrameError("bad_value", f"{field}: {value!r} is not {what}")


# --- symbols ---------------------------------------------------------------------------------

def default_symbols(coins: Iterable[str], quote: str = "USDT") -> dict[str, str]:
    """``{"BTC": "BTCUSDT", ...}``: each coin against ``quote``."""
    return {coin: f"{coin}{quote}" for coin in coins}


def coin_by_symbol(symbols: Mapping[str, str]) -> dict[str, str]:
    """The reverse of a coin -> exchange symbol map, keyed by the upper-case symbol (as the
    exchanges write it in their frames). Raises ``ValueError`` on an empty or shared symbol."""
    coins: dict[str, str] = {}
    for coin, symbol in symbols.items():
        if not isinstance(coin, str) or not coin or not isinstance(symbol, str) or not symbol:
            raise ValueError(f"symbols: coin and symbol must be non-empty text, got {coin!r}: {symbol!r}")
        key = symbol.upper()
        if key in coins:
            raise ValueError(f"symbols: {symbol!r} is given for both {coins[key]!r} and {coin!r}")
        coins[key] = coin
    return coins


# --- the log ---------------------------------------------------------------------------------

class BadFrameLog:
    """Counts bad frames per kind and logs them without flooding the log.

    The first problem of each kind is logged in full with its sample::

        BAD_FRAME: binance truncated: frame of 120 chars ends early (...); sample: {"stream":...

    after that, one summary line per ``summary_every`` problems of that kind. ``counts`` (per
    kind) and ``total`` are plain attributes; ``summary()`` is the dict for status and report.
    """

    def __init__(self, source_name: str, *, summary_every: int = SUMMARY_EVERY) -> None:
        if summary_every < 1:
            raise ValueError(f"summary_every: must be at least 1, got {summary_every}")
        self.source_name = source_name
        self.summary_every = summary_every
        self.counts: dict[str, int] = {}
        self.total = 0
        self._last: dict[str, str] = {}
        self._lock = threading.Lock()
        self._log = logger.bind(actor="feed")

    def __call__(self, problem: FrameProblem) -> None:
        kind = problem.kind
        with self._lock:
            count = self.counts.get(kind, 0) + 1
            self.counts[kind] = count
            self.total += 1
            self._last[kind] = problem.detail
        if count == 1:
            self._log.warning("BAD_FRAME: {} {}: {}; sample: {}",
                              self.source_name, kind, problem.detail, problem.sample)
        elif count % self.summary_every == 0:
            self._log.warning("BAD_FRAME: {} {}: {} so far; latest: {}",
                              self.source_name, kind, count, problem.detail)

    def summary(self) -> dict[str, Any]:
        """``{"total": n, "counts": {kind: n}, "last": {kind: detail}}``, kinds in ``KINDS`` order."""
        with self._lock:
            order = {kind: index for index, kind in enumerate(KINDS)}
            kinds = sorted(self.counts, key=lambda kind: (order.get(kind, len(order)), kind))
            return {
                "total": self.total,
                "counts": {kind: self.counts[kind] for kind in kinds},
                "last": {kind: self._last[kind] for kind in kinds},
            }
