"""adapters/feeds/frame_log.py: BadFrameLog (counts per kind, the first of each kind logged with its
sample, then a summary line every N of that kind) and the shared decoding and value checks.

Pure: no threads. Log lines are captured with a loguru handler sink (the ``logs`` fixture of
tests/conftest.py, format ``{level} {extra[actor]} {message}``).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from adapters.feeds.frame_log import (
    SAMPLE_CHARS,
    BadFrameLog,
    FrameError,
    coin_by_symbol,
    decode,
    default_symbols,
    price,
    problem,
    quantity,
    timestamp_ms,
)
from adapters.feeds.stream_events import FrameProblem
from tests.conftest import LogCapture


def bad(kind: str = "truncated", detail: str = "frame of 80 chars ends early",
        sample: str = '{"stream":"btcusdt@trade","data":{"e":"tra') -> FrameProblem:
    return FrameProblem(kind=kind, detail=detail, sample=sample)


def bad_frame_lines(logs: LogCapture) -> list[str]:
    return [line for line in logs.lines if "BAD_FRAME" in line]


def test_log_when_first_of_a_kind_then_logged_once_with_sample(logs: LogCapture) -> None:
    log = BadFrameLog("binance")
    for _ in range(5):
        log(bad())
    lines = bad_frame_lines(logs)
    assert lines == ['WARNING feed BAD_FRAME: binance truncated: frame of 80 chars ends early; '
                     'sample: {"stream":"btcusdt@trade","data":{"e":"tra']
    assert log.counts == {"truncated": 5} and log.total == 5


def test_log_when_another_kind_then_it_gets_its_own_first_line(logs: LogCapture) -> None:
    log = BadFrameLog("bybit")
    log(bad())
    log(bad("unknown_stream", "symbol 'SOLUSDT' is not subscribed", '{"topic":"tickers.SOLUSDT"}'))
    log(bad())
    log(bad("unknown_stream", "symbol 'XRPUSDT' is not subscribed", "{}"))
    lines = bad_frame_lines(logs)
    assert len(lines) == 2
    assert lines[1] == ("WARNING feed BAD_FRAME: bybit unknown_stream: symbol 'SOLUSDT' is not subscribed; "
                        'sample: {"topic":"tickers.SOLUSDT"}')
    assert log.counts == {"truncated": 2, "unknown_stream": 2} and log.total == 4


def test_log_when_every_thousandth_of_a_kind_then_one_summary_line(logs: LogCapture) -> None:
    log = BadFrameLog("binance")
    for number in range(1, 2501):
        log(bad(detail=f"problem {number}"))
    lines = bad_frame_lines(logs)
    assert lines == [
        "WARNING feed BAD_FRAME: binance truncated: problem 1; sample: " + bad().sample,
        "WARNING feed BAD_FRAME: binance truncated: 1000 so far; latest: problem 1000",
        "WARNING feed BAD_FRAME: binance truncated: 2000 so far; latest: problem 2000",
    ]


def test_log_when_summary_every_is_set_then_it_is_used(logs: LogCapture) -> None:
    log = BadFrameLog("x", summary_every=3)
    for _ in range(7):
        log(bad("malformed_json"))
    assert len(bad_frame_lines(logs)) == 3  # the first, the 3rd, the 6th
    with pytest.raises(ValueError):
        BadFrameLog("x", summary_every=0)


def test_log_when_sample_has_braces_then_written_as_is(logs: LogCapture) -> None:
    log = BadFrameLog("binance")
    log(bad("malformed_json", "Expecting value at char 1", "{0} {name} {{"))
    assert bad_frame_lines(logs)[0].endswith("sample: {0} {name} {{")


def test_summary_counts_in_kind_order_with_the_latest_detail() -> None:
    log = BadFrameLog("binance")
    assert log.summary() == {"total": 0, "counts": {}, "last": {}}
    log(bad("unexpected", "error 2: bad"))
    log(bad("malformed_json", "first"))
    log(bad("malformed_json", "second"))
    assert log.summary() == {
        "total": 3,
        "counts": {"malformed_json": 2, "unexpected": 1},
        "last": {"malformed_json": "second", "unexpected": "error 2: bad"},
    }


# --- shared pieces of the parsers -------------------------------------------------------------------


def test_problem_sample_cut_to_200_chars() -> None:
    text = "x" * 500
    assert problem("truncated", "d", text).sample == "x" * SAMPLE_CHARS
    assert problem("truncated", "d", b"\xffabc").sample == "\ufffdabc"


@pytest.mark.parametrize(("text", "kind"), [
    ('{"a":"b', "truncated"), ('{"a":[1,2', "truncated"), ('{"a":{"b":1}', "truncated"), ("[1, 2", "truncated"),
    ("", "malformed_json"), ("nope", "malformed_json"), ('{"a":1}x', "malformed_json"),
    ('{"a":1} {"b":2}', "malformed_json"), ('{"a":1,}', "malformed_json"),
])
def test_decode_tells_truncated_from_malformed(text: str, kind: str) -> None:
    with pytest.raises(FrameError) as caught:
        decode(text)
    assert caught.value.kind == kind


def test_decode_reads_fractions_as_exact_decimals() -> None:
    assert decode('{"p": 0.1, "n": 3}') == {"p": Decimal("0.1"), "n": 3}
    assert decode(b'{"p": "1"}') == {"p": "1"}


@pytest.mark.parametrize(("check", "value", "ok"), [
    (price, "61800.30", Decimal("61800.30")), (price, "1e-8", Decimal("1e-8")), (price, 5, Decimal(5)),
    (price, "0", None), (price, "-1", None), (price, "NaN", None), (price, "-Infinity", None), (price, None, None),
    (price, 1.5, None), (price, False, None),
    (quantity, "0", Decimal(0)), (quantity, "0.006", Decimal("0.006")), (quantity, "-0.1", None),
    (quantity, "Infinity", None), (quantity, "", None),
    (timestamp_ms, 1723161256322, 1723161256322), (timestamp_ms, 1723161256, None),
    (timestamp_ms, 1723161256322000, None), (timestamp_ms, True, None), (timestamp_ms, "1723161256322", None),
])
def test_value_checks(check: Any, value: Any, ok: Any) -> None:
    if ok is None:
        with pytest.raises(FrameError) as caught:
            check(value, "f")
        assert caught.value.kind == "bad_value" and caught.value.detail.startswith("f:")
    else:
        assert check(value, "f") == ok
        assert str(check(value, "f")) == str(ok)


def test_symbol_maps() -> None:
    assert default_symbols(["BTC"], quote="USDC") == {"BTC": "BTCUSDC"}
    assert coin_by_symbol({"BTC": "btcusdt", "ETH": "ETHUSDT"}) == {"BTCUSDT": "BTC", "ETHUSDT": "ETH"}
    with pytest.raises(ValueError, match="both"):
        coin_by_symbol({"BTC": "BTCUSDT", "XBT": "btcusdt"})


@pytest.mark.parametrize("text", ["1e400", "1E+19"])
def test_a_price_or_quantity_too_large_to_compute_with_is_a_bad_value(text):
    with pytest.raises(FrameError, match="bad_value"):
        price(text, "p")
    with pytest.raises(FrameError, match="bad_value"):
        quantity(text, "q")
