"""The --repl console, driven through a pseudo-terminal as a person would use it."""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pty = pytest.importorskip("pty", reason="pseudo-terminals need a POSIX system")


class Terminal:
    """A child process on a pseudo-terminal, with bounded waits for its output."""

    def __init__(self, args: list[str]) -> None:
        master, slave = pty.openpty()
        env = {**os.environ, "TERM": "dumb", "PYTHONUNBUFFERED": "1", "NO_COLOR": "1"}
        self.proc = subprocess.Popen(args, stdin=slave, stdout=slave, stderr=slave, cwd=ROOT, env=env,
                                     close_fds=True, start_new_session=True)
        os.close(slave)
        self.master = master
        self.output = ""
        self.position = 0  # where the next expect starts searching (after the last match)

    def expect(self, pattern: str, timeout: float = 20.0) -> re.Match[str]:
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            match = regex.search(self.output, self.position)
            if match:
                self.position = match.end()
                return match
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no {pattern!r} within {timeout}s; output so far:\n{self.output[-3000:]}")
            ready, _, _ = select.select([self.master], [], [], min(remaining, 0.5))
            if ready:
                try:
                    chunk = os.read(self.master, 65536)
                except OSError:  # the child closed the terminal
                    chunk = b""
                if not chunk and self.proc.poll() is not None:
                    raise AssertionError(f"process ended before {pattern!r}:\n{self.output[-3000:]}")
                self.output += chunk.decode(errors="replace").replace("\r", "")

    def send(self, text: str) -> None:
        os.write(self.master, text.encode())

    def close(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        os.close(self.master)


@pytest.fixture
def terminal(tmp_path):
    config = tmp_path / "sim.toml"
    config.write_text('[feed]\nsource = "sim"\nsymbols = ["BTC", "ETH"]\nticks_per_second = 20\n'
                      '[strategist]\nstrategies = []\n')
    term = Terminal([sys.executable, str(ROOT / "run.py"), "--config", str(config),
                     "--data-dir", str(tmp_path / "data"), "--repl"])
    yield term
    term.close()


@pytest.mark.slow
def test_the_console_drives_the_running_engine_and_leaving_it_stops_the_engine_with_a_report(terminal):
    terminal.expect(r"Engine console \(sim SIMULATED market")
    terminal.expect(r">>> ")

    terminal.send("status()['trading_state']\n")
    terminal.expect(r"'ACTIVE'")

    terminal.send("statu\t")  # tab completion (unique: "stat" would also match staticmethod)
    terminal.expect(r"status\(\)")  # completed, with () as it takes no argument
    terminal.send("['feed']\n")
    terminal.expect(r"'sim \(SIMULATED\)'")

    terminal.send("while not status()['prices'].get('BTC'): pass\n\n")  # wait for the first price
    terminal.expect(r">>> ")
    terminal.send("arm('BTC', 'long', '>1', 0.02, 0.015, 100)\n")
    terminal.expect(r"ValueError: condition \S+ rejected: trigger_price")

    terminal.send("cid = arm('BTC', 'long', '>70000', 0.02, 0.015, 100, valid_for='2h'); cid\n")
    condition_id = terminal.expect(r"'(c-[0-9a-f]+)'").group(1)
    terminal.send("[c['trigger'] for c in conditions()]\n")
    terminal.expect(r"\['> 70000'\]")

    terminal.send("halt()\n")
    terminal.expect(r"'HALTED'")
    terminal.send("resume()\n")
    terminal.expect(r"'ACTIVE'")
    terminal.send(f"cancel('{condition_id}')\n")
    terminal.expect(re.escape(f"'{condition_id}'"))
    terminal.send("len(conditions()), history()\n")
    terminal.expect(r"\(0, \[\]\)")
    terminal.send("help(arm)\n")
    terminal.expect(r"Arm a condition through the Strategist")
    terminal.expect(r">>> ")  # the prompt is back (readline reads the terminal again)

    terminal.send("\x04")  # Ctrl-D leaves the console
    terminal.expect(r"stopping the engine")
    terminal.expect(r"Session \S+ \(sim SIMULATED\)")
    assert terminal.proc.wait(timeout=30) == 0
