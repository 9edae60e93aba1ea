"""The pipeline's --workdir: a folder of the user's files is refused before any step; its own resumes."""
import pathlib

import pytest

from jaxgen.config import load_config
from jaxgen.errors import InputMissing, OutputError
from jaxgen.utils.outputs import read_marker
from jaxgen.workflows.pipeline import Configs, Pipeline, run_pipeline

REPO = pathlib.Path(__file__).resolve().parents[2]


def _configs(root: pathlib.Path) -> Configs:
    gan = load_config(f"{REPO}/configs/acne.py:micro", [f"data.path={root / 'demo'}", "data.cache_dir="])
    return Configs(gan, load_config(f"{REPO}/configs/acne.py:micro,finetune"),
                   load_config(f"{REPO}/configs/acne_classifier.py:tiny"),
                   load_config(f"{REPO}/configs/evolve_acne.py:micro"))


def test_user_folder_refused_and_old_workdirs_resume(tmp_path):
    user = tmp_path / "mine"
    user.mkdir()
    (user / "thesis.txt").write_text("mine")
    with pytest.raises(OutputError, match=f"--workdir {user} is not empty.*--workdir"):
        run_pipeline(_configs(tmp_path), str(user), steps=("base",))
    assert [p.name for p in user.iterdir()] == ["thesis.txt"]
    assert not (tmp_path / "demo").exists()            # refused before the demo faces were rendered
    old = tmp_path / "old"                             # a workdir of a pipeline before the marker
    old.mkdir()
    (old / ".base.done").write_text('{"seconds": 1.0}')
    assert Pipeline(_configs(tmp_path), str(old)).w == old
    assert read_marker(old) is None                    # checked only: nothing written yet
    with pytest.raises(InputMissing, match="--test"):
        Pipeline(_configs(tmp_path), str(tmp_path / "new"), test=str(tmp_path / "no_test"))
    assert not (tmp_path / "new").exists()
