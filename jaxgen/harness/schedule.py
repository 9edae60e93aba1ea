"""How long a training run is and when it reports and saves: `Schedule`, in steps of one batch.

An experiment sets `Experiment.schedule` in its constructor: the GANs from
config.train's kimg settings (`Schedule.from_kimg`), the classifiers from epochs
(`Schedule.from_epochs`). The loop (`jaxgen.harness.loop`) reads it for the
length of a tick, the end of the run and when to checkpoint and draw samples.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any

from jaxgen.errors import ConfigError


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
        """GAN schedules: total_kimg and kimg_per_tick (thousands of real images), snapshot_ticks,
        image_snapshot_ticks and keep_checkpoints of config.train (`jaxgen.config.stylegan2_ada`,
        `jaxgen.config.dcgan`)."""
        bs, t = int(train_cfg.batch_size), train_cfg
        if bs < 1 or not float(t.total_kimg) >= 0 or not float(t.kimg_per_tick) >= 0:
            raise ConfigError(f"config.train: batch_size={bs} must be >= 1 and total_kimg={t.total_kimg}, "
                             f"kimg_per_tick={t.kimg_per_tick} >= 0")
        steps = lambda kimg: math.ceil(round(float(kimg) * 1000) / bs)  # noqa: E731
        return cls(bs, steps(t.total_kimg), max(steps(t.kimg_per_tick), 1), int(t.snapshot_ticks),
                   int(t.image_snapshot_ticks), int(t.keep_checkpoints))

    @classmethod
    def from_epochs(cls, batch_size: int, num_examples: int, epochs: int, keep_checkpoints: int = 2) -> "Schedule":
        """Classifier schedules: a tick is an epoch of num_examples // batch_size steps."""
        if batch_size < 1 or epochs < 0:
            raise ConfigError(f"config.train: batch_size={batch_size} must be >= 1 and epochs={epochs} >= 0")
        per_epoch = max(num_examples // batch_size, 1)
        return cls(batch_size, epochs * per_epoch, per_epoch, 1, 1, keep_checkpoints)
