"""The pipeline's --workdir: a folder of the user's files is refused before any step; its own resumes."""
import json
import pathlib
from types import SimpleNamespace

import pytest

from jaxgen.config import load_config
from jaxgen.errors import InputMissing, OutputError
from jaxgen.utils.outputs import claim_output, read_marker
from jaxgen.workflows.pipeline import Configs, Pipeline, run_marked_step, run_pipeline

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


def test_changed_settings_of_a_done_step_are_refused_before_anything_runs(tmp_path):
    w = tmp_path / "pipe"
    claim_output(w, "pipeline", "--workdir")
    first = Pipeline(_configs(tmp_path), str(w), num_sort=8)
    for step in ("base", "sorter", "sort"):   # finished steps record what they were computed from
        run_marked_step(SimpleNamespace(w=w, timing={}, **{f"step_{step}": dict}), step,
                        "pipeline", first.step_settings(step))
    assert json.loads((w / ".sort.done").read_text())["settings"] == dict(num_sort=8, min_conf=0.5, min_accept=0.1,
                                                                          seed=0)
    Pipeline(_configs(tmp_path), str(w), num_sort=8).check_done_steps()          # the same: resumes
    with pytest.raises(OutputError, match=r"step sort was done with other settings \(sort\.num_sort: 8 -> 16\); "
                                          r"nothing was run: .* delete sorted/ finetune_data/ \.sort\.done in it "
                                          r"to recompute sort") as e:
        run_pipeline(_configs(tmp_path), str(w), num_sort=16, steps=("evaluate",))
    assert "\n" not in str(e.value)
    changed = _configs(tmp_path)
    changed.gan.train.total_kimg = 99
    with pytest.raises(OutputError, match=r"step base was done with other settings \(base\.gan\.train\.total_kimg: "
                                          r".* -> 99\.0\).*to recompute base, sorter, sort"):
        run_pipeline(changed, str(w), num_sort=8)
    assert not (tmp_path / "demo").exists() and not (w / "base").exists()     # nothing rendered or trained
    (w / ".base.done").write_text('{"seconds": 1.0}')      # a marker from before the settings: taken as is
    with pytest.raises(OutputError, match="step sort"):
        run_pipeline(_configs(tmp_path), str(w), num_sort=16)
