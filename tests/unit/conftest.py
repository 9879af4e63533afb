"""Fixtures for the pure unit tests (no threads, no actors, no sleeps)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from datetime import timedelta, timezone

import pytest

# POSIX TZ strings need no tz database: "UTC-03" means local time is UTC+3.
LOCAL_OFFSET = timedelta(hours=3)
LOCAL_TZ = timezone(LOCAL_OFFSET)


@pytest.fixture
def local_utc_plus_3() -> Iterator[timezone]:
    """Make naive datetimes mean UTC+3 for the duration of one test.

    The machine may well run on UTC, where naive and aware datetimes coincide and a test
    could not tell "naive is local" from "naive is UTC".
    """
    saved = os.environ.get("TZ")
    os.environ["TZ"] = "UTC-03"
    time.tzset()
    try:
        yield LOCAL_TZ
    finally:
        if saved is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = saved
        time.tzset()
