"""Ownership of output folders (issue 28, item 1): a training workdir is a run only by jaxgen's
own marker (run.json), never by common file names, and no command writes inside a run or another
command's output unless the workflow that owns the folder writes its own sub-runs there.
The real trainers and configs; no model is ever built (load_dataset is replaced by a guard)."""
import hashlib
import json
import os
import pathlib
import subprocess
import sys

import pytest

from jaxgen.config import load_config
from jaxgen.errors import OutputError, UserError
from jaxgen.harness import validate
from jaxgen.harness.checkpoint import DESCRIPTOR, RUN_FORMAT, write_descriptor
from jaxgen.stylegan2 import train as sg2_train
from jaxgen.utils import outputs
from jaxgen.utils.outputs import check_output, claim_output
from jaxgen.workflows.evolve import run_evolve

REPO = pathlib.Path(__file__).resolve().parents[2]
EVOLVE_MICRO = str(REPO / "configs/evolve_acne.py:micro")


class DataLoaded(Exception):
    """Raised by the guard: validation let the run through to its data."""


@pytest.fixture
def guard(monkeypatch):
    """The StyleGAN2 trainer stops where it would load the data; no folder is claimed by this process."""
    def load(cfg):
        raise DataLoaded(cfg)
    monkeypatch.setattr(sg2_train, "load_dataset", load)
    monkeypatch.setattr(outputs, "_CLAIMED", set())


def _micro(*overrides):
    return load_config(str(REPO / "configs/acne.py:micro"), overrides)


def _hashes(root: pathlib.Path) -> dict:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(root.rglob("*"))}


def _run(root: pathlib.Path) -> pathlib.Path:
    """A trained run's folder as train() leaves it: run.json, config.json, a checkpoint."""
    (root / "checkpoints" / "4").mkdir(parents=True)
    (root / "config.json").write_text(_micro().to_json_best_effort(indent=2))
    write_descriptor(root, "stylegan2", class_names=["healthy", "severe"], resolution=16, channels=3)
    return root


def _env():
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(REPO), JAXGEN_JAX_CACHE="")
    env.pop("JAXGEN_DEBUG", None)
    return env


def test_a_folder_with_the_users_config_json_is_refused_byte_identical(tmp_path, guard):
    own = tmp_path / "mine"
    (own / "checkpoints").mkdir(parents=True)
    (own / "config.json").write_text('{"my": "own settings"}')
    (own / "notes.txt").write_text("two years of notes")
    before = _hashes(own)
    with pytest.raises(OutputError) as e:
        sg2_train.train_and_evaluate(_micro(), str(own))
    msg = str(e.value)
    assert "\n" not in msg and f"--workdir {own} holds files jaxgen did not write" in msg
    assert "checkpoints, config.json, notes.txt" in msg
    assert _hashes(own) == before


def test_what_makes_a_folder_a_run(tmp_path):
    run = _run(tmp_path / "run")
    assert validate.is_run(run) and validate.check_workdir(run) is True      # resumes
    fresh = tmp_path / "fresh"
    write_descriptor(fresh, "classifier", class_names=["a", "b"], resolution=16, channels=1)
    assert validate.is_run(fresh) and validate.check_workdir(fresh) is False   # a run, nothing saved yet
    assert outputs.RUN_FORMAT == RUN_FORMAT and outputs.RUN_DESCRIPTOR == DESCRIPTOR
    fake = tmp_path / "fake"                                  # the user's own run.json
    fake.mkdir()
    (fake / "run.json").write_text('{"kind": "stylegan2", "notes": "my run"}')
    assert not validate.is_run(fake)
    with pytest.raises(OutputError, match="holds files jaxgen did not write .run.json."):
        validate.check_workdir(fake)
    legacy = tmp_path / "legacy"                              # before run.json: model.json + checkpoints
    (legacy / "checkpoints" / "8").mkdir(parents=True)
    (legacy / "model.json").write_text(json.dumps(dict(G_kwargs=dict(img_resolution=16, img_channels=3))))
    assert validate.is_run(legacy) and validate.check_workdir(legacy) is True
    (legacy / "checkpoints" / "8").rmdir()                    # a model.json alone is anybody's
    assert not validate.is_run(legacy)
    ev = claim_output(tmp_path / "ev", "evolve")
    with pytest.raises(OutputError, match=r"holds the output of another jaxgen command \('evolve'\)"):
        validate.check_workdir(ev)


@pytest.mark.parametrize("inside", ["evolved", "checkpoints/99", "samples/x"])
def test_evolve_into_a_training_run_is_refused_and_the_run_untouched(tmp_path, inside, monkeypatch):
    monkeypatch.setattr(outputs, "_CLAIMED", set())
    run = _run(tmp_path / "runs" / "g")
    before = _hashes(run)
    config = load_config(EVOLVE_MICRO, [f"generator={run}"])
    with pytest.raises(OutputError) as e:
        run_evolve(config, str(run / inside))
    msg = str(e.value)
    assert "\n" not in msg and isinstance(e.value, UserError)
    assert msg.startswith(f"--out {run / inside} lies inside the jaxgen stylegan2 run {run};")
    assert msg.endswith("choose a folder outside it with --out")
    assert _hashes(run) == before
    with pytest.raises(OutputError, match=f"--out {run} is a jaxgen stylegan2 run"):   # the run itself
        check_output(run, "evolve")


def test_outputs_inside_another_commands_output_and_training_inside_a_run_are_refused(tmp_path, guard):
    ev = claim_output(tmp_path / "ev", "evolve")
    outputs._CLAIMED.clear()                                   # a later command, in another process
    with pytest.raises(OutputError, match=rf"--out_dir {ev / 'gen'} lies inside the output of another jaxgen "
                                          rf"command \('evolve'\) {ev};"):
        check_output(ev / "gen", "generate", "--out_dir")
    run = _run(tmp_path / "g")
    before = _hashes(run)
    for workdir in (run / "sub", ev / "gan"):
        with pytest.raises(OutputError, match=f"--workdir {workdir} lies inside"):
            sg2_train.train_and_evaluate(_micro(), str(workdir))
    assert _hashes(run) == before and not (ev / "gan").exists()
    beside = tmp_path / "g_evolved"                           # beside a run is fine
    assert check_output(beside, "evolve") == beside


def test_a_workflow_writes_its_own_sub_runs_and_outputs_in_its_workdir(tmp_path, guard):
    w = claim_output(tmp_path / "pipe", "pipeline", "--workdir")     # this process owns it
    assert check_output(w / "synthetic", "evolve") == w / "synthetic"
    assert check_output(w / "eval" / "cls_real", "classifier-eval") == w / "eval" / "cls_real"
    with pytest.raises(DataLoaded):                                  # its sub-runs train
        sg2_train.train_and_evaluate(_micro(), str(w / "finetune" / "severe"))
    base = _run(w / "base")
    with pytest.raises(OutputError, match=f"lies inside the jaxgen stylegan2 run {base}"):
        check_output(base / "evolved", "evolve")                     # ... but never inside a run
    outputs._CLAIMED.clear()              # another process: a workflow's workdir is a folder of runs,
    assert check_output(w / "base_eval", "evaluate") == w / "base_eval"     # so beside them is fine,
    ev = claim_output(w / "synthetic", "evolve")
    outputs._CLAIMED.clear()
    with pytest.raises(OutputError, match=f"lies inside the output of another jaxgen command .'evolve'. {ev}"):
        check_output(ev / "more", "generate")                        # inside its exports is not


def test_evolve_cli_into_a_run_is_one_line_with_exit_2(tmp_path):
    run = _run(tmp_path / "runs" / "g")
    before = _hashes(run)
    r = subprocess.run([sys.executable, str(REPO / "evolve.py"), "--config", EVOLVE_MICRO,
                        f"--config.generator={run}", f"--out={run / 'evolved'}"],
                       env=_env(), capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert r.returncode == 2, r.stdout[-2000:] + r.stderr[-2000:]
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"error: --out {run / 'evolved'} lies inside the jaxgen "
                                                   f"stylegan2 run {run}"), r.stderr
    assert _hashes(run) == before
