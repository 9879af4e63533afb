"""Run ``run.py``'s command line on a disk that fills up (for test_dead_engine; not a test module).

Usage: python dead_engine_child.py RUN_PY_ARGUMENTS...  (with --data-dir DIR)

Once the session's journal holds a closed trade, the process may no longer grow or write any
file past its first 4 KiB (``RLIMIT_FSIZE``, with SIGXFSZ ignored so that a write fails with
EFBIG, which SQLite reports as "disk I/O error"): the databases, their logs and the log file all
fail as on a full disk. Prints ``DISK_FULL`` then, or ``NO_TRADE`` (and stops the session) if no
trade closed within the bound.
"""

from __future__ import annotations

import os
import resource
import signal
import sqlite3
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import run  # noqa: E402

TRADE_BOUND_S = 60.0
FILE_LIMIT = 4096


def closed_trades(journal: Path) -> int:
    try:
        db = sqlite3.connect(f"file:{journal}?mode=ro", uri=True)
    except sqlite3.Error:
        return 0
    try:
        return db.execute("SELECT COUNT(*) FROM trades WHERE status = 'CLOSED'").fetchone()[0]
    except sqlite3.Error:
        return 0  # not created yet
    finally:
        db.close()


def fill_the_disk_after_the_first_trade(journal: Path) -> None:
    deadline = time.monotonic() + TRADE_BOUND_S
    pause = threading.Event()
    while time.monotonic() < deadline:
        if closed_trades(journal):
            _, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
            resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_LIMIT, hard))
            print("DISK_FULL", flush=True)
            return
        pause.wait(0.05)
    print("NO_TRADE", flush=True)
    os.kill(os.getpid(), signal.SIGTERM)


def main() -> None:
    args = sys.argv[1:]
    data_dir = Path(args[args.index("--data-dir") + 1])
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    threading.Thread(target=fill_the_disk_after_the_first_trade, args=(data_dir / "journal.db",),
                     name="disk-filler", daemon=True).start()
    run._exit(run.main(args))


if __name__ == "__main__":
    main()
