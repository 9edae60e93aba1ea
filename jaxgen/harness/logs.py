"""What a run logs per tick: metrics.jsonl, TensorBoard scalars and the progress line.

metrics.jsonl holds one JSON row per tick (the tick's averaged step metrics,
the experiment's scores and the timing). A resumed run first drops the rows of
ticks after its checkpoint (written by the interrupted run after its last
save), so every tick appears once. TensorBoard scalars go through clu, which
imports TensorFlow: it is imported only when a writer is opened, and a failure
is reported once while metrics.jsonl keeps being written.
"""
from __future__ import annotations

import json
import logging
import math
import os
import pathlib
from typing import Any, Dict, List, Optional, Sequence

import jax
import numpy as np

_TENSORBOARD_WARNED = False
TENSORBOARD_ENV = "JAXGEN_TENSORBOARD"   # '0' / 'false' / 'no': metrics.jsonl only, no TF import


def tensorboard_wanted() -> bool:
    """False when $JAXGEN_TENSORBOARD turns the writer off (it costs a ~10 s TensorFlow
    import per process: the test suite's many short train.py runs set it to 0)."""
    return os.environ.get(TENSORBOARD_ENV, "1").lower() not in ("0", "false", "no")


def open_tensorboard(workdir: pathlib.Path):
    """A clu metric writer into `workdir` (events.out.tfevents.*), or None when clu fails
    or $JAXGEN_TENSORBOARD is 0."""
    global _TENSORBOARD_WARNED
    if not tensorboard_wanted():
        return None
    try:
        from clu import metric_writers  # heavy optional dependency (TensorFlow)
        return metric_writers.create_default_writer(str(workdir), asynchronous=False)
    except Exception as e:  # noqa: BLE001 - any import or setup failure: keep metrics.jsonl
        if not _TENSORBOARD_WARNED:
            logging.warning("TensorBoard scalars disabled (%s); metrics.jsonl is still written", e)
            _TENSORBOARD_WARNED = True
        return None


def read_rows(path: pathlib.Path) -> List[Dict[str, Any]]:
    """The rows of a JSON-lines file ([] when it does not exist)."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def keep_rows(path: pathlib.Path, key: str, upto: int, write: bool = True) -> List[Dict[str, Any]]:
    """The rows of the JSON-lines file `path` whose `key` is <= `upto`; with `write`, later
    rows (logged by an interrupted run after its last checkpoint) are removed from the file."""
    rows = read_rows(path)
    keep = [r for r in rows if int(r.get(key, 0)) <= upto]
    if write and len(keep) != len(rows):
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text("".join(json.dumps(r) + "\n" for r in keep))
        tmp.replace(path)
    return keep


class MetricsLog:
    """workdir/metrics.jsonl plus TensorBoard scalars; `write=False` (other hosts) writes nothing."""

    def __init__(self, workdir: pathlib.Path, write: bool = True):
        self.workdir = pathlib.Path(workdir)
        self.path = self.workdir / "metrics.jsonl"
        self.write = write
        self.writer = None          # opened with the first row: a finished run imports no TensorFlow
        self._opened = False

    def rows_upto(self, tick: int) -> List[Dict[str, Any]]:
        """The rows of ticks <= `tick`; later rows are removed from the file too."""
        return keep_rows(self.path, "tick", tick, self.write)

    def append(self, row: Dict[str, Any], nimg: int) -> None:
        """One tick's row; TensorBoard gets its numbers (all but `tick`) at x = images shown."""
        if not self.write:
            return
        with open(self.path, "a") as f:
            f.write(json.dumps(row) + "\n")
        if not self._opened:
            self.writer, self._opened = open_tensorboard(self.workdir), True
        if self.writer is not None:
            self.writer.write_scalars(nimg, {k: v for k, v in row.items()
                                             if k != "tick" and isinstance(v, (int, float))})

    def close(self) -> None:
        if self.writer is not None:
            self.writer.flush()


def reduce_metrics(per_step: Sequence[Dict[str, Any]], last_keys: Sequence[str] = ()) -> Dict[str, float]:
    """One tick's step metrics (dicts of device scalars) -> host floats.

    A key `k` with a companion `k_w` (0/1: whether a lazy phase ran in that step) is
    the mean over the steps where it ran (left out when it never ran); keys in
    `last_keys` (running values such as ADA p) take the last step's value; every
    other key is the plain mean. The `*_w` keys themselves are dropped.
    """
    host = jax.device_get(list(per_step))
    out: Dict[str, float] = {}
    for key in host[0]:
        if key.endswith("_w"):
            continue
        vals = np.array([float(m[key]) for m in host])
        if key + "_w" in host[0]:
            w = np.array([float(m[key + "_w"]) for m in host])
            if w.sum() > 0:
                out[key] = float((vals * w).sum() / w.sum())
        elif key in last_keys:
            out[key] = float(vals[-1])
        else:
            out[key] = float(vals.mean())
    return out


def non_finite(stats: Dict[str, Any]) -> List[str]:
    """The keys of `stats` whose value is a NaN or an infinity."""
    return [k for k, v in stats.items() if isinstance(v, float) and not math.isfinite(v)]


def fmt_time(seconds: float) -> str:
    """'1h 05m' from an hour on, else '3m 07s'."""
    s = int(seconds)
    return f"{s // 3600}h {s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m {s % 60:02d}s"


def progress_line(stats: Dict[str, Any], elapsed: float, eta: Optional[float], own: str) -> str:
    """The line printed every tick: tick, kimg, run time, sec/kimg, img/s, ETA, then `own`
    (the experiment's part: losses, scores)."""
    parts = [f"tick {stats['tick']:<4d}", f"kimg {stats['kimg']:<8.3f}", f"time {fmt_time(elapsed):<8s}",
             f"sec/kimg {stats['sec_per_kimg']:<7.2f}", f"img/s {stats['images_per_sec']:<7.1f}",
             f"ETA {fmt_time(eta) if eta is not None else '-':<8s}"]
    return "  ".join(parts + ([own] if own else []))
