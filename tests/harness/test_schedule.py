"""jaxgen.harness.schedule.Schedule: steps per tick and run from kimg or epochs, the snapshot
settings read from config.train (set by the config builders, no defaults of its own)."""
import ml_collections
import pytest

from jaxgen.config import data, dcgan, stylegan2_ada
from jaxgen.errors import ConfigError
from jaxgen.harness.schedule import Schedule


def test_from_kimg_counts_steps_of_the_batch_and_takes_the_builders_snapshot_settings():
    t = stylegan2_ada().train
    t.batch_size, t.total_kimg, t.kimg_per_tick = 32, 1.0, 0.1
    # 1000 images / 32 -> 32 steps (the last one partly past 1 kimg); 100 / 32 -> 4 steps a tick
    assert Schedule.from_kimg(t) == Schedule(32, 32, 4, 50, 50, 3)
    d = dcgan("x", data()).train
    assert Schedule.from_kimg(d) == Schedule(64, 4688, 63, 5, 5, 3)
    t.kimg_per_tick = 0.0                          # a tick is at least one step
    assert Schedule.from_kimg(t).tick_steps == 1


def test_from_epochs_makes_a_tick_an_epoch():
    assert Schedule.from_epochs(16, 100, 3) == Schedule(16, 18, 6, 1, 1, 2)
    assert Schedule.from_epochs(16, 8, 2).tick_steps == 1      # fewer examples than a batch


@pytest.mark.parametrize("settings,message", [
    (dict(batch_size=0), "batch_size=0 must be >= 1"),
    (dict(total_kimg=float("nan")), "total_kimg=nan"),
    (dict(snapshot_ticks=0), r"config.train.snapshot_ticks=0 must be >= 1"),
    (dict(keep_checkpoints=0), r"config.train.keep_checkpoints=0 must be >= 1"),
])
def test_settings_that_cannot_schedule_are_one_line_config_errors(settings, message):
    t = ml_collections.ConfigDict(dict(batch_size=4, total_kimg=1.0, kimg_per_tick=0.1, snapshot_ticks=1,
                                       image_snapshot_ticks=1, keep_checkpoints=1))
    t.update(settings)
    with pytest.raises(ConfigError, match=message):
        Schedule.from_kimg(t)
    with pytest.raises(ConfigError, match="epochs=-1"):
        Schedule.from_epochs(4, 10, -1)
