"""jaxgen.harness.stop_signals.StopSignals on its own: when several processes agree on a stop, and
that no handler is installed off the main thread (the loop's stops: test_preemption)."""
import signal
import threading

import numpy as np

from jaxgen.harness import stop_signals


def test_processes_agree_on_a_stop_at_sync_steps_and_tick_ends(monkeypatch):
    """Two processes (the collective faked): this one got no signal, the other a SIGTERM. They
    gather their flags only at multiples of sync_every and at tick ends, and stop there."""
    sent = []

    def allgather(flag):
        sent.append(int(flag))
        return np.array([int(flag), int(signal.SIGTERM)])   # [this process, the other one]

    monkeypatch.setattr(stop_signals.multihost_utils, "process_allgather", allgather)
    stops = stop_signals.StopSignals(sync_every=4)
    stops.processes = 2
    decisions = [stops.poll(step, tick_end=step == 6) for step in range(1, 10)]
    assert decisions == [None, None, None, signal.SIGTERM, None, signal.SIGTERM, None, signal.SIGTERM, None]
    assert sent == [0, 0, 0]
    stops.received = int(signal.SIGUSR1)
    monkeypatch.setattr(stop_signals.multihost_utils, "process_allgather", lambda f: np.array([int(f), 0]))
    assert stops.poll(8) == signal.SIGUSR1 and stops.poll(9) is None
    one = stop_signals.StopSignals()
    one.received = int(signal.SIGTERM)                # one process: no collective, every step
    assert one.processes == 1 and one.poll(1) == signal.SIGTERM
    seen = []
    thread = threading.Thread(target=lambda: seen.append(one.__enter__()._previous))
    thread.start()
    thread.join()
    assert seen == [{}]                               # no handler is installed off the main thread
