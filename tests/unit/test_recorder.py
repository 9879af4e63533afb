"""adapters/feeds/recorder.py: --record writes what the replay source reads."""

from __future__ import annotations

from decimal import Decimal

import pytest

from adapters.feeds.recorder import TradeRecorder, recording_path
from adapters.feeds.trade_files import TradeFileReader, detect_format


def test_one_file_per_coin_in_the_ts_ms_price_qty_layout_with_exact_decimals(tmp_path):
    recorder = TradeRecorder(tmp_path / "session.csv", flush_every=2)
    recorder.write("BTC", 1_700_000_000_000, Decimal("42000.10"), Decimal("0.00100"))
    recorder.write("ETH", 1_700_000_000_001, Decimal("3000"), Decimal("1"))
    recorder.write("BTC", 1_700_000_000_002, Decimal("42000.20"), Decimal("0"))
    recorder.close()
    assert recorder.files() == {}
    btc = tmp_path / "session.BTC.csv"
    assert btc.read_text() == "ts_ms,price,qty\n1700000000000,42000.10,0.00100\n1700000000002,42000.20,0\n"
    rows = list(TradeFileReader(btc, detect_format(btc), lambda bad: pytest.fail(str(bad))))
    assert [(r.ts_ms, r.price, r.qty) for r in rows] == [
        (1_700_000_000_000, Decimal("42000.10"), Decimal("0.00100")),
        (1_700_000_000_002, Decimal("42000.20"), Decimal("0")),
    ]
    assert recording_path(tmp_path / "session.csv", "ETH").read_text().count("\n") == 2


def test_a_second_recorder_on_the_same_file_appends_without_a_second_header(tmp_path):
    for price in ("1", "2"):
        recorder = TradeRecorder(tmp_path / "rec.csv")
        recorder.write("SOL", 1_700_000_000_000 + int(price), Decimal(price), Decimal("1"))
        recorder.close()
    assert (tmp_path / "rec.SOL.csv").read_text().splitlines() == [
        "ts_ms,price,qty", "1700000000001,1,1", "1700000000002,2,1"]


def test_a_folder_is_refused_with_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="is a folder"):
        TradeRecorder(tmp_path)
