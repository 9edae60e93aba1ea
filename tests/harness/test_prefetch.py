"""The loop's batch prefetch (jaxgen.harness.batches.Prefetcher in jaxgen.harness.loop): results in
step order with a producer's exception raised at its step, a run with prefetch bit for bit the run
without, a failing batch surfacing in the loop with its message, no prefetch thread left behind, no
device value read per step, and no deadlock with two fake CPU devices (each step awaited).

Run as a script (`python tests/harness/test_prefetch.py WORKDIR`, with XLA_FLAGS asking for fake
devices) it trains the toy with and without prefetch and prints whether the states are identical.
"""
import os
import pathlib
import subprocess
import sys
import tempfile
import threading
import time

import jax
import ml_collections
import numpy as np
import optax
import pytest
from jax._src.array import ArrayImpl

from jaxgen.harness import logs, loop
from jaxgen.harness.batches import Prefetcher, batch_at_step
from jaxgen.harness.checkpoint import TrainCheckpointer, restore_latest_raw
from jaxgen.harness.parallel import DataParallel
from jaxgen.harness.schedule import Schedule
from toy_experiment import RES, ToyExperiment, no_tensorboard  # noqa: F401 (fixture)

N, BATCH = 16, 4


class Toy(ToyExperiment):
    """Least squares on [N, 4, 4, 1] images with per-step noise; 2 steps of 4 images a tick.

    config: total_steps, prefetch (the experiment's `prefetch`), fail_at (the batch of that step
    raises ValueError), slow (seconds each batch takes: the loop has to wait for the thread).
    """

    noise = True

    def __init__(self, config, workdir):
        self.cfg, self.seed, self.num_examples = config, 1, N
        self.toy_data(N, 2)
        self.schedule = Schedule(BATCH, config.total_steps, 2, 1, 1, 10)
        self.descriptor = dict(class_names=["a", "b"], resolution=RES, channels=1, model="toy", model_kwargs={})
        self.prefetch = int(config.prefetch)
        self.tx = optax.adam(0.05)

    def batch(self, step):
        if step == self.cfg.fail_at:
            raise ValueError(f"toy batch {step} is unreadable")
        time.sleep(self.cfg.slow)
        img, lab = batch_at_step(self.images, self.labels, step, BATCH, self.seed, mirror=True)
        return img, lab.astype(np.float32)


def _run(workdir, **kw):
    c = ml_collections.ConfigDict(dict(seed=1, total_steps=8, prefetch=2, fail_at=-1, slow=0.0))
    c.update(kw)
    return loop.train(Toy, c, workdir)


def _prefetch_threads():
    return [t for t in threading.enumerate() if t.name == "jaxgen-prefetch"]


def _same_runs(a: pathlib.Path, b: pathlib.Path, ra, rb) -> bool:
    """Final checkpoints bit for bit equal and the same per-tick losses."""
    (ta, sa), (tb, sb) = restore_latest_raw(a), restore_latest_raw(b)
    same = jax.tree_util.tree_all(jax.tree_util.tree_map(
        lambda x, y: np.array_equal(np.asarray(x), np.asarray(y)), ta, tb))
    losses = [[r["loss"] for r in res["history"]] for res in (ra, rb)]
    return bool(sa == sb and same and losses[0] == losses[1])


def test_prefetcher_gives_steps_in_order_and_raises_at_the_failing_step():
    calls = []

    def fn(step):
        calls.append(step)
        if step == 5:
            raise KeyError("step five")
        return step * 10

    before = threading.active_count()
    with Prefetcher(fn, 2, 9, depth=2) as feed:
        assert [feed.get(s) for s in (2, 3, 4)] == [20, 30, 40]
        with pytest.raises(ValueError, match="the next step is 5"):
            feed.get(6)
        with pytest.raises(KeyError, match="step five"):
            feed.get(5)
    assert calls == [2, 3, 4, 5]            # the thread stopped at the failing step
    assert threading.active_count() == before and not _prefetch_threads()


def test_prefetcher_stays_within_its_depth_and_close_stops_a_blocked_thread():
    calls = []
    before = threading.active_count()
    feed = Prefetcher(calls.append, 0, 1000, depth=2)
    deadline = time.time() + 10
    while len(calls) < 3 and time.time() < deadline:
        time.sleep(0.01)
    time.sleep(0.2)
    assert calls == [0, 1, 2]               # 2 queued + 1 waiting to be queued
    feed.close()
    assert threading.active_count() == before and not _prefetch_threads()
    inline = Prefetcher(lambda s: -s, 3, 5, depth=0)    # depth 0: no thread
    assert threading.active_count() == before and [inline.get(3), inline.get(4)] == [-3, -4]


def test_run_with_prefetch_is_bit_identical_to_run_without(tmp_path):
    on = _run(tmp_path / "on", prefetch=2, slow=0.02)
    off = _run(tmp_path / "off", prefetch=0)
    assert on["step"] == off["step"] == 8 and len(on["history"]) == 4
    assert _same_runs(tmp_path / "on", tmp_path / "off", on, off)
    assert not _prefetch_threads()


def test_a_failing_batch_surfaces_in_the_loop_at_its_step(tmp_path):
    with pytest.raises(ValueError, match="toy batch 5 is unreadable"):
        _run(tmp_path / "run", fail_at=5)
    assert TrainCheckpointer(tmp_path / "run").latest_step() == 4   # steps 0-4 ran, tick 2 saved
    assert not _prefetch_threads()


def test_no_device_value_is_read_per_step(tmp_path, monkeypatch):
    """Counts the device arrays read on the host (int(x), float(x), bool(x), jax.device_get: all
    go through ArrayImpl._value) while a tick's steps run: none. (jax.transfer_guard does not
    see these reads on CPU, where a device buffer is host memory.)"""
    value, steps, reads, active = ArrayImpl._value, loop._Loop._steps, [], [False]

    def counted(self):
        if active[0]:
            reads.append(self.shape)
        return value.fget(self)

    def watched(self, end):
        active[0] = True
        try:
            out = steps(self, end)
            assert not reads, f"{len(reads)} device values read during the steps"
            int(self.state.step)            # the counter does see a read
            assert len(reads) == 1
            reads.clear()
            return out
        finally:
            active[0] = False

    monkeypatch.setattr(ArrayImpl, "_value", property(counted))
    monkeypatch.setattr(loop._Loop, "_steps", watched)
    assert _run(tmp_path / "run")["step"] == 8


def test_two_fake_cpu_devices_prefetch_without_deadlock(tmp_path):
    tests_dir = str(pathlib.Path(__file__).resolve().parents[1])   # toy_experiment, as pytest has it
    env = dict(os.environ, XLA_FLAGS=f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=2",
               JAX_PLATFORMS="cpu",
               PYTHONPATH=os.pathsep.join(filter(None, [tests_dir, os.environ.get("PYTHONPATH", "")])))
    out = subprocess.run([sys.executable, __file__, str(tmp_path)], env=env, capture_output=True, text=True,
                         timeout=300, cwd=pathlib.Path(__file__).resolve().parents[2])
    assert out.returncode == 0, out.stderr[-3000:]
    assert "RESULT devices=2 block_every_step=True identical=True" in out.stdout, out.stdout[-2000:]


def _main(workdir: pathlib.Path) -> None:
    """Train the toy with and without prefetch on this process's devices; print how they compare."""
    logs.open_tensorboard = lambda w: None
    on = _run(workdir / "on", prefetch=2, slow=0.01, total_steps=12)
    off = _run(workdir / "off", prefetch=0, total_steps=12)
    block = DataParallel().block_every_step
    print(f"RESULT devices={jax.device_count()} block_every_step={block} "
          f"identical={_same_runs(workdir / 'on', workdir / 'off', on, off)}", flush=True)


if __name__ == "__main__":
    _main(pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else pathlib.Path(tempfile.mkdtemp()))
