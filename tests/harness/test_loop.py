"""The shared training harness (jaxgen.harness.loop) on a toy experiment that compiles in moments:
exact resume, metrics.jsonl after a resume, divergence, best/, validation, Ctrl-C."""
import json
from typing import Any, Dict

import jax
import ml_collections
import numpy as np
import optax
import pytest

from jaxgen.harness import loop
from jaxgen.harness.batches import Grid, batch_at_step, batch_indices
from jaxgen.harness.checkpoint import TrainCheckpointer, read_descriptor, restore_latest_raw
from jaxgen.harness.schedule import Schedule
from toy_experiment import RES, ToyExperiment, no_tensorboard  # noqa: F401 (fixture)

N = 24


class Toy(ToyExperiment):
    """Linear regression of the label on the pixels of [N, 4, 4, 1] uint8 images, 2 steps a tick."""

    noise = True

    def __init__(self, config, workdir):
        c = config
        if c.lr <= 0:
            raise ValueError(f"config.lr={c.lr} must be > 0")
        self.toy_data(N, 3)
        self.seed, self.num_examples, self.cfg = int(c.seed), N, c
        self.schedule = Schedule(c.batch_size, c.total_steps, 2, c.snapshot_ticks, 1, 5)
        self.descriptor = dict(class_names=["a", "b", "c"], resolution=RES, channels=1, model="toy",
                               model_kwargs={})
        self.best_key = "score" if c.scores else None
        self.tx = optax.adam(c.lr)
        self.grid = Grid(self.images[:4], cols=2)

    def batch(self, step):
        if step == self.cfg.interrupt_at:
            raise KeyboardInterrupt
        img, lab = batch_at_step(self.images, self.labels, step, self.schedule.batch_size, self.seed, True)
        lab = lab.astype(np.float32)
        return img, lab * np.nan if step == self.cfg.nan_at else lab

    def sample(self, state):
        return np.tile(np.tanh(np.asarray(state.w)).reshape(1, RES, RES, 1), (4, 1, 1, 1))

    def evaluate(self, state, tick, stats):
        scores = self.cfg.scores
        return {"score": float(scores[(tick.index - 1) % len(scores)])} if scores else {}

    def after_tick(self, state, tick):
        if tick.index == self.cfg.crash_tick:
            raise RuntimeError("crash after the tick's row was logged")


def _config(**kw):
    c = ml_collections.ConfigDict(dict(seed=3, lr=0.05, batch_size=4, total_steps=12, snapshot_ticks=2,
                                       interrupt_at=-1, nan_at=-1, crash_tick=-1, scores=[]))
    c.update(kw)
    return c


def _run(workdir, **kw) -> Dict[str, Any]:
    return loop.train(Toy, _config(**kw), workdir)


def _final(workdir):
    state, step = restore_latest_raw(workdir)
    return step, state


def _ticks(workdir):
    return [json.loads(ln)["tick"] for ln in (workdir / "metrics.jsonl").read_text().splitlines()]


def test_batch_at_step_is_epochwise_permutations_and_seeded_flips():
    idx = np.concatenate([batch_indices(10, 4, 7, s) for s in range(5)])  # 20 = two epochs
    assert sorted(idx[:10]) == list(range(10)) and sorted(idx[10:]) == list(range(10))
    np.testing.assert_array_equal(idx[:10], np.random.default_rng([7, 0]).permutation(10))
    imgs = np.arange(10 * 2 * 3).reshape(10, 2, 3, 1).astype(np.uint8)
    a, la = batch_at_step(imgs, np.arange(10), 3, 4, 7, mirror=True)
    flip = np.random.default_rng([7, 3, 1]).random(4) < 0.5
    ref = imgs[batch_indices(10, 4, 7, 3)]
    np.testing.assert_array_equal(a, np.where(flip[:, None, None, None], ref[:, :, ::-1], ref))
    assert la.dtype == np.int32 and list(la) == list(batch_indices(10, 4, 7, 3))


def test_interrupt_saves_and_resume_equals_uninterrupted_run(tmp_path, log_lines):
    ref = _run(tmp_path / "ref")
    assert ref["step"] == 12 and len(ref["history"]) == 6
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path / "run", interrupt_at=5)
    assert "Interrupted: saving a checkpoint at step 5" in log_lines.read()
    assert TrainCheckpointer(tmp_path / "run").latest_step() == 5
    res = _run(tmp_path / "run")
    assert "Resuming from step 5" in log_lines.read()
    (s1, a), (s2, b) = _final(tmp_path / "ref"), _final(tmp_path / "run")
    assert s1 == s2 == 12
    jax.tree_util.tree_map(np.testing.assert_array_equal, a, b)   # bit for bit
    assert res["stats"]["kimg"] == ref["stats"]["kimg"] == 0.048
    assert _ticks(tmp_path / "run") == sorted(set(_ticks(tmp_path / "run")))
    samples = sorted(p.name for p in (tmp_path / "ref" / "samples").iterdir())
    assert samples[-1] == "reals.png" and "fakes_00000048.png" in samples and len(samples) == 7
    assert read_descriptor(tmp_path / "ref")["kind"] == "classifier"
    assert json.loads((tmp_path / "ref" / "config.json").read_text())["seed"] == 3
    # A finished run started again does nothing more.
    again = _run(tmp_path / "ref")
    assert again["step"] == 12 and len(again["history"]) == 6


def test_metrics_rows_after_the_checkpoint_are_dropped_on_resume(tmp_path):
    with pytest.raises(RuntimeError, match="crash"):
        _run(tmp_path / "run", crash_tick=3)      # tick 3 logged, checkpoint only at tick 2
    assert _ticks(tmp_path / "run") == [1, 2, 3]
    assert TrainCheckpointer(tmp_path / "run").latest_step() == 4
    res = _run(tmp_path / "run")
    assert _ticks(tmp_path / "run") == [1, 2, 3, 4, 5, 6]
    assert [r["tick"] for r in res["history"]] == [1, 2, 3, 4, 5, 6]
    assert [r["step"] for r in res["history"]] == [2, 4, 6, 8, 10, 12]


def test_divergence_raises_and_saves_nothing_for_the_bad_tick(tmp_path):
    with pytest.raises(loop.TrainingDiverged, match="non-finite loss") as e:
        _run(tmp_path / "run", nan_at=5)          # step 5 is in tick 3 (steps 4, 5)
    assert isinstance(e.value, FloatingPointError)
    assert "last good checkpoint is step 4" in str(e.value) and "lower the learning rate" in str(e.value)
    assert TrainCheckpointer(tmp_path / "run").latest_step() == 4
    assert _ticks(tmp_path / "run") == [1, 2]
    with pytest.raises(loop.TrainingDiverged, match="no checkpoint was saved yet"):
        _run(tmp_path / "early", nan_at=0)


def test_best_checkpoint_follows_the_score(tmp_path, log_lines):
    res = _run(tmp_path / "run", scores=[3.0, 1.0, 2.0, 5.0, 0.5, 4.0])  # lower is better
    assert res["best"] == 0.5
    best = sorted(int(p.name) for p in (tmp_path / "run" / "best").iterdir() if p.name.isdigit())
    assert best == [10]                           # tick 5 = step 10
    assert log_lines.read().count("*best*") == 3   # ticks 1, 2, 5


def test_validation_errors_leave_no_workdir(tmp_path):
    with pytest.raises(ValueError, match="config.train.batch_size=32 exceeds the 24 training images"):
        _run(tmp_path / "big", batch_size=32)
    with pytest.raises(ValueError, match="config.lr=0.0"):
        _run(tmp_path / "lr", lr=0.0)
    with pytest.raises(ValueError, match="snapshot_ticks=0"):
        _run(tmp_path / "snap", snapshot_ticks=0)
    assert not any(tmp_path.iterdir())
