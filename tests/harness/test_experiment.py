"""jaxgen.harness.experiment: the contract every trainer declares (a subclass of `Experiment` with its
class settings and the required hooks), the defaults of the optional ones, and `loop.train` reading
the class settings from the class before any instance exists."""
import pathlib

import ml_collections
import numpy as np
import pytest

from jaxgen.classifiers.train import ClassifierExperiment
from jaxgen.dcgan.train import DCGANExperiment
from jaxgen.errors import ConfigError
from jaxgen.harness import loop
from jaxgen.harness.experiment import Experiment
from jaxgen.stylegan2.train import StyleGAN2Experiment
from toy_experiment import ToyExperiment

PRODUCTS = (StyleGAN2Experiment, DCGANExperiment, ClassifierExperiment)


def test_every_trainer_is_an_experiment_with_its_class_settings():
    assert [c.kind for c in PRODUCTS] == ["stylegan2", "dcgan", "classifier"]
    for cls in PRODUCTS + (ToyExperiment,):
        assert issubclass(cls, Experiment)
        lo, hi = cls.resolution_range
        assert 4 <= lo < hi <= 1024 and isinstance(cls.power_of_two, bool), cls
        assert isinstance(cls.resume_fields, tuple) and all("." in f for f in cls.resume_fields), cls
        assert cls.init_state is not Experiment.init_state, cls                 # a required hook
    assert StyleGAN2Experiment.resume_fields and not ClassifierExperiment.power_of_two


def test_class_settings_refuse_a_config_before_the_constructor_runs(tmp_path):
    class Narrow(ToyExperiment):
        resolution_range = (8, 16)

        def __init__(self, config, workdir):
            raise AssertionError("built although the config cannot work")

    cfg = ml_collections.ConfigDict(dict(data=dict(resolution=32)))
    with pytest.raises(ConfigError, match=r"config.data.resolution=32 must be a power of two from 8 to 16"):
        loop.train(Narrow, cfg, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_optional_fields_and_hooks_default_to_doing_nothing():
    e = Experiment(None, pathlib.Path("."))        # the base constructor sets no field
    assert not hasattr(e, "descriptor") and not hasattr(e, "schedule")   # required: no default
    assert e.grid is None and e.best_key is None and e.best_mode == "min" and e.prefetch == 2
    assert dict(e.data_summary) == {} and e.last_keys == () and e.tick_line({}) == ""
    assert e.fresh_state("state") == "state" and e.step_options(3) == {} and e.evaluate(None, None, {}) == {}
    with pytest.raises(NotImplementedError):
        e.init_state(None)
    with pytest.raises(TypeError):
        e.data_summary["train"] = {}               # the shared default cannot be filled by accident
    e.batch = lambda step: (np.arange(8).reshape(4, 2) + step, np.arange(4))
    rows, labels = e.local_batch(10, (1, 2))       # process 1 of 2 feeds rows 2..3
    np.testing.assert_array_equal(rows, [[14, 15], [16, 17]])
    np.testing.assert_array_equal(labels, [2, 3])
