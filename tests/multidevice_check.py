"""Run two training steps on N fake CPU devices (sharded batch) and on one device;
print the largest difference between the resulting states. Used by test_training."""
import os
import sys

n = int(sys.argv[1])
os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={n}"
os.environ["JAX_PLATFORMS"] = "cpu"

import jax  # noqa: E402
import numpy as np  # noqa: E402
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import tiny_gan  # noqa: E402

assert jax.device_count() == n, jax.devices()
s = tiny_gan.setup(batch=8)
single = jax.jit(s["step"], compiler_options=tiny_gan.FAST_COMPILE)
mesh = Mesh(np.asarray(jax.devices()), ("data",))
repl, shard = NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))
multi = jax.jit(s["step"], in_shardings=(repl, shard, shard, repl), out_shardings=(repl, repl),
                compiler_options=tiny_gan.FAST_COMPILE)

st1 = s["state"]
stn = jax.device_put(s["state"], repl)
for _ in range(2):
    st1, m1 = single(st1, s["real"], s["c"], s["key"])
    jax.block_until_ready(st1)
    stn, mn = multi(stn, s["real"], s["c"], s["key"])
    jax.block_until_ready(stn)
shard_count = len(multi.lower(stn, s["real"], s["c"], s["key"]).compile().input_shardings[0][1]
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
