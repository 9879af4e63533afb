"""adapters/timers.py: which jobs a wake-up runs (``tick``, no thread), and the thread itself:
it wakes, runs the jobs, survives a failing one and ends on ``stop``."""

from __future__ import annotations

import threading

import pytest

from adapters.timers import PeriodicTimers, TimerJob
from tests.conftest import WAIT


def recorder(name: str, ran: list[str]) -> TimerJob:
    return TimerJob(name=name, action=lambda: ran.append(name))


def test_a_job_runs_every_wake_up_unless_its_period_is_longer_then_when_its_steps_add_up_to_it():
    ran: list[str] = []
    timers = PeriodicTimers(0.25, [
        recorder("flush", ran),
        TimerJob(name="sweep", action=lambda: ran.append("sweep"), every_s=0.25),  # = the step: every time
        TimerJob(name="reconcile", action=lambda: ran.append("reconcile"), every_s=1.0),
        TimerJob(name="slow", action=lambda: ran.append("slow"), every_s=0.6),
    ])

    wakes = [timers.tick() for _ in range(8)]

    assert wakes[0] == ["flush", "sweep"]
    assert [n for n, names in enumerate(wakes, 1) if "reconcile" in names] == [4, 8], "0.25 x 4 adds up to 1.0"
    assert [n for n, names in enumerate(wakes, 1) if "slow" in names] == [3, 6], "the count restarts after each run"
    assert ran.count("flush") == 8 and timers.ticks == 8


def test_a_job_that_raises_is_logged_and_the_others_still_run(logs):
    ran: list[str] = []

    def broken() -> None:
        raise RuntimeError("mailbox gone")

    timers = PeriodicTimers(1.0, [TimerJob(name="broken", action=broken), recorder("after", ran)])

    assert timers.tick() == ["broken", "after"] and ran == ["after"]
    assert logs.wait_for("TIMER_JOB_FAILED: broken: RuntimeError('mailbox gone')")


@pytest.mark.parametrize(("step", "every"), [(0, None), (-1, None), (0.25, 0), (0.25, -5)])
def test_a_step_or_period_that_is_not_positive_is_refused(step, every):
    with pytest.raises(ValueError, match="step_s|every_s"):
        PeriodicTimers(step, [TimerJob(name="x", action=lambda: None, every_s=every)])


def test_the_thread_runs_the_jobs_until_stopped_and_is_a_named_daemon():
    seen = threading.Event()
    timers = PeriodicTimers(0.01, [TimerJob(name="ping", action=seen.set)], name="test-timers")
    thread_names = []
    timers.start()
    try:
        assert seen.wait(WAIT), "the timer thread never ran its job"
        thread_names = [t.name for t in threading.enumerate() if t.daemon]
    finally:
        timers.stop(timeout=WAIT)
    assert "test-timers" in thread_names
    assert not timers.running
    ticks = timers.ticks
    timers.stop(timeout=WAIT)  # idempotent
    assert timers.ticks == ticks, "nothing runs after stop"
