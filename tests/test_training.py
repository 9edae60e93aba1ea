"""Training loop behaviour: multi-device equality, crash + resume, NaN stop, ADA p, freeze-D."""
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
from jaxgen.harness.checkpoint import TrainCheckpointer

REPO = pathlib.Path(__file__).resolve().parents[1]


def test_multi_device_step_equals_single_device():
    out = subprocess.run([sys.executable, str(REPO / "tests" / "multidevice_check.py"), "4"],
                         capture_output=True, text=True, timeout=600, cwd=REPO)
    line = [ln for ln in out.stdout.splitlines() if ln.startswith("RESULT")]
    assert line, out.stdout + out.stderr
    fields = dict(kv.split("=") for kv in line[0].split()[1:])
    assert fields["devices"] == "4" and fields["batch_devices"] == "4"
    assert float(fields["moved"]) > 1e-4          # the step really trained something
    assert float(fields["maxdiff"]) < 1e-5         # ... and 4 devices computed what 1 does
    assert abs(float(fields["lossD1"]) - float(fields["lossDn"])) < 1e-5


def test_ada_p_rises_when_d_is_sure_about_reals_and_falls_otherwise():
    s = tiny_gan.setup(batch=8, ada_kimg=1.0, ada_interval=4, c_dim=0)
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


def test_freeze_d_keeps_the_first_layers_fixed():
    s = tiny_gan.setup(batch=4, freeze_d=2)
    step = jax.jit(s["step"], compiler_options=tiny_gan.FAST_COMPILE)
    st, _ = step(s["state"], s["real"][:4], s["c"][:4], s["key"])
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


@pytest.fixture(scope="module")
def env(tmp_path_factory, jax_cache_dir):
    e = dict(os.environ)
    e["JAXGEN_JAX_CACHE"] = str(jax_cache_dir)  # the session's: runs of the same config compile once
    e["JAXGEN_CACHE_DIR"] = str(tmp_path_factory.mktemp("img_cache"))
    e["PYTHONUNBUFFERED"] = "1"
    return tiny_gan.fast_compile_env(e)


def _final_params(workdir):
    ck = TrainCheckpointer(workdir)
    try:
        return ck.latest_step(), ck.restore_raw()
    finally:
        ck.close()


@pytest.fixture(scope="module")
def base_run(tmp_path_factory, env):
    """A complete micro run (8 steps): the uninterrupted reference and a transfer source."""
    root = tmp_path_factory.mktemp("base")
    subprocess.run(_train_cmd(root / "run", root / "demo"), env=env, check=True, timeout=600,
                   capture_output=True)
    return dict(workdir=root / "run", data=root / "demo")


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
    step_ref, a = _final_params(ref)
    step_run, b = _final_params(run)
    assert step_ref == step_run == 8
    assert float(a["nimg"]) == float(b["nimg"]) == 32
    diffs = jax.tree_util.tree_map(lambda x, y: float(np.max(np.abs(np.asarray(x) - np.asarray(y)))), a, b)
    assert max(jax.tree_util.tree_leaves(diffs)) < 1e-6
    ticks = [json.loads(ln)["tick"] for ln in (run / "metrics.jsonl").read_text().splitlines()]
    assert ticks[-1] == 4 and sorted(set(ticks)) == [1, 2, 3, 4]
    assert sorted(p.name for p in (run / "samples").glob("fakes_*.png")) and (run / "samples/reals.png").exists()
    assert list(run.glob("events.out.tfevents.*")), "no TensorBoard scalars"


def test_nan_loss_stops_run_and_keeps_last_good_checkpoint(tmp_path, env, base_run):
    # Start from a copy of the finished base run (its last checkpoint is good) ...
    data, run = base_run["data"], tmp_path / "run"
    shutil.copytree(base_run["workdir"], run)
    good_step, good = _final_params(run)
    # ... and go on with a NaN learning rate: the first tick's losses are non-finite.
    out = subprocess.run(_train_cmd(run, data, "--config.train.total_kimg=0.064",
                                    "--config.train.d_lr=nan"),
                         env=env, timeout=600, capture_output=True, text=True)
    assert out.returncode != 0
    assert "TrainingDiverged" in out.stderr and "non-finite" in out.stderr
    assert f"last good checkpoint is step {good_step}" in out.stderr
    step, after = _final_params(run)
    assert step == good_step
    assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree_util.tree_leaves(after["d_params"]))


def test_finetune_from_base_workdir_with_freeze_d(tmp_path, env, base_run):
    """The hierarchical pipeline's per-class stage: transfer from the base run, freeze-D."""
    out = subprocess.run(
        [sys.executable, str(REPO / "train.py"), "--config", str(REPO / "configs/acne.py") + ":micro,finetune",
         "--workdir", str(tmp_path / "ft"), f"--config.data.path={base_run['data'] / 'severe'}",
         f"--config.transfer.init_from={base_run['workdir']}"],
        env=env, timeout=600, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    _, base = _final_params(base_run["workdir"])
    _, ft = _final_params(tmp_path / "ft")
    same = lambda a, b: bool(np.array_equal(np.asarray(a), np.asarray(b)))  # noqa: E731
    # freeze_d=4 keeps the whole 16 px D block (fromrgb, conv0, conv1, skip) at the base's values.
    for layer in ("fromrgb", "conv0", "conv1", "skip"):
        assert same(base["d_params"]["b16"][layer]["weight"], ft["d_params"]["b16"][layer]["weight"])
    assert not same(base["d_params"]["b8"]["conv0"]["weight"], ft["d_params"]["b8"]["conv0"]["weight"])
    # G was initialised from the base (same synthesis shapes) and then trained further.
    g0, g1 = base["g_params"]["synthesis"]["b16"]["conv1"]["weight"], ft["g_params"]["synthesis"]["b16"]["conv1"]["weight"]
    assert not same(g0, g1) and float(np.max(np.abs(np.asarray(g0) - np.asarray(g1)))) < 0.5
    assert "mapping/fc0/weight" in out.stderr  # the unconditional fc0 could not be copied: reported
