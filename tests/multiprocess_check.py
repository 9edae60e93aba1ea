"""One process of a 2-process data-parallel StyleGAN2 run on localhost (CPU, gloo collectives).

Run as `python multiprocess_check.py PROCESS_ID NUM_PROCESSES COORDINATOR_PORT OUT_DIR
LOCAL_DEVICES [PACK]`, once per process id; each process has LOCAL_DEVICES fake CPU devices, so
the mesh spans processes and several devices in each. Each process joins the others through `jax.distributed.initialize`, builds
the same seed-determined tiny GAN (tiny_gan.setup) and runs its first training step (the
phases in REGS) through the harness's data parallelism (jaxgen.harness.parallel): the
state replicated over the one global 'data' mesh, the batch sharded over it, every process
feeding only its own slice. To show that a process really reads nothing but its slice, the
rows of the global batch that belong to the other processes are NaN in its copy: had any
of them reached the step, its D loss would be NaN and D would not train (the optimizer
turns NaN gradients into 0), far from the reference.

Process 0 also computes the single-process reference, after the data-parallel step: the
same step with plain jax.jit on the full batch, placed on one of its own devices (an
unplaced jit in a multi-process run would span every process's devices). Each process
saves its new (g_params, d_params, ema_params) leaves to OUT_DIR/state{PROCESS_ID}.npz
(so a test can check that every process holds the same state), all processes together save
the whole train state as a checkpoint under OUT_DIR/ckpt (the trainer's TrainCheckpointer,
multi-process orbax; a one-device process must be able to open it) and it prints a RESULT line:
process and device counts, the rows of its local batch shards, whether the lazy
regularisers ran, seconds taken, and on process 0 the largest difference from the
reference (absolute, and scaled_diff: relative where |value| > 1) and how far the D output
weights moved. With PACK (a packed dataset of 8 px RGB images, jaxgen.data.pack), each process
then streams the batches of STREAM_STEPS steps from it, reading only its own rows
(`run_streamed`), and the RESULT line adds the rows it read, whether they were all its own and
whether the global batch the processes assembled equals the one-process batch. Used by tests/harness/test_multiprocess.py. Everything compiles with most
optimisation off.
"""
import os
import sys
import time

os.environ["JAX_PLATFORMS"] = "cpu"
os.environ["XLA_FLAGS"] = " ".join([os.environ.get("XLA_FLAGS", ""),   # the suite's (conftest.py)
                                    f"--xla_force_host_platform_device_count={int(sys.argv[5])}"]).strip()

import jax  # noqa: E402
import numpy as np  # noqa: E402
from jax.experimental import multihost_utils  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import tiny_gan  # noqa: E402
from jaxgen.data.packed import load_packed  # noqa: E402
from jaxgen.harness.batches import batch_at_step, batch_indices, process_rows  # noqa: E402
from jaxgen.harness.checkpoint import TrainCheckpointer  # noqa: E402
from jaxgen.harness.parallel import DataParallel  # noqa: E402

# The lazy regulariser run in the step checked: Gmain, Greg (path length), Dmain, G_ema and
# ADA, as step.lazy_phases gives them and the trainer passes them (the static argument
# `regs`). Greg is the phase with a statistic over the whole batch (pl_mean, the running mean
# of path lengths), which data parallelism must reduce across processes. Dreg (R1) is a
# per-sample penalty like the main losses; leaving it out saves a quarter of the three compiles.
REGS = ("Greg",)
STREAM_STEPS, STREAM_BATCH, STREAM_SEED = 3, 8, 0


def only_own_rows(a, pid, n_proc):
    """A copy of the global batch `a` with every row outside process `pid`'s slice set to NaN."""
    per = a.shape[0] // n_proc
    out = np.full_like(a, np.nan)
    out[pid * per:(pid + 1) * per] = a[pid * per:(pid + 1) * per]
    return out


def leaves(st):
    """The (g, d, ema) parameter leaves of a state as float64 host arrays (this process's copy)."""
    tree = (st.g_params, st.d_params, st.ema_params)
    return [np.asarray(x.addressable_shards[0].data, np.float64) for x in jax.tree_util.tree_leaves(tree)]


def run_data_parallel(s, pid, n_proc):
    """The first training step through DataParallel on the global mesh, as the trainer runs
    it; returns (state, metrics, rows of this process's batch shards)."""
    dp = DataParallel()
    step = dp.jit_step(s["step"], static_argnames=("regs",))
    st, key = dp.replicate(jax.device_get(s["state"])), dp.replicate(s["key"])  # own buffers: st is donated
    real, c = dp.put_batch([only_own_rows(s["real"], pid, n_proc), only_own_rows(s["c"], pid, n_proc)])
    assert real.shape == s["real"].shape, real.shape
    st, m = step(st, real, c, key, regs=REGS)
    jax.block_until_ready(st)
    rows = sorted({sh.data.shape[0] for arr in (real, c) for sh in arr.addressable_shards})
    return st, m, rows


def run_reference(s):
    """The same step with plain jax.jit on the whole batch, on this process's first device."""
    dev = jax.local_devices()[0]
    st, real, c, key = jax.device_put((jax.device_get(s["state"]), s["real"], s["c"], s["key"]), dev)
    st, m = jax.jit(s["step"], static_argnames=("regs",))(st, real, c, key, regs=REGS)
    jax.block_until_ready(st)
    return st, m


def run_streamed(pack, pid, n_proc):
    """The batches of STREAM_STEPS steps streamed from `pack` by this process alone (its rows of
    each step, `batch_at_step(..., process=(pid, n_proc))`), put on the global mesh as local
    slices and gathered back whole. Returns the RESULT fields: streamed_rows (rows this process
    read), own_rows_only (1 when each read was exactly its slice's rows), joint_equal (1 when
    every gathered global batch equals the one-process batch from the in-RAM dataset)."""
    dp = DataParallel()
    streamed = load_packed(pack, 8, 3, stream="always")
    in_ram = load_packed(pack, 8, 3, stream="never")
    n, own, equal = len(streamed.images), True, True
    for step in range(STREAM_STEPS):
        img, lab = batch_at_step(streamed.images, streamed.labels, step, STREAM_BATCH, STREAM_SEED,
                                 mirror=True, process=(pid, n_proc))
        lo, hi = process_rows(STREAM_BATCH, pid, n_proc)
        mine = sorted(set(batch_indices(n, STREAM_BATCH, STREAM_SEED, step)[lo:hi].tolist()))
        own = own and streamed.images.last_read.tolist() == mine
        joint = dp.put_batch([img, lab], local=True)
        whole = [np.asarray(multihost_utils.process_allgather(a, tiled=True)) for a in joint]
        want = batch_at_step(in_ram.images, in_ram.labels, step, STREAM_BATCH, STREAM_SEED, mirror=True)
        equal = equal and all(np.array_equal(w, g) for w, g in zip(want, whole))
    return dict(streamed_rows=streamed.images.rows_read, own_rows_only=int(own), joint_equal=int(equal))


def main(pid, n_proc, port, out_dir, pack=None):
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=f"localhost:{port}", num_processes=n_proc,
                               process_id=pid, initialization_timeout=120)
    assert jax.process_count() == n_proc and jax.process_index() == pid
    # The first cross-process program sets up the gloo connections, and waits only 30 s for
    # the other processes to get there: do it now, while they are in step.
    multihost_utils.sync_global_devices("initialized")
    jax.config.update("jax_disable_most_optimizations", True)   # as tiny_gan.fast_compile()
    s = tiny_gan.setup(batch=8)
    t0 = time.perf_counter()
    st, m, rows = run_data_parallel(s, pid, n_proc)
    fields = dict(pid=pid, processes=jax.process_count(), devices=jax.device_count(),
                  local_devices=jax.local_device_count(), shard_rows=",".join(map(str, rows)),
                  lossDn=f"{float(m['loss/D']):.6f}", seconds_dp=f"{time.perf_counter() - t0:.1f}",
                  regs_ran=",".join(f"{float(m[k]):g}" for k in ("loss/pl_penalty_w", "loss/r1_penalty_w")))
    mine = leaves(st)
    np.savez(os.path.join(out_dir, f"state{pid}.npz"), *mine)
    ck = TrainCheckpointer(os.path.join(out_dir, "ckpt"))   # every process takes part
    ck.save(1, st, {"step": 1})
    ck.close()
    if pack:
        fields.update(run_streamed(pack, pid, n_proc))
    if pid == 0:   # after the multi-process step: the others wait for it only at shutdown
        t0 = time.perf_counter()
        ref, m1 = run_reference(s)
        pairs = list(zip(leaves(ref), mine))
        diff = max(float(np.max(np.abs(a - b))) for a, b in pairs)
        scaled = max(float(np.max(np.abs(a - b) / np.maximum(np.abs(a), 1.0))) for a, b in pairs)
        w0 = np.asarray(s["state"].d_params["b4"]["out"]["weight"])
        moved = float(np.max(np.abs(np.asarray(ref.d_params["b4"]["out"]["weight"]) - w0)))
        fields.update(seconds_ref=f"{time.perf_counter() - t0:.1f}", maxdiff=f"{diff:.3e}",
                      scaled_diff=f"{scaled:.3e}", moved=f"{moved:.3e}", lossD1=f"{float(m1['loss/D']):.6f}")
    print("RESULT " + " ".join(f"{k}={v}" for k, v in fields.items()), flush=True)
    jax.distributed.shutdown()


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4],  # argv[5]: read above
         sys.argv[6] if len(sys.argv) > 6 else None)
