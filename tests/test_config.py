"""jaxgen.config and configs/: every config file loads from any working directory, one variant parser."""
import os
import pathlib
import subprocess
import sys

import pytest

from jaxgen.config import classifier, data, dcgan, load_config, parse_variants, stylegan2_ada
from jaxgen.errors import ConfigError

REPO = pathlib.Path(__file__).resolve().parents[1]
SPECS = ["acne.py", "acne.py:tiny", "acne.py:micro,finetune", "acne_classifier.py:tiny",
         "depth_emotion.py:tiny,nokd", "depth_compare.py:tiny", "ffhq_ada.py:1024",
         "evolve_acne.py:tiny", "evolve_acne.py:micro", "evolve_depth.py:tiny"]


def test_every_config_and_variant_loads():
    tasks = {s: load_config(f"{REPO}/configs/{s}").get("task") for s in SPECS}
    assert tasks["acne.py:tiny"] == "stylegan2" and tasks["acne_classifier.py:tiny"] == "classifier"
    assert tasks["depth_emotion.py:tiny,nokd"] == "dcgan" and tasks["evolve_acne.py:tiny"] == "evolve"
    ft = load_config(f"{REPO}/configs/acne.py:tiny,finetune")
    base = load_config(f"{REPO}/configs/acne.py:tiny")
    assert ft.train.total_kimg == 6 and base.train.total_kimg == 36 and ft.transfer.freeze_d == 4
    assert ft.data.conditional and not ft.data.fixed_label and ft.metrics.every_ticks == 0
    micro = load_config(f"{REPO}/configs/acne.py:micro", ["train.total_kimg=4", "data.mirror=false"])
    assert micro.train.total_kimg == 4.0 and micro.data.mirror is False


def test_variant_errors_name_the_file_and_the_choices():
    with pytest.raises(ValueError, match=r"unknown variant\(s\) \['huge'\] of configs/acne.py "
                                         r"\(known: tiny, micro, finetune\)"):
        load_config(f"{REPO}/configs/acne.py:huge")
    with pytest.raises(ValueError, match="exclude each other"):
        load_config(f"{REPO}/configs/acne.py:tiny,micro")
    assert parse_variants(" tiny , nokd ", ("tiny", "nokd"), "x.py") == {"tiny", "nokd"}
    with pytest.raises(ValueError, match="has no field"):
        load_config(f"{REPO}/configs/acne.py:micro", ["train.no_such=1"])
    with pytest.raises(FileNotFoundError):
        load_config(f"{REPO}/configs/nothing.py")


def test_config_files_work_from_another_directory(tmp_path):
    """config_flags as train.py uses it, run from an unrelated working directory (jaxgen found
    through the editable install `make` does, not through the working directory)."""
    code = ("import sys; from absl import flags; from ml_collections import config_flags; "
            "config_flags.DEFINE_config_file('config'); flags.FLAGS(sys.argv); "
            "print(flags.FLAGS.config.name, flags.FLAGS.config.train.batch_size)")
    out = subprocess.run([sys.executable, "-c", code, f"--config={REPO}/configs/acne.py:tiny",
                          "--config.train.batch_size=4"], cwd=tmp_path, capture_output=True, text=True,
                         timeout=120, env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["acne_tiny", "4"]


def test_set_parses_as_config_flags_do_and_refuses_a_misspelt_bool():
    """--set a.b=v (the workflows' overrides): fields holding None or a tuple take Python
    literals (as --config.a.b=v does), a bool takes only true/false words, a number only a number."""
    c = load_config("configs/acne.py:tiny", ["model.conv_clamp=256", "data.mirror=False",
                                              "train.total_kimg=2.5", "data.path=x/y", "train.betas=(0.5, 0.9)"])
    assert c.model.conv_clamp == 256 and c.data.mirror is False and c.train.total_kimg == 2.5
    assert c.train.betas == (0.5, 0.9)
    assert c.data.path == "x/y"
    c = load_config("configs/acne.py:tiny", ["model.conv_clamp=None", "data.mirror=yes"])
    assert c.model.conv_clamp is None and c.data.mirror is True
    for bad, msg in [("data.mirror=flase", "is a bool; write true or false"),
                     ("train.total_kimg=four", "is a float; 'four' is not one"),
                     ("model.nope=1", "has no field")]:
        with pytest.raises(ConfigError, match=msg):
            load_config("configs/acne.py:tiny", [bad])


def _fields(config, prefix=""):
    """The dotted names of every leaf field of a ConfigDict."""
    out = set()
    for k, v in config.items():
        out |= _fields(v, f"{prefix}{k}.") if hasattr(v, "items") else {prefix + k}
    return out


BUILDERS = {"stylegan2": stylegan2_ada, "dcgan": lambda: dcgan("", data()),
            "classifier": lambda: classifier("", data())}


def test_every_training_config_has_every_field_of_its_builder():
    """The trainers read their settings without defaults of their own (config.train.batch_gpu, not
    .get('batch_gpu', 0)): every training config and variant builds on its jaxgen.config builder."""
    for spec in SPECS:
        config = load_config(f"{REPO}/configs/{spec}")
        if config.get("task") in BUILDERS:
            missing = _fields(BUILDERS[config.task]()) - _fields(config)
            assert not missing, (spec, sorted(missing))


def test_the_depth_dcgan_config_is_its_builder_with_its_data():
    """configs/depth_emotion.py sets only its name and data on jaxgen.config.dcgan(); the variants
    change the size (tiny) and turn distillation off (nokd)."""
    depth = data("depth_demo", "data/demo_depth", 64, 1, num_per_class=256, cache_dir="")
    assert load_config(f"{REPO}/configs/depth_emotion.py").to_dict() == dcgan("depth_emotion", depth).to_dict()
    tiny = load_config(f"{REPO}/configs/depth_emotion.py:tiny,nokd")
    assert tiny.name == "depth_emotion_tiny_nokd" and tiny.kd.g_weight == tiny.kd.d_weight == 0.0
    assert tiny.data.resolution == 32 and tiny.model.widths == (128, 64, 32, 16) and tiny.train.snapshot_ticks == 5
