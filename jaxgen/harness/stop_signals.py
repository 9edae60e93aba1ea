"""Stopping a run on a signal: SIGTERM, SIGINT (Ctrl-C) and SIGUSR1 as a request to stop at the next
step boundary with a checkpoint (`StopSignals`), agreed on by every process.

The loop (`jaxgen.harness.loop`) enters `StopSignals` around its ticks, polls it after each
step and, on a signal, saves a checkpoint and raises `jaxgen.errors.TrainingStopped`.
"""
from __future__ import annotations

import signal
import threading
from typing import Any, Dict, Optional

import jax
import numpy as np
from jax.experimental import multihost_utils

STOP_SIGNALS = ("SIGTERM", "SIGINT", "SIGUSR1")   # stop at the next step boundary, with a checkpoint
STOP_SYNC_STEPS = 10     # several processes agree on a stop every this many steps and at tick ends


class StopSignals:
    """SIGTERM, SIGINT (Ctrl-C) and SIGUSR1 as a request to stop at a step boundary.

    Schedulers send SIGTERM before they kill a job (Slurm, Kubernetes, Docker, spot VMs; some
    clusters SIGUSR1): the loop saves a checkpoint at the next step boundary and stops instead
    of losing the steps since the last periodic one. A context: entered in the main thread
    (the one Python runs handlers in; in another it installs nothing), its handler records the
    first signal; leaving it puts the previous handlers back. A signal set to SIG_IGN (SIGINT
    of a background job) stays ignored. Repeated signals change nothing, so a second SIGTERM
    cannot cut the save short; only a second Ctrl-C outside the stop's save (`saving`) raises
    KeyboardInterrupt at once, for a user who will not wait for a long evaluation.

    `poll` decides, the same on every process. One process needs no collective: it stops at
    the step after the signal. Several share their flags with
    `multihost_utils.process_allgather`, only after steps that are multiples of `sync_every`
    and at tick ends: a collective waits for every queued step, which once a step would
    stall the device. (jax's own preemption sync point needs jax.distributed and only hears
    SIGTERM, so it cannot serve a one-process run or SIGINT/SIGUSR1.)
    """

    def __init__(self, sync_every: int = STOP_SYNC_STEPS):
        self.sync_every = max(int(sync_every), 1)
        self.processes = jax.process_count()
        self.received: Optional[int] = None      # the first signal this process got
        self.saving = False                      # the stop's checkpoint is being written
        self._previous: Dict[int, Any] = {}

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():
            for name in STOP_SIGNALS:
                sig = getattr(signal, name, None)          # Windows has no SIGUSR1
                if sig is not None and signal.getsignal(sig) != signal.SIG_IGN:
                    self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, old in self._previous.items():     # None: a handler not set from Python
            signal.signal(sig, signal.SIG_DFL if old is None else old)
        self._previous.clear()

    def _handle(self, signum: int, frame: Any) -> None:
        if self.received is None:
            self.received = signum
        elif signum == signal.SIGINT and not self.saving:
            raise KeyboardInterrupt

    def poll(self, step: int, tick_end: bool = False) -> Optional[int]:
        """The signal to stop on now that `step` steps are done (the same on every process),
        or None to go on. Every process must call it after each step."""
        if self.processes == 1:
            return self.received
        if step % self.sync_every and not tick_end:
            return None
        flags = np.ravel(multihost_utils.process_allgather(np.int32(self.received or 0)))
        return next((int(f) for f in flags if f), None)
