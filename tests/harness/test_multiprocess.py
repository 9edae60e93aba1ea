"""Data parallelism across processes for real: two JAX processes on localhost with two
(fake CPU) devices each, joined by jax.distributed.initialize and CPU (gloo) collectives,
train StyleGAN2 as one process on one device does, and save a checkpoint together that
one device opens.

The processes run tests/multiprocess_check.py (one per process id); see its docstring for
what each one does and prints."""
import pathlib
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest
from PIL import Image

from jaxgen.data.pack import pack_dataset
from jaxgen.harness.batches import batch_indices, process_rows
from jaxgen.harness.checkpoint import TrainCheckpointer

REPO = pathlib.Path(__file__).resolve().parents[2]
SCRIPT = REPO / "tests" / "multiprocess_check.py"
N_PROC = 2
LOCAL_DEVICES = 2
TIMEOUT_S = 300
STREAM_STEPS, STREAM_BATCH, STREAM_SEED = 3, 8, 0     # multiprocess_check.py's streamed batches


def _free_port():
    """A localhost TCP port that was free a moment ago (for the coordinator)."""
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _pack(out_dir):
    """A packed dataset of 20 random 8 px RGB images in 2 classes (for the streamed batches)."""
    rng = np.random.default_rng(0)
    src = out_dir / "images"
    for c in ("a", "b"):
        (src / c).mkdir(parents=True)
        for i in range(10):
            Image.fromarray(rng.integers(0, 256, (8, 8, 3), np.uint8)).save(src / c / f"{i}.png")
    return pack_dataset(src, out_dir / "pack", 8)


def _streamed_rows(pid):
    """The distinct rows process `pid` reads for its slices of the multiprocess_check's streamed
    batches: what it should count."""
    lo, hi = process_rows(STREAM_BATCH, pid, N_PROC)
    return sum(len(set(batch_indices(20, STREAM_BATCH, STREAM_SEED, s)[lo:hi].tolist()))
               for s in range(STREAM_STEPS))


def _run_processes(out_dir):
    """Start the N_PROC processes together, wait for all (killing all at TIMEOUT_S);
    returns each one's (exit code, output)."""
    pack = _pack(out_dir)
    port, procs, logs = _free_port(), [], []
    for pid in range(N_PROC):
        logs.append(open(out_dir / f"log{pid}.txt", "w+"))
        procs.append(subprocess.Popen([sys.executable, str(SCRIPT), str(pid), str(N_PROC), str(port), str(out_dir),
                                       str(LOCAL_DEVICES), str(pack)], stdout=logs[-1], stderr=subprocess.STDOUT,
                                      cwd=REPO))
    deadline = time.monotonic() + TIMEOUT_S
    try:
        for p in procs:
            p.wait(timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        for p in procs:
            p.kill()
            p.wait()
    out = []
    for p, log in zip(procs, logs):
        log.seek(0)
        out.append((p.returncode, log.read()))
        log.close()
    return out


def _result(output):
    """The key=value fields of a process's RESULT line."""
    line = [ln for ln in output.splitlines() if ln.startswith("RESULT ")]
    assert line, output
    return dict(kv.split("=", 1) for kv in line[0].split()[1:])


def test_two_processes_one_step_equals_single_process(tmp_path):
    """Both processes exit 0, each fed half the batch, and end with the same state, which is
    the one-process step's (see multiprocess_check.py)."""
    runs = _run_processes(tmp_path)
    logs = "\n".join(f"--- process {i} (exit {rc}):\n{out[-3000:]}" for i, (rc, out) in enumerate(runs))
    if any(rc < 0 for rc, _ in runs):
        pytest.fail(f"a process was killed (timeout {TIMEOUT_S} s or signal):\n{logs}")
    assert [rc for rc, _ in runs] == [0] * N_PROC, logs
    res = [_result(out) for _, out in runs]
    for pid, r in enumerate(res):
        assert r["pid"] == str(pid) and r["processes"] == str(N_PROC), r
        assert r["devices"] == str(N_PROC * LOCAL_DEVICES) and r["local_devices"] == str(LOCAL_DEVICES), r
        assert r["shard_rows"] == "2", r        # each process holds only its half of the batch of 8,
                                                # 2 rows on each of its devices
        assert r["regs_ran"] == "1,0", r        # the step checked includes the path-length regulariser
        # streamed from a pack, each process read only the rows of its slices (counted), and the
        # global batches they assembled are the one-process batches
        assert r["own_rows_only"] == "1" and r["joint_equal"] == "1", r
        assert int(r["streamed_rows"]) == _streamed_rows(pid), r
    assert sum(int(r["streamed_rows"]) for r in res) <= STREAM_STEPS * STREAM_BATCH
    r0 = res[0]
    assert float(r0["moved"]) > 1e-4            # the step really trained something
    # ... and two processes computed what one does, to float32 round-off (the all-reduce sums
    # in another order; the reference is a plain jit, without jit_train_step's CPU kernel
    # option): 1e-5, relative where a value exceeds 1 (some weights are ~300,
    # where one float32 step is 3e-5; wrong data would move them by ~lr = 2e-3).
    assert float(r0["scaled_diff"]) < 1e-5
    assert float(r0["maxdiff"]) < 1e-4
    assert abs(float(r0["lossD1"]) - float(r0["lossDn"])) < 1e-5   # NaN if another slice leaked in
    states = [np.load(tmp_path / f"state{pid}.npz") for pid in range(N_PROC)]
    for name in states[0].files:                # every process ends with the same replicated state
        np.testing.assert_array_equal(states[0][name], states[1][name], err_msg=name)
    assert all(np.isfinite(states[0][name]).all() for name in states[0].files)
    # The checkpoint both processes wrote together opens in this one-device process and holds
    # that same state.
    ck = TrainCheckpointer(tmp_path / "ckpt")
    try:
        step, raw = ck.latest_step(), ck.restore_raw()
    finally:
        ck.close()
    assert step == 1 and int(raw["step"]) == 1 and int(raw["nimg"]) == 8
    saved = [np.asarray(x, np.float64) for x in jax.tree_util.tree_leaves(
        (raw["g_params"], raw["d_params"], raw["ema_params"]))]
    assert len(saved) == len(states[0].files)
    for name, x in zip(states[0].files, saved):
        np.testing.assert_array_equal(states[0][name], x, err_msg=name)
