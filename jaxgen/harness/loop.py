"""The one training loop every trainer shares: `train(experiment, config, workdir)`.

A product (StyleGAN2-ADA, the DCGAN, the classifiers) describes itself as a subclass of
`jaxgen.harness.experiment.Experiment`: its class settings (checked against the config
before anything loads), a constructor that loads the data and builds the models, a pure
`init_state(key)`, the jittable `train_step`, the batch of a step, the sample grid, its
part of the progress line and optional per-tick hooks (that module lists them in the order
the loop calls them). The harness owns everything else:

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
  * ticks (`jaxgen.harness.schedule.Schedule`: steps per tick, total steps), host-side
    counters, one `TrainingDiverged` raised before anything of the bad tick is saved;
  * a host pipeline that does not hold the device up: within a tick a background
    thread gathers the batches of the next `Experiment.prefetch` steps and puts them
    on the devices while the current step runs (`jaxgen.harness.batches.Prefetcher`),
    and nothing reads a device value per step (the step counter lives on the host,
    the metrics of a tick are fetched once at its end);
  * metrics.jsonl + TensorBoard + one progress line per tick (`jaxgen.harness.logs`);
  * samples/reals.png once, samples/fakes_<nimg:08d>.png every image snapshot,
    checkpoints every `snapshot_ticks` and at the end (the last `keep_checkpoints`
    kept), best/ by the experiment's score;
  * SIGTERM, SIGINT (Ctrl-C) and SIGUSR1 (`jaxgen.harness.stop_signals`): a checkpoint at
    the next step boundary (every process stops at the same step), then `jaxgen.errors.TrainingStopped`
    (the commands exit with status 75); a KeyboardInterrupt raised otherwise (a second
    Ctrl-C) saves what it can;
  * data parallelism over all local devices (`jaxgen.harness.parallel`).
"""
from __future__ import annotations

import json
import pathlib
import signal
import time
from typing import Any, Dict, List, Optional, Tuple, Type

import jax
import numpy as np

from jaxgen.data.folder import summary_line
from jaxgen.errors import TrainingStopped, UserError
from jaxgen.harness.batches import Grid, Prefetcher
from jaxgen.harness.checkpoint import CheckpointError, TrainCheckpointer, write_descriptor
from jaxgen.harness.experiment import Experiment, TickInfo
from jaxgen.harness.logs import MetricsLog, non_finite, progress_line, reduce_metrics
from jaxgen.harness.parallel import DataParallel, initialize_distributed
from jaxgen.harness.stop_signals import StopSignals
from jaxgen.harness.validate import (RESUME_FIELDS, check_config, check_same_config,
                                     check_same_descriptor, check_workdir)
from jaxgen.utils.files import write_text_atomic
from jaxgen.utils.images import save_grid
from jaxgen.utils.logger import logger
from jaxgen.utils.outputs import FolderLock, check_unlocked

INIT_FOLD = 10 ** 6   # init_state gets fold_in(key(seed), INIT_FOLD); steps get key(seed) itself


class TrainingDiverged(UserError, FloatingPointError):
    """A training metric became NaN or infinite; nothing of that tick was saved (the message
    names the last good checkpoint and the setting to change: an expected, one-line error)."""


def train(experiment: Type[Experiment], config: Any, workdir: Any) -> Dict[str, Any]:
    """Validate, build the experiment, then train or resume it in `workdir`.

    `experiment` is the class: its settings (`resolution_range`, `power_of_two`,
    `resume_fields`) check the config before `experiment(config, workdir)` loads any data.
    Returns dict(stats: the last tick's row, history: all rows, step, nimg, best: the best
    score or None, workdir). Expected user errors (jaxgen.errors.UserError: ConfigError,
    InputMissing, OutputError, DatasetError, CheckpointError, ...) are raised before the
    workdir or anything in it is created or changed.
    """
    initialize_distributed(config)
    workdir = pathlib.Path(workdir).absolute()
    resuming = check_workdir(workdir)
    check_config(config, experiment.resolution_range, resuming, power_of_two=experiment.power_of_two)
    check_same_config(config, workdir, RESUME_FIELDS + tuple(experiment.resume_fields))
    if jax.process_index() == 0:
        check_unlocked(workdir)      # another trainer writes there: refuse before the data loads
    exp = experiment(config, workdir)
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
            logger.info(f"data ({role}): {summary_line(summary)}")


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
                logger.info(f"Resuming from step {int(state.step)} (tick {meta.get('tick', 0)}, "
                            f"kimg {_kimg(meta)}) in {workdir}")
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
        logger.info(f"{exp.banner()}; {sched.total_steps} steps of {sched.batch_size} on {self.dp.num_devices} "
                    f"device(s) -> {self.workdir}")
        grid = exp.grid
        if self.is_main and grid is not None and not (self.workdir / "samples" / "reals.png").exists():
            save_grid(grid.reals, self.workdir / "samples" / "reals.png", cols=grid.cols,
                      row_labels=grid.row_labels)
        exp.begin(self.step)
        self.signals = StopSignals()
        self.stop_signal: Optional[int] = None   # the signal a stop was agreed on
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
        logger.info(f"Done: step {self.step}, {self.nimg / 1000:.3f} kimg; checkpoints in {self.ckpt.directory}")
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
            self._stop(self.stop_signal)
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
            logger.info(line + ("  *best*" if improved else ""))
        if info.image_snapshot and self.exp.grid is not None:
            self._save_fakes(self.exp.grid)
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
        key = self.exp.best_key
        score = stats.get(key) if key else None
        if key is None or score is None:
            return False
        if self.best is not None and not (score < self.best if self.exp.best_mode == "min" else score > self.best):
            return False
        self.best = float(score)
        if self.best_ckpt is None:
            self.best_ckpt = TrainCheckpointer(self.workdir, max_to_keep=1, subdir="best")
        meta = dict(self._meta(), tick=int(stats["tick"]), **{key: self.best})
        self.best_ckpt.save(self.step, self.state, meta)
        return True

    def _save_fakes(self, grid: Grid) -> None:
        """samples/fakes_<nimg:08d>.png: the experiment's samples of `grid`'s cells."""
        fakes = np.asarray(self.exp.sample(self.state))
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
            logger.info(f"Interrupted: saving a checkpoint at step {step} before exiting")
            self.ckpt.save(step, self.state, self._meta())
        except Exception as e:  # noqa: BLE001 - report and keep the last periodic checkpoint
            logger.warning(f"Interrupted mid-step ({type(e).__name__}); the last checkpoint is step "
                           f"{self.ckpt.latest_step()} in {self.ckpt.directory}")

    def _stop(self, signum: int) -> None:
        """A stop signal at a step boundary: save a checkpoint there, then raise TrainingStopped.

        The steps of the unfinished tick are in the checkpoint but in no metrics row (its meta
        keeps the last logged tick, as `_save_interrupted`'s does). The save is synchronous and
        `StopSignals.saving` holds off a second Ctrl-C, so the checkpoint is whole on disk when
        the exception leaves; the entry points turn it into one line and exit status 75.
        """
        self.signals.saving = True
        name = signal.Signals(signum).name
        where = f"step {self.step} (kimg {self.nimg / 1000:.3f})"
        if self.is_main:
            logger.info(f"{name}: saving a checkpoint at {where} before exiting")
        if self.ckpt.latest_step() != self.step:
            self.ckpt.save(self.step, self.state, self._meta())
        raise TrainingStopped(f"stopped by {name}: saved a checkpoint at {where} in {self.ckpt.directory}",
                              name, self.step)
