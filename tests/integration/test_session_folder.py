"""A data folder belongs to one session, through the command line and the Python API.

- another session on a folder (sim then replay; the same path with other bytes; other strategy
  settings) is refused before anything starts, exit 2, naming each difference;
- ``--fresh`` archives the old contents under ``archive/<UTC timestamp>/`` and starts empty;
- a finished replay run again says so, prints its report and replays nothing (exit 0);
- one engine per folder: a second one exits 2 naming the running one's pid; a holder killed by
  SIGKILL never blocks a restart;
- ``--status`` creates nothing, says whether a session runs, and reads a read-only folder;
  a session on a read-only or impossible folder is exit 2 with a message;
- the default folder is named after the config file.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from adapters.data_folder import FolderLocked, lock_holder
from run import EngineStartError, build_engine, resolve_config_and_data_dir
from state.config import ConfigError
from state.session import ReplayAlreadyComplete, SessionMismatch
from state.store import Store
from tests.conftest import manual_config
from tests.integration.test_process_death import run_child_and_kill

ROOT = Path(__file__).resolve().parents[2]
LONG = 120.0  # bound on a subprocess run of the engine on a loaded machine


def run_cli(*args: str, timeout: float = LONG, prefix: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*prefix, sys.executable, str(ROOT / "run.py"), *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, stdin=subprocess.DEVNULL)


def write_trades(path: Path, rows: int = 300, wiggle: int = 13) -> Path:
    lines = ["ts_ms,price,qty"] + [f"{1582329602111 + i * 1000},{9600 + (i % wiggle) * 3},0.01" for i in range(rows)]
    path.write_text("\n".join(lines) + "\n")
    return path


def write_replay(folder: Path, trades: Path, *, lookback: int = 2, name: str = "replay.toml") -> Path:
    config = folder / name
    config.write_text(
        f'[feed]\nsource = "replay"\nsymbols = ["BTC"]\nfiles = [{{ coin = "BTC", path = "{trades}" }}]\n'
        'bar_seconds = 5\n[strategist]\nstrategies = ["breakout"]\n'
        f"[strategist.breakout]\nlookback_bars = {lookback}\n"
    )
    return config


def write_sim(folder: Path) -> Path:
    config = folder / "sim.toml"
    config.write_text('[feed]\nsource = "sim"\nsymbols = ["BTC"]\nticks_per_second = 20\n')
    return config


def runs_of(data_dir: Path) -> list[str]:
    return sorted(p.name for p in (data_dir / "runs").iterdir()) if (data_dir / "runs").is_dir() else []


def status(config: Path, data_dir: Path, prefix: tuple[str, ...] = ()) -> dict[str, Any]:
    result = run_cli("--config", str(config), "--data-dir", str(data_dir), "--status", prefix=prefix)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout)


def assert_refused_before_start(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    assert "ENGINE_STARTING" not in result.stderr and "ENGINE_STARTED" not in result.stderr


# --- another session on the folder ------------------------------------------------------------------


def test_a_replay_on_the_folder_of_a_sim_session_is_refused_naming_the_source(tmp_path: Path) -> None:
    data_dir = tmp_path / "d"
    sim = run_cli("--config", str(write_sim(tmp_path)), "--data-dir", str(data_dir), "--duration", "1",
                  "--status-every", "0.5")
    assert sim.returncode == 0, sim.stderr[-3000:]
    sim_runs = runs_of(data_dir)
    before = status(write_sim(tmp_path), data_dir)

    replay = write_replay(tmp_path, write_trades(tmp_path / "t.csv"))
    result = run_cli("--config", str(replay), "--data-dir", str(data_dir))
    assert_refused_before_start(result)
    assert "source: stored sim, now replay" in result.stderr
    assert "--data-dir" in result.stderr and "--fresh" in result.stderr
    assert runs_of(data_dir) == sim_runs
    after = status(replay, data_dir)
    assert after["identity"]["source"] == "sim"
    assert {k: v for k, v in after.items() if k != "session"} == {k: v for k, v in before.items() if k != "session"}

    with pytest.raises(SessionMismatch, match="source: stored sim, now replay"):
        build_engine(replay, data_dir)


def test_the_same_replay_path_with_other_bytes_is_refused_naming_the_file(tmp_path: Path) -> None:
    trades = write_trades(tmp_path / "t.csv")
    config = write_replay(tmp_path, trades)
    data_dir = tmp_path / "d"
    first = run_cli("--config", str(config), "--data-dir", str(data_dir))
    assert first.returncode == 0, first.stderr[-3000:]

    write_trades(trades, wiggle=11)  # same path, same size, other prices
    result = run_cli("--config", str(config), "--data-dir", str(data_dir))
    assert_refused_before_start(result)
    assert f"feed.files[1] BTC: same path {trades}, different content: stored " in result.stderr
    assert "0 tick(s) sent" not in result.stdout + result.stderr


def test_other_strategy_settings_on_a_replay_folder_are_refused_naming_them(tmp_path: Path) -> None:
    trades = write_trades(tmp_path / "t.csv")
    data_dir = tmp_path / "d"
    assert run_cli("--config", str(write_replay(tmp_path, trades, lookback=2)), "--data-dir",
                   str(data_dir)).returncode == 0
    result = run_cli("--config", str(write_replay(tmp_path, trades, lookback=3)), "--data-dir", str(data_dir))
    assert_refused_before_start(result)
    assert "strategist.breakout.lookback_bars: stored 2, now 3" in result.stderr


def test_fresh_archives_the_old_contents_and_starts_empty(tmp_path: Path) -> None:
    data_dir = tmp_path / "d"
    sim = write_sim(tmp_path)
    assert run_cli("--config", str(sim), "--data-dir", str(data_dir), "--duration", "1").returncode == 0
    sim_run = runs_of(data_dir)
    assert len(sim_run) == 1

    replay = write_replay(tmp_path, write_trades(tmp_path / "t.csv"))
    result = run_cli("--config", str(replay), "--data-dir", str(data_dir), "--fresh")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "SESSION_ARCHIVED" in result.stderr
    (archived,) = (data_dir / "archive").iterdir()
    assert archived.name.endswith("Z") and archived.name[:8].isdigit()
    assert {"engine.db", "journal.db", "runs", "logs"} <= {p.name for p in archived.iterdir()}
    assert sorted(p.name for p in (archived / "runs").iterdir()) == sim_run
    kept = Store.open_read_only(archived / "engine.db")
    try:
        identity = kept.load_session_identity()
        assert identity is not None and identity.source == "sim"
    finally:
        kept.close()
    now = status(replay, data_dir)
    assert now["identity"]["source"] == "replay"
    (replay_run,) = runs_of(data_dir)
    assert replay_run not in sim_run
    report = json.loads((data_dir / "runs" / replay_run / "summary.json").read_text())
    assert report["ticks"] == 300 and report["end_reason"] == "end of data"


def test_a_finished_replay_run_again_says_so_and_prints_its_report(tmp_path: Path) -> None:
    config = write_replay(tmp_path, write_trades(tmp_path / "t.csv"))
    data_dir = tmp_path / "d"
    first = run_cli("--config", str(config), "--data-dir", str(data_dir))
    assert first.returncode == 0, first.stderr[-3000:]
    (run_id,) = runs_of(data_dir)
    assert status(config, data_dir)["replay_complete"]["run_id"] == run_id

    again = run_cli("--config", str(config), "--data-dir", str(data_dir))
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"already complete (run {run_id} reached the end of data" in again.stdout
    assert f"Session {run_id} (replay)" in again.stdout and "300 ticks" in again.stdout
    assert "ENGINE_STARTING" not in again.stderr and "tick(s) sent" not in again.stderr
    assert runs_of(data_dir) == [run_id], "nothing was replayed"

    engine = build_engine(config, data_dir)
    try:
        assert engine.completion is not None and engine.completion["run_id"] == run_id
        with pytest.raises(ReplayAlreadyComplete, match="already complete"):
            engine.start()
    finally:
        engine.stop()


def test_a_replay_stopped_before_its_end_is_not_complete_and_resumes(tmp_path: Path) -> None:
    config = write_replay(tmp_path, write_trades(tmp_path / "t.csv"))
    data_dir = tmp_path / "d"

    class Silent:  # a replay source that sends nothing: the session stops before the end
        name, simulated = "silent", False

        def start(self, sink: Any) -> None:
            return None

        def stop(self) -> None:
            return None

        def stats(self) -> dict[str, Any]:
            return {}

    engine = build_engine(config, data_dir, source=Silent()).start()
    engine.shutdown(reason="stopped early")
    result = run_cli("--config", str(config), "--data-dir", str(data_dir))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "already complete" not in result.stdout
    (resumed,) = [run for run in runs_of(data_dir) if run != engine.run_id]
    assert json.loads((data_dir / "runs" / resumed / "summary.json").read_text())["ticks"] == 300


# --- the Python API ------------------------------------------------------------------------------------


def test_build_engine_refuses_a_second_engine_on_the_folder_in_the_same_process(tmp_path: Path) -> None:
    first = build_engine(manual_config(), data_dir=tmp_path)
    try:
        with pytest.raises(FolderLocked, match=rf"pid {os.getpid()}"):
            build_engine(manual_config(), data_dir=tmp_path)
    finally:
        first.stop()
    with pytest.raises(EngineStartError, match="was stopped and released"):
        first.start()
    build_engine(manual_config(), data_dir=tmp_path).stop()  # free again


def test_build_engine_fresh_archives_and_starts_empty(tmp_path: Path) -> None:
    engine = build_engine(manual_config(), data_dir=tmp_path).start()
    engine.stop()
    replayed = build_engine(write_replay(tmp_path, write_trades(tmp_path / "t.csv")), tmp_path / "", fresh=True)
    try:
        assert replayed.identity.source == "replay"
        assert (next((tmp_path / "archive").iterdir()) / "engine.db").exists()
    finally:
        replayed.stop()


def test_a_folder_made_by_an_older_version_is_adopted_with_a_warning(tmp_path: Path, logs) -> None:
    old = Store(tmp_path / "engine.db")  # a store with state and no recorded identity
    old.save_account(balance="9500")
    old.close()
    engine = build_engine(manual_config(), data_dir=tmp_path).start()
    try:
        assert logs.wait_for("SESSION_ADOPTED")
        assert engine.sniper.snapshot().balance == 9500
    finally:
        engine.stop()
    store = Store.open_read_only(tmp_path / "engine.db")
    try:
        identity = store.load_session_identity()
        assert identity is not None and identity.source == "manual"
    finally:
        store.close()


def test_the_default_folder_is_named_after_the_config_file(tmp_path: Path) -> None:
    (tmp_path / "replay.toml").write_text('[feed]\nsource = "manual"\n')
    (tmp_path / "config.toml").write_text('[feed]\nsource = "manual"\n')
    (tmp_path / "set.toml").write_text('[engine]\ndata_dir = "elsewhere"\n[feed]\nsource = "manual"\n')
    assert resolve_config_and_data_dir(tmp_path / "replay.toml")[1] == tmp_path / "var" / "replay"
    assert resolve_config_and_data_dir(tmp_path / "config.toml")[1] == tmp_path / "var" / "config"
    assert resolve_config_and_data_dir(tmp_path / "set.toml")[1] == tmp_path / "elsewhere"
    assert resolve_config_and_data_dir(tmp_path / "set.toml", "x")[1] == Path.cwd() / "x"
    with pytest.raises(ConfigError, match=r"engine\.data_dir: .*pass build_engine\(\.\.\., data_dir=\.\.\.\)"):
        build_engine(manual_config())
    assert resolve_config_and_data_dir({"engine": {"data_dir": "y"}})[1] == Path.cwd() / "y"


# --- one engine per folder ------------------------------------------------------------------------------


@pytest.fixture
def running_sim(tmp_path: Path) -> Iterator[Callable[[Path], subprocess.Popen[str]]]:
    """Start ``run.py`` on a sim config and return once it printed its first status line."""
    procs: list[subprocess.Popen[str]] = []

    def start(data_dir: Path) -> subprocess.Popen[str]:
        proc = subprocess.Popen([sys.executable, str(ROOT / "run.py"), "--config", str(write_sim(tmp_path)),
                                 "--data-dir", str(data_dir), "--duration", "300", "--status-every", "0.2"],
                                cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, text=True)
        procs.append(proc)
        up = threading.Event()

        def watch() -> None:
            for line in proc.stdout:  # type: ignore[union-attr]
                if line.startswith("feed sim"):
                    up.set()
                    return

        threading.Thread(target=watch, daemon=True).start()
        if not up.wait(LONG):
            pytest.fail("the engine never printed a status line")
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)
        if proc.stdout is not None:
            proc.stdout.close()


def test_a_second_engine_on_a_running_folder_exits_2_naming_the_running_one(tmp_path: Path, running_sim) -> None:
    data_dir = tmp_path / "d"
    proc = running_sim(data_dir)
    now = status(write_sim(tmp_path), data_dir)
    assert now["session"]["running"] is True and now["session"]["pid"] == proc.pid
    started = now["session"]["started_at"]

    second = run_cli("--config", str(write_sim(tmp_path)), "--data-dir", str(data_dir), "--duration", "1")
    assert_refused_before_start(second)
    assert f"is in use by another engine (pid {proc.pid}, started {started}" in second.stderr

    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=LONG) == 0
    after = status(write_sim(tmp_path), data_dir)
    assert after["session"] == {"running": False}, "a clean stop leaves no holder"


@pytest.mark.slow
def test_a_holder_killed_by_sigkill_never_blocks_a_restart(make_engine, tmp_path: Path) -> None:
    data_dir, out = tmp_path / "data", tmp_path / "child.json"
    run_child_and_kill(data_dir, out, "settled")
    holder = lock_holder(data_dir)
    assert holder is not None and not holder.running, "the kernel dropped the dead engine's lock"
    assert holder.pid is not None and holder.pid != os.getpid()
    engine = make_engine(data_dir=data_dir)
    assert len(engine.sniper.snapshot().positions) == 2
    mine = lock_holder(data_dir)
    assert mine is not None and mine.running and mine.pid == os.getpid()


# --- --status and unusable folders --------------------------------------------------------------------


def test_status_where_no_session_ever_ran_exits_2_and_creates_nothing(tmp_path: Path) -> None:
    config = write_sim(tmp_path)
    missing = tmp_path / "missing"
    result = run_cli("--config", str(config), "--data-dir", str(missing), "--status")
    assert result.returncode == 2 and "no session has ever run here" in result.stderr
    assert "Traceback" not in result.stderr
    assert not missing.exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    result = run_cli("--config", str(config), "--data-dir", str(empty), "--status")
    assert result.returncode == 2 and list(empty.iterdir()) == []


def test_status_with_the_default_folder_creates_nothing(tmp_path: Path) -> None:
    config = write_sim(tmp_path)
    result = run_cli("--config", str(config), "--status")
    assert result.returncode == 2 and f"{tmp_path / 'var' / 'sim'}" in result.stderr
    assert not (tmp_path / "var").exists()


def test_a_session_where_the_folder_cannot_be_made_exits_2_with_a_message(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a folder")
    result = run_cli("--config", str(write_sim(tmp_path)), "--data-dir", str(tmp_path / "file" / "d"),
                     "--duration", "1")
    assert_refused_before_start(result)
    assert f"data_dir {tmp_path / 'file' / 'd'}: cannot create the folder" in result.stderr


def read_only(folder: Path) -> tuple[str, ...]:
    """A command prefix under which ``folder`` is read-only: as a normal user, ``chmod``; as
    root (whom ``chmod`` does not stop), a read-only bind mount in a private mount namespace.
    Skips when neither is possible."""
    if os.geteuid() != 0:
        for path in [folder, *folder.rglob("*")]:
            path.chmod(0o555 if path.is_dir() else 0o444)
        return ()
    if not (shutil.which("unshare") and shutil.which("mount")):
        pytest.skip("running as root, where chmod does not stop writes, and no unshare/mount for a read-only bind")
    prefix = ("unshare", "-m", "sh", "-c", 'mount --bind -o ro "$0" "$0" && exec "$@"', str(folder))
    probe = subprocess.run([*prefix, "touch", str(folder / "probe")], capture_output=True, text=True, timeout=30)
    if probe.returncode == 0 or (folder / "probe").exists():
        pytest.skip("a read-only bind mount is not possible here")
    if "Read-only file system" not in probe.stderr:
        pytest.skip(f"a read-only bind mount is not possible here: {probe.stderr.strip()[:200]}")
    return prefix


def test_a_read_only_folder_refuses_a_session_with_exit_2_and_status_reads_it(tmp_path: Path) -> None:
    data_dir = tmp_path / "d"
    config = write_sim(tmp_path)
    assert run_cli("--config", str(config), "--data-dir", str(data_dir), "--duration", "1").returncode == 0
    before = sorted(p.name for p in data_dir.iterdir())
    prefix = read_only(data_dir)
    try:
        session = run_cli("--config", str(config), "--data-dir", str(data_dir), "--duration", "1", prefix=prefix)
        assert_refused_before_start(session)
        assert f"data_dir {data_dir}" in session.stderr and "--status can read a read-only one" in session.stderr
        now = status(config, data_dir, prefix=prefix)
        assert now["identity"]["source"] == "sim" and now["session"]["running"] is False
        assert now["store_read_mode"] in ("ro", "immutable")
    finally:
        for path in [data_dir, *data_dir.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
    assert sorted(p.name for p in data_dir.iterdir()) == before
