"""Stop a run cleanly on the signals a cluster sends before it stops a job.

SLURM sends SIGUSR2 ahead of a job's time limit when asked to (submitit asks:
--signal=USR2@<signal_delay_s>), and SIGTERM when it preempts or cancels a job. On either,
lab-run stops the run where it is and saves: results.json says where it stopped
("failed", with "stopped by SIGUSR2 ..."), the heatmap is drawn and the W&B run finished;
the checkpoint of the last completed task is on disk already (lab.checkpoint). Then the
signal's previous handler has its turn: under submitit, its SIGUSR2 handler requeues the
job (SLURM: scontrol requeue; submitit_local: a new process), and the requeued job
resumes the run after its last completed task, bit for bit. With no such handler,
lab-run exits with status 128 + the signal's number, and running the same command again
resumes the run.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NoReturn

SIGNALS = (signal.SIGUSR2, signal.SIGTERM)


class Stopped(BaseException):
    """Raised by the signal handler in the main thread. Not an Exception: no `except
    Exception` on the way (W&B's guard, a figure's) may swallow it."""

    def __init__(self, signum: int):
        self.signum = signum
        super().__init__(
            f"stopped by {signal.Signals(signum).name} (a preemption, or the job's time limit "
            "is near); the run resumes after its last completed task when it is requeued or "
            "run again"
        )


# The stop handler's state: a signal that came while the run held it, and whether one came
_holding = False
_pending: list[int] = []
_received: list[int] = []


def _stop(signum: int, frame) -> None:
    if _received:  # a second signal while the run saves: ignored
        return
    if _holding:
        _pending.append(signum)
        return
    _received.append(signum)
    raise Stopped(signum)


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """Within: SIGUSR2 or SIGTERM raises Stopped, once. The previous handlers are back on
    exit."""
    previous = {s: signal.getsignal(s) for s in SIGNALS}
    _pending.clear()
    _received.clear()
    for s in SIGNALS:
        signal.signal(s, _stop)
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


@contextmanager
def held() -> Iterator[None]:
    """Within, a stop signal waits for the end, so that what is saved together (a task's
    row in results.json and the checkpoint) is saved together."""
    global _holding
    _holding = True
    try:
        yield
    finally:
        _holding = False
    if _pending:
        _stop(_pending.pop(), None)


def pass_on(stopped: Stopped) -> NoReturn:
    """After the run saved: the signal's previous handler (submitit's requeues the job and
    exits), then exit with 128 + the signal's number."""
    handler = signal.getsignal(stopped.signum)
    if callable(handler):
        handler(stopped.signum, None)
    sys.exit(128 + stopped.signum)
