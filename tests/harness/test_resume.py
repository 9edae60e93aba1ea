"""Resuming in the harness, on a toy experiment that compiles in moments: metrics.jsonl keeps every
tick once and in order after a crash or a Ctrl-C, the resume line's kimg has all its digits, a workdir
of another model is refused before orbax (and a mismatch orbax finds is one line), best/ and
data_summary.json appear only when there is something to put in them."""
import json

import jax
import ml_collections
import numpy as np
import optax
import pytest

from jaxgen.errors import OutputError, UserError
from jaxgen.harness import loop
from jaxgen.harness.batches import batch_at_step
from jaxgen.harness.checkpoint import CheckpointError, restore_latest_raw
from jaxgen.harness.schedule import Schedule
from toy_experiment import RES, ToyExperiment, no_tensorboard  # noqa: F401 (fixture)

N = 16


class Toy(ToyExperiment):
    """Least squares on [N, 4, 4, 1] images; a tick is 2 steps of 4 images (0.008 kimg).

    config: total_steps, snapshot_ticks, crash_tick (RuntimeError after the tick's row is
    logged), stop_tick (Ctrl-C during the tick's evaluation), scores (best/ by 'score'),
    names (class names), extra (more weights than run.json says: a state orbax cannot restore).
    """

    def __init__(self, config, workdir):
        self.cfg, self.seed, self.num_examples, self.extra = config, 0, N, int(config.extra)
        self.toy_data(N, 2)
        self.schedule = Schedule(4, config.total_steps, 2, config.snapshot_ticks, 1, 10)
        self.descriptor = dict(class_names=list(config.names), resolution=RES, channels=1, model="toy",
                               model_kwargs={})
        self.data_summary = {"train": dict(source="toy", num_images=N, resolution=RES, channels=1,
                                           classes={"a": 8, "b": 8})}
        self.best_key = "score" if config.scores else None
        self.tx = optax.sgd(0.1)

    def batch(self, step):
        img, lab = batch_at_step(self.images, self.labels, step, 4, self.seed)
        return img, lab.astype(np.float32)

    def evaluate(self, state, tick, stats):
        if tick.index == self.cfg.stop_tick:
            raise KeyboardInterrupt
        return {"score": float(self.cfg.scores[tick.index - 1])} if self.cfg.scores else {}

    def after_tick(self, state, tick):
        if tick.index == self.cfg.crash_tick:
            raise RuntimeError("crash after the tick's row was logged")


def _run(workdir, **kw):
    c = ml_collections.ConfigDict(dict(total_steps=12, snapshot_ticks=1, crash_tick=-1, stop_tick=-1,
                                       scores=[], names=["a", "b"], extra=0))
    c.update(kw)
    return loop.train(Toy, c, workdir)


def _rows(workdir):
    return [json.loads(ln) for ln in (workdir / "metrics.jsonl").read_text().splitlines()]


def test_crash_after_a_row_then_resume_logs_every_tick_once_and_prints_kimg_digits(tmp_path, log_lines):
    ref = _run(tmp_path / "ref")
    with pytest.raises(RuntimeError, match="crash"):
        _run(tmp_path / "run", crash_tick=2)     # tick 2's row written, its checkpoint not
    assert [r["tick"] for r in _rows(tmp_path / "run")] == [1, 2]
    log_lines.read()
    res = _run(tmp_path / "run")
    out = log_lines.read()
    assert "Resuming from step 2 (tick 1, kimg 0.008)" in out
    rows = _rows(tmp_path / "run")
    assert [r["tick"] for r in rows] == [1, 2, 3, 4, 5, 6]
    assert [r["step"] for r in rows] == [2, 4, 6, 8, 10, 12]
    assert [r["kimg"] for r in rows] == [r["kimg"] for r in ref["history"]]
    assert [r["tick"] for r in res["history"]] == [1, 2, 3, 4, 5, 6]


def test_ctrl_c_during_an_evaluation_leaves_no_gap_in_the_ticks(tmp_path, log_lines):
    ref = _run(tmp_path / "ref")
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path / "run", stop_tick=3)      # tick 3's steps ran; its row was not written
    assert "Interrupted: saving a checkpoint at step 6" in log_lines.read()
    _run(tmp_path / "run")
    assert "Resuming from step 6 (tick 2, kimg 0.024)" in log_lines.read()
    ticks = [r["tick"] for r in _rows(tmp_path / "run")]
    assert ticks == list(range(1, len(ticks) + 1)) and _rows(tmp_path / "run")[-1]["step"] == 12
    (a, s1), (b, s2) = (restore_latest_raw(tmp_path / w) for w in ("ref", "run"))
    assert s1 == s2 == 12
    jax.tree_util.tree_map(np.testing.assert_array_equal, a, b)      # the state is still exact
    assert ref["step"] == 12


def test_best_and_data_summary_are_written_only_with_content(tmp_path, log_lines):
    _run(tmp_path / "plain", total_steps=4)
    w = tmp_path / "plain"
    assert not (w / "best").exists()             # no score: no (empty) best/ folder
    assert json.loads((w / "data_summary.json").read_text())["train"]["classes"] == {"a": 8, "b": 8}
    assert "data (train): 16 images 4px x1, 2 classes (a 8, b 8)" in log_lines.read()
    _run(tmp_path / "scored", total_steps=4, scores=[2.0, 1.0])
    assert sorted(p.name for p in (tmp_path / "scored" / "best").iterdir() if p.name.isdigit()) == ["4"]


def test_a_workdir_of_another_model_is_refused_before_the_restore(tmp_path):
    w = tmp_path / "run"
    _run(w, total_steps=4)
    before = {p: p.stat().st_mtime_ns for p in w.rglob("*")}
    with pytest.raises(OutputError) as e:
        _run(w, total_steps=8, names=["a", "b", "c"])
    msg = str(e.value)
    assert '\n' not in msg and 'run.json class_names ["a", "b"] vs ["a", "b", "c"]' in msg
    assert "new --workdir" in msg
    assert {p: p.stat().st_mtime_ns for p in w.rglob("*")} == before   # nothing written


def test_a_checkpoint_orbax_cannot_restore_is_one_line(tmp_path):
    w = tmp_path / "run"
    _run(w, total_steps=4)
    with pytest.raises(CheckpointError) as e:
        _run(w, total_steps=8, extra=3)          # same run.json, another state tree
    msg = str(e.value)
    assert isinstance(e.value, UserError) and "\n" not in msg and len(msg) < 400
    assert "does not fit the train state" in msg and "w (16,) saved vs (19,) built" in msg
    assert "new --workdir" in msg
