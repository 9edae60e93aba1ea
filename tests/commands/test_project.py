"""jaxgen.commands.project (`python -m jaxgen project`): every refusal is one line naming the
flag, made before anything is written; a bad flag setting is refused before the run is opened.
What a projection writes: tests/workflows/test_project.py."""
import numpy as np
import pytest
from PIL import Image

from jaxgen.commands.common import run_main
from jaxgen.commands.project import main
from jaxgen.errors import ConfigError, InputMissing, OutputError
from tiny_projector import shared_tiny

XLA_FAST_COMPILE = True


@pytest.fixture(scope="module")
def nets():
    return shared_tiny()["nets"]


def test_refusals(nets, tmp_path, capsys):
    face = tmp_path / "face.png"
    Image.fromarray(np.zeros([8, 8, 3], np.uint8)).save(face)
    base = [str(nets), "--steps", "5"]
    with pytest.raises(InputMissing, match="--target .*nope.png does not exist"):
        main(base + ["--target", str(tmp_path / "nope.png"), "--out", str(tmp_path / "o1")])
    with pytest.raises(ConfigError, match="exactly one of them"):
        main(base + ["--out", str(tmp_path / "o2")])
    (tmp_path / "bad.png").write_text("not an image")
    with pytest.raises(ConfigError, match="bad.png is not a readable image"):
        main(base + ["--target", str(tmp_path / "bad.png"), "--out", str(tmp_path / "o3")])
    with pytest.raises(ConfigError, match="--class healthy: .* is unconditional"):
        main(base + ["--target", str(face), "--class", "healthy", "--out", str(tmp_path / "o4")])
    with pytest.raises(ConfigError, match="--steps 0 cannot work"):
        main(base[:2] + ["0", "--target", str(face), "--out", str(tmp_path / "o5")])
    with pytest.raises(ConfigError, match="--inception_weight > 0 needs --inception_weights PATH"):
        main(base + ["--inception_weight", "1", "--target", str(face), "--out", str(tmp_path / "o7")])
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    with pytest.raises(OutputError, match="not empty and was not written by jaxgen"):
        main(base + ["--target", str(face), "--out", str(mine)])
    with pytest.raises(SystemExit) as e:
        run_main(lambda: main(base + ["--target", str(tmp_path / "nope.png"), "--out", str(tmp_path / "o6")]))
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1 and err.startswith("error: --target")
    assert not any((tmp_path / f"o{i}").exists() for i in range(1, 8))
