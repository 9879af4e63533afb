"""adapters/console/logs.py LogFile: size rotation with retention, and a file that cannot be written
fails quietly (one console line, dropped lines counted) instead of flooding stderr."""

from __future__ import annotations

import io
import os
import sys
from pathlib import Path

import pytest
from loguru import logger

from adapters.console.logs import LogFile, configure_logging

DEV_FULL = Path("/dev/full")  # every write fails with ENOSPC: a full disk on demand


def test_the_file_rotates_by_size_and_keeps_the_newest(tmp_path):
    log = LogFile(tmp_path / "engine.jsonl", max_bytes=100, keep=2)
    for n in range(30):
        log.write(f'{{"n": {n:02d}, "pad": "................"}}\n')
    log.stop()
    rotated = sorted(tmp_path.glob("engine.*.jsonl"))
    assert len(rotated) == 2
    assert (tmp_path / "engine.jsonl").stat().st_size <= 100
    current = (tmp_path / "engine.jsonl").read_text().splitlines()
    assert current[-1].startswith('{"n": 29')
    assert all(path.stat().st_size <= 100 for path in rotated)


@pytest.mark.skipif(not DEV_FULL.exists(), reason="needs /dev/full")
def test_a_full_disk_is_said_once_and_the_recovery_counts_the_lost_lines(tmp_path, logs):
    path = tmp_path / "engine.jsonl"
    path.symlink_to(DEV_FULL)
    log = LogFile(path)
    for n in range(3):
        log.write(f"line {n}\n")  # never raises
    assert logs.wait_for("LOG_FILE_UNWRITABLE:")
    assert logs.text().count("LOG_FILE_UNWRITABLE") == 1
    path.unlink()  # space again
    log.write("line 3\n")
    assert logs.wait_for("LOG_FILE_RECOVERED:")
    assert "3 line(s) were dropped" in logs.text()
    log.stop()
    assert path.read_text() == "line 3\n"


@pytest.mark.skipif(not DEV_FULL.exists(), reason="needs /dev/full")
def test_with_the_log_file_failing_the_console_stays_readable(tmp_path, monkeypatch):
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "engine.jsonl").symlink_to(DEV_FULL)
    console = io.StringIO()
    monkeypatch.setattr(sys, "stderr", console)  # the console sink, and where loguru reports a sink's error
    try:
        configure_logging("INFO", tmp_path / "logs")
        for n in range(5):
            logger.bind(actor="engine").info("STEP_{}", n)
        logger.complete()  # the file sink's queue is drained
    finally:
        monkeypatch.undo()
        configure_logging("WARNING", None)  # as tests/conftest.py set it, on the real stderr
    err = console.getvalue()
    assert [f"STEP_{n}" in err for n in range(5)] == [True] * 5
    assert err.count("LOG_FILE_UNWRITABLE") == 1
    assert "Logging error in Loguru Handler" not in err
    assert os.path.islink(tmp_path / "logs" / "engine.jsonl")
