"""The one training loop every trainer shares: `train(make_experiment, config, workdir)`.

A product (StyleGAN2-ADA, the DCGAN, the classifiers) describes itself as an
`Experiment`: how to build and check its parts (the constructor), a pure
`init_state(key)`, an optional `fresh_state` hook (transfer learning, ImageNet
weights: only for a run that starts from scratch), the jittable
`train_step(state, *batch, key) -> (state, metrics)`, the global batch of a
step (`batch(step)`, from `jaxgen.harness.batches`; or `local_batch(step, process)`:
a process's rows of it, read alone), the sample grid, its part
of the progress line, and optional `evaluate` / `after_tick` / `finish` hooks.
The harness owns everything else:

  * validation first (`jaxgen.harness.validate`): the shared settings and paths
    of the config and the workdir (a folder of the user's own, or a run of
    another config, is refused) before any data is loaded; then the experiment's
    constructor loads the data and checks the rest, the harness checks the batch
    against the images and compares the descriptor with the workdir's run.json;
    only then is the workdir created, with config.json, run.json and
    data_summary.json (the experiment's `data_summary`, also printed in a line);
  * one writer per run: process 0 holds the workdir's `.jaxgen-lock` from before
    its first write until `train` returns or raises (a second trainer is refused
    in one line naming the holder; a dead holder's lock is taken over);
  * resume: the latest checkpoint is restored into `jax.eval_shape(init_state)`
    (nothing is initialised for nothing); batches are a function of the step and
    the step's RNG is `fold_in(key, step)`, so the continuation is exactly the
    uninterrupted run;
  * ticks (`Schedule`: steps per tick, total steps), host-side counters, one
    `TrainingDiverged` raised before anything of the bad tick is saved;
  * a host pipeline that does not hold the device up: within a tick a background
    thread gathers the batches of the next `Experiment.prefetch` steps and puts them
    on the devices while the current step runs (`jaxgen.harness.batches.Prefetcher`),
    and nothing reads a device value per step (the step counter lives on the host,
    the metrics of a tick are fetched once at its end);
  * metrics.jsonl + TensorBoard + one progress line per tick (`jaxgen.harness.logs`);
  * samples/reals.png once, samples/fakes_<nimg:08d>.png every image snapshot,
    checkpoints every `snapshot_ticks` and at the end (the last `keep_checkpoints`
    kept), best/ by the experiment's score;
  * SIGTERM, SIGINT (Ctrl-C) and SIGUSR1 (`StopSignals`): a checkpoint at the next step
    boundary (every process stops at the same step), then `jaxgen.errors.TrainingStopped`
    (the commands exit with status 75); a KeyboardInterrupt raised otherwise (a second
    Ctrl-C) saves what it can;
  * data parallelism over all local devices (`jaxgen.harness.parallel`).

The state must be a pytree with an int32 scalar field `step` (steps done).
"""
from __future__ import annotations

import dataclasses
import json
import math
import pathlib
import signal
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

import jax
import numpy as np
from jax.experimental import multihost_utils

from jaxgen.data.folder import summary_line
from jaxgen.errors import ConfigError, TrainingStopped, UserError
from jaxgen.harness.batches import Grid, Prefetcher, process_rows
from jaxgen.harness.checkpoint import CheckpointError, TrainCheckpointer, write_descriptor
from jaxgen.harness.logs import MetricsLog, non_finite, progress_line, reduce_metrics
from jaxgen.harness.parallel import DataParallel, initialize_distributed
from jaxgen.harness.validate import (RESUME_FIELDS, check_config, check_same_config,
                                     check_same_descriptor, check_workdir)
from jaxgen.utils.files import write_text_atomic
from jaxgen.utils.images import save_grid
from jaxgen.utils.outputs import FolderLock, check_unlocked

INIT_FOLD = 10 ** 6   # init_state gets fold_in(key(seed), INIT_FOLD); steps get key(seed) itself


class TrainingDiverged(UserError, FloatingPointError):
    """A training metric became NaN or infinite; nothing of that tick was saved (the message
    names the last good checkpoint and the setting to change: an expected, one-line error)."""


@dataclasses.dataclass(frozen=True)
class Schedule:
    """How long a run is and when it reports and saves, in steps of `batch_size` examples.

    A tick is `tick_steps` steps (the last one may be shorter); checkpoints every
    `snapshot_ticks` ticks, sample grids every `image_snapshot_ticks`, both at the end.
    """
    batch_size: int
    total_steps: int
    tick_steps: int
    snapshot_ticks: int = 1
    image_snapshot_ticks: int = 1
    keep_checkpoints: int = 3

    def __post_init__(self):
        for name in ("snapshot_ticks", "image_snapshot_ticks", "keep_checkpoints"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"config.train.{name}={getattr(self, name)} must be >= 1")
        if self.tick_steps < 1 or self.total_steps < 0:
            raise ConfigError(f"a tick must be >= 1 step and a run >= 0 steps (got {self.tick_steps}, "
                             f"{self.total_steps})")

    @classmethod
    def from_kimg(cls, train_cfg: Any) -> "Schedule":
        """GAN schedules: total_kimg and kimg_per_tick (thousands of real images) of config.train."""
        bs, t = int(train_cfg.batch_size), train_cfg
        if bs < 1 or not float(t.total_kimg) >= 0 or not float(t.kimg_per_tick) >= 0:
            raise ConfigError(f"config.train: batch_size={bs} must be >= 1 and total_kimg={t.total_kimg}, "
                             f"kimg_per_tick={t.kimg_per_tick} >= 0")
        steps = lambda kimg: math.ceil(round(float(kimg) * 1000) / bs)  # noqa: E731
        snap = int(t.get("snapshot_ticks", 1))
        return cls(bs, steps(t.total_kimg), max(steps(t.kimg_per_tick), 1), snap,
                   int(t.get("image_snapshot_ticks", snap)), int(t.get("keep_checkpoints", 3)))

    @classmethod
    def from_epochs(cls, batch_size: int, num_examples: int, epochs: int, keep_checkpoints: int = 2) -> "Schedule":
        """Classifier schedules: a tick is an epoch of num_examples // batch_size steps."""
        if batch_size < 1 or epochs < 0:
            raise ConfigError(f"config.train: batch_size={batch_size} must be >= 1 and epochs={epochs} >= 0")
        per_epoch = max(num_examples // batch_size, 1)
        return cls(batch_size, epochs * per_epoch, per_epoch, 1, 1, keep_checkpoints)


@dataclasses.dataclass
class TickInfo:
    """Where the run stands at the end of a tick (what the experiment's hooks get).

    history: the metrics.jsonl rows so far (in `after_tick` and `finish` this tick's row is last).
    """
    index: int
    step: int
    nimg: int
    done: bool
    image_snapshot: bool
    history: List[Dict[str, Any]]


class Experiment:
    """What a product supplies to `train` (see the module docstring); override what applies.

    Attributes set by the constructor: kind ('stylegan2' | 'dcgan' | 'classifier'),
    descriptor (run.json fields: class_names, resolution, channels, G_kwargs/D_kwargs or
    model/model_kwargs), schedule, seed, num_examples (training examples), and optionally
    grid (a `jaxgen.harness.batches.Grid`: samples/reals.png once, then `sample`'s images
    every image snapshot), best_key / best_mode (the stats key of the score that picks
    best/, 'min' or 'max'), last_keys (running metrics reduced by their last value),
    batch_setting and divergence_hint (what to change, for error messages),
    data_summary ({role: the dataset's summary}, e.g. {'train': ds.summary}: written to
    data_summary.json) and prefetch (default 2, read at each tick: how many steps ahead a background
    thread gathers the batches and puts them on the devices; 0: the loop's thread does it
    just before each step). Class attributes read before the constructor runs:
    resolution_range (the config.data.resolution the models build; power_of_two: whether
    it must be one) and resume_fields
    (config fields beyond `validate.RESUME_FIELDS` that a resumed run must keep, because
    they shape the train state). `train_step` may be a plain attribute holding the step function.
    """
    kind: str = ""
    descriptor: Dict[str, Any] = {}
    schedule: Schedule
    seed: int = 0
    num_examples: int = 0
    grid: Optional[Grid] = None
    best_key: Optional[str] = None
    best_mode: str = "min"
    last_keys: Tuple[str, ...] = ()
    batch_setting: str = "config.train.batch_size"
    divergence_hint: str = "lower the learning rate and resume"
    data_summary: Dict[str, Dict[str, Any]] = {}
    resolution_range: Tuple[int, int] = (4, 1024)
    power_of_two: bool = True          # False: any config.data.resolution in the range
    prefetch: int = 2                  # batches made ahead of the step (0: none)
    resume_fields: Tuple[str, ...] = ()

    def init_state(self, key: jax.Array) -> Any:
        """A fresh train state (pure: `train` also runs it under jax.eval_shape)."""
        raise NotImplementedError

    def fresh_state(self, state: Any) -> Any:
        """Hook for a run that starts from scratch (transfer learning, pretrained weights)."""
        return state

    def train_step(self, state: Any, *batch_and_key: Any) -> Tuple[Any, Dict[str, Any]]:
        """(state, *batch arrays, key) -> (state, metrics of device scalars); jitted by `train`."""
        raise NotImplementedError

    def batch(self, step: int) -> Tuple[np.ndarray, ...]:
        """The host arrays of the global batch of `step`, leading axis = batch (override this
        or `local_batch`)."""
        return self.local_batch(step, (0, 1))

    def local_batch(self, step: int, process: Tuple[int, int]) -> Tuple[np.ndarray, ...]:
        """The rows `batches.process_rows(B, *process)` of the global batch of `step`: what
        process `process[0]` of `process[1]` feeds (the loop calls this, not `batch`). The
        default slices `batch(step)`; an experiment whose images are read by index (a streamed
        pack) overrides it so that a process reads only its own rows."""
        arrays = self.batch(step)
        lo, hi = process_rows(len(arrays[0]), *process)
        return tuple(a[lo:hi] for a in arrays)

    def step_options(self, step: int) -> Dict[str, Any]:
        """Static keyword arguments of `train_step` at `step`, chosen on the host (hashable
        values; each distinct set compiles its own program), e.g. which lazy phases run."""
        return {}

    def banner(self) -> str:
        """What the run trains, for the first line it prints."""
        return f"{self.kind}: {self.num_examples} examples, batch {self.schedule.batch_size}"

    def sample(self, state: Any) -> np.ndarray:
        """The generated images [N, R, R, C] in [-1, 1] of the grid's cells (when `grid` is set)."""
        raise NotImplementedError

    def tick_line(self, stats: Dict[str, Any]) -> str:
        return ""

    def begin(self, step: int) -> None:
        """Called once before training from `step` (0 for a new run)."""

    def evaluate(self, state: Any, tick: TickInfo, stats: Dict[str, float]) -> Dict[str, float]:
        """Scores of this tick, merged into its metrics row (best/ uses `best_key`)."""
        return {}

    def after_tick(self, state: Any, tick: TickInfo) -> None:
        """After the tick's row is logged (plots, histories)."""

    def finish(self, state: Any, tick: TickInfo) -> None:
        """After the last checkpoint, also when a finished run is started again."""


def train(make_experiment: Callable[[Any, pathlib.Path], Experiment], config: Any,
          workdir: Any) -> Dict[str, Any]:
    """Validate, build the experiment, then train or resume it in `workdir`.

    Returns dict(stats: the last tick's row, history: all rows, step, nimg, best: the best
    score or None, workdir). Expected user errors (jaxgen.errors.UserError: ConfigError,
    InputMissing, OutputError, DatasetError, CheckpointError, ...) are raised before the
    workdir or anything in it is created or changed.
    """
    initialize_distributed(config)
    workdir = pathlib.Path(workdir).absolute()
    resuming = check_workdir(workdir)
    check_config(config, getattr(make_experiment, "resolution_range", (4, 1024)), resuming,
                 power_of_two=getattr(make_experiment, "power_of_two", True))
    check_same_config(config, workdir, RESUME_FIELDS + tuple(getattr(make_experiment, "resume_fields", ())))
    if jax.process_index() == 0:
        check_unlocked(workdir)      # another trainer writes there: refuse before the data loads
    exp = make_experiment(config, workdir)
    dp = DataParallel()
    dp.check_batch(exp.schedule.batch_size, exp.num_examples, exp.batch_setting)
    check_same_descriptor(exp.kind, exp.descriptor, workdir)
    state, meta = _restore_or_init(exp, workdir, dp)
    lock = _write_run_files(exp, config, workdir) if jax.process_index() == 0 else None
    try:
        return _Loop(exp, workdir, dp, state, meta).run()
    finally:
        if lock is not None:
            lock.release()


def _write_run_files(exp: Experiment, config: Any, workdir: pathlib.Path) -> FolderLock:
    """Create the workdir, take its lock (`jaxgen.utils.outputs.FolderLock`: one writer per run;
    OutputError naming the holder when another trainer has it), then write run.json (first:
    it is what marks the folder as a run), config.json and data_summary.json (printed in one
    line per dataset role), all atomically. Returns the lock, held: the caller releases it."""
    workdir.mkdir(parents=True, exist_ok=True)
    lock = FolderLock(workdir, "--workdir").acquire()
    try:
        _write_descriptor_and_config(exp, config, workdir)
    except BaseException:
        lock.release()
        raise
    return lock


def _write_descriptor_and_config(exp: Experiment, config: Any, workdir: pathlib.Path) -> None:
    """run.json, config.json and data_summary.json of a run (see `_write_run_files`)."""
    write_descriptor(workdir, exp.kind, **exp.descriptor)
    text = config.to_json_best_effort(indent=2) if hasattr(config, "to_json_best_effort") else str(config)
    write_text_atomic(workdir / "config.json", text)
    if exp.data_summary:
        write_text_atomic(workdir / "data_summary.json", json.dumps(exp.data_summary, indent=1))
        for role, summary in exp.data_summary.items():
            print(f"data ({role}): {summary_line(summary)}", flush=True)


def _restore_or_init(exp: Experiment, workdir: pathlib.Path, dp: DataParallel) -> Tuple[Any, Dict[str, Any]]:
    """(state replicated over the devices, checkpoint meta) of the latest checkpoint, else a new
    state ({} meta). The restore target is the abstract init_state: no arrays are initialised.
    A checkpoint whose tree does not fit that target is a one-line CheckpointError."""
    key = jax.random.fold_in(jax.random.key(exp.seed), INIT_FOLD)
    if (workdir / "checkpoints").is_dir():
        ck = TrainCheckpointer(workdir, max_to_keep=None, create=False)
        try:
            step = ck.latest_step()
            if step is not None:
                state, meta = _restore(ck, dp.abstract(jax.eval_shape(exp.init_state, key)), workdir)
                print(f"Resuming from step {int(state.step)} (tick {meta.get('tick', 0)}, "
                      f"kimg {_kimg(meta)}) in {workdir}", flush=True)
                return state, meta
        finally:
            ck.close()
    return dp.replicate(exp.fresh_state(exp.init_state(key))), {}


def _restore(ck: TrainCheckpointer, target: Any, workdir: pathlib.Path) -> Tuple[Any, Dict[str, Any]]:
    """ck.restore(target); a checkpoint of another tree or shapes is one CheckpointError line
    instead of orbax's dump of both trees (checked from its metadata first, so no read starts)."""
    where = f"the checkpoint {ck.directory}/{ck.latest_step()}"
    fix = (f"resume it with the config it was made with ({workdir}/config.json), or start fresh with "
           "a new --workdir")
    misfits = ck.misfits(target)
    if misfits:
        raise CheckpointError(f"{where} does not fit the train state this config builds "
                              f"({'; '.join(misfits[:4])}): {fix}")
    try:
        return ck.restore(target)
    except (ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f"{where} does not fit the train state this config builds "
                              f"({type(e).__name__} from orbax): {fix}") from e


def _kimg(meta: Dict[str, Any]) -> str:
    """kimg of a checkpoint's meta with every digit an image count has (0.008, 12.345)."""
    nimg = int(meta.get("nimg", round(float(meta.get("kimg", 0.0)) * 1000)))
    return f"{nimg / 1000:.3f}"


STOP_SIGNALS = ("SIGTERM", "SIGINT", "SIGUSR1")   # stop at the next step boundary, with a checkpoint
STOP_SYNC_STEPS = 10     # several processes agree on a stop every this many steps and at tick ends


class StopSignals:
    """SIGTERM, SIGINT (Ctrl-C) and SIGUSR1 as a request to stop at a step boundary.

    Schedulers send SIGTERM before they kill a job (Slurm, Kubernetes, Docker, spot VMs; some
    clusters SIGUSR1): the loop saves a checkpoint at the next step boundary and stops instead
    of losing the steps since the last periodic one. A context: entered in the main thread
    (the one Python runs handlers in; in another it installs nothing), its handler records the
    first signal; leaving it puts the previous handlers back. A signal set to SIG_IGN (SIGINT
    of a background job) stays ignored. Repeated signals change nothing, so a second SIGTERM
    cannot cut the save short; only a second Ctrl-C outside the stop's save (`saving`) raises
    KeyboardInterrupt at once, for a user who will not wait for a long evaluation.

    `poll` decides, the same on every process. One process needs no collective: it stops at
    the step after the signal. Several share their flags with
    `multihost_utils.process_allgather`, only after steps that are multiples of `sync_every`
    and at tick ends: a collective waits for every queued step, which once a step would
    stall the device. (jax's own preemption sync point needs jax.distributed and only hears
    SIGTERM, so it cannot serve a one-process run or SIGINT/SIGUSR1.)
    """

    def __init__(self, sync_every: int = STOP_SYNC_STEPS):
        self.sync_every = max(int(sync_every), 1)
        self.processes = jax.process_count()
        self.received: Optional[int] = None      # the first signal this process got
        self.saving = False                      # the stop's checkpoint is being written
        self._previous: Dict[int, Any] = {}

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():
            for name in STOP_SIGNALS:
                sig = getattr(signal, name, None)          # Windows has no SIGUSR1
                if sig is not None and signal.getsignal(sig) != signal.SIG_IGN:
                    self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, old in self._previous.items():     # None: a handler not set from Python
            signal.signal(sig, signal.SIG_DFL if old is None else old)
        self._previous.clear()

    def _handle(self, signum: int, frame: Any) -> None:
        if self.received is None:
            self.received = signum
        elif signum == signal.SIGINT and not self.saving:
            raise KeyboardInterrupt

    def poll(self, step: int, tick_end: bool = False) -> Optional[int]:
        """The signal to stop on now that `step` steps are done (the same on every process),
        or None to go on. Every process must call it after each step."""
        if self.processes == 1:
            return self.received
        if step % self.sync_every and not tick_end:
            return None
        flags = np.ravel(multihost_utils.process_allgather(np.int32(self.received or 0)))
        return next((int(f) for f in flags if f), None)


class _Loop:
    """One run of an experiment: host counters, checkpointers, logs, and the tick loop."""

    def __init__(self, exp: Experiment, workdir: pathlib.Path, dp: DataParallel, state: Any,
                 meta: Dict[str, Any]):
        self.exp, self.workdir, self.dp, self.sched = exp, workdir, dp, exp.schedule
        self.state = state
        self.step = int(state.step)      # read once; counted on the host from here on
        self.tick = int(meta.get("tick", 0))
        self.nimg = int(meta.get("nimg", round(float(meta.get("kimg", 0.0)) * 1000)))
        self.best = meta.get("best")
        self.wall0 = time.time() - float(meta.get("wall_time", 0.0))
        self.is_main = jax.process_index() == 0
        self.log = MetricsLog(workdir, write=self.is_main)
        self.history = self.log.rows_upto(self.tick)
        self.ckpt = TrainCheckpointer(workdir, max_to_keep=self.sched.keep_checkpoints)
        self.best_ckpt: Optional[TrainCheckpointer] = None   # best/ is made with its first save
        self.key = dp.replicate(jax.random.key(exp.seed))
        self.step_fn = dp.jit_step(exp.train_step, tuple(exp.step_options(self.step)))

    def run(self) -> Dict[str, Any]:
        """Train to the end of the schedule; returns `train`'s dict.

        While it trains, SIGTERM, SIGINT and SIGUSR1 stop it at the next step boundary with a
        checkpoint (`StopSignals`, `_stop`: TrainingStopped); a KeyboardInterrupt (a second
        Ctrl-C, or raised by a hook) saves what it can and goes on up. The handlers stay
        until the checkpointers are closed, so every save is complete before they go.
        """
        exp, sched = self.exp, self.sched
        print(f"{exp.banner()}; {sched.total_steps} steps of {sched.batch_size} on {self.dp.num_devices} "
              f"device(s) -> {self.workdir}", flush=True)
        grid = exp.grid
        if self.is_main and grid is not None and not (self.workdir / "samples" / "reals.png").exists():
            save_grid(grid.reals, self.workdir / "samples" / "reals.png", cols=grid.cols,
                      row_labels=grid.row_labels)
        exp.begin(self.step)
        self.signals, self.stop_signal = StopSignals(), None
        with self.signals:
            try:
                while self.step < sched.total_steps:
                    self._tick()
                if self.ckpt.latest_step() != self.step:   # e.g. a run of 0 steps
                    self.ckpt.save(self.step, self.state, self._meta())
            except KeyboardInterrupt:
                self._save_interrupted()
                raise
            finally:
                self.ckpt.close()
                if self.best_ckpt is not None:
                    self.best_ckpt.close()
                self.log.close()
        exp.finish(self.state, self._info(done=True, image_snapshot=False))
        print(f"Done: step {self.step}, {self.nimg / 1000:.3f} kimg; checkpoints in {self.ckpt.directory}",
              flush=True)
        return dict(stats=self.history[-1] if self.history else {}, history=self.history, step=self.step,
                    nimg=self.nimg, best=self.best, workdir=str(self.workdir))

    def _tick(self) -> None:
        """Run one tick of steps, then check, evaluate, log and save it.

        `self.tick` counts logged ticks: it moves on only when the tick's metrics row is
        written, so a Ctrl-C during the evaluation saves a checkpoint whose meta does not
        claim a tick metrics.jsonl lacks (the resumed run logs the next tick under that
        number: the ticks in metrics.jsonl stay unique and consecutive). A tick ends at a
        multiple of `tick_steps`: a run resumed from a stop mid-tick finishes that tick first,
        so its rows, image snapshots and checkpoints fall on the uninterrupted run's steps.
        A stop (`StopSignals`) ends the tick early: its steps are checked, then `_stop` saves.
        """
        t0, start, tick = time.time(), self.step, self.tick + 1
        ts = self.sched.tick_steps
        end = min((self.step // ts + 1) * ts, self.sched.total_steps)
        stats = reduce_metrics(self._steps(end), self.exp.last_keys)
        self._check_finite(stats, tick)
        if self.stop_signal is not None:
            self._stop()
        dt = time.time() - t0
        n = (self.step - start) * self.sched.batch_size
        stats.update(tick=tick, step=self.step, kimg=self.nimg / 1000, sec_per_tick=dt,
                     sec_per_kimg=dt / max(n / 1000, 1e-9), images_per_sec=n / max(dt, 1e-9))
        eta = dt / (self.step - start) * (self.sched.total_steps - self.step)
        done = self.step >= self.sched.total_steps
        info = self._info(done, done or tick % self.sched.image_snapshot_ticks == 0, tick)
        stats.update(self.exp.evaluate(self.state, info, stats))
        improved = self._save_best(stats)
        self.history.append(stats)
        self.log.append(stats, self.nimg)
        self.tick = tick
        if self.is_main:
            line = progress_line(stats, time.time() - self.wall0, eta, self.exp.tick_line(stats))
            print(line + ("  *best*" if improved else ""), flush=True)
        if info.image_snapshot and self.exp.grid is not None:
            self._save_fakes()
        self.exp.after_tick(self.state, info)
        if done or self.tick % self.sched.snapshot_ticks == 0:
            self.ckpt.save(self.step, self.state, self._meta())

    def _steps(self, end: int) -> List[Dict[str, Any]]:
        """Run the steps self.step..end-1; their metrics (device scalars, not read here).

        The batches come from a `Prefetcher` (the experiment's `prefetch` steps ahead), so the
        next batch is gathered and put on the devices while a step runs; the prefetch thread
        ends with the tick, also when a step, a batch or Ctrl-C raises. Nothing here waits for
        the devices except `block_every_step` (several CPU devices), which awaits each step.
        After each step but the run's last, `StopSignals.poll` may end the steps early
        (`self.stop_signal`); a signal in the last step lets the run finish (its final tick is
        evaluated, logged and saved: nothing is left to resume).
        """
        per_step = []
        with Prefetcher(self._device_batch, self.step, end, int(self.exp.prefetch)) as feed:
            while self.step < end:
                batch = feed.get(self.step)
                self.state, metrics = self.step_fn(self.state, *batch, self.key,
                                                   **self.exp.step_options(self.step))
                self.step += 1
                self.nimg += self.sched.batch_size
                per_step.append(metrics)
                if self.dp.block_every_step:
                    jax.block_until_ready(self.state)
                if self.step < self.sched.total_steps:     # after the last step the run ends anyway
                    self.stop_signal = self.signals.poll(self.step, self.step == end)
                    if self.stop_signal is not None:
                        break
        return per_step

    def _device_batch(self, step: int) -> Tuple[jax.Array, ...]:
        """The batch of `step` sharded over the devices (runs on the prefetch thread); this
        process gathers only its own rows (`Experiment.local_batch`)."""
        return self.dp.put_batch(self.exp.local_batch(step, self.dp.process), local=True)

    def _info(self, done: bool, image_snapshot: bool, tick: Optional[int] = None) -> TickInfo:
        return TickInfo(self.tick if tick is None else tick, self.step, self.nimg, done, image_snapshot,
                        self.history)

    def _meta(self) -> Dict[str, Any]:
        return dict(step=self.step, tick=self.tick, nimg=self.nimg, kimg=self.nimg / 1000,
                    wall_time=time.time() - self.wall0, best=self.best)

    def _check_finite(self, stats: Dict[str, float], tick: int) -> None:
        bad = non_finite(stats)
        if bad:
            last = self.ckpt.latest_step()
            where = (f"the last good checkpoint is step {last} in {self.ckpt.directory}" if last is not None
                     else f"no checkpoint was saved yet in {self.ckpt.directory}")
            raise TrainingDiverged(
                f"non-finite {', '.join(bad)} at kimg {self.nimg / 1000:.3f} (tick {tick}, step "
                f"{self.step}); nothing was saved for this tick, {where}. To go on: "
                f"{self.exp.divergence_hint}.")

    def _save_best(self, stats: Dict[str, Any]) -> bool:
        """Save best/ when this tick's score beats the best so far; True when it did."""
        score = stats.get(self.exp.best_key) if self.exp.best_key else None
        if score is None:
            return False
        if self.best is not None and not (score < self.best if self.exp.best_mode == "min" else score > self.best):
            return False
        self.best = float(score)
        if self.best_ckpt is None:
            self.best_ckpt = TrainCheckpointer(self.workdir, max_to_keep=1, subdir="best")
        meta = dict(self._meta(), tick=int(stats["tick"]), **{self.exp.best_key: self.best})
        self.best_ckpt.save(self.step, self.state, meta)
        return True

    def _save_fakes(self) -> None:
        fakes, grid = np.asarray(self.exp.sample(self.state)), self.exp.grid
        if self.is_main:
            save_grid(fakes, self.workdir / "samples" / f"fakes_{self.nimg:08d}.png", cols=grid.cols,
                      row_labels=grid.row_labels)

    def _save_interrupted(self) -> None:
        """Ctrl-C: checkpoint the current state, unless it was donated to the interrupted step."""
        self.signals.saving = True      # a further Ctrl-C does not cut this save short
        try:
            step = int(self.state.step)
            self.nimg += (step - self.step) * self.sched.batch_size
            self.step = step
            print(f"Interrupted: saving a checkpoint at step {step} before exiting", flush=True)
            self.ckpt.save(step, self.state, self._meta())
        except Exception as e:  # noqa: BLE001 - report and keep the last periodic checkpoint
            print(f"Interrupted mid-step ({type(e).__name__}); the last checkpoint is step "
                  f"{self.ckpt.latest_step()} in {self.ckpt.directory}", flush=True)

    def _stop(self) -> None:
        """A stop signal at a step boundary: save a checkpoint there, then raise TrainingStopped.

        The steps of the unfinished tick are in the checkpoint but in no metrics row (its meta
        keeps the last logged tick, as `_save_interrupted`'s does). The save is synchronous and
        `StopSignals.saving` holds off a second Ctrl-C, so the checkpoint is whole on disk when
        the exception leaves; the entry points turn it into one line and exit status 75.
        """
        self.signals.saving = True
        name = signal.Signals(self.stop_signal).name
        where = f"step {self.step} (kimg {self.nimg / 1000:.3f})"
        if self.is_main:
            print(f"{name}: saving a checkpoint at {where} before exiting", flush=True)
        if self.ckpt.latest_step() != self.step:
            self.ckpt.save(self.step, self.state, self._meta())
        raise TrainingStopped(f"stopped by {name}: saved a checkpoint at {where} in {self.ckpt.directory}",
                              name, self.step)
