"""An engine in a child process, killed with SIGKILL once it says it is ready."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest


def kill_when_ready(script: Path, *args: str, ready_within_s: float = 60) -> None:
    """Run ``script`` with ``args``; once it prints ``READY`` on a line of its own, SIGKILL it.
    Fails the test (with the child's stderr) when it never gets ready."""
    proc = subprocess.Popen([sys.executable, str(script), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    ready = threading.Event()

    def watch() -> None:
        for line in proc.stdout:  # type: ignore[union-attr]
            if line.strip() == "READY":
                ready.set()
                return

    threading.Thread(target=watch, daemon=True).start()
    try:
        if not ready.wait(ready_within_s):
            proc.kill()
            _, err = proc.communicate(timeout=10)
            pytest.fail(f"child engine never became ready: {err[-3000:]}")
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
    assert proc.returncode == -signal.SIGKILL
