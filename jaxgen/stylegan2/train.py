"""StyleGAN2-ADA training: `train_and_evaluate(config, workdir)`, the experiment the harness runs.

What a run writes (all under `workdir`; the shared parts are `jaxgen.harness.loop`'s):
  config.json, run.json               the resolved config; the descriptor with G_kwargs/D_kwargs
  samples/reals.png                   a grid of training images (one row per class)
  samples/fakes_<nimg:08d>.png        G_ema on fixed latents every image snapshot
  checkpoints/<step>/                 the whole TrainState (orbax), every snapshot
  metrics.jsonl, events.out.tfevents.*  averaged scalars per tick (and for TensorBoard)
  fid.jsonl, fid.png, best/           FID of G_ema every `metrics.every_ticks`, its plot
                                      over kimg, and the best-FID checkpoint

This module supplies what is StyleGAN2's own: the data (one-hot labels, class
frequencies for sampling fake labels), G and D with NVIDIA's lazily regularised
optimizers and freezing, the jitted step of `jaxgen.stylegan2.step`, transfer
learning for a new run (`config.transfer.init_from`), the G_ema sample grid,
FID tracking, and its part of the progress line (losses, R1/PL, ADA p).
Running the same command again resumes exactly; a NaN/inf loss stops the run
with TrainingDiverged before anything is saved.
"""
from __future__ import annotations

import dataclasses
import pathlib
from typing import Any, Dict, List

import jax
import numpy as np

from jaxgen.data import load_dataset, to_float
from jaxgen.errors import ConfigError
from jaxgen.harness import loop
from jaxgen.harness.batches import Grid, batch_at_step, grid_inputs
from jaxgen.harness.checkpoint import DESCRIPTOR, read_descriptor
from jaxgen.harness.experiment import Experiment, TickInfo
from jaxgen.harness.loop import TrainingDiverged
from jaxgen.harness.schedule import Schedule
from jaxgen.metrics.fid_tracker import FIDTracker
from jaxgen.stylegan2 import networks, state as state_lib
from jaxgen.stylegan2.loss import LossConfig
from jaxgen.stylegan2.step import StepConfig, batch_gpu_problem, lazy_phases, make_train_step
from jaxgen.stylegan2.transfer import transfer
from jaxgen.utils.labels import one_hot_labels

__all__ = ["StyleGAN2Experiment", "TrainingDiverged", "check_batch_gpu", "check_step_settings", "loss_scale",
           "r1_gamma", "step_config", "train_and_evaluate"]

AUTO_FP16_LOSS_SCALE = 1024.0


def r1_gamma(config: Any) -> float:
    """config.train.r1_gamma, or NVIDIA's 'auto' 0.0002 * res^2 / batch when it is negative."""
    g = float(config.train.r1_gamma)
    if g < 0:
        g = 0.0002 * int(config.data.resolution) ** 2 / int(config.train.batch_size)
    return g


def step_config(config: Any) -> StepConfig:
    """The train step's settings from config.train and config.ada."""
    t, a = config.train, config.ada
    return StepConfig(
        batch_size=int(t.batch_size),
        loss=LossConfig(r1_gamma=r1_gamma(config), pl_weight=float(t.pl_weight),
                        pl_batch_shrink=int(t.pl_batch_shrink), pl_decay=float(t.pl_decay),
                        style_mixing_prob=float(t.style_mixing_prob)),
        g_reg_interval=int(t.g_reg_interval), d_reg_interval=int(t.d_reg_interval),
        ema_kimg=float(t.ema_kimg), ema_rampup=t.ema_rampup, augment=a.mode, augpipe=a.augpipe,
        ada_target=float(a.target), ada_interval=int(a.interval), ada_kimg=float(a.kimg),
        batch_gpu=int(t.batch_gpu), loss_scale=loss_scale(config))


def loss_scale(config: Any) -> float:
    """config.train.loss_scale, or when it is 0 ('auto') 1024 for float16 and 1 otherwise.

    1024 because R1's gradients lose most of their entries to fp16 underflow without a
    scale and keep them with 1024 (measured on the fixture networks; see test_precision)."""
    s = float(config.train.loss_scale)
    if s == 0:
        s = AUTO_FP16_LOSS_SCALE if config.model.dtype == "float16" else 1.0
    return s


def check_step_settings(config: Any) -> None:
    """ConfigError (one line, naming the flag) for step settings that cannot run: an unknown
    compute dtype, float16 without conv_clamp (activations would overflow fp16's 65504),
    a negative loss scale, or train.lazy_regs other than 'host' / 'device'."""
    networks.check_dtype(config.model.dtype)
    if config.model.dtype == "float16" and config.model.conv_clamp is None:
        raise ConfigError("--config.model.dtype=float16 needs --config.model.conv_clamp (NVIDIA uses 256) "
                          "so that activations stay inside float16's range")
    s = config.train.loss_scale
    if not isinstance(s, (int, float)) or isinstance(s, bool) or not s >= 0 or s == float("inf"):
        raise ConfigError(f"--config.train.loss_scale={s!r} must be a finite number >= 0 (0 = auto)")
    where = config.train.lazy_regs
    if where not in ("host", "device"):
        raise ConfigError(f"--config.train.lazy_regs={where!r}: choose 'host' or 'device'")


def check_batch_gpu(config: Any) -> None:
    """ConfigError (one line, naming the flag) unless config.train.batch_gpu can split the batch:
    0, or a divisor of batch_size that is a multiple of mbstd_group_size and of the devices."""
    batch_gpu = int(config.train.batch_gpu)
    problem = batch_gpu_problem(int(config.train.batch_size), batch_gpu,
                                int(config.model.mbstd_group_size), jax.device_count())
    if problem:
        raise ConfigError(f"--config.train.batch_gpu={batch_gpu} {problem}")


def label_names(config: Any) -> List[str]:
    """The label space of a fixed-label run: config.data.label_names ('a,b,c'), else the
    class names of the run config.transfer.init_from (its run.json)."""
    names = [s.strip() for s in str(config.data.label_names).split(",") if s.strip()]
    src = config.transfer.init_from
    if not names and src and (pathlib.Path(src) / DESCRIPTOR).is_file():
        names = list(read_descriptor(src).get("class_names") or [])
    if len(names) < 2:
        raise ConfigError(f"--config.data.fixed_label={config.data.fixed_label}: give the label space "
                          "with --config.data.label_names=a,b,c (or transfer.init_from a conditional run)")
    if config.data.fixed_label not in names:
        raise ConfigError(f"--config.data.fixed_label={config.data.fixed_label} is not one of the "
                          f"labels {names}; pick one of them")
    return names


def _load_data(config: Any):
    """The training set of config.data; a conditional folder run needs >= 2 labelled classes.

    With data.fixed_label every image is that class of `label_names(config)`: a per-class
    fine-tune keeps the conditional G and D (and their learnt label embeddings) of its base
    run and trains them on one class's images only."""
    data_cfg = config.data.to_dict()
    data_cfg["cache_dir"] = data_cfg["cache_dir"] or None
    fixed = data_cfg["fixed_label"]
    if fixed and not data_cfg["conditional"]:
        raise ConfigError("--config.data.fixed_label needs --config.data.conditional=True")
    if data_cfg["source"] == "folder" and data_cfg["conditional"] and not fixed:
        data_cfg.update(require_labels=True, min_classes=2)
    ds = load_dataset(data_cfg)
    if not fixed:
        return ds
    names = label_names(config)
    summary = dict(ds.summary or {}, fixed_label=fixed, label_names=names)
    return dataclasses.replace(ds, labels=np.full(len(ds), names.index(fixed), np.int32),
                               class_names=names, summary=summary)


def _optimizers(config: Any, D) -> tuple:
    """(G, D) Adam with lazy-regularisation scaling and the configured frozen layers."""
    t, tr = config.train, config.transfer
    g_tx = state_lib.make_optimizer(
        state_lib.OptConfig(lr=t.g_lr, betas=tuple(t.betas), reg_interval=t.g_reg_interval),
        state_lib.freeze_g_fn(int(tr.freeze_g_res), bool(tr.freeze_mapping)))
    d_tx = state_lib.make_optimizer(
        state_lib.OptConfig(lr=t.d_lr, betas=tuple(t.betas), reg_interval=t.d_reg_interval),
        state_lib.freeze_d_fn(D.block_resolutions, int(tr.freeze_d)))
    return g_tx, d_tx


class StyleGAN2Experiment(Experiment):
    """StyleGAN2-ADA for `jaxgen.harness.loop.train` (the contract: `jaxgen.harness.experiment`);
    batches are (images [B,R,R,C] in [-1,1], one-hot labels [B, K]) with K = 0 for an
    unconditional run."""

    kind = "stylegan2"
    grid: Grid                        # always set: G's samples every image snapshot
    last_keys = ("ada_p", "pl_mean")
    divergence_hint = "lower config.train.g_lr/d_lr or raise config.train.r1_gamma"
    resolution_range = (4, 1024)
    # Frozen layers change the optimizer state's tree (masked Adam moments).
    resume_fields = ("transfer.freeze_d", "transfer.freeze_g_res", "transfer.freeze_mapping")

    def __init__(self, config: Any, workdir: pathlib.Path):
        check_batch_gpu(config)
        check_step_settings(config)
        self.config, self.seed = config, int(config.seed)
        self.ds = ds = _load_data(config)
        self.data_summary = {"train": ds.summary}
        self.num_examples = len(ds.images)
        self.num_classes = ds.num_classes if bool(config.data.conditional) and ds.num_classes > 1 else 0
        k = self.num_classes
        label_probs = np.bincount(ds.labels, minlength=k) / len(ds.labels) if k else None
        G_kwargs, D_kwargs = networks.model_kwargs(config.model, ds.resolution, ds.channels, k)
        self.G, self.D = networks.build(G_kwargs, D_kwargs)
        self.g_tx, self.d_tx = _optimizers(config, self.D)
        self.schedule = Schedule.from_kimg(config.train)
        self.descriptor = dict(class_names=list(ds.class_names[:k or None]), resolution=ds.resolution,
                               channels=ds.channels, G_kwargs=G_kwargs, D_kwargs=D_kwargs)
        self.fid = FIDTracker(config.metrics, self.G, ds.images, workdir, label_probs,
                              write=jax.process_index() == 0)
        self.best_key = f"metrics/{self.fid.key}" if self.fid.every else None
        self.step_cfg = step_config(config)
        self.host_regs = config.train.lazy_regs == "host"
        self.train_step = make_train_step(self.step_cfg, self.G, self.D, self.g_tx, self.d_tx)
        self.grid = grid_inputs(ds.images, ds.labels, ds.class_names, k, self.G.z_dim,
                                int(config.train.grid_cols), self.seed)
        self._grid_c = self._one_hot(self.grid.labels)
        G = self.G
        self._gen = jax.jit(lambda p, b, z, c: G.apply({"params": p, "buffers": b}, z, c, noise_mode="const"))

    def _one_hot(self, labels: np.ndarray) -> np.ndarray:
        """float32 [N, K] (K = 0 when unconditional)."""
        return one_hot_labels(labels, self.num_classes)

    def banner(self) -> str:
        ds = self.ds
        return (f"StyleGAN2-ADA: {self.config.train.total_kimg} kimg, {len(ds.images)} images "
                f"{ds.resolution}px, {self.num_classes} classes")

    def init_state(self, key: jax.Array) -> state_lib.TrainState:
        g_vars, d_vars = networks.init_variables(self.G, self.D, key)
        return state_lib.init_state(g_vars, d_vars, self.g_tx, self.d_tx, ada_p=float(self.config.ada.p_init))

    def fresh_state(self, state: state_lib.TrainState) -> state_lib.TrainState:
        """Transfer learning: G, D and G_ema from config.transfer.init_from where they fit."""
        init_from = self.config.transfer.init_from
        if not init_from:
            return state
        g_vars = {"params": state.g_params, "buffers": state.g_buffers}
        g_vars, d_vars, ema_vars, _ = transfer(g_vars, {"params": state.d_params}, init_from,
                                               float(self.config.transfer.min_share))
        return state_lib.init_state(g_vars, d_vars, self.g_tx, self.d_tx, ema_vars,
                                    ada_p=float(self.config.ada.p_init))

    def local_batch(self, step: int, process=(0, 1)):
        """This process's rows of step `step`'s batch (of a streamed pack, only those are read)."""
        img, labels = batch_at_step(self.ds.images, self.ds.labels, step, self.schedule.batch_size,
                                    self.seed, bool(self.config.data.mirror), process)
        return to_float(img), self._one_hot(labels)

    def step_options(self, step: int) -> Dict[str, Any]:
        """The lazy regularisers of `step` chosen on the host (see `jaxgen.stylegan2.step`), or
        None with config.train.lazy_regs='device' (the step decides with lax.cond)."""
        return {"regs": lazy_phases(self.step_cfg, step) if self.host_regs else None}

    def sample(self, state: state_lib.TrainState) -> np.ndarray:
        return np.asarray(self._gen(state.ema_params, state.ema_buffers, self.grid.z, self._grid_c))

    def begin(self, step: int) -> None:
        self.fid.drop_after(step)

    def evaluate(self, state, tick: TickInfo, stats: Dict[str, float]) -> Dict[str, float]:
        """FID (and KID) of G_ema when due, as 'metrics/<name>'."""
        if not self.fid.due(tick.index, tick.done):
            return {}
        scores = self.fid.evaluate({"params": state.ema_params, "buffers": state.ema_buffers},
                                   tick.nimg / 1000, tick.step)
        return {f"metrics/{k}": v for k, v in scores.items()}

    def tick_line(self, stats: Dict[str, Any]) -> str:
        parts = [f"{label} {stats[key]:<7.4f}" for key, label in (
            ("loss/G", "G"), ("loss/D", "D"), ("loss/pl_penalty", "pl"), ("loss/r1_penalty", "r1"),
            ("signs/real", "rt"), ("ada_p", "p")) if key in stats]
        parts += [f"{k[8:]} {v:.4g}" for k, v in stats.items() if k.startswith("metrics/") and "_std" not in k]
        return "  ".join(parts)


def train_and_evaluate(config: Any, workdir: str) -> Dict[str, Any]:
    """Train (or resume) a StyleGAN2-ADA run in `workdir`; returns the last tick's metrics row."""
    return loop.train(StyleGAN2Experiment, config, workdir)["stats"]
