"""StyleGAN2 training: multi-device equality, ADA p, freeze-D, the trainer in process (outputs,
open_run, validation), SIGKILL + resume through train.py, NaN stop, finetuning with freeze-D."""
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

import tiny_gan
from jaxgen.config import load_config
from jaxgen.data.demo_faces import write_demo_dataset
from jaxgen.errors import ConfigError
from jaxgen.harness.checkpoint import TrainCheckpointer, restore_latest_raw, write_descriptor
from jaxgen.stylegan2 import train as sg_train
from jaxgen.runs import open_run
from jaxgen.stylegan2.train import TrainingDiverged, train_and_evaluate

REPO = pathlib.Path(__file__).resolve().parents[2]


def test_ada_p_moves_with_d_certainty_and_freeze_d_keeps_the_first_layers_fixed():
    """One compiled step (freeze_d=2, unconditional) checked for both: ADA's p and freeze-D."""
    s = tiny_gan.setup(batch=8, ada_kimg=1.0, ada_interval=4, c_dim=0, freeze_d=2)
    step = jax.jit(s["step"], compiler_options=tiny_gan.FAST_COMPILE)
    out_bias = s["state"].d_params["b4"]["out"]["bias"]

    def run(bias, p0):
        d = jax.tree_util.tree_map(lambda x: x, s["state"].d_params)
        d["b4"]["out"]["bias"] = out_bias + bias   # logits ~ bias: D "overfits" (or the reverse)
        st = s["state"].replace(d_params=d, ada_p=np.float32(p0))
        ps = []
        for _ in range(8):
            st, m = step(st, s["real"], s["c"], s["key"])
            ps.append(float(m["ada_p"]))
        return ps

    up = run(+50.0, 0.0)
    # p moves once every 4 steps, by batch*interval/(ada_kimg*1000) = 32/1000.
    np.testing.assert_allclose(up, [0, 0, 0, 0.032, 0.032, 0.032, 0.032, 0.064], atol=1e-6)
    down = run(-50.0, 0.5)
    np.testing.assert_allclose(down, [0.5] * 3 + [0.468] * 4 + [0.436], atol=1e-6)

    st, _ = step(s["state"], s["real"], s["c"], s["key"])
    before, after = s["state"].d_params, st.d_params
    same = lambda a, b: bool(np.array_equal(np.asarray(a), np.asarray(b)))  # noqa: E731
    # D layers from the image side: b8.fromrgb (0), b8.conv0 (1) frozen; b8.conv1 (2) trains.
    assert same(before["b8"]["fromrgb"]["weight"], after["b8"]["fromrgb"]["weight"])
    assert same(before["b8"]["conv0"]["weight"], after["b8"]["conv0"]["weight"])
    assert not same(before["b8"]["conv1"]["weight"], after["b8"]["conv1"]["weight"])
    assert not same(before["b4"]["out"]["weight"], after["b4"]["out"]["weight"])


def _train_cmd(workdir, data, *extra):
    return [sys.executable, str(REPO / "train.py"), "--config", str(REPO / "configs/acne.py") + ":micro",
            "--workdir", str(workdir), f"--config.data.path={data}", *extra]


def _micro(data, variants="micro", init_from="", **train):
    """configs/acne.py:<variants> with its data in `data` (no decoded-image cache)."""
    c = load_config(str(REPO / "configs/acne.py") + ":" + variants)
    c.data.path, c.data.cache_dir = str(data), ""
    c.transfer.init_from = str(init_from)
    c.train.update(train)
    return c


def _train(config, workdir):
    """train_and_evaluate in this process, compiled as the train.py subprocesses compile."""
    with tiny_gan.fast_compile():
        return train_and_evaluate(config, str(workdir))


@pytest.fixture(scope="module")
def env(tmp_path_factory, jax_cache_dir):
    e = dict(os.environ)
    e["JAXGEN_JAX_CACHE"] = str(jax_cache_dir)  # the session's: runs of the same config compile once
    e["JAXGEN_CACHE_DIR"] = str(tmp_path_factory.mktemp("img_cache"))
    e["PYTHONUNBUFFERED"] = "1"
    return tiny_gan.fast_compile_env(e)


@pytest.fixture(scope="module")
def base_run(tmp_path_factory):
    """A complete micro run (8 steps, in this process): the uninterrupted reference and a
    transfer source."""
    root = tmp_path_factory.mktemp("base")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("JAXGEN_TENSORBOARD", "1")      # the one run that checks its event file
        stats = _train(_micro(root / "demo"), root / "run")
    return dict(workdir=root / "run", data=root / "demo", stats=stats)


def test_stylegan2_trainer_in_process_writes_a_run_that_opens(base_run):
    w = base_run["workdir"]
    assert base_run["stats"]["tick"] == 4 and base_run["stats"]["kimg"] == 0.032
    assert sorted(int(p.name) for p in (w / "checkpoints").iterdir() if p.name.isdigit()) == [4, 6, 8]
    assert not (w / "best").exists()                 # FID off: no best-FID checkpoint
    names = sorted(p.name for p in (w / "samples").iterdir())
    assert names == [f"fakes_{n:08d}.png" for n in (8, 16, 24, 32)] + ["reals.png"]
    rows = [json.loads(ln) for ln in (w / "metrics.jsonl").read_text().splitlines()]
    assert [r["tick"] for r in rows] == [1, 2, 3, 4] and [r["step"] for r in rows] == [2, 4, 6, 8]
    assert all(np.isfinite(r["loss/G"]) and np.isfinite(r["loss/D"]) and 0 <= r["ada_p"] <= 1 for r in rows)
    assert list(w.glob("events.out.tfevents.*")), "no TensorBoard scalars"
    info = json.loads((w / "run.json").read_text())
    assert info["kind"] == "stylegan2" and info["class_names"] == ["healthy", "mild", "moderate", "severe"]
    assert (info["resolution"], info["channels"], info["G_kwargs"]["c_dim"]) == (16, 3, 4)
    assert json.loads((w / "config.json").read_text())["data"]["path"] == str(base_run["data"])
    summary = json.loads((w / "data_summary.json").read_text())["train"]   # the data as loaded
    assert summary["classes"] == {"healthy": 8, "mild": 8, "moderate": 8, "severe": 8}
    assert summary["source_sizes"] == {"16x16 RGB": 32} and summary["skipped"] == []
    run = open_run(w)
    assert run.kind == "stylegan2" and run.step == 8 and run.num_classes == 4
    x = run.generate(np.random.default_rng(0).standard_normal([2, run.z_dim]), [0, 3])
    assert x.shape == (2, 16, 16, 3) and np.isfinite(x).all()


def test_invalid_settings_stop_before_the_workdir_exists(tmp_path, base_run):
    with pytest.raises(ValueError, match="config.train.batch_size=64 exceeds the 32 training images"):
        train_and_evaluate(_micro(base_run["data"], batch_size=64), str(tmp_path / "run"))
    with pytest.raises(ValueError, match="config.train.snapshot_ticks=0"):
        train_and_evaluate(_micro(base_run["data"], snapshot_ticks=0), str(tmp_path / "run"))
    fp16 = _micro(base_run["data"])
    fp16.model.dtype = "float16"
    with pytest.raises(ValueError, match="--config.model.dtype=float16 needs --config.model.conv_clamp"):
        train_and_evaluate(fp16, str(tmp_path / "run"))
    assert not (tmp_path / "run").exists()


def test_sigkill_then_resume_equals_uninterrupted_run(tmp_path, env, base_run):
    data = base_run["data"]
    ref, run = base_run["workdir"], tmp_path / "run"
    # Crash: SIGKILL as soon as the 2nd checkpoint (step 4 of 8) is complete.
    proc = subprocess.Popen(_train_cmd(run, data), env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None:
        if (run / "checkpoints" / "4" / "meta").exists():
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.05)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert TrainCheckpointer(run).latest_step() < 8
    out = subprocess.run(_train_cmd(run, data), env=env, check=True, timeout=600,
                         capture_output=True, text=True).stdout
    assert "Resuming from step" in out
    a, step_ref = restore_latest_raw(ref)
    b, step_run = restore_latest_raw(run)
    assert step_ref == step_run == 8
    assert float(a["nimg"]) == float(b["nimg"]) == 32
    diffs = jax.tree_util.tree_map(lambda x, y: float(np.max(np.abs(np.asarray(x) - np.asarray(y)))), a, b)
    assert max(jax.tree_util.tree_leaves(diffs)) < 1e-6
    ticks = [json.loads(ln)["tick"] for ln in (run / "metrics.jsonl").read_text().splitlines()]
    assert ticks[-1] == 4 and sorted(set(ticks)) == [1, 2, 3, 4]
    assert sorted(p.name for p in (run / "samples").glob("fakes_*.png")) and (run / "samples/reals.png").exists()


def test_nan_loss_stops_run_and_keeps_last_good_checkpoint(tmp_path, base_run, monkeypatch):
    # Start from a copy of the finished base run (its last checkpoint is good) ...
    data, run = base_run["data"], tmp_path / "run"
    shutil.copytree(base_run["workdir"], run)
    good, good_step = restore_latest_raw(run)
    # ... and go on with poisoned batches: the first tick's losses are non-finite. (Not a NaN
    # learning rate: that is baked into the program, which would compile a step of its own.)
    real_batch = sg_train.StyleGAN2Experiment.local_batch     # what the loop calls

    def nan_batch(self, step, process=(0, 1)):
        img, c = real_batch(self, step, process)
        return np.full_like(img, np.nan), c
    monkeypatch.setattr(sg_train.StyleGAN2Experiment, "local_batch", nan_batch)
    with pytest.raises(TrainingDiverged, match="non-finite") as e:
        _train(_micro(data, total_kimg=0.064), run)
    assert isinstance(e.value, FloatingPointError)
    assert f"last good checkpoint is step {good_step}" in str(e.value)
    after, step = restore_latest_raw(run)
    assert step == good_step
    assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree_util.tree_leaves(after["d_params"]))


def test_finetune_from_base_workdir_with_freeze_d(tmp_path, base_run, log_lines):
    """The hierarchical pipeline's per-class stage: transfer from the base run, freeze-D."""
    c = _micro(base_run["data"] / "severe", "micro,finetune", init_from=base_run["workdir"])
    c.data.fixed_label = "severe"          # conditional, every image that class (the pipeline's way)
    _train(c, tmp_path / "ft")
    base, _ = restore_latest_raw(base_run["workdir"])
    ft, _ = restore_latest_raw(tmp_path / "ft")
    same = lambda a, b: bool(np.array_equal(np.asarray(a), np.asarray(b)))  # noqa: E731
    # freeze_d=4 keeps the whole 16 px D block (fromrgb, conv0, conv1, skip) at the base's values.
    for layer in ("fromrgb", "conv0", "conv1", "skip"):
        assert same(base["d_params"]["b16"][layer]["weight"], ft["d_params"]["b16"][layer]["weight"])
    assert not same(base["d_params"]["b8"]["conv0"]["weight"], ft["d_params"]["b8"]["conv0"]["weight"])
    # G was initialised from the base (same synthesis shapes) and then trained further.
    g0, g1 = base["g_params"]["synthesis"]["b16"]["conv1"]["weight"], ft["g_params"]["synthesis"]["b16"]["conv1"]["weight"]
    assert not same(g0, g1) and float(np.max(np.abs(np.asarray(g0) - np.asarray(g1)))) < 0.5
    # Still conditional: every array carries over, the label embedding and first mapping layer too.
    out = log_lines.read()
    for net in ("G", "D", "G_ema"):
        assert f"transfer {net}: " in out and "% of" in out
    assert all(" 100.0% of " in ln and "0 skipped" in ln for ln in out.splitlines() if ln.startswith("transfer "))
    assert json.loads((tmp_path / "ft" / "run.json").read_text())["class_names"] == \
        json.loads((base_run["workdir"] / "run.json").read_text())["class_names"]


def test_fixed_label_keeps_the_label_space_of_the_base_run(tmp_path):
    """A per-class fine-tune's data: every image is the fixed class of the base's labels."""
    write_demo_dataset(tmp_path / "d", 3, 16, 0, classes=("severe",), progress=False)
    base = tmp_path / "base"
    write_descriptor(base, "stylegan2", class_names=["healthy", "mild", "severe"], resolution=16,
                     channels=3, G_kwargs={}, D_kwargs={})
    c = load_config(f"{REPO}/configs/acne.py:micro,finetune",
                    [f"data.path={tmp_path / 'd' / 'severe'}", f"transfer.init_from={base}",
                     "data.fixed_label=severe"])
    ds = sg_train._load_data(c)
    assert ds.class_names == ["healthy", "mild", "severe"] and ds.labels.tolist() == [2, 2, 2]
    assert ds.summary["fixed_label"] == "severe"
    c.data.label_names = "severe,acne"            # an explicit label space wins
    assert sg_train._load_data(c).labels.tolist() == [0, 0, 0]
    c.data.label_names, c.data.fixed_label = "", "moderate"
    with pytest.raises(ConfigError, match="fixed_label=moderate is not one of the labels"):
        sg_train._load_data(c)
    c.data.fixed_label, c.transfer.init_from = "severe", ""
    with pytest.raises(ConfigError, match="label_names=a,b,c"):
        sg_train._load_data(c)
