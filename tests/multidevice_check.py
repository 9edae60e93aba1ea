"""Run two training steps on N fake CPU devices and on one device; print the largest
difference between the resulting states; with a second argument, save the N-device state
there as a checkpoint (a one-device process must be able to open it). Used by test_training.

The N-device steps go through the harness's data parallelism (jaxgen.harness.parallel:
batch sharded over a 1-D 'data' mesh, state replicated and donated, every step awaited
on CPU), as train_and_evaluate runs them. Both compile with most optimisation off."""
import os
import sys

n = int(sys.argv[1])
os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={n}"
os.environ["JAX_PLATFORMS"] = "cpu"

import jax  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import tiny_gan  # noqa: E402
from jaxgen.harness.checkpoint import TrainCheckpointer  # noqa: E402
from jaxgen.harness.parallel import DataParallel  # noqa: E402

assert jax.device_count() == n, jax.devices()
jax.config.update("jax_disable_most_optimizations", True)   # as tiny_gan.fast_compile()
s = tiny_gan.setup(batch=8)
single = jax.jit(s["step"])
dp = DataParallel()
assert dp.block_every_step
multi = dp.jit_step(s["step"])

st1 = s["state"]
stn, key = dp.replicate(jax.device_get(s["state"])), dp.replicate(s["key"])  # own buffers: stn is donated
for _ in range(2):
    st1, m1 = single(st1, s["real"], s["c"], s["key"])
    jax.block_until_ready(st1)
    stn, mn = multi(stn, *dp.put_batch([s["real"], s["c"]]), key)
    jax.block_until_ready(stn)
shard_count = len(multi.lower(stn, *dp.put_batch([s["real"], s["c"]]), key).compile().input_shardings[0][1]
                  .device_set)
diffs = jax.tree_util.tree_map(lambda a, b: float(np.max(np.abs(np.asarray(a, np.float64)
                                                                 - np.asarray(b, np.float64)))),
                               (st1.g_params, st1.d_params, st1.ema_params),
                               (stn.g_params, stn.d_params, stn.ema_params))
moved = float(np.max(np.abs(np.asarray(st1.d_params["b4"]["out"]["weight"])
                            - np.asarray(s["state"].d_params["b4"]["out"]["weight"]))))
print(f"RESULT devices={jax.device_count()} batch_devices={shard_count} "
      f"maxdiff={max(jax.tree_util.tree_leaves(diffs)):.3e} moved={moved:.3e} "
      f"lossD1={float(m1['loss/D']):.6f} lossDn={float(mn['loss/D']):.6f}")
if len(sys.argv) > 2:
    ck = TrainCheckpointer(sys.argv[2])
    ck.save(2, stn, {"step": 2})
    ck.close()
