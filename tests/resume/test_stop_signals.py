"""Which stop signal hands the job back to submitit for a requeue: USR2 (its time-limit /
preemption signal) does, TERM (scancel) does not, so a cancelled job stays cancelled."""

from __future__ import annotations

import os
import signal

import pytest

from src.resume.stop_signals import catching_stop_signals


class FakeSubmititHandler:
    """Stands in for submitit's SignalHandler (the module and method names are what count)."""

    def checkpoint_and_try_requeue(self, signum: int, frame: object = None) -> None:
        raise AssertionError("the test never lets this run")


FakeSubmititHandler.__module__ = "submitit.core.job_environment"


@pytest.fixture
def submitit_usr2():
    handler = FakeSubmititHandler().checkpoint_and_try_requeue
    before = signal.signal(signal.SIGUSR2, handler)
    yield handler
    signal.signal(signal.SIGUSR2, before)


@pytest.mark.parametrize("name, requeues", [("SIGUSR2", True), ("SIGTERM", False),
                                            ("SIGUSR1", False)])
def test_only_submitits_own_signal_requeues(submitit_usr2, name, requeues):
    with catching_stop_signals() as stops:
        os.kill(os.getpid(), getattr(signal, name))
        assert stops.name == name
        handler = stops.submitit_requeue_handler()
    assert (handler == submitit_usr2) is requeues


def test_no_requeue_handler_outside_submitit():
    with catching_stop_signals() as stops:
        os.kill(os.getpid(), signal.SIGUSR2)
        assert stops.submitit_requeue_handler() is None
