"""Stopping on a signal (jaxgen.harness.stop_signals, in jaxgen.harness.loop): SIGTERM, SIGINT and
SIGUSR1 save a checkpoint at the next step boundary and end the run with TrainingStopped, which
the commands print as one line with exit status 75; the run resumed from that checkpoint ends bit-identical
to an uninterrupted one. The toy runs (compiled in moments) raise the signal in their own
process from a hook; the train.py run gets a real SIGTERM from this process, mid-tick."""
import json
import os
import pathlib
import re
import shlex
import signal
import subprocess
import sys
import time

import jax
import ml_collections
import numpy as np
import optax
import pytest

import tiny_gan
from jaxgen.commands import common
from jaxgen.errors import EXIT_STOPPED, TrainingStopped
from jaxgen.harness import loop
from jaxgen.harness.batches import batch_at_step
from jaxgen.harness.checkpoint import restore_latest_raw
from jaxgen.harness.schedule import Schedule
from toy_experiment import RES, ToyExperiment, no_tensorboard  # noqa: F401 (fixture)

REPO = pathlib.Path(__file__).resolve().parents[2]
N = 16


class Toy(ToyExperiment):
    """Least squares with noise from fold_in(key, step) (a resume that drew other keys would
    differ); a tick is 2 steps of 4 images, a checkpoint every tick.

    config: total_steps; signal_at: the step before which the process raises each of
    `signals` on itself (-1: none).
    """

    noise = True

    def __init__(self, config, workdir):
        self.cfg, self.seed, self.num_examples = config, 0, N
        self.toy_data(N, 2)
        self.schedule = Schedule(4, config.total_steps, 2, 1, 1, 10)
        self.descriptor = dict(class_names=["a", "b"], resolution=RES, channels=1, model="toy",
                               model_kwargs={})
        self.tx = optax.sgd(0.1)

    def batch(self, step):
        img, lab = batch_at_step(self.images, self.labels, step, 4, self.seed)
        return img, lab.astype(np.float32)

    def step_options(self, step):
        """Runs on the loop's (main) thread before each step: a signal here is a real one."""
        if step == self.cfg.signal_at:
            for name in self.cfg.signals:
                signal.raise_signal(getattr(signal, name))
        return {}


def _run(workdir, **kw):
    c = ml_collections.ConfigDict(dict(total_steps=12, signal_at=-1, signals=["SIGUSR1"]))
    c.update(kw)
    return loop.train(Toy, c, workdir)


def _rows(workdir):
    return [json.loads(ln) for ln in (workdir / "metrics.jsonl").read_text().splitlines()]


def _saved_steps(workdir):
    return sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())


def _meta(workdir, step):
    return json.loads((workdir / "checkpoints" / str(step) / "meta" / "metadata").read_text())


def _not_the_loop(signum, frame):
    """The handler of the three signals around a toy run: the run must put it back (and a
    signal the loop did not take lands here, so the test fails instead of the process dying)."""


@pytest.fixture
def not_the_loop():
    """`_not_the_loop` for SIGTERM, SIGINT and SIGUSR1 during the test, then the old handlers."""
    sigs = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)
    previous = [signal.signal(s, _not_the_loop) for s in sigs]
    yield
    for s, old in zip(sigs, previous):
        signal.signal(s, old)


def _handlers_back():
    return all(signal.getsignal(s) is _not_the_loop for s in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1))


def test_sigusr1_mid_tick_saves_that_step_and_the_resumed_run_is_exact(tmp_path, log_lines, not_the_loop):
    ref = _run(tmp_path / "ref")
    with pytest.raises(TrainingStopped) as e:
        _run(tmp_path / "run", signal_at=4)        # tick 3 is steps 4, 5: stops after step 4
    assert _handlers_back()
    run = tmp_path / "run"
    assert (e.value.signal_name, e.value.step, e.value.exit_status) == ("SIGUSR1", 5, 75)
    assert str(e.value) == f"stopped by SIGUSR1: saved a checkpoint at step 5 (kimg 0.020) in {run / 'checkpoints'}"
    assert "SIGUSR1: saving a checkpoint at step 5 (kimg 0.020) before exiting" in log_lines.read()
    assert _saved_steps(run) == [2, 4, 5]
    assert (_meta(run, 5)["tick"], _meta(run, 5)["nimg"]) == (2, 20)   # tick 3 was not logged
    assert [r["tick"] for r in _rows(run)] == [1, 2]
    _run(run)
    assert "Resuming from step 5 (tick 2, kimg 0.020)" in log_lines.read()
    rows = _rows(run)                   # the resumed run first finishes tick 3 (step 5 only)
    assert [r["tick"] for r in rows] == [1, 2, 3, 4, 5, 6]
    assert [r["step"] for r in rows] == [r["step"] for r in ref["history"]] == [2, 4, 6, 8, 10, 12]
    (a, s1), (b, s2) = (restore_latest_raw(tmp_path / w) for w in ("ref", "run"))
    assert s1 == s2 == 12
    jax.tree_util.tree_map(np.testing.assert_array_equal, a, b)


def test_signals_during_the_stop_save_are_ignored(tmp_path, monkeypatch, not_the_loop):
    """SIGTERM stops the run after step 3; while that checkpoint is written the process gets
    SIGTERM, SIGINT and SIGUSR1 again: the save completes and the stop is still SIGTERM's."""
    save = loop.TrainCheckpointer.save

    def save_under_fire(self, step, state, meta):
        if step == 3:
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1):
                signal.raise_signal(sig)
        return save(self, step, state, meta)

    monkeypatch.setattr(loop.TrainCheckpointer, "save", save_under_fire)
    try:
        with pytest.raises(TrainingStopped) as e:
            _run(tmp_path / "run", total_steps=6, signal_at=2, signals=["SIGTERM"])
    except KeyboardInterrupt:
        pytest.fail("a second SIGINT during the stop's save interrupted it")
    assert (e.value.signal_name, e.value.step) == ("SIGTERM", 3)
    assert _saved_steps(tmp_path / "run") == [2, 3]
    state, step = restore_latest_raw(tmp_path / "run")
    assert step == 3 and int(state["step"]) == 3
    assert _handlers_back()


def test_a_second_ctrl_c_before_the_stop_interrupts_at_once(tmp_path, log_lines, not_the_loop):
    """The first SIGINT asks for a stop at the next step boundary; a second one before it
    raises KeyboardInterrupt there and then (before step 5 runs), which saves step 5."""
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path / "run", total_steps=8, signal_at=5, signals=["SIGINT", "SIGINT"])
    assert "Interrupted: saving a checkpoint at step 5 before exiting" in log_lines.read()
    assert _saved_steps(tmp_path / "run") == [2, 4, 5]
    assert _handlers_back()


def test_a_signal_in_the_last_step_lets_the_run_finish(tmp_path, not_the_loop):
    """SIGTERM before step 5 of 6: nothing would be left to resume but the final tick's
    evaluation and row, so the run ends as an uninterrupted one does."""
    res = _run(tmp_path / "run", total_steps=6, signal_at=5, signals=["SIGTERM"])
    assert res["step"] == 6 and [r["step"] for r in res["history"]] == [2, 4, 6]
    assert _saved_steps(tmp_path / "run") == [2, 4, 6] and _handlers_back()


def test_the_commands_print_a_stop_as_one_line_with_the_resume_command_and_exit_75(capsys, monkeypatch):
    monkeypatch.setattr(sys, "orig_argv", ["python", "train.py", "--config", "c.py:micro", "--workdir", "runs/a b"])
    stop = TrainingStopped("stopped by SIGTERM: saved a checkpoint at step 3 (kimg 0.012)\nin /w/checkpoints",
                           "SIGTERM", 3)

    def main():
        raise stop
    with pytest.raises(SystemExit) as e:
        common.run_main(main)
    assert e.value.code == EXIT_STOPPED == 75
    assert capsys.readouterr().err == (
        "stopped by SIGTERM: saved a checkpoint at step 3 (kimg 0.012) in /w/checkpoints; to resume, run "
        "the same command again: python train.py --config c.py:micro --workdir 'runs/a b'\n")


def _train_cmd(workdir, data):
    return [sys.executable, str(REPO / "train.py"), "--config", str(REPO / "configs/acne.py") + ":micro",
            "--workdir", str(workdir), f"--config.data.path={data}"]


def test_sigterm_to_train_py_mid_tick_saves_exits_75_and_resumes_exactly(tmp_path, jax_cache_dir):
    """configs/acne.py:micro: 8 steps, 2 a tick, a checkpoint every tick. SIGTERM as soon as
    tick 1's checkpoint (step 2) is on disk lands in a later step; the run saves after it.
    The uninterrupted reference is a train.py run too: the three runs compile the step once
    (the persistent compilation cache), and the third is bit-identical to it."""
    data, ref, run = tmp_path / "demo", tmp_path / "ref", tmp_path / "run"
    env = tiny_gan.fast_compile_env(dict(os.environ, JAXGEN_JAX_CACHE=str(jax_cache_dir),
                                         JAXGEN_CACHE_DIR=str(tmp_path / "img_cache"), PYTHONUNBUFFERED="1"))
    done = subprocess.run(_train_cmd(ref, data), env=env, timeout=600, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    proc = subprocess.Popen(_train_cmd(run, data), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None and not (run / "checkpoints/2/meta").exists():
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == EXIT_STOPPED, f"exit {proc.returncode}:\n{out[-2000:]}\n{err[-3000:]}"
    last = err.strip().splitlines()[-1]
    m = re.fullmatch(r"stopped by SIGTERM: saved a checkpoint at step (\d+) \(kimg ([\d.]+)\) in (\S+); "
                     r"to resume, run the same command again: (.+)", last)
    assert m, err[-3000:]
    step = int(m[1])
    assert m[2] == f"{step * 4 / 1000:.3f}" and m[3] == str(run / "checkpoints")
    assert m[4] == shlex.join(_train_cmd(run, data))           # this very command
    assert f"SIGTERM: saving a checkpoint at step {step} (kimg {m[2]}) before exiting" in out
    logged = [json.loads(ln)["step"] for ln in (run / "metrics.jsonl").read_text().splitlines()]
    assert 2 <= logged[-1] < step <= 8                          # work since the last tick is kept
    assert max(_saved_steps(run)) == step and _meta(run, step)["tick"] == len(logged)
    out = subprocess.run(_train_cmd(run, data), env=env, timeout=600, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    assert f"Resuming from step {step} (tick {len(logged)}, kimg {m[2]})" in out.stdout
    rows = [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["tick"] for r in rows] == list(range(1, len(rows) + 1)) and rows[-1]["step"] == 8
    assert all(r["step"] % 2 == 0 for r in rows)               # the ticks of the uninterrupted run
    (a, s1), (b, s2) = restore_latest_raw(ref), restore_latest_raw(run)
    assert s1 == s2 == 8
    jax.tree_util.tree_map(np.testing.assert_array_equal, a, b)
