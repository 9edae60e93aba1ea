"""Data parallelism for every trainer: one 1-D device mesh ('data'), state replicated, batch sharded.

The jitted step gets the global batch split along its leading axis over all
devices and the train state replicated; XLA inserts the gradient all-reduce,
so the result equals a one-device step up to float rounding. The state is
donated (updated in place). With several processes each host feeds its slice
of the (identical, seed-determined) global batch, and reads only that slice
(`Experiment.local_batch`: a streamed dataset is read row by row). On CPU with several (fake)
devices every step is awaited before the next one is queued: queuing many
multi-device CPU steps can deadlock. `put_batch` may run on another thread (the
loop's prefetch thread puts the next batch while a step runs): it is a transfer,
not a multi-device program, so it does not count against that rule.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence, Tuple

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from jaxgen.errors import ConfigError
from jaxgen.harness.validate import check_batch_size
from jaxgen.utils.xla_options import jit_train_step


def initialize_distributed(config: Any) -> None:
    """jax.distributed.initialize() when config.distributed is set (multi-host runs)."""
    if config.get("distributed", False):
        jax.distributed.initialize()


class DataParallel:
    """The mesh over all devices and the two shardings a trainer needs."""

    def __init__(self):
        self.mesh = Mesh(np.asarray(jax.devices()), ("data",))
        self.replicated = NamedSharding(self.mesh, P())
        self.sharded = NamedSharding(self.mesh, P("data"))
        self.num_devices = jax.device_count()
        self.block_every_step = jax.devices()[0].platform == "cpu" and self.num_devices > 1

    def check_batch(self, batch_size: int, num_examples: int, setting: str) -> None:
        """ConfigError naming `setting` unless the global batch splits evenly over the devices
        and the data has at least one batch of examples."""
        check_batch_size(batch_size, self.num_devices, setting)
        if batch_size > num_examples:
            raise ConfigError(f"{setting}={batch_size} exceeds the {num_examples} training images: "
                             "lower it or add images")

    def abstract(self, tree: Any) -> Any:
        """ShapeDtypeStructs of `tree` (e.g. from jax.eval_shape) placed replicated: a restore target."""
        return jax.tree_util.tree_map(
            lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=self.replicated), tree)

    def jit_step(self, fn: Callable[..., Tuple[Any, Any]],
                 static_argnames: Tuple[str, ...] = ()) -> Callable[..., Tuple[Any, Any]]:
        """jit `fn(state, *batch, key, **static) -> (state, metrics)`: state donated, outputs
        replicated, the keyword arguments `static_argnames` static (one program per value);
        the input shardings come from the arguments (see `put_batch`, `replicate`); compiled
        with `xla_options.train_compiler_options()` (faster gradients on CPU)."""
        return jit_train_step(fn, out_shardings=(self.replicated, self.replicated), donate_argnums=(0,),
                              static_argnames=static_argnames)

    def replicate(self, tree: Any) -> Any:
        """`tree` placed replicated on every device (of every process: each passes the same value).

        Typed PRNG keys go over as their key data: with several processes jax (0.10) refuses
        to device_put a key array onto a sharding with devices of other processes."""
        return jax.tree_util.tree_map(self._replicate_leaf, tree)

    def _replicate_leaf(self, x: Any) -> Any:
        if jax.dtypes.issubdtype(getattr(x, "dtype", None), jax.dtypes.prng_key):
            data = jax.device_put(jax.random.key_data(x), self.replicated)
            return jax.random.wrap_key_data(data, impl=jax.random.key_impl(x))
        return jax.device_put(x, self.replicated)

    @property
    def process(self) -> Tuple[int, int]:
        """(this process's index, the number of processes): which slice of a batch it feeds."""
        return jax.process_index(), jax.process_count()

    def put_batch(self, arrays: Sequence[np.ndarray], local: bool = False) -> Tuple[jax.Array, ...]:
        """Host arrays -> arrays of the global batch sharded over the devices.

        local=False: each array is the whole global batch [B, ...] and each process contributes
        its slice B / num_processes of it. local=True: each array is already this process's
        slice [B / num_processes, ...] (`batches.process_rows`), e.g. read alone from a streamed
        dataset; the global batch is the processes' slices in process order."""
        n_proc = jax.process_count()
        if n_proc == 1:
            return tuple(jax.device_put(a, self.sharded) for a in arrays)
        out = []
        for a in arrays:
            if local:
                shape = (a.shape[0] * n_proc,) + a.shape[1:]
                out.append(jax.make_array_from_process_local_data(self.sharded, a, shape))
                continue
            per = a.shape[0] // n_proc
            lo = jax.process_index() * per
            out.append(jax.make_array_from_process_local_data(self.sharded, a[lo:lo + per], a.shape))
        return tuple(out)
