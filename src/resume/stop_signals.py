"""Record the signals that ask a training job to stop (stdlib only, no torch).

A cluster asks a job to stop with a signal: Slurm's ``--signal=B:USR1@s`` (forwarded by our
sbatch scripts), submitit's ``USR2`` before the time limit, ``TERM`` at the limit or on
preemption. A signal handler must not checkpoint itself (it may fire in the middle of an
optimizer step or a collective), so the handlers here only record the signal; the
Preemption callback saves and stops at the next optimizer-step boundary.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

# The process exit code of a run that stopped early on a signal after saving its checkpoint:
# EX_TEMPFAIL from sysexits.h ("temporary failure; retry"). 0 = finished, others = errors.
EXIT_INCOMPLETE = 75

DEFAULT_SIGNALS = ("SIGUSR1", "SIGUSR2", "SIGTERM")

Handler = Callable[[int, FrameType | None], Any] | int | None


class StopSignals:
    """Handlers that record the first stop signal; the previous handlers are kept.

    Attributes:
        received: number of the first stop signal received, None while none came.
        previous: the handler each signal had before `install` (submitit's requeue handler
            for SIGUSR2 inside a submitit job).
    """

    def __init__(self, names: tuple[str, ...] = DEFAULT_SIGNALS) -> None:
        self.signums = [signal.Signals[name] for name in names if hasattr(signal, name)]
        self.received: int | None = None
        self.previous: dict[int, Handler] = {}

    @property
    def name(self) -> str | None:
        return None if self.received is None else signal.Signals(self.received).name

    def _record(self, signum: int, frame: FrameType | None) -> None:
        if self.received is None:
            self.received = signum
            # A raw write: logging/print can raise "reentrant call" inside a signal handler.
            message = (f"[preemption] received {signal.Signals(signum).name}: checkpointing at "
                       "the next step boundary, then stopping\n")
            try:
                os.write(sys.stderr.fileno(), message.encode())
            except (OSError, ValueError):
                pass

    def install(self) -> None:
        """Record stop signals from now on (main thread only; a no-op elsewhere)."""
        for signum in self.signums:
            try:
                previous = signal.signal(signum, self._record)
            except ValueError:  # not the main thread (e.g. a notebook worker): leave them alone
                return
            self.previous.setdefault(int(signum), previous)

    def reassert(self, signum: int) -> None:
        """Put our handler back on `signum` (after a library replaced it, e.g. Lightning's TERM)."""
        if int(signum) in self.previous:
            try:
                signal.signal(signum, self._record)
            except ValueError:
                pass

    def restore(self) -> None:
        """Give every signal back the handler it had before `install`."""
        for signum, handler in self.previous.items():
            try:
                signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
            except ValueError:
                pass
        self.previous = {}

    def submitit_requeue_handler(self) -> Callable[[int, FrameType | None], Any] | None:
        """submitit's checkpoint-and-requeue handler, when this process is a submitit job
        and submitit's own signal (USR2: time limit, preemption) stopped it. Not after TERM:
        that is `scancel` (or Slurm ending the job), and a cancelled job that requeued
        itself would undo the cancellation."""
        handler = self.previous.get(int(self.received)) if self.received is not None else None
        owner = getattr(handler, "__self__", None)
        if type(owner).__module__.startswith("submitit") and \
                getattr(handler, "__name__", "") == "checkpoint_and_try_requeue":
            return handler  # type: ignore[return-value]
        return None


def stop_during_startup(names: tuple[str, ...] = DEFAULT_SIGNALS) -> None:
    """Until training records stop signals (`catching_stop_signals`), a stop signal ends the
    process at once with one line and EXIT_INCOMPLETE: nothing has trained, so nothing is
    lost, and a batch script requeues it like any stopped run (the default action would end
    it silently with -15). Installed first thing, before torch spends seconds loading."""

    def _stop(signum: int, frame: FrameType | None) -> None:
        message = (f"[preemption] received {signal.Signals(signum).name} while starting up, "
                   f"before the first training step: nothing to save; stopping (run the same "
                   f"command again to start it)\n")
        try:
            os.write(sys.stderr.fileno(), message.encode())
        except (OSError, ValueError):
            pass
        raise SystemExit(EXIT_INCOMPLETE)

    for name in names:
        if hasattr(signal, name):
            signal.signal(signal.Signals[name], _stop)


@contextmanager
def catching_stop_signals(names: tuple[str, ...] = DEFAULT_SIGNALS) -> Iterator[StopSignals]:
    """Record stop signals inside the block; the previous handlers come back afterwards."""
    stops = StopSignals(names)
    stops.install()
    try:
        yield stops
    finally:
        stops.restore()


class StoppedEarly(Exception):
    """Training stopped on a stop signal after saving its checkpoint; the run is not finished.

    `hand_off()` ends the process the way the scheduler expects: inside a submitit job it
    calls submitit's checkpoint-and-requeue handler (which requeues the job and exits);
    otherwise it exits with EXIT_INCOMPLETE so that a batch script can tell "stopped, resume
    me" from "finished" (0) and from a crash (anything else).
    """

    def __init__(self, run_dir: str, step: int, signal_name: str | None,
                 requeue: Callable[[int, FrameType | None], Any] | None = None) -> None:
        self.run_dir, self.step, self.signal_name, self.requeue = run_dir, step, signal_name, requeue
        super().__init__(
            f"stopped by {signal_name or 'a stop signal'} at step {step} with a checkpoint saved; "
            f"run again (same overrides) to resume: {run_dir}"
        )

    def hand_off(self) -> None:
        if self.requeue is not None:
            self.requeue(signal.SIGUSR2, None)  # submitit: requeues, then sys.exit(-1)
        raise SystemExit(EXIT_INCOMPLETE)
