"""jaxgen.workflows.datasheet: bad folders and settings are refused, one line naming the flag,
before the output folder exists. What a datasheet measures: tests/metrics/test_datasheet.py."""
import pytest

from jaxgen.data.demo_faces import write_demo_dataset
from jaxgen.errors import ConfigError
from jaxgen.workflows.datasheet import datasheet_for_folders

CLASSES = ("healthy", "severe")


def test_bad_folders_are_refused_before_the_output_exists(tmp_path):
    write_demo_dataset(tmp_path / "train", 4, 16, 0, classes=CLASSES, progress=False)
    write_demo_dataset(tmp_path / "holdout", 4, 16, 1, classes=CLASSES, progress=False)
    train, holdout, out = str(tmp_path / "train"), str(tmp_path / "holdout"), tmp_path / "out"
    with pytest.raises(ConfigError, match="--holdout .*: not a folder"):
        datasheet_for_folders(holdout, train, str(tmp_path / "nope"), str(out))
    write_demo_dataset(tmp_path / "other", 2, 16, 0, classes=("healthy", "mild"), progress=False)
    with pytest.raises(ConfigError, match=r"--synthetic .* has classes \['healthy', 'mild'\]"):
        datasheet_for_folders(str(tmp_path / "other"), train, holdout, str(out))
    with pytest.raises(ConfigError, match="--identity='face'"):
        datasheet_for_folders(holdout, train, holdout, str(out), feature_net="random_inception",
                              identity_model="face")
    assert not out.exists()
