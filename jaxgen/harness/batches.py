"""The real batch of every training step, as a pure function of (seed, step); sample-grid inputs.

Why a pure function: a run resumed at step s must see exactly the batch an
uninterrupted run saw at step s, and a function of (seed, s) needs no iterator
state in the checkpoint. Step s with global batch B reads positions
s*B .. s*B+B-1 of an endless stream of epoch-wise permutations (epoch e's order
is `np.random.default_rng([seed, e]).permutation(N)`; a batch may straddle two
epochs), and its mirror flips come from `np.random.default_rng([seed, s, 1])`.

`Prefetcher` computes the batches of the coming steps in a background thread
(the loop uses it to gather a batch and put it on the devices while the
previous step runs); since a batch is a function of its step, prefetching
changes no result.

`Grid` is a run's sample grid; `grid_inputs` draws a generator's: fixed
latents, labels and real images (one row per class, or 4 rows when
unconditional) from seed + 12345.
"""
from __future__ import annotations

import dataclasses
import functools
import queue
import threading
from typing import Any, Callable, List, Optional, Sequence, Tuple

import numpy as np


@functools.lru_cache(maxsize=4)
def _epoch_order(num_examples: int, seed: int, epoch: int) -> np.ndarray:
    """The read-only permutation int64 [N] of epoch `epoch` (cached: consecutive steps share it)."""
    order = np.random.default_rng([seed, epoch]).permutation(num_examples)
    order.flags.writeable = False
    return order


def batch_indices(num_examples: int, batch_size: int, seed: int, step: int) -> np.ndarray:
    """Example indices int64 [B] of the real batch of step `step` (see the module docstring)."""
    start = step * batch_size
    out: List[int] = []
    while len(out) < batch_size:
        epoch, offset = divmod(start + len(out), num_examples)
        out.extend(_epoch_order(num_examples, seed, epoch)[offset:offset + batch_size - len(out)].tolist())
    return np.asarray(out, np.int64)


def mirror_flags(batch_size: int, seed: int, step: int) -> np.ndarray:
    """bool [B]: which images of step `step`'s batch are flipped left-right (probability 1/2)."""
    return np.random.default_rng([seed, step, 1]).random(batch_size) < 0.5


def process_rows(batch_size: int, index: int = 0, count: int = 1) -> Tuple[int, int]:
    """(lo, hi): the rows of a global batch of `batch_size` that process `index` of `count`
    feeds (equal consecutive slices, as `parallel.DataParallel.put_batch` assembles them)."""
    if count < 1 or not 0 <= index < count or batch_size % count:
        raise ValueError(f"a batch of {batch_size} cannot be split into {count} equal process slices "
                         f"(process {index})")
    per = batch_size // count
    return index * per, (index + 1) * per


def batch_at_step(images: np.ndarray, labels: np.ndarray, step: int, batch_size: int, seed: int,
                  mirror: bool = False, process: Tuple[int, int] = (0, 1)) -> Tuple[np.ndarray, np.ndarray]:
    """(images [B / P, H, W, C] of `images`' dtype, labels int32 [B / P]) of step `step`: the
    rows `process_rows(B, *process)` of the global batch (all B rows for the default (0, 1)).

    images: the whole training set [N, H, W, C] (uint8 as loaded): an in-RAM array or anything
      indexed by an index array, e.g. a streamed `jaxgen.data.packed.PackedImages`, of which
      only this process's rows are read; labels int [N].
    mirror: flip the images `mirror_flags` picks along the width.
    Every process gets its slice of the same global batch, so the joint batch does not depend
    on the number of processes.
    """
    lo, hi = process_rows(batch_size, *process)
    idx = batch_indices(len(images), batch_size, seed, step)[lo:hi]
    flip = mirror_flags(batch_size, seed, step)[lo:hi] if mirror else None
    if hasattr(images, "read_rows"):            # streamed: read and mirrored in one copy
        return images.read_rows(idx, flip), np.asarray(labels[idx], np.int32)
    img = images[idx]                           # a new array: mirror its rows in place
    for k in np.flatnonzero(flip) if mirror else ():
        img[k] = img[k, :, ::-1]
    return img, np.asarray(labels[idx], np.int32)


class Prefetcher:
    """`fn(step)` for the steps start..stop-1 in order, computed up to `depth` steps ahead.

    A background thread calls `fn` for each step in turn and queues the results (at most
    `depth` of them wait; `depth` 0: no thread, `get` calls `fn` itself). `get(step)` returns
    the result of the next step; an exception `fn` raised for a step (KeyboardInterrupt
    included) is raised by `get` of that step, not earlier, and ends the thread. `close()`
    (or leaving the `with` block) stops the thread and drops what it queued; it returns once
    the thread is gone, after at most the one `fn` call under way.
    """

    def __init__(self, fn: Callable[[int], Any], start: int, stop: int, depth: int = 2):
        self.fn, self.next, self.stop = fn, int(start), int(stop)
        self._queue: "queue.Queue[Tuple[int, Any, Optional[BaseException]]]" = queue.Queue(max(depth, 1))
        self._halt = threading.Event()
        self._thread: Optional[threading.Thread] = None
        if depth > 0 and self.next < self.stop:
            self._thread = threading.Thread(target=self._produce, args=(self.next,), name="jaxgen-prefetch",
                                            daemon=True)
            self._thread.start()

    def __enter__(self) -> "Prefetcher":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _produce(self, start: int) -> None:
        """The thread: queue (step, fn(step), None) for each step, or (step, None, error) and end."""
        for step in range(start, self.stop):
            if self._halt.is_set():
                return
            try:
                item = (step, self.fn(step), None)
            except BaseException as e:  # noqa: BLE001 - handed to the consumer, raised by get(step)
                item = (step, None, e)
            self._queue.put(item)       # close() makes room before it waits for this thread
            if item[2] is not None:
                return

    def get(self, step: int) -> Any:
        """fn(step) for the next step (steps are taken in order, each once)."""
        if self._halt.is_set():
            raise RuntimeError("Prefetcher.get after close()")
        if step != self.next or step >= self.stop:
            raise ValueError(f"Prefetcher.get({step}): the next step is {self.next} (steps up to "
                             f"{self.stop - 1})")
        self.next += 1
        if self._thread is None:
            return self.fn(step)
        got, value, error = self._take()
        if got != step:
            raise RuntimeError(f"the prefetch thread produced step {got} for step {step}")
        if error is not None:
            raise error
        return value

    def _take(self) -> Tuple[int, Any, Optional[BaseException]]:
        """The next queued item; RuntimeError if the thread ended without queuing one."""
        while True:
            try:
                return self._queue.get(timeout=1.0)
            except queue.Empty:
                if self._thread is None or not self._thread.is_alive():
                    try:
                        return self._queue.get_nowait()   # queued just before it ended
                    except queue.Empty:
                        raise RuntimeError("the prefetch thread ended without a result") from None

    def close(self) -> None:
        """Stop the thread (waiting for an `fn` call under way) and drop the queued results."""
        self._halt.set()
        if self._thread is not None:
            self._drain()               # a put blocked on a full queue goes through
            self._thread.join()
            self._thread = None
        self._drain()

    def _drain(self) -> None:
        """Drop whatever is queued (without waiting)."""
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                return


@dataclasses.dataclass(frozen=True)
class Grid:
    """A run's sample grid: rows * cols cells, row-major.

    reals uint8 [rows*cols, H, W, C] (samples/reals.png; row r drawn from class r);
    row_labels: class names of the rows (None: unconditional); z float32 [rows*cols, z_dim]
    and labels int32 [rows*cols] (row r is class r, 0s when unconditional): the fixed
    generator inputs of samples/fakes_*.png.
    """
    reals: np.ndarray
    cols: int
    row_labels: Optional[List[str]] = None
    z: Optional[np.ndarray] = None
    labels: Optional[np.ndarray] = None


def grid_inputs(images: np.ndarray, labels: np.ndarray, class_names: Sequence[str], num_classes: int,
                z_dim: int, cols: int, seed: int) -> Grid:
    """The grid of a generator run: one row per class that has images (num_classes > 0; a
    run whose images are all one class, a fixed-label fine-tune, gets 4 rows of it), else 4
    rows; latents, labels and the real images are drawn from seed + 12345."""
    present = [k for k in range(num_classes) if np.any(labels == k)]
    row_class = (present if len(present) > 1 else present * 4) if num_classes else [0] * 4
    rows = len(row_class)
    rng = np.random.default_rng(seed + 12345)
    z = rng.standard_normal([rows * cols, z_dim]).astype(np.float32)
    row_of = np.repeat(np.asarray(row_class), cols).astype(np.int32)
    reals = []
    for k in row_class:
        pool = np.flatnonzero(labels == k) if num_classes else np.arange(len(images))
        reals.append(images[rng.choice(pool, size=cols, replace=len(pool) < cols)])
    return Grid(reals=np.concatenate(reals), cols=cols,
                row_labels=[class_names[k] for k in row_class] if num_classes else None, z=z,
                labels=row_of if num_classes else np.zeros(rows * cols, np.int32))
