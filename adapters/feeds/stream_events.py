"""What a live exchange stream yields once a frame is parsed: trades, top-of-book quotes, or a
problem with the frame. Plain frozen values, shared by the frame parsers and the sources."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal


@dataclass(frozen=True, slots=True, kw_only=True)
class TradeEvent:
    """One trade (or aggregate trade) of ``coin``: the engine's tick."""

    coin: str
    price: Decimal
    qty: Decimal
    ts_ms: int  # exchange trade time
    trade_id: str | None = None


_set_field = object.__setattr__  # how a frozen dataclass's fields are set, looked up once


@dataclass(frozen=True, slots=True, kw_only=True, init=False)
class QuoteEvent:
    """Best bid and ask of ``coin``. ``seq``, when the stream gives one, grows with every change
    of the book (Binance bookTicker's update id ``u``, Bybit's cross sequence ``cs``) and is
    the same on every connection: of two quotes of a coin, the one with the higher ``seq`` is
    the newer (a quote repeated by a second connection has the same ``seq``)."""

    coin: str
    bid: Decimal
    bid_qty: Decimal
    ask: Decimal
    ask_qty: Decimal
    ts_ms: int | None = None  # exchange time when the stream gives one
    seq: int | None = None  # order of the quotes of one coin (>= 0), when the stream gives one

    def __init__(self, *, coin: str, bid: Decimal, bid_qty: Decimal, ask: Decimal, ask_qty: Decimal,
                 ts_ms: int | None = None, seq: int | None = None) -> None:
        """What the dataclass would generate (every field, keyword-only), but without looking
        ``object.__setattr__`` up again for each field: a quote is built for most frames, and
        this keeps seven fields as cheap as six were."""
        _set_field(self, "coin", coin)
        _set_field(self, "bid", bid)
        _set_field(self, "bid_qty", bid_qty)
        _set_field(self, "ask", ask)
        _set_field(self, "ask_qty", ask_qty)
        _set_field(self, "ts_ms", ts_ms)
        _set_field(self, "seq", seq)


@dataclass(frozen=True, slots=True, kw_only=True)
class FrameProblem:
    """Why a frame could not be used. ``kind`` is one of ``KINDS``; ``sample`` is the frame's
    text cut to a few hundred characters, for the log."""

    kind: str
    detail: str
    sample: str


KINDS = ("malformed_json", "truncated", "unknown_stream", "missing_field", "bad_value", "unexpected")


@dataclass(frozen=True, slots=True, kw_only=True)
class ParsedFrame:
    """A frame's meaning: market events, a control message (subscription ack, pong, a stream we
    subscribe to but do not use), or a problem."""

    events: tuple[TradeEvent | QuoteEvent, ...] = ()
    control: str | None = None
    problem: FrameProblem | None = None
