"""jaxgen.config and configs/: every config file loads from any working directory, one variant parser."""
import os
import pathlib
import subprocess
import sys

import pytest

from jaxgen.config import load_config, parse_variants
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
