"""The paper venue's own book (venue.db) beside an engine folder of an older version."""

from __future__ import annotations

from decimal import Decimal

from state.types import Direction
from tests.conftest import WAIT, condition


def settle(engine) -> None:
    assert engine.wait_idle(WAIT), f"engine not idle: {engine.bus.outstanding()}"


def test_a_folder_without_a_venue_book_adopts_its_open_position_and_its_exit_fills(make_engine, ts, tmp_path, logs):
    folder = tmp_path / "data"
    first = make_engine(data_dir=folder)
    first.sniper.add_condition(condition(coin="BTC", trigger=42000, size=500))
    first.push_tick("BTC", "42001", ts())
    settle(first)
    (opened,) = first.sniper.snapshot().positions
    first.stop()
    for suffix in ("", "-wal", "-shm"):  # as a version without a venue book left the folder
        (folder / f"venue.db{suffix}").unlink(missing_ok=True)

    second = make_engine(data_dir=folder)
    assert logs.wait_for("VENUE_ADOPTED")
    (held,) = [p for p in second.venue.positions() if p.quantity > 0]
    assert (held.coin, held.side, held.quantity, held.entry_price) == \
        ("BTC", Direction.LONG, opened.quantity, opened.entry_price)
    second.push_tick("BTC", "41000", ts())  # through the 2 % stop: the reduce-only exit must fill
    settle(second)
    assert second.sniper.snapshot().positions == ()
    assert [p.quantity for p in second.venue.positions()] == [Decimal(0)]


def test_a_venue_book_of_another_folder_is_refused_with_exit_code_2(make_engine, tmp_path):
    import shutil

    from state.session import DataDirUnusable
    import pytest

    one, two = tmp_path / "one", tmp_path / "two"
    make_engine(data_dir=one).stop()
    make_engine(data_dir=two).stop()
    shutil.copy(one / "venue.db", two / "venue.db")
    with pytest.raises(DataDirUnusable, match="venue book of another engine store"):
        make_engine(data_dir=two)
