"""evolve never writes into a folder of the user's: refused before any model is built, files untouched."""
import json
import os
import pathlib
import subprocess
import sys

import pytest

from jaxgen.config import load_config
from jaxgen.errors import ConfigError, OutputError
from jaxgen.evolve.export import evolve_dataset
from jaxgen.evolve.export_config import ExportConfig, config_settings
from jaxgen.evolve.export_folder import check_export_folder, store_settings
from jaxgen.evolve.ga import GAConfig
from jaxgen.utils.outputs import claim_output
from jaxgen.workflows.evolve import run_evolve

REPO = pathlib.Path(__file__).resolve().parents[2]
MICRO = str(REPO / "configs/evolve_acne.py:micro")


def _user_folder(root: pathlib.Path) -> pathlib.Path:
    """The issue's folder: a thesis, a metadata.jsonl and an image of the user's own."""
    user = root / "mine"
    (user / "healthy").mkdir(parents=True)
    (user / "thesis.txt").write_text("my thesis, chapter 1\n")
    (user / "metadata.jsonl").write_text('{"file": "healthy/keep.png", "note": "mine"}\n')
    (user / "healthy" / "keep.png").write_bytes(b"\x89PNG\r\n\x1a\n my own image")
    return user


def _snapshot(root: pathlib.Path) -> dict:
    return {p.relative_to(root).as_posix(): p.read_bytes() if p.is_file() else "dir"
            for p in sorted(root.rglob("*"))}


def test_evolve_refuses_a_user_folder_before_building_anything(tmp_path):
    user = _user_folder(tmp_path)
    before = _snapshot(user)
    config = load_config(MICRO, [f"generator={tmp_path / 'no_such_gan'}"])  # never opened
    with pytest.raises(OutputError) as e:
        run_evolve(config, str(user))
    msg = str(e.value)
    assert "\n" not in msg and str(user) in msg and "--out" in msg
    assert "healthy/" in msg and "metadata.jsonl" in msg and "thesis.txt" in msg
    with pytest.raises(OutputError):                   # the library entry refuses too
        evolve_dataset([], GAConfig(), ExportConfig(), str(user))
    assert _snapshot(user) == before                   # byte-identical, nothing added


def test_an_export_made_before_the_marker_still_resumes(tmp_path):
    old = tmp_path / "old_export"
    old.mkdir()
    (old / "progress.json").write_text(json.dumps({"healthy": {"rounds": 2, "exported": 4}}))
    (old / "metadata.jsonl").write_text("")
    assert check_export_folder(old) == old
    (old / "progress.json").write_text(json.dumps({"chapter": "not an export"}))
    with pytest.raises(OutputError):
        check_export_folder(old)


def test_evolve_cli_refusal_is_one_line_with_exit_2(tmp_path):
    user = _user_folder(tmp_path)
    before = _snapshot(user)
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(REPO), JAXGEN_JAX_CACHE="")
    env.pop("JAXGEN_DEBUG", None)
    r = subprocess.run([sys.executable, str(REPO / "evolve.py"), "--config", MICRO, f"--out={user}"],
                       env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 2, r.stdout[-2000:] + r.stderr[-2000:]
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: --out ") and str(user) in lines[0], r.stderr
    assert _snapshot(user) == before


def test_a_rerun_with_another_config_is_refused_before_building(tmp_path):
    """The export's settings are in its marker: another config is refused in one line before any
    model is built; asking for more images of the same config is a resume (it goes on to build)."""
    out = tmp_path / "evolved"
    config = load_config(MICRO, ["generator="])
    claim_output(out, "evolve")
    store_settings(out, dict(config=config_settings(config.to_dict())))
    changed = load_config(MICRO, ["generator=", "psi=0.5"])
    with pytest.raises(OutputError, match=r"other settings \(config\.psi: 0\.7 -> 0\.5\); nothing was written.*"
                                          r"--rebuild") as e:
        run_evolve(changed, str(out))
    assert "\n" not in str(e.value)
    more = load_config(MICRO, ["generator=", "num_per_class=64"])
    with pytest.raises(ConfigError, match="--config.generator is needed"):   # not refused: it builds
        run_evolve(more, str(out))
    with pytest.raises(ConfigError, match="--config.generator is needed"):   # --rebuild: not refused either
        run_evolve(changed, str(out), rebuild=True)
